//! README.md cannot drift from the tools: its shell blocks run, in order, as one script against
//! the simulator (the block marked `sh setup`, the two set-up commands, is what CI and the demo
//! test run anyway), and every tool command quoted inline parses with that tool's flags.
//!
//! The script runs as a user's shell would: in the checkout, with HOME in a temporary
//! directory (so `~/.cargo/bin` and `~/.local` are the test's), none of the variables `cargo
//! test` sets, CI=true and no stdin. One thing differs, and only in how long it takes:
//! `cargo install` gets `--debug` and this workspace's target directory, so it reuses the
//! test build instead of compiling everything again in release mode.

use std::path::Path;
use std::process::{Command, Stdio};

use clap::Parser as _;

/// The fenced blocks of a Markdown text: (info string, body).
fn fenced_blocks(markdown: &str) -> Vec<(String, String)> {
    let mut blocks = Vec::new();
    let mut current: Option<(String, String)> = None;
    for line in markdown.lines() {
        match (&mut current, line.strip_prefix("```")) {
            (None, Some(info)) => current = Some((info.trim().to_string(), String::new())),
            (Some(_), Some(rest)) if rest.trim().is_empty() => blocks.push(current.take().expect("open")),
            (Some((_, body)), _) => {
                body.push_str(line);
                body.push('\n');
            }
            (None, None) => {}
        }
    }
    blocks
}

/// Inline code spans outside fenced blocks.
fn inline_spans(markdown: &str) -> Vec<String> {
    let mut outside = String::new();
    let mut fenced = false;
    for line in markdown.lines() {
        if line.starts_with("```") {
            fenced = !fenced;
        } else if !fenced {
            outside.push_str(line);
            outside.push(' ');
        }
    }
    outside.split('`').skip(1).step_by(2).map(str::to_string).collect()
}

fn readme() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap()
}

