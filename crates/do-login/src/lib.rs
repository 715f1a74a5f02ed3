//! do-login: logs docker in to DigitalOcean Container Registry with credentials that expire.
//!
//! A run is: check the flags and input, read the docker config that will be merged into (an
//! unreadable one, or one whose credential store would hide the entry, is exit 2 before any
//! request), ask the API for credentials, and write the merged config atomically with mode
//! 0600. The credential goes nowhere else: not to stdout, stderr, the record or GitHub outputs.

mod cli;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use do_core::api::segment;
use do_core::contract::Output;
use do_core::{validate, Client, Exit, Failure};
use serde::Serialize;
use serde_json::{json, Map, Value};

pub use cli::Cli;

const TOOL: &str = "do-login";
/// The host the API's credentials are for, whatever host serves the registry.
pub const REGISTRY_HOST: &str = "registry.digitalocean.com";
const MIN_EXPIRY: Duration = Duration::from_secs(60);
const MAX_EXPIRY: Duration = Duration::from_secs(30 * 24 * 3600);
/// A docker config larger than this is not one: refuse rather than read it whole.
const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// The `login` record, v1.
#[derive(Debug, Serialize)]
pub struct LoginRecord {
    pub registry: Option<String>,
    pub host: String,
    pub read_write: bool,
    /// When the credentials stop working (RFC 3339); null after --logout.
    pub expires_at: Option<String>,
    /// The config file written; null with --print.
    pub config: Option<String>,
    pub logged_out: bool,
}

pub fn main() -> i32 {
    do_core::exit::run_main(TOOL, || run(Cli::parse()))
}

pub fn run(cli: Cli) -> anyhow::Result<Exit> {
    if let Some(shell) = cli.io.completions {
        return do_core::cli::print_completions::<Cli>(shell, TOOL);
    }
    let deadline = Instant::now() + cli.timeout;
    // With --print, stdout is the config alone: there is nothing to pass through.
    let input = if cli.print { Default::default() } else { cli.io.read_input(deadline)? };
    let registry_from_input = input.last("image").and_then(|record| record.str("registry")).map(str::to_string);
    let registry = cli.registry.clone().or(registry_from_input);
    check_flags(&cli, registry.as_deref())?;
    let progress = cli.io.progress(TOOL);
    let config_dir = match (&cli.docker_config, cli.print) {
        (_, true) => None,
        (Some(dir), false) => Some(dir.clone()),
        (None, false) => Some(default_config_dir()?),
    };
    let file = config_dir.as_ref().map(|dir| dir.join("config.json"));
    // Read before any request: a config that cannot be merged into stops the run before a
    // credential is issued (and `merge_into` reads it again right before writing).
    let existing = match &file {
        Some(file) => read_config(file)?,
        None => Map::new(),
    };
    if let Some(mode) = config_dir.as_deref().and_then(others_may_write) {
        progress.warn(&format!(
            "{} can be written by other users (mode {mode:o}): they could replace the credentials docker uses; make it private (chmod 700)",
            config_dir.as_deref().map(|d| d.display().to_string()).unwrap_or_default()
        ));
    }
    let mut output = Output::stdout();
    if cli.logout {
        output.pass_through(&input)?;
        let file = file.expect("--logout conflicts with --print");
        return logout(&cli, &progress, &mut output, registry, &file, existing);
    }
    let client = cli.api.client(progress.clone())?;
    client.set_deadline(deadline);
    if !cli.print {
        output.pass_through(&input)?;
    }
    login(&cli, &client, &progress, &mut output, registry.as_deref(), file.as_deref())
}

/// The flags that need more than clap's parsing, checked before any request.
fn check_flags(cli: &Cli, registry: Option<&str>) -> anyhow::Result<()> {
    let loopback = do_core::api::is_loopback_url(&cli.api.api_url);
    do_core::cli::check_duration("--timeout", cli.timeout, loopback)?;
    if !cli.logout && !(MIN_EXPIRY..=MAX_EXPIRY).contains(&cli.expiry) {
        return Err(Failure::usage(format!(
            "--expiry {} is out of range: give 1m to 30d",
            do_core::duration::human(cli.expiry)
        )));
    }
    if let Some(name) = registry {
        validate::registry_name(name)?;
    }
    let host_ok = (1..=253).contains(&cli.registry_host.len())
        && cli.registry_host.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.:".contains(&b));
    if !host_ok {
        return Err(Failure::usage(format!("invalid --registry-host {}", validate::shown(&cli.registry_host))));
    }
    Ok(())
}

