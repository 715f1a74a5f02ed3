//! `do-release.toml`: the release's settings. Every key has a default (documented in
//! `CONFIG_HELP`) and can be overridden by a flag of `cargo xtask release`.

use serde::Deserialize;

pub const CONFIG_FILE: &str = "do-release.toml";

pub const CONFIG_HELP: &str = r#"do-release.toml keys (all optional but repository, and app unless spec), with their defaults:
  registry = ""                 # DOCR registry; "" finds the account's only one
  repository = ""               # required: the DOCR repository the app runs
  app = ""                      # required unless spec: the App Platform app, by name or id
  spec = ""                     # the app spec in the repository (".do/app.yaml"): it becomes the
                                # app's spec (do-deploy --spec); the app is the one it names
  spec_env = []                 # variables the spec's ${NAME} may use (do-deploy --spec-env)
  components = []               # only these components; [] = all that run the repository
  remote = "origin"             # git remote for the tag
  allow_branch = []             # release only from branches matching these globs; [] = any
  prefix = "v"                  # the tags' prefix (do-tag --prefix); "api/v" for one app of several
  paths = []                    # with it, only commits touching these paths count (bump, notes)
  bump = "auto"                 # patch | minor | major | auto (conventional commits)
  builder = "docker"            # docker | commands | simulator
  build = ["docker", "build", "--label", "org.opencontainers.image.revision={revision}", "--tag", "{image}", "."]
                                # {image} {tag} {registry} {repository} {revision} (the commit)
  push = ["docker", "push", "{image}"]
  keep_last = 10                # do-prune --keep-last (do-prune's default)
  keep_within = ""              # do-prune --keep-within, like "30d" ("" = off)
  keep_tags = []                # do-prune --keep-tag
  keep_rollback = 2             # do-prune --keep-rollback
  gc = "start"                  # start | wait | off, after pruning
  gc_type = "unreferenced blobs only"   # an untagged type only if nothing needs an untagged manifest
  gc_timeout = "30m"            # how long to wait for a running GC before pushing (do-gc-wait --timeout)
  deploy_timeout = "30m"        # how long to follow the deployment (do-deploy --timeout)
  check_path = ""               # after ACTIVE, GET this path on the app's live URL ("" = no check)
  check_version_header = ""     # and expect the released tag in this header, e.g. "x-app-version"
  soak = ""                     # keep watching after ACTIVE this long, like "20m" (do-deploy --soak;
                                # "" = off); it must fit in deploy_timeout
  rollback_on_failure = true    # do-deploy --rollback-on-failure (--no-rollback-on-failure: false)
  interval = "5s"               # first pause between looks at GC and deployments (the tools' --interval)
"#;

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub registry: String,
    pub repository: String,
    pub app: String,
    pub spec: String,
    pub spec_env: Vec<String>,
    pub components: Vec<String>,
    pub remote: String,
    pub allow_branch: Vec<String>,
    #[serde(alias = "tag_prefix")]
    pub prefix: String,
    pub paths: Vec<String>,
    pub bump: String,
    pub builder: String,
    pub build: Vec<String>,
    pub push: Vec<String>,
    pub keep_last: usize,
    pub keep_within: String,
    pub keep_tags: Vec<String>,
    pub keep_rollback: usize,
    pub gc: String,
    pub gc_type: String,
    pub gc_timeout: String,
    pub deploy_timeout: String,
    pub check_path: String,
    pub check_version_header: String,
    pub soak: String,
    pub rollback_on_failure: bool,
    #[serde(alias = "poll_interval")]
    pub interval: String,
}

impl Default for Config {
    fn default() -> Config {
        let words = |list: &[&str]| list.iter().map(|s| s.to_string()).collect();
        Config {
            registry: String::new(),
            repository: String::new(),
            app: String::new(),
            spec: String::new(),
            spec_env: Vec::new(),
            components: Vec::new(),
            remote: "origin".into(),
            allow_branch: Vec::new(),
            prefix: "v".into(),
            paths: Vec::new(),
            bump: "auto".into(),
            builder: "docker".into(),
            build: words(&[
                "docker",
                "build",
                "--label",
                "org.opencontainers.image.revision={revision}",
                "--tag",
                "{image}",
                ".",
            ]),
            push: words(&["docker", "push", "{image}"]),
            keep_last: do_prune::policy::DEFAULT_KEEP_LAST,
            keep_within: String::new(),
            keep_tags: Vec::new(),
            keep_rollback: 2,
            gc: "start".into(),
            gc_type: "unreferenced blobs only".into(),
            gc_timeout: "30m".into(),
            deploy_timeout: "30m".into(),
            check_path: String::new(),
            check_version_header: String::new(),
            soak: String::new(),
            rollback_on_failure: true,
            interval: "5s".into(),
        }
    }
}

