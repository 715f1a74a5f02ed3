//! do-deploy's flags checked before any request (exit 2 for anything wrong), and turned into
//! the `Settings` every phase reads: the app reference, durations, components, the check, the
//! preview names, the app spec file (read, expanded, made a preview's), the image to deploy.

use do_core::contract::Input;
use do_core::progress::Progress;
use do_core::{validate, Failure};
use serde_json::Value;

use crate::check;
use crate::specfile;
use crate::target::{self, ImageFlags, Target};
use crate::{Cli, Settings, SpecPlan};

/// Every flag that needs more than clap's parsing; the check's expectations.
pub(crate) fn check_flags(cli: &Cli) -> anyhow::Result<check::Expectations> {
    if let Some(app) = &cli.app {
        validate::app_reference(app, "--app")?;
    }
    let durations = [
        ("--timeout", cli.timeout),
        ("--interval", cli.interval),
        ("--max-interval", cli.max_interval),
        ("--check-timeout", cli.check_timeout),
    ];
    do_core::start::check_durations(&cli.api, &durations)?;
    for component in &cli.component {
        validate::component_name(component)?;
    }
    if cli.log_lines > 10_000 {
        return Err(Failure::usage("--log-lines is at most 10000"));
    }
    let expectations = check::parse_expectations(cli.expect_body.as_deref(), &cli.expect_header)?;
    let checking = cli.check_path.is_some() || cli.check_url.is_some();
    if !checking && (cli.expect_body.is_some() || !cli.expect_header.is_empty()) {
        return Err(Failure::usage("--expect-body and --expect-header need --check-path or --check-url"));
    }
    if let Some(url) = &cli.check_url {
        check::check_url(url)?;
    }
    if let Some(path) = &cli.check_path {
        if !path.starts_with('/') || path.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(Failure::usage(format!("--check-path {}: give a path like /healthz", validate::shown(path))));
        }
    }
    for name in cli.preview.iter().chain(&cli.delete_preview).chain(&cli.keep) {
        specfile::check_preview_name(name)?;
    }
    if let Some(soak) = cli.soak {
        do_core::start::check_durations(&cli.api, &[("--soak", soak)])?;
        if soak >= cli.timeout {
            return Err(Failure::usage(format!(
                "--soak {} does not fit in --timeout {}: the whole run, the soak included, ends at the deadline",
                do_core::duration::human(soak),
                do_core::duration::human(cli.timeout)
            )));
        }
    }
    Ok(expectations)
}

/// The `--spec` file, read and expanded (`names_only`: only its name is needed, as for
/// --delete-preview); its SECRET values are registered for redaction.
pub(crate) fn read_spec(
    cli: &Cli,
    progress: &std::sync::Arc<Progress>,
    names_only: bool,
) -> anyhow::Result<Option<Value>> {
    let Some(path) = &cli.spec else { return Ok(None) };
    let token = cli.api.token(progress)?;
    let env = |name: &str| std::env::var(name).ok();
    let (spec, expansion) = specfile::load(path, &cli.spec_env, Some(token.expose()), &env, names_only)?;
    expansion.secret_values.iter().for_each(|secret| do_core::redact::register(secret));
    Ok(Some(spec))
}

/// With `--spec`: what it asks for, made a preview's with `--preview`. A spec that carries the
/// preview mark without `--preview` is refused.
pub(crate) fn spec_plan(cli: &Cli, progress: &std::sync::Arc<Progress>) -> anyhow::Result<Option<SpecPlan>> {
    let preview_envs = match cli.preview_env.is_empty() {
        true => Vec::new(),
        false => {
            let token = cli.api.token(progress)?;
            let parse = |text: &String| specfile::parse_preview_env(text, Some(token.expose()));
            cli.preview_env.iter().map(parse).collect::<anyhow::Result<Vec<_>>>()?
        }
    };
    let Some(spec) = read_spec(cli, progress, false)? else { return Ok(None) };
    if cli.preview.is_none() && specfile::carries_preview_mark(&spec) {
        return Err(Failure::usage(format!(
            "the spec gives its components {}, which only do-deploy --preview sets (on preview apps, which --delete-preview deletes); remove it from {} or deploy with --preview",
            specfile::PREVIEW_MARKER,
            spec["name"].as_str().unwrap_or("the spec")
        )));
    }
    let base_name = spec["name"].as_str().unwrap_or_default().to_string();
    Ok(Some(SpecPlan {
        base_name,
        spec: match &cli.preview {
            Some(preview) => specfile::for_preview(&spec, preview, &preview_envs),
            None => spec,
        },
        preview: cli.preview.clone(),
        may_create: cli.create || cli.preview.is_some(),
    }))
}

/// The image to deploy, from the flags or an `image` record on stdin; none for --redeploy.
pub(crate) fn target(cli: &Cli, input: &Input) -> anyhow::Result<Option<Target>> {
    if cli.redeploy {
        return Ok(None);
    }
    let flags = ImageFlags {
        image: cli.image.as_deref(),
        registry: cli.registry.as_deref(),
        repository: cli.repository.as_deref(),
        tag: cli.tag.as_deref(),
        digest: cli.digest.as_deref(),
    };
    Ok(Some(target::choose(&flags, input)?))
}

/// What --sweep-previews keeps: --keep, the names in --keep-file, --older-than. One of them is
/// needed: a sweep that keeps nothing says so with an empty --keep-file.
pub(crate) fn sweep_rules(cli: &Cli) -> anyhow::Result<crate::sweep::Rules> {
    let mut keep: Option<std::collections::BTreeSet<String>> =
        (!cli.keep.is_empty()).then(|| cli.keep.iter().cloned().collect());
    if let Some(path) = &cli.keep_file {
        let text = specfile::read_user_file("--keep-file", path, "a list of previews")?;
        let names = keep.get_or_insert_with(Default::default);
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
            specfile::check_preview_name(line)
                .map_err(|e| Failure::usage(format!("--keep-file {}: {e:#}", path.display())))?;
            names.insert(line.to_string());
        }
    }
    if keep.is_none() && cli.older_than.is_none() {
        return Err(Failure::usage(
            "--sweep-previews needs what to keep: --keep pr-1,pr-7, --keep-file FILE (empty keeps none) or --older-than 7d",
        ));
    }
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    Ok(crate::sweep::Rules { keep, older_than: cli.older_than, now })
}

/// The settings every phase reads, owned (no phase sees the command line).
pub(crate) fn settings(cli: &Cli, expectations: check::Expectations, spec_plan: Option<SpecPlan>) -> Settings {
    Settings {
        app: cli.app.clone(),
        component: cli.component.clone(),
        dry_run: cli.dry_run,
        if_busy: cli.if_busy,
        force: cli.force,
        force_rebuild: cli.force_rebuild,
        allow_downgrade: cli.allow_downgrade,
        allow_removal: cli.allow_removal,
        no_wait: cli.no_wait,
        rollback_on_failure: cli.rollback_on_failure,
        pin: cli.pin,
        interval: cli.interval,
        max_interval: cli.max_interval,
        log_lines: cli.log_lines,
        check_url: cli.check_url.clone(),
        check_path: cli.check_path.clone(),
        expect_status: cli.expect_status,
        check_timeout: cli.check_timeout,
        soak: cli.soak.map(|duration| crate::soak::Soak { duration, failures: cli.soak_failures }),
        max_previews: cli.max_previews.map(|max| (max as usize, cli.evict_oldest)),
        expectations,
        spec_plan,
    }
}