/// `--logout`: the registry host's entry taken out of the config; no request.
fn logout(
    cli: &Cli,
    progress: &do_core::progress::Progress,
    output: &mut Output<std::io::Stdout>,
    registry: Option<String>,
    file: &std::path::Path,
    existing: Map<String, Value>,
) -> anyhow::Result<Exit> {
    let mut config = existing;
    let removed = config
        .get_mut("auths")
        .and_then(Value::as_object_mut)
        .is_some_and(|auths| auths.remove(&cli.registry_host).is_some());
    if removed {
        write_config(file, &config)?;
        progress.info(&format!("removed the {} entry from {}", cli.registry_host, file.display()));
    } else {
        progress.info(&format!("{} has no {} entry; nothing to remove", file.display(), cli.registry_host));
    }
    let record = LoginRecord {
        registry,
        host: cli.registry_host.clone(),
        read_write: false,
        expires_at: None,
        config: Some(file.display().to_string()),
        logged_out: true,
    };
    output.emit("login", 1, &record)?;
    Ok(Exit::Done)
}

/// Fresh registry credentials, merged into the config (or, with --print, on stdout).
fn login(
    cli: &Cli,
    client: &Client,
    progress: &do_core::progress::Progress,
    output: &mut Output<std::io::Stdout>,
    registry: Option<&str>,
    file: Option<&std::path::Path>,
) -> anyhow::Result<Exit> {
    let registry = do_core::registry::find(client, registry)?.name;
    let (credentials, ignored) = fetch(client, &registry, cli.expiry, !cli.read_only)?;
    for host in ignored {
        progress.warn(&format!(
            "the API also gave credentials for {}, which is not DigitalOcean's registry; not written",
            validate::shown(&host)
        ));
    }
    let expires_at = jiff::Timestamp::from_second(jiff::Timestamp::now().as_second() + cli.expiry.as_secs() as i64)
        .map(|t| t.to_string())
        .ok();
    let hosts: Vec<String> = credentials.keys().cloned().collect();
    let access = if cli.read_only { "read-only" } else { "read-write" };
    let record = LoginRecord {
        registry: Some(registry.clone()),
        host: hosts.join(","),
        read_write: !cli.read_only,
        expires_at: expires_at.clone(),
        config: file.map(|f| f.display().to_string()),
        logged_out: false,
    };
    match file {
        None => {
            let mut config = Map::new();
            merge(&mut config, credentials);
            let mut stdout = std::io::stdout().lock();
            writeln!(stdout, "{}", Value::Object(config))
                .and_then(|()| stdout.flush())
                .context("cannot write the config to stdout")?;
            progress.info(&format!("{access} credentials for {registry} on stdout, valid for {}", human(cli.expiry)));
        }
        Some(file) => {
            merge_into(file, credentials)?;
            output.emit("login", 1, &record)?;
            progress.info(&format!(
                "logged in to {} ({registry}, {access}) in {}, valid for {}",
                record.host,
                file.display(),
                human(cli.expiry)
            ));
            if let Some(github) = do_core::github::GitHub::from_env() {
                github
                    .outputs(&[
                        ("docker_config", file.parent().unwrap_or(file).display().to_string()),
                        ("expires_at", expires_at.unwrap_or_default()),
                    ])
                    .context("cannot write the GitHub Actions output files")?;
            }
        }
    }
    Ok(Exit::Done)
}

fn human(duration: Duration) -> String {
    do_core::duration::human(duration)
}

/// Registry credentials from the API, `{host: {"auth": …}}`, registered for redaction; only
/// DigitalOcean's registry host is kept, so an answer naming `ghcr.io` or Docker Hub never
/// overwrites the user's own credentials for them. Returns the hosts left out too.
pub fn fetch(
    client: &Client,
    registry: &str,
    expiry: Duration,
    read_write: bool,
) -> anyhow::Result<(Map<String, Value>, Vec<String>)> {
    let path = format!(
        "/v2/registries/{}/docker-credentials?read_write={read_write}&expiry_seconds={}",
        segment(registry),
        expiry.as_secs()
    );
    let auths: Map<String, Value> =
        client.get_object(&path, "auths").context("cannot get registry credentials from the API")?;
    do_core::redact::register_docker_auths(&Value::Object(auths.clone()));
    let (ours, others): (Map<String, Value>, Map<String, Value>) =
        auths.into_iter().partition(|(host, _)| host == REGISTRY_HOST);
    let usable = !ours.is_empty()
        && ours.values().all(|entry| entry.get("auth").and_then(Value::as_str).is_some_and(|a| !a.trim().is_empty()));
    anyhow::ensure!(
        usable,
        "the API's registry credentials have no auth entry for {REGISTRY_HOST}; nothing was written"
    );
    Ok((ours, others.into_iter().map(|(host, _)| host).collect()))
}