/// The settings of the app repository `dir`: `explicit` (`--config`), else `dir/do-release.toml`.
/// A missing file is allowed only when the flags give what it must (`flags_suffice`). Every
/// problem is a usage error that says where it looked.
pub fn read(dir: &std::path::Path, explicit: Option<&std::path::Path>, flags_suffice: bool) -> anyhow::Result<Config> {
    let usage = |message: String| do_core::Failure::usage(message);
    let path = explicit.map(std::path::Path::to_path_buf).unwrap_or_else(|| dir.join(CONFIG_FILE));
    match std::fs::read_to_string(&path) {
        Ok(text) => Config::from_toml(&text, &path.display().to_string()).map_err(|e| usage(format!("{e:#}"))),
        Err(_) if explicit.is_none() && flags_suffice => Ok(Config::default()),
        Err(_) if explicit.is_none() => {
            let shown = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
            Err(usage(format!(
                "no {CONFIG_FILE} in {}: run cargo xtask from the do-release checkout with -C naming your app repository, and write DIR/{CONFIG_FILE} there (its keys: cargo xtask release --help), or pass --repository and --app",
                shown.display()
            )))
        }
        Err(error) => Err(usage(format!("cannot read --config {}: {error}", path.display()))),
    }
}

impl Config {
    pub fn from_toml(text: &str, origin: &str) -> anyhow::Result<Config> {
        toml::from_str(text).map_err(|e| anyhow::anyhow!("{origin}: {}", e.to_string().trim()))
    }

    /// Strict checks before anything runs.
    pub fn check(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            !self.repository.is_empty(),
            "repository is not set: add it to {CONFIG_FILE} or pass --repository"
        );
        anyhow::ensure!(
            !self.app.is_empty() || !self.spec.is_empty(),
            "app is not set: add it (or spec, the app spec in the repository) to {CONFIG_FILE}, or pass --app"
        );
        if !self.registry.is_empty() {
            do_core::validate::registry_name(&self.registry)?;
        }
        do_core::validate::repository_name(&self.repository)?;
        anyhow::ensure!(
            ["patch", "minor", "major", "auto"].contains(&self.bump.as_str()),
            "bump must be patch, minor, major or auto, not {:?}",
            self.bump
        );
        anyhow::ensure!(
            ["docker", "commands", "simulator"].contains(&self.builder.as_str()),
            "builder must be docker, commands or simulator, not {:?}",
            self.builder
        );
        anyhow::ensure!(
            ["start", "wait", "off"].contains(&self.gc.as_str()),
            "gc must be start, wait or off, not {:?}",
            self.gc
        );
        if self.builder != "simulator" {
            anyhow::ensure!(
                !self.build.is_empty() && !self.push.is_empty(),
                "build and push must be commands, like [\"docker\", \"push\", \"{{image}}\"]"
            );
        }
        for duration in [&self.gc_timeout, &self.deploy_timeout, &self.interval] {
            do_core::duration::parse_duration(duration).map_err(|e| anyhow::anyhow!(e))?;
        }
        anyhow::ensure!(
            self.check_path.is_empty() || self.check_path.starts_with('/'),
            "check_path must start with /, like \"/healthz\", not {:?}",
            self.check_path
        );
        anyhow::ensure!(
            self.check_version_header.is_empty() || !self.check_path.is_empty(),
            "check_version_header needs check_path: the path to ask for the version"
        );
        if !self.soak.is_empty() {
            let soak = do_core::duration::parse_duration(&self.soak).map_err(|e| anyhow::anyhow!("soak: {e}"))?;
            let deploy_timeout =
                do_core::duration::parse_duration(&self.deploy_timeout).map_err(|e| anyhow::anyhow!(e))?;
            anyhow::ensure!(
                soak < deploy_timeout,
                "soak {} does not fit in deploy_timeout {}: the soak is part of the deployment's time",
                self.soak,
                self.deploy_timeout
            );
        }
        if !self.keep_within.is_empty() {
            do_core::duration::parse_duration(&self.keep_within).map_err(|e| anyhow::anyhow!(e))?;
        }
        Ok(())
    }
}