#[test]
fn every_command_in_the_readme_runs() {
    let blocks = fenced_blocks(&readme());
    let setup: Vec<&(String, String)> = blocks.iter().filter(|(info, _)| info == "sh setup").collect();
    assert_eq!(setup.len(), 1, "one set-up block");
    let setup_commands: Vec<&str> =
        setup[0].1.lines().map(|l| l.split('#').next().unwrap().trim()).filter(|l| !l.is_empty()).collect();
    assert_eq!(setup_commands, ["cargo xtask demo", "cargo test --workspace"], "exactly the two set-up commands");
    let script: String = blocks.iter().filter(|(info, _)| info == "sh").map(|(_, body)| body.as_str()).collect();
    assert!(script.contains("cargo install") && script.contains("cargo xtask release"), "the blocks were found");

    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"));
    let home = tempfile::tempdir().unwrap();
    let cargo_home =
        std::env::var("CARGO_HOME").unwrap_or_else(|_| format!("{}/.cargo", std::env::var("HOME").unwrap()));
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let cargo_dir = Path::new(&cargo).parent().map(|p| p.display().to_string()).unwrap_or_default();
    let prelude = "set -eu\ntrap 'kill $(jobs -p) 2>/dev/null || true' EXIT\ncargo() { if [ \"$1\" = install ]; then command cargo \"$@\" --debug; else command cargo \"$@\"; fi; }\n";
    let mut command = Command::new("bash");
    command.arg("-c").arg(format!("{prelude}{script}")).current_dir(workspace).stdin(Stdio::null());
    for (name, _) in std::env::vars() {
        let elsewhere = name == "XDG_CACHE_HOME";
        if xtask::release::is_cargo_run_variable(&name)
            || name == "CARGO"
            || name.starts_with("DIGITALOCEAN_")
            || elsewhere
        {
            command.env_remove(&name);
        }
    }
    let user_bin = home.path().join(".cargo/bin");
    command
        .env("HOME", home.path())
        .env("CARGO_HOME", &cargo_home)
        .env("CARGO_INSTALL_ROOT", home.path().join(".cargo"))
        .env("CARGO_TARGET_DIR", workspace.join("target"))
        .env("PATH", format!("{}:{cargo_dir}:{}", user_bin.display(), std::env::var("PATH").unwrap_or_default()))
        .env("TMPDIR", home.path())
        .env("CI", "true")
        .env("GIT_AUTHOR_NAME", "readme")
        .env("GIT_AUTHOR_EMAIL", "readme@do-release.invalid")
        .env("GIT_COMMITTER_NAME", "readme")
        .env("GIT_COMMITTER_EMAIL", "readme@do-release.invalid")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1");
    let output = command.output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "the README's commands failed ({}):\n{stderr}\n{stdout}", output.status);

    // What the commands say they do, they did.
    for tool in ["do-gc-wait", "do-tag", "do-deploy", "do-prune", "do-login", "do-sim"] {
        assert!(user_bin.join(tool).is_file(), "{tool} installed into ~/.cargo/bin");
    }
    let completion = home.path().join(".local/share/bash-completion/completions/do-prune");
    let script = std::fs::read_to_string(&completion).unwrap_or_default();
    assert!(script.contains("complete -F _do__prune"), "do-prune wrote its own completions: {script:.200}");
    assert!(home.path().join(".local/share/man/man1/do-deploy.1").is_file());
    assert!(stdout.contains(r#""kind":"tag","v":1,"data":{"tag":"v1.4.0""#), "the pipeline tagged v1.4.0:\n{stdout}");
    assert!(stdout.contains("### Features\n\n- dark mode ("), "the pipeline's release notes:\n{stdout}");
    assert!(stdout.contains(r#""kind":"tag","v":1,"data":{"tag":"api/v0.1.0""#), "the api app's own tag:\n{stdout}");
    assert!(stdout.contains("- **api:** the first endpoint ("), "the api app's notes:\n{stdout}");
    assert!(
        stderr.contains("released v1.5.0"),
        "the xtask released v1.5.0 (the api feature counts for the app as a whole):\n{stderr}"
    );
    assert!(stderr.contains("release.sh: released v1.5.1"), "release.sh released v1.5.1:\n{stderr}");
    // The app spec in the repository: one field changes, shown first by the dry run.
    assert!(stderr.contains("dry run: the spec would change 1 field of example-app:"), "{stderr}");
    assert!(stderr.contains(r#"~ services[web].envs[LOG_LEVEL].value: "info" -> "debug""#), "{stderr}");
    let records: Vec<serde_json::Value> =
        stdout.lines().filter(|l| l.starts_with('{')).filter_map(|l| serde_json::from_str(l).ok()).collect();
    let deploys: Vec<&serde_json::Value> =
        records.iter().filter(|r| r["kind"] == "deploy").map(|r| &r["data"]).collect();
    assert!(
        deploys.iter().any(|d| d["app_name"] == "example-app"
            && d["outcome"] == "active"
            && d["spec_changes"].as_array().is_some_and(|c| c.len() == 1)),
        "the spec was deployed:\n{stdout}"
    );
    let preview = deploys.iter().find(|d| d["preview"] == "pr-42").expect("the preview's deploy record");
    assert_eq!((preview["app_name"].as_str(), preview["created"].as_bool()), (Some("example-app-pr-42"), Some(true)));
    assert!(preview["live_url"].as_str().is_some_and(|u| u.ends_with("/_sim/live/example-app-pr-42")), "{preview}");
    let deleted = records.iter().find(|r| r["kind"] == "preview-delete").expect("the delete record");
    assert_eq!(deleted["data"]["deleted"], true);
    // The app repository is clean after both releases (release.sh's report went to $TMPDIR).
    let shop = std::fs::read_dir(home.path())
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path().join("shop"))
        .find(|p| p.join(".git").is_dir())
        .expect("the walkthrough's app repository");
    let status = Command::new("git")
        .current_dir(&shop)
        .args(["status", "--porcelain", "--untracked-files=all"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&status.stdout), "", "the app repository is left clean");
}

#[test]
fn every_tool_command_quoted_inline_in_the_readme_parses() {
    let mut checked = 0;
    for span in inline_spans(&readme()) {
        let words: Vec<String> = span.split_whitespace().map(|w| w.trim_matches('\'').to_string()).collect();
        if words.len() < 2 {
            continue;
        }
        let parsed = match words[0].as_str() {
            "do-gc-wait" => do_gc_wait::Cli::try_parse_from(&words).map(drop),
            "do-tag" => do_tag::Cli::try_parse_from(&words).map(drop),
            "do-deploy" => do_deploy::Cli::try_parse_from(&words).map(drop),
            "do-prune" => do_prune::Cli::try_parse_from(&words).map(drop),
            "do-login" => do_login::Cli::try_parse_from(&words).map(drop),
            "do-sim" => do_sim::Cli::try_parse_from(&words).map(drop),
            "cargo" if words[1] == "xtask" && words.len() > 2 => xtask::cli::Cli::try_parse_from(&words[1..]).map(drop),
            _ => continue,
        };
        if let Err(error) = parsed {
            use clap::error::ErrorKind;
            assert!(
                matches!(error.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion),
                "`{span}` does not parse: {error}"
            );
        }
        checked += 1;
    }
    assert!(checked >= 4, "only {checked} inline commands were found");
}