/// The mode of `dir` when users other than its owner may write into it (group or world).
fn others_may_write(dir: &Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir).ok()?.permissions().mode() & 0o7777;
    (mode & 0o022 != 0).then_some(mode)
}

/// Writes fresh credentials into the docker config directory `dir` (created 0700 if missing),
/// merged with what is there. The xtask's docker builder logs in through this.
pub fn login_into(client: &Client, registry: &str, expiry: Duration, dir: &Path) -> anyhow::Result<PathBuf> {
    let file = dir.join("config.json");
    read_config(&file)?;
    merge_into(&file, fetch(client, registry, expiry, true)?.0)?;
    Ok(file)
}

/// Merges credentials into the config at `file`, read again right before writing: another
/// program may have written it while the API answered.
fn merge_into(file: &Path, credentials: Map<String, Value>) -> anyhow::Result<()> {
    let mut config = read_config(file)?;
    merge(&mut config, credentials);
    write_config(file, &config)
}

fn default_config_dir() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .ok_or_else(|| Failure::usage("HOME is not set: pass --docker-config DIR"))?;
    Ok(PathBuf::from(home).join(".docker"))
}

/// The docker config at `file` as an object (empty when there is none). Anything else is a
/// usage error, so a config docker can read is never replaced by one it cannot.
fn read_config(file: &Path) -> anyhow::Result<Map<String, Value>> {
    let text = match std::fs::File::open(file) {
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Map::new()),
        Err(error) => return Err(Failure::usage(format!("cannot read {}: {error}", file.display()))),
        Ok(opened) => {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut std::io::Read::take(opened, MAX_CONFIG_BYTES + 1), &mut text)
                .map_err(|e| Failure::usage(format!("cannot read {}: {e}", file.display())))?;
            if text.len() as u64 > MAX_CONFIG_BYTES {
                return Err(Failure::usage(format!("{} is larger than 1 MiB; nothing was changed", file.display())));
            }
            text
        }
    };
    if text.trim().is_empty() {
        return Ok(Map::new());
    }
    let config: Map<String, Value> = serde_json::from_str(&text).map_err(|e| {
        Failure::usage(format!("{} is not a JSON object ({e}); fix or move it, nothing was changed", file.display()))
    })?;
    if let Some(store) = config.get("credsStore").and_then(Value::as_str).filter(|s| !s.is_empty()) {
        return Err(Failure::usage(format!(
            "{} uses the credential store {store:?}, so docker would ignore credentials written into it; pass --docker-config with a directory of its own (and DOCKER_CONFIG=DIR for docker)",
            file.display()
        )));
    }
    // An empty helper, like an empty store, means docker's own file: the credentials count.
    let helper = config.get("credHelpers").and_then(|h| h.get(REGISTRY_HOST)).and_then(Value::as_str);
    if let Some(helper) = helper.filter(|h| !h.is_empty()) {
        return Err(Failure::usage(format!(
            "{} sends {REGISTRY_HOST} to the credential helper {helper:?}, so docker would ignore credentials written into it; pass --docker-config with a directory of its own",
            file.display()
        )));
    }
    Ok(config)
}

fn merge(config: &mut Map<String, Value>, credentials: Map<String, Value>) {
    let auths = config.entry("auths").or_insert_with(|| json!({}));
    if !auths.is_object() {
        *auths = json!({});
    }
    let auths = auths.as_object_mut().expect("made an object");
    for (host, entry) in credentials {
        auths.insert(host, entry);
    }
}

/// Writes the config atomically: a new file of mode 0600 beside it, renamed over it.
fn write_config(file: &Path, config: &Map<String, Value>) -> anyhow::Result<()> {
    let dir = file.parent().context("the config file has no directory")?;
    if !dir.exists() {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let temporary = dir.join(format!(".config.json.do-login-{}", std::process::id()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let written = options
        .open(&temporary)
        .and_then(|mut out| {
            out.write_all(serde_json::to_string_pretty(config).unwrap_or_default().as_bytes())?;
            out.write_all(b"\n")?;
            out.sync_all()
        })
        .and_then(|()| std::fs::rename(&temporary, file));
    if let Err(error) = written {
        let _ = std::fs::remove_file(&temporary);
        return Err(anyhow::anyhow!("cannot write {}: {error}", file.display()));
    }
    Ok(())
}