/// The settings of a release: the file's (`read`), each overridden by its flag, checked.
pub fn with_flags(args: &crate::cli::ReleaseArgs) -> anyhow::Result<Config> {
    let mut config = read(
        &args.dir,
        args.config.as_deref(),
        args.repository.is_some() && (args.app.is_some() || args.spec.is_some()),
    )?;
    let words = |text: &String| text.split_whitespace().map(str::to_string).collect::<Vec<_>>();
    macro_rules! set {
        ($($field:ident),*) => { $( if let Some(value) = &args.$field { config.$field = value.clone(); } )* };
    }
    set!(
        registry,
        repository,
        app,
        spec,
        remote,
        prefix,
        bump,
        builder,
        keep_within,
        gc,
        gc_type,
        gc_timeout,
        deploy_timeout,
        check_path,
        check_version_header,
        soak,
        interval
    );
    if let Some(value) = args.keep_last {
        config.keep_last = value;
    }
    if let Some(value) = args.keep_rollback {
        config.keep_rollback = value;
    }
    if args.rollback_on_failure {
        config.rollback_on_failure = true;
    }
    if args.no_rollback_on_failure {
        config.rollback_on_failure = false;
    }
    if let Some(build) = &args.build {
        config.build = words(build);
    }
    if let Some(push) = &args.push {
        config.push = words(push);
    }
    for (list, extra) in [
        (&mut config.components, &args.components),
        (&mut config.spec_env, &args.spec_env),
        (&mut config.allow_branch, &args.allow_branch),
        (&mut config.paths, &args.paths),
        (&mut config.keep_tags, &args.keep_tags),
    ] {
        if !extra.is_empty() {
            *list = extra.clone();
        }
    }
    config.check().map_err(|e| do_core::Failure::usage(format!("{e:#}")))?;
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_fill_what_the_file_leaves_out() {
        let config = Config::from_toml("repository = \"web\"\napp = \"shop\"\nkeep_last = 3\n", "test").unwrap();
        assert_eq!(config.keep_last, 3);
        assert_eq!(config.remote, "origin");
        assert_eq!(config.push, ["docker", "push", "{image}"]);
        config.check().unwrap();
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        let error = Config::from_toml("repositry = \"web\"", "do-release.toml").unwrap_err().to_string();
        assert!(error.contains("unknown field"), "{error}");
        let config = Config::from_toml("repository = \"web\"\napp = \"shop\"\nbump = \"huge\"", "t").unwrap();
        assert!(config.check().unwrap_err().to_string().contains("bump must be"));
        assert!(Config::default().check().unwrap_err().to_string().contains("repository is not set"));
    }

    #[test]
    fn a_missing_file_names_where_it_looked_and_is_a_usage_error() {
        let dir = tempfile::tempdir().unwrap();
        let error = read(dir.path(), None, false).unwrap_err();
        assert_eq!(do_core::exit::exit_code_of(&error), do_core::Exit::Usage);
        let shown = std::fs::canonicalize(dir.path()).unwrap();
        assert!(error.to_string().contains(&format!("no do-release.toml in {}", shown.display())), "{error}");
        assert_eq!(read(dir.path(), None, true).unwrap(), Config::default(), "the flags give what it needs");
        let missing = dir.path().join("other.toml");
        let error = read(dir.path(), Some(&missing), true).unwrap_err();
        assert!(error.to_string().contains("cannot read --config"), "{error}");
        std::fs::write(dir.path().join("do-release.toml"), "repositry = 1").unwrap();
        assert_eq!(do_core::exit::exit_code_of(&read(dir.path(), None, false).unwrap_err()), do_core::Exit::Usage);
    }

    #[test]
    fn the_help_documents_every_key() {
        let keys = [
            "registry",
            "repository",
            "app",
            "spec",
            "spec_env",
            "components",
            "remote",
            "allow_branch",
            "prefix",
            "paths",
            "bump",
            "builder",
            "build",
            "push",
            "keep_last",
            "keep_within",
            "keep_tags",
            "keep_rollback",
            "gc ",
            "gc_type",
            "gc_timeout",
            "deploy_timeout",
            "check_path",
            "check_version_header",
            "soak",
            "rollback_on_failure",
            "interval",
        ];
        for key in keys {
            assert!(CONFIG_HELP.contains(&format!("  {key}")), "{key} is not documented");
        }
    }

    #[test]
    fn the_flags_shared_with_the_tools_carry_the_tools_names() {
        use clap::Parser;
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(CONFIG_FILE), "repository = \"web\"\napp = \"shop\"\n").unwrap();
        let config = |flags: &[&str]| {
            let mut argv = vec!["cargo xtask", "release", "-C", dir.path().to_str().unwrap()];
            argv.extend(flags);
            let crate::cli::Task::Release(args) = crate::cli::Cli::try_parse_from(argv).unwrap().command else {
                unreachable!()
            };
            with_flags(&args).unwrap()
        };
        let defaults = config(&[]);
        assert_eq!(
            (defaults.prefix.as_str(), defaults.interval.as_str(), defaults.rollback_on_failure),
            ("v", "5s", true)
        );
        let given = config(&["--prefix", "api/v", "--interval", "2s", "--no-rollback-on-failure"]);
        assert_eq!((given.prefix.as_str(), given.interval.as_str(), given.rollback_on_failure), ("api/v", "2s", false));
        assert!(
            config(&["--no-rollback-on-failure", "--rollback-on-failure"]).rollback_on_failure,
            "the last one wins"
        );
        // The names of before still read, in the file and as flags.
        let old =
            Config::from_toml("repository = \"web\"\napp = \"a\"\ntag_prefix = \"x/v\"\npoll_interval = \"1s\"\n", "t")
                .unwrap();
        assert_eq!((old.prefix.as_str(), old.interval.as_str()), ("x/v", "1s"));
        assert_eq!(config(&["--tag-prefix", "y/v", "--poll-interval", "3s"]).prefix, "y/v");
    }
}
