//! do-tag against real git: a temporary repository with a bare remote, identity set here.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::support::{Run, Tool, DO_TAG};

const IDENTITY: [(&str, &str); 4] = [
    ("GIT_AUTHOR_NAME", "do-release test"),
    ("GIT_AUTHOR_EMAIL", "test@do-release.invalid"),
    ("GIT_COMMITTER_NAME", "do-release test"),
    ("GIT_COMMITTER_EMAIL", "test@do-release.invalid"),
];

/// A work repository `work` with a bare remote `origin`, isolated from the user's git config.
struct Repo {
    dir: tempfile::TempDir,
    work: PathBuf,
    remote: PathBuf,
}

impl Repo {
    fn new() -> Repo {
        let dir = tempfile::tempdir().unwrap();
        let work = dir.path().join("work");
        let remote = dir.path().join("origin.git");
        let repo = Repo { work: work.clone(), remote: remote.clone(), dir };
        repo.git_in(repo.dir.path(), &["init", "-q", "--bare", "-b", "main", remote.to_str().unwrap()]);
        repo.git_in(repo.dir.path(), &["init", "-q", "-b", "main", work.to_str().unwrap()]);
        repo.git(&["remote", "add", "origin", remote.to_str().unwrap()]);
        repo.commit("chore: initial commit");
        repo.git(&["push", "-q", "origin", "main"]);
        repo.git(&["branch", "-q", "--set-upstream-to=origin/main"]);
        repo
    }

    fn command(&self, dir: &Path, args: &[&str]) -> Command {
        let mut command = Command::new("git");
        command.current_dir(dir).args(args).envs(IDENTITY).env("HOME", self.dir.path()).env("GIT_CONFIG_NOSYSTEM", "1");
        command
    }

    fn git_in(&self, dir: &Path, args: &[&str]) -> String {
        let output = self.command(dir, args).output().unwrap();
        assert!(output.status.success(), "git {args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8_lossy(&output.stdout).trim().to_string()
    }

    fn git(&self, args: &[&str]) -> String {
        self.git_in(&self.work, args)
    }

    /// Commits a new file, so commits on different branches merge without conflicts.
    fn commit(&self, message: &str) -> String {
        let tracked = self.work.join("file.txt");
        if !tracked.exists() {
            std::fs::write(&tracked, "tracked\n").unwrap();
        }
        static COMMITS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let number = COMMITS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        std::fs::write(self.work.join(format!("change-{number}.txt")), message).unwrap();
        self.git(&["add", "--all"]);
        self.git(&["commit", "-q", "-m", message]);
        self.git(&["rev-parse", "HEAD"])
    }

    /// Commit and push, so HEAD is on origin/main.
    fn commit_pushed(&self, message: &str) -> String {
        let head = self.commit(message);
        self.git(&["push", "-q", "origin", "HEAD:main"]);
        head
    }

    fn tag(&self, name: &str) {
        self.git(&["tag", "-a", name, "-m", name]);
    }

    fn local_tags(&self) -> Vec<String> {
        self.git(&["tag", "--list"]).lines().map(str::to_string).collect()
    }

    fn remote_tags(&self) -> Vec<String> {
        self.git_in(&self.remote, &["tag", "--list"]).lines().map(str::to_string).collect()
    }

    /// Every ref of both repositories with what it points at.
    fn all_refs(&self) -> String {
        let format = "--format=%(refname) %(objectname)";
        format!("{}\n--\n{}", self.git(&["for-each-ref", format]), self.git_in(&self.remote, &["for-each-ref", format]))
    }

    fn do_tag(&self) -> Tool {
        self.do_tag_in(&self.work)
    }

    fn do_tag_in(&self, dir: &Path) -> Tool {
        let mut tool = Tool::new(DO_TAG)
            .args(["-C", dir.to_str().unwrap()])
            .env("HOME", self.dir.path())
            .env("GIT_CONFIG_NOSYSTEM", "1");
        for (key, value) in IDENTITY {
            tool = tool.env(key, value);
        }
        tool
    }
}

fn tagged(run: &Run) -> Value {
    run.assert_code(0);
    run.record("tag")
}

#[test]
fn the_first_tag_is_the_initial_version_pushed_alone() {
    let repo = Repo::new();
    let head = repo.git(&["rev-parse", "HEAD"]);
    let record = tagged(&repo.do_tag().run());
    assert_eq!(record["tag"], "v0.1.0");
    assert_eq!(record["version"], "0.1.0");
    assert_eq!(record["previous_tag"], Value::Null);
    assert_eq!(record["commit"], head.as_str());
    assert_eq!(record["remote"], "origin");
    assert_eq!((record["created"].as_bool(), record["pushed"].as_bool()), (Some(true), Some(true)));
    assert_eq!(record["bump"], "initial");
    assert_eq!(record["dry_run"], false);
    assert_eq!(repo.remote_tags(), ["v0.1.0"]);
    assert_eq!(repo.git(&["cat-file", "-t", "v0.1.0"]), "tag", "the tag is annotated");
    // The tag's message is the release notes under the tag's name.
    assert_eq!(repo.git(&["for-each-ref", "--format=%(contents:subject)", "refs/tags/v0.1.0"]), "v0.1.0");
    let body = repo.git(&["for-each-ref", "--format=%(contents:body)", "refs/tags/v0.1.0"]);
    assert!(body.starts_with("### Other\n\n- chore: initial commit ("), "{body}");
    assert_eq!(record["notes"].as_str().unwrap().trim_end(), body.trim_end());
    let custom = Repo::new();
    assert_eq!(tagged(&custom.do_tag().args(["--initial", "1.0.0"]).run())["tag"], "v1.0.0");
}

#[test]
fn patch_minor_and_major_bumps() {
    for (bump, expected) in [("patch", "v1.4.3"), ("minor", "v1.5.0"), ("major", "v2.0.0")] {
        let repo = Repo::new();
        repo.tag("v1.4.2");
        repo.git(&["push", "-q", "origin", "v1.4.2"]);
        repo.commit_pushed("fix: something");
        let record = tagged(&repo.do_tag().args(["--bump", bump]).run());
        assert_eq!(record["tag"], expected);
        assert_eq!(record["previous_tag"], "v1.4.2");
        assert_eq!(record["why"], format!("{bump}: --bump {bump} from v1.4.2"));
        assert_eq!(repo.remote_tags(), ["v1.4.2", expected]);
    }
}

#[test]
fn the_highest_reachable_tag_wins_not_the_nearest_or_newest() {
    let repo = Repo::new();
    repo.tag("v1.0.0");
    repo.git(&["checkout", "-q", "-b", "feature"]);
    repo.commit("feat: on a branch");
    repo.tag("v1.5.0");
    repo.git(&["checkout", "-q", "main"]);
    repo.commit("fix: on main");
    repo.git(&["merge", "-q", "--no-ff", "-m", "merge feature", "feature"]);
    repo.commit("fix: later");
    // Created after v1.5.0 and nearer to HEAD, but lower.
    repo.tag("v1.2.0");
    repo.commit("fix: latest");
    // Higher, but not reachable from HEAD.
    repo.git(&["checkout", "-q", "-b", "unmerged", "HEAD~1"]);
    repo.commit("feat: experiment");
    repo.tag("v9.0.0");
    repo.git(&["checkout", "-q", "main"]);
    repo.git(&["push", "-q", "origin", "main"]);
    let record = tagged(&repo.do_tag().run());
    assert_eq!(record["tag"], "v1.5.1");
    assert_eq!(record["previous_tag"], "v1.5.0");
    let all = tagged(&repo.do_tag().args(["--all-tags", "--new-tag", "--dry-run"]).run());
    assert_eq!(all["tag"], "v9.0.1", "--all-tags sees every tag");
}

#[test]
fn tags_that_are_not_prefix_plus_semver_are_ignored() {
    let repo = Repo::new();
    repo.tag("v1.0.0");
    repo.commit_pushed("fix: one");
    for name in ["release-2.0.0", "v2", "latest", "app/v5.0.0", "v3.0", "V4.0.0"] {
        repo.tag(name);
    }
    assert_eq!(tagged(&repo.do_tag().args(["--no-push", "--dry-run"]).run())["tag"], "v1.0.1");
    let record = tagged(&repo.do_tag().args(["--prefix", "app/v", "--new-tag", "--no-push"]).run());
    assert_eq!(record["tag"], "app/v5.0.1");
    assert_eq!(record["remote"], Value::Null);
    assert_eq!(record["pushed"], false);
}

#[test]
fn pre_releases_start_advance_and_release() {
    let repo = Repo::new();
    repo.tag("v1.2.0");
    repo.git(&["push", "-q", "origin", "v1.2.0"]);
    repo.commit_pushed("feat: a");
    assert_eq!(tagged(&repo.do_tag().args(["--bump", "minor", "--pre", "rc"]).run())["tag"], "v1.3.0-rc.1");
    repo.commit_pushed("fix: b");
    assert_eq!(tagged(&repo.do_tag().args(["--bump", "minor", "--pre", "rc"]).run())["tag"], "v1.3.0-rc.2");
    repo.commit_pushed("fix: c");
    assert_eq!(tagged(&repo.do_tag().args(["--bump", "patch"]).run())["tag"], "v1.3.0");
    assert_eq!(repo.remote_tags(), ["v1.2.0", "v1.3.0", "v1.3.0-rc.1", "v1.3.0-rc.2"]);
}

#[test]
fn conventional_commits_decide_the_auto_bump() {
    let cases: &[(&str, &[&str], &str, &str)] = &[
        ("v1.4.2", &["feat: a", "fix: b", "feat(ui): c"], "v1.5.0", "minor: 2 feat commits since v1.4.2"),
        ("v1.4.2", &["fix: a", "fix(api): b"], "v1.4.3", "patch: 2 fix commits since v1.4.2"),
        ("v1.4.2", &["docs: a", "Update things"], "v1.4.3", "patch: 2 commits since v1.4.2, none feat or breaking"),
        ("v1.4.2", &["feat!: drop the old api"], "v2.0.0", "major: 1 breaking commit since v1.4.2"),
        (
            "v1.4.2",
            &["refactor: rename\n\nBREAKING CHANGE: the config key moved"],
            "v2.0.0",
            "major: 1 breaking commit since v1.4.2",
        ),
        (
            "v0.4.1",
            &["feat!: x"],
            "v0.5.0",
            "minor: 1 breaking commit since v0.4.1 (below 1.0.0; --major-zero-breaking makes it major)",
        ),
    ];
    for (base, commits, expected, why) in cases {
        let repo = Repo::new();
        repo.tag(base);
        for message in *commits {
            repo.commit(message);
        }
        repo.git(&["push", "-q", "origin", "main"]);
        let record = tagged(&repo.do_tag().args(["--bump", "auto"]).run());
        assert_eq!(
            (record["tag"].as_str().unwrap(), record["why"].as_str().unwrap()),
            (*expected, *why),
            "{commits:?}"
        );
        assert_eq!(
            record["bump"],
            if expected.starts_with("v2") {
                "major"
            } else if *expected == "v1.5.0" || *expected == "v0.5.0" {
                "minor"
            } else {
                "patch"
            }
        );
    }
    let repo = Repo::new();
    repo.tag("v0.4.1");
    repo.commit_pushed("feat!: x");
    assert_eq!(tagged(&repo.do_tag().args(["--bump", "auto", "--major-zero-breaking"]).run())["tag"], "v1.0.0");

    // auto is the default, as in cargo xtask release and scripts/release.sh: a feature is minor.
    let repo = Repo::new();
    repo.tag("v1.4.0");
    repo.commit_pushed("feat: y");
    let plain = tagged(&repo.do_tag().args(["--dry-run"]).run());
    assert_eq!((plain["tag"].as_str(), plain["bump"].as_str()), (Some("v1.5.0"), Some("minor")));
    assert_eq!(tagged(&repo.do_tag().args(["--dry-run", "--bump", "patch"]).run())["tag"], "v1.4.1");
}

/// Runs do-tag expecting a refusal: exit 2, the message, and no ref changed anywhere.
fn refused(repo: &Repo, args: &[&str], message: &str) {
    let before = repo.all_refs();
    let run = repo.do_tag().args(args).run();
    run.assert_code(2);
    assert!(run.stderr.contains(message), "{message:?} not in:\n{}", run.stderr);
    assert!(run.stdout.is_empty(), "no record for a refusal: {}", run.stdout);
    assert_eq!(repo.all_refs(), before, "a refusal changed refs");
}

#[test]
fn a_prefix_shorter_than_the_tags_in_use_is_refused_with_the_one_meant() {
    let repo = Repo::new();
    repo.tag("api/v1.2.0");
    repo.commit_pushed("feat: api");
    refused(
        &repo,
        &["--prefix", "api"],
        "no apiX.Y.Z tag, but api/v1.2.0 is one of api/vX.Y.Z: did you mean --prefix api/v? (--set-version X.Y.Z starts a new api series; nothing was changed)",
    );
    assert_eq!(tagged(&repo.do_tag().args(["--prefix", "api/v", "--dry-run"]).run())["tag"], "api/v1.3.0");
    let new_series = tagged(&repo.do_tag().args(["--prefix", "api", "--set-version", "0.1.0", "--dry-run"]).run());
    assert_eq!(new_series["tag"], "api0.1.0", "--set-version starts the new series on purpose");
}

#[test]
fn each_safety_refusal_and_its_override() {
    let repo = Repo::new();
    repo.tag("v1.0.0");
    repo.commit_pushed("fix: a");

    std::fs::write(repo.work.join("file.txt"), "changed\n").unwrap();
    refused(&repo, &[], "1 tracked file changed (file.txt); commit or stash, or pass --allow-dirty");
    std::fs::write(repo.work.join("untracked.txt"), "new\n").unwrap();
    assert_eq!(tagged(&repo.do_tag().args(["--allow-dirty", "--dry-run"]).run())["tag"], "v1.0.1");
    repo.git(&["checkout", "-q", "--", "file.txt"]);

    refused(&repo, &["--allow-branch", "release/*"], "branch \"main\" is not allowed by --allow-branch release/*");
    assert_eq!(
        tagged(&repo.do_tag().args(["--allow-branch", "release/*", "--allow-branch", "ma*", "--dry-run"]).run())["tag"],
        "v1.0.1"
    );

    repo.git(&["checkout", "-q", "--detach"]);
    refused(&repo, &[], "HEAD is detached; check out a branch, or pass --allow-detached");
    assert_eq!(tagged(&repo.do_tag().args(["--allow-detached", "--dry-run"]).run())["tag"], "v1.0.1");
    repo.git(&["checkout", "-q", "main"]);

    let unpushed = repo.commit("fix: not pushed yet");
    refused(&repo, &[], "is not on origin/main; push the branch first, pass --push-branch, or --allow-unpushed");
    assert_eq!(tagged(&repo.do_tag().args(["--allow-unpushed", "--dry-run"]).run())["tag"], "v1.0.1");
    let record = tagged(&repo.do_tag().args(["--push-branch"]).run());
    assert_eq!(record["tag"], "v1.0.1");
    assert_eq!(repo.git_in(&repo.remote, &["rev-parse", "main"]), unpushed, "--push-branch pushed the branch");
    assert_eq!(repo.remote_tags(), ["v1.0.1"]);
}

#[test]
fn a_tag_that_exists_locally_or_on_the_remote_is_refused() {
    let repo = Repo::new();
    repo.tag("v1.0.0");
    repo.git(&["push", "-q", "origin", "v1.0.0"]);
    repo.git(&["checkout", "-q", "-b", "side"]);
    repo.commit("fix: side");
    repo.tag("v1.0.1");
    repo.git(&["checkout", "-q", "main"]);
    repo.commit_pushed("fix: main");
    refused(&repo, &[], "tag v1.0.1 already exists locally on commit");
    repo.git(&["tag", "-d", "v1.0.1"]);

    // Someone else released v1.0.1 from another clone.
    let other = repo.dir.path().join("other");
    repo.git_in(repo.dir.path(), &["clone", "-q", repo.remote.to_str().unwrap(), other.to_str().unwrap()]);
    std::fs::write(other.join("theirs.txt"), "theirs\n").unwrap();
    repo.git_in(&other, &["add", "theirs.txt"]);
    repo.git_in(&other, &["commit", "-q", "-m", "fix: theirs"]);
    repo.git_in(&other, &["tag", "-a", "v1.0.1", "-m", "theirs"]);
    repo.git_in(&other, &["push", "-q", "origin", "refs/tags/v1.0.1"]);
    refused(&repo, &["--allow-unpushed"], "tag v1.0.1 already exists on origin");
}

#[test]
fn a_shallow_clone_is_refused_with_how_to_unshallow() {
    let repo = Repo::new();
    repo.tag("v1.0.0");
    repo.commit_pushed("fix: a");
    repo.commit_pushed("fix: b");
    let shallow = repo.dir.path().join("shallow");
    let url = format!("file://{}", repo.remote.display());
    repo.git_in(repo.dir.path(), &["clone", "-q", "--depth", "1", &url, shallow.to_str().unwrap()]);
    let run = repo.do_tag_in(&shallow).run();
    run.assert_code(2);
    assert!(run.stderr.contains("git fetch --unshallow --tags"), "{}", run.stderr);
}

#[test]
fn head_already_tagged_gives_the_same_tag_and_resumes_a_failed_push() {
    let repo = Repo::new();
    repo.tag("v1.0.0");
    repo.git(&["push", "-q", "origin", "v1.0.0"]);
    let head = repo.commit_pushed("feat: new");
    // The remote refuses the first push of a tag.
    let hook = repo.remote.join("hooks/pre-receive");
    let marker = repo.dir.path().join("refuse-push");
    std::fs::write(&marker, "").unwrap();
    std::fs::write(
        &hook,
        format!("#!/bin/sh\nif [ -e '{}' ]; then echo 'refused by policy' >&2; exit 1; fi\n", marker.display()),
    )
    .unwrap();
    make_executable(&hook);

    let first = repo.do_tag().args(["--bump", "minor"]).run();
    first.assert_code(1);
    assert!(
        first.stderr.contains("could not push v1.1.0 to origin; the tag stays local, rerun do-tag to push it"),
        "{}",
        first.stderr
    );
    let record = first.record("tag");
    assert_eq!((record["created"].as_bool(), record["pushed"].as_bool()), (Some(true), Some(false)));
    assert!(repo.local_tags().contains(&"v1.1.0".to_string()));
    assert_eq!(repo.remote_tags(), ["v1.0.0"]);

    std::fs::remove_file(&marker).unwrap();
    let second = tagged(&repo.do_tag().args(["--bump", "minor"]).run());
    assert_eq!(second["tag"], "v1.1.0");
    assert_eq!(second["commit"], head.as_str());
    assert_eq!((second["created"].as_bool(), second["pushed"].as_bool()), (Some(false), Some(true)));
    assert_eq!(second["previous_tag"], "v1.0.0");
    assert_eq!(repo.remote_tags(), ["v1.0.0", "v1.1.0"]);

    let third = tagged(&repo.do_tag().run());
    assert_eq!(
        (third["tag"].as_str(), third["created"].as_bool(), third["pushed"].as_bool()),
        (Some("v1.1.0"), Some(false), Some(false))
    );
    let forced = tagged(&repo.do_tag().args(["--new-tag"]).run());
    assert_eq!(forced["tag"], "v1.1.1", "--new-tag makes another one");
}

#[test]
fn an_unreachable_remote_fails_before_any_tag_is_made() {
    let repo = Repo::new();
    repo.tag("v1.0.0");
    repo.commit_pushed("fix: a");
    let moved = repo.dir.path().join("moved.git");
    std::fs::rename(&repo.remote, &moved).unwrap();
    let run = repo.do_tag().run();
    run.assert_code(1);
    assert!(run.stderr.contains("cannot reach the remote \"origin\""), "{}", run.stderr);
    assert_eq!(repo.local_tags(), ["v1.0.0"]);
    std::fs::rename(&moved, &repo.remote).unwrap();
    assert_eq!(tagged(&repo.do_tag().run())["tag"], "v1.0.1");
}

#[test]
fn only_the_one_tag_reaches_the_remote() {
    let repo = Repo::new();
    repo.tag("v1.0.0");
    repo.git(&["push", "-q", "origin", "v1.0.0"]);
    repo.commit_pushed("fix: a");
    for stray in ["wip", "backup-2024", "v0.0.1-local"] {
        repo.git(&["tag", stray, "HEAD~1"]);
    }
    tagged(&repo.do_tag().run());
    assert_eq!(repo.remote_tags(), ["v1.0.0", "v1.0.1"]);
}

#[test]
fn dry_run_leaves_every_ref_of_both_repositories_identical() {
    let repo = Repo::new();
    repo.tag("v1.0.0");
    repo.commit("feat: unpushed");
    let before = repo.all_refs();
    let run = repo.do_tag().args(["--dry-run", "--bump", "auto", "--push-branch"]).run();
    let record = tagged(&run);
    assert_eq!(record["tag"], "v1.1.0");
    assert_eq!(record["dry_run"], true);
    assert_eq!((record["created"].as_bool(), record["pushed"].as_bool()), (Some(true), Some(false)));
    assert!(run.stderr.contains("dry run: would create v1.1.0"), "{}", run.stderr);
    assert_eq!(repo.all_refs(), before);
}

#[test]
fn a_message_with_quotes_command_substitution_and_newlines_lands_verbatim() {
    let repo = Repo::new();
    let message = "Release \"2.0\" it's $(rm -rf /) `id` $HOME\nsecond line; echo pwned\n\n-- signed";
    tagged(&repo.do_tag().args(["--message", message]).run());
    let stored = repo.git(&["for-each-ref", "--format=%(contents)", "refs/tags/v0.1.0"]);
    assert_eq!(stored, message);
}

#[test]
fn bad_flags_are_exit_2_with_nothing_changed() {
    let repo = Repo::new();
    let cases: &[(&[&str], &str)] = &[
        (&["--bump", "huge"], "invalid value 'huge'"),
        (&["--set-version", "1.2"], "--set-version"),
        (&["--prefix=-x"], "invalid --prefix"),
        (&["--prefix", "v\n"], "invalid --prefix"),
        (&["--pre", "r c"], "invalid --pre"),
        (&["--remote", "nowhere"], "no git remote named \"nowhere\""),
        (&["--message", "  "], "--message is empty"),
        (&["--set-version", "1.0.0", "--bump", "minor"], "cannot be used with"),
    ];
    for (args, message) in cases {
        refused(repo_ref(&repo), args, message);
    }
    let not_a_repo = tempfile::tempdir().unwrap();
    let run = repo.do_tag_in(not_a_repo.path()).run();
    run.assert_code(2);
    assert!(run.stderr.contains("is not inside a git work tree"), "{}", run.stderr);
}

fn repo_ref(repo: &Repo) -> &Repo {
    repo
}

#[test]
fn ten_thousand_tags_take_the_same_number_of_git_calls_as_one() {
    let calls = |tag_count: usize| -> (usize, Value) {
        let repo = Repo::new();
        repo.tag("v0.0.1");
        let head = repo.git(&["rev-parse", "HEAD"]);
        let mut packed = String::from("# pack-refs with: peeled fully-peeled sorted\n");
        let mut names: Vec<String> =
            (0..tag_count).map(|i| format!("refs/tags/v0.{}.{}", i / 100, i % 100 + 1)).collect();
        names.sort();
        for name in &names {
            packed.push_str(&format!("{head} {name}\n"));
        }
        std::fs::write(repo.work.join(".git/packed-refs"), packed).unwrap();
        repo.commit_pushed("fix: after the tags");
        let shim = repo.dir.path().join("shim");
        std::fs::create_dir(&shim).unwrap();
        let log = repo.dir.path().join("git-calls.log");
        let real_git =
            String::from_utf8(Command::new("sh").args(["-c", "command -v git"]).output().unwrap().stdout).unwrap();
        std::fs::write(
            shim.join("git"),
            format!("#!/bin/sh\necho \"$1\" >> '{}'\nexec {} \"$@\"\n", log.display(), real_git.trim()),
        )
        .unwrap();
        make_executable(&shim.join("git"));
        let path = format!("{}:{}", shim.display(), std::env::var("PATH").unwrap_or_default());
        let record = tagged(&repo.do_tag().env("PATH", path).run());
        (std::fs::read_to_string(log).unwrap().lines().count(), record)
    };
    let (few, _) = calls(1);
    let (many, record) = calls(10_000);
    assert_eq!(record["tag"], "v0.99.101", "the highest of 10,000 tags, bumped");
    assert_eq!(few, many, "git calls must not grow with the number of tags");
}

#[test]
fn help_shows_flags_exit_codes_and_examples() {
    let run = Tool::new(DO_TAG).args(["--help"]).run();
    run.assert_code(0);
    for expected in
        ["--bump", "--pre", "--allow-dirty", "--dry-run", "--no-push", "Exit codes:", "Examples:", "do-tag --bump auto"]
    {
        assert!(run.stdout.contains(expected), "{expected:?} missing:\n{}", run.stdout);
    }
}

fn make_executable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn verbose_shows_each_git_command_with_its_status_and_time() {
    let repo = Repo::new();
    let run = repo.do_tag().args(["--dry-run", "-v"]).run();
    run.assert_code(0);
    for expected in ["do-tag: git rev-parse --is-inside-work-tree -> exit status: 0 in ", "do-tag: git ls-remote"] {
        assert!(run.stderr.contains(expected), "{expected:?} not in:\n{}", run.stderr);
    }
    let quiet = repo.do_tag().args(["--dry-run"]).run();
    assert!(!quiet.stderr.contains("-> exit status"), "{}", quiet.stderr);
}

impl Repo {
    /// Commits a change to `file` (a path under the work tree, directories made as needed).
    fn commit_file(&self, file: &str, message: &str) -> String {
        let path = self.work.join(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let before = std::fs::read_to_string(&path).unwrap_or_default();
        std::fs::write(&path, format!("{before}{message}\n")).unwrap();
        self.git(&["add", "--all"]);
        self.git(&["commit", "-q", "-m", message]);
        self.git(&["push", "-q", "origin", "HEAD:main"]);
        self.git(&["rev-parse", "HEAD"])
    }
}

#[test]
fn release_notes_group_the_commits_link_them_on_github_and_reach_every_output() {
    let repo = Repo::new();
    repo.tag("v1.0.0");
    repo.git(&["push", "-q", "origin", "v1.0.0"]);
    let feat = repo.commit_file("ui.txt", "feat(ui): dark mode");
    repo.commit_file("a.txt", "fix: a typo on the home page");
    repo.commit_file("b.txt", "refactor: the config loader\n\nBREAKING CHANGE: the config file moved");
    repo.commit_file("c.txt", "perf: cache the index");
    repo.commit_file("d.txt", "docs: the README");
    repo.git(&["remote", "add", "github", "git@github.com:acme/shop.git"]);
    let dir = tempfile::tempdir().unwrap();
    let (notes_file, output, summary) =
        (dir.path().join("notes.md"), dir.path().join("output"), dir.path().join("summary.md"));
    let run = repo
        .do_tag()
        .args([
            "--bump",
            "auto",
            "--remote",
            "github",
            "--no-push",
            "--dry-run",
            "--notes-file",
            notes_file.to_str().unwrap(),
        ])
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_OUTPUT", &output)
        .env("GITHUB_STEP_SUMMARY", &summary)
        .run();
    let record = tagged(&run);
    assert_eq!(record["tag"], "v2.0.0", "the breaking footer makes it major");
    let notes = record["notes"].as_str().unwrap();
    let headings: Vec<&str> = notes.lines().filter(|l| l.starts_with("### ")).collect();
    assert_eq!(headings, ["### Breaking changes", "### Features", "### Fixes", "### Performance", "### Other"]);
    assert!(
        notes.contains(&format!("- **ui:** dark mode ([{}](https://github.com/acme/shop/commit/{feat}))", &feat[..7])),
        "{notes}"
    );
    assert!(notes.contains("- the config loader ([") && notes.contains("- docs: the README (["), "{notes}");
    assert_eq!(std::fs::read_to_string(&notes_file).unwrap(), notes, "the notes file, even in a dry run");
    let output = std::fs::read_to_string(&output).unwrap();
    assert!(output.contains(&format!("notes<<DO_RELEASE_EOF\n{}\nDO_RELEASE_EOF\n", notes.trim_end())), "{output}");
    assert!(std::fs::read_to_string(&summary).unwrap().contains("- **ui:** dark mode"));
    assert_eq!(repo.local_tags(), ["v1.0.0"], "the dry run tagged nothing");

    // Without a GitHub remote, the short hash alone.
    let plain = tagged(&repo.do_tag().args(["--bump", "auto", "--dry-run"]).run());
    assert!(plain["notes"].as_str().unwrap().contains(&format!("- **ui:** dark mode ({})", &feat[..7])));
}

#[test]
fn the_changelog_gets_the_release_above_the_older_ones_and_is_committed_only_when_asked() {
    let repo = Repo::new();
    repo.tag("v1.0.0");
    repo.git(&["push", "-q", "origin", "v1.0.0"]);
    std::fs::write(
        repo.work.join("CHANGELOG.md"),
        "# Changelog\n\n## [Unreleased]\n\n## [1.0.0] - 2026-01-01\n\n- first\n",
    )
    .unwrap();
    repo.git(&["add", "CHANGELOG.md"]);
    repo.git(&["commit", "-q", "-m", "docs: a changelog"]);
    repo.commit_file("x.txt", "feat: search");
    let changelog = repo.work.join("CHANGELOG.md");
    let original = std::fs::read_to_string(&changelog).unwrap();

    let dry = repo
        .do_tag()
        .args(["--bump", "auto", "--dry-run", "--changelog", changelog.to_str().unwrap(), "--commit-changelog"])
        .run();
    tagged(&dry);
    assert_eq!(std::fs::read_to_string(&changelog).unwrap(), original, "a dry run writes no changelog");
    assert!(dry.stderr.contains("would add v1.1.0 to") && dry.stderr.contains("and commit it"), "{}", dry.stderr);

    let head_before = repo.git(&["rev-parse", "HEAD"]);
    let record = tagged(
        &repo.do_tag().args(["--bump", "auto", "--changelog", changelog.to_str().unwrap(), "--commit-changelog"]).run(),
    );
    let text = std::fs::read_to_string(&changelog).unwrap();
    let release = text.find("## [1.1.0] - ").expect("the release is in the changelog");
    assert!(text.find("## [Unreleased]").unwrap() < release && release < text.find("## [1.0.0]").unwrap(), "{text}");
    assert!(text.contains("### Features\n\n- search ("), "{text}");
    let head = repo.git(&["rev-parse", "HEAD"]);
    assert_ne!(head, head_before, "the changelog was committed");
    assert_eq!(repo.git(&["log", "-1", "--format=%s"]), "chore(release): v1.1.0");
    assert_eq!(record["commit"], head.as_str(), "the tag is on the changelog commit");
    assert_eq!(repo.git(&["rev-parse", "v1.1.0^{commit}"]), head);
    assert_eq!(repo.git_in(&repo.remote, &["rev-parse", "main"]), head, "the branch went with the tag");
    assert_eq!(repo.remote_tags(), ["v1.0.0", "v1.1.0"]);
    assert_eq!(repo.git(&["status", "--porcelain"]), "", "nothing left uncommitted");

    // Without --commit-changelog the file is written and left for the user to commit.
    repo.commit_file("y.txt", "fix: the search box");
    let record = tagged(&repo.do_tag().args(["--bump", "auto", "--changelog", changelog.to_str().unwrap()]).run());
    assert_eq!(record["tag"], "v1.1.1");
    assert_eq!(repo.git(&["status", "--porcelain"]), "M CHANGELOG.md");
    assert!(std::fs::read_to_string(&changelog).unwrap().contains("## [1.1.1] - "));
}

#[test]
fn two_apps_in_one_repository_are_versioned_by_their_own_paths() {
    let repo = Repo::new();
    repo.commit_file("api/main.go", "feat: the api");
    repo.commit_file("web/index.html", "feat: the web");
    for tag in ["api/v1.0.0", "web/v2.0.0"] {
        repo.tag(tag);
        repo.git(&["push", "-q", "origin", tag]);
    }
    repo.commit_file("web/style.css", "feat: dark mode");
    repo.commit_file("api/handler.go", "fix: a nil check");
    let api = tagged(&repo.do_tag().args(["--prefix", "api/v", "--path", "api", "--bump", "auto"]).run());
    assert_eq!(
        (api["tag"].as_str(), api["previous_tag"].as_str()),
        (Some("api/v1.0.1"), Some("api/v1.0.0")),
        "the web feature does not bump api"
    );
    let notes = api["notes"].as_str().unwrap();
    assert!(notes.contains("a nil check") && !notes.contains("dark mode"), "{notes}");
    let web = tagged(&repo.do_tag().args(["--prefix", "web/v", "--path", "web", "--bump", "auto"]).run());
    assert_eq!(web["tag"], "web/v2.1.0");
    assert!(!web["notes"].as_str().unwrap().contains("nil check"));
}

#[test]
fn a_lower_version_tag_on_head_is_ignored_and_said_so() {
    let repo = Repo::new();
    repo.tag("v2.0.0");
    repo.commit_pushed("fix: after two");
    repo.tag("v0.0.1-junk");
    let run = repo.do_tag().args(["--bump", "patch"]).run();
    let record = tagged(&run);
    assert_eq!((record["tag"].as_str(), record["created"].as_bool()), (Some("v2.0.1"), Some(true)));
    assert!(record["why"].as_str().unwrap().contains("HEAD's lower tag v0.0.1-junk ignored"), "{}", record["why"]);
    assert!(run.stderr.contains("HEAD carries v0.0.1-junk, lower than v2.0.0: ignored"), "{}", run.stderr);
    // HEAD's tag when it is the highest is still the result (a rerun).
    let again = tagged(&repo.do_tag().args(["--bump", "patch"]).run());
    assert_eq!((again["tag"].as_str(), again["created"].as_bool()), (Some("v2.0.1"), Some(false)));
}

#[test]
fn a_changelog_that_is_a_link_or_lies_outside_is_never_written() {
    let repo = Repo::new();
    repo.tag("v1.0.0");
    repo.git(&["push", "-q", "origin", "v1.0.0"]);
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().join("victim.md");
    std::fs::write(&target, "untouched\n").unwrap();
    std::os::unix::fs::symlink(&target, repo.work.join("CHANGELOG.md")).unwrap();
    repo.git(&["add", "CHANGELOG.md"]);
    repo.git(&["commit", "-q", "-m", "docs: a changelog that is a link"]);
    repo.commit_file("x.txt", "feat: search");
    let link = repo.work.join("CHANGELOG.md");
    for commit in [false, true] {
        let mut args = vec!["--bump", "auto", "--changelog", link.to_str().unwrap()];
        if commit {
            args.push("--commit-changelog");
        }
        refused(&repo, &args, "is a symbolic link; nothing was written");
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "untouched\n", "the file behind the link");
    }
    let elsewhere = outside.path().join("CHANGELOG.md");
    refused(&repo, &["--bump", "auto", "--changelog", elsewhere.to_str().unwrap()], "is outside the repository");
    assert!(!elsewhere.exists(), "nothing written outside");
}

#[test]
fn a_failed_step_upstream_stops_do_tag_unless_told_to_go_on() {
    let repo = Repo::new();
    repo.tag("v1.0.0");
    repo.git(&["push", "-q", "origin", "v1.0.0"]);
    repo.commit_file("x.txt", "feat: search");
    let timed_out = r#"{"kind":"gc-wait","v":1,"data":{"registry":"r","outcome":"timeout","waited_ms":1000,"polls":2,"gc":null,"cancelled":false}}"#;
    let before = repo.all_refs();
    let run = repo.do_tag().args(["--bump", "auto"]).stdin(timed_out).run();
    run.assert_code(1);
    assert!(
        run.stderr.contains("input line 1: the gc-wait step ended \"timeout\"")
            && run.stderr.contains("--ignore-upstream-failure"),
        "{}",
        run.stderr
    );
    assert_eq!(run.stdout.trim(), timed_out, "the input goes on, so the report tells what happened");
    assert_eq!(repo.all_refs(), before, "no tag made or pushed");
    let run = repo.do_tag().args(["--bump", "auto", "--ignore-upstream-failure"]).stdin(timed_out).run();
    assert_eq!(tagged(&run)["tag"], "v1.1.0");
    assert_eq!(tagged(&run)["on_remote"], true);
}

#[test]
fn release_notes_past_the_argument_limit_are_tagged() {
    let repo = Repo::new();
    repo.tag("v1.0.0");
    repo.git(&["push", "-q", "origin", "v1.0.0"]);
    // 300 commits of about 600 characters each: notes of some 180 KiB, past the 128 KiB a
    // single argument may hold.
    for n in 0..300 {
        let subject = format!("fix: {n} {}", "long subject words ".repeat(32));
        repo.git(&["commit", "-q", "--allow-empty", "-m", &subject]);
    }
    repo.git(&["push", "-q", "origin", "HEAD:main"]);
    let run = repo.do_tag().args(["--bump", "auto"]).run();
    let record = tagged(&run);
    assert_eq!((record["tag"].as_str(), record["on_remote"].as_bool()), (Some("v1.0.1"), Some(true)));
    let message = repo.git(&["tag", "-l", "--format=%(contents)", "v1.0.1"]);
    assert!(message.len() > 128 * 1024, "{} bytes", message.len());
    assert!(message.contains("- 299 long subject words"), "every commit is in the message");
}

#[test]
fn a_refused_tag_push_leaves_no_changelog_commit_on_the_remote_and_a_rerun_makes_exactly_one() {
    let repo = Repo::new();
    repo.tag("v1.0.0");
    repo.git(&["push", "-q", "origin", "v1.0.0"]);
    repo.commit_pushed("feat: search");
    std::fs::write(repo.work.join("CHANGELOG.md"), "# Changelog\n\n## [1.0.0] - 2026-01-01\n\n- first\n").unwrap();
    repo.git(&["add", "CHANGELOG.md"]);
    repo.git(&["commit", "-q", "-m", "docs: a changelog"]);
    repo.git(&["push", "-q", "origin", "HEAD:main"]);
    let changelog = repo.work.join("CHANGELOG.md");
    let args = ["--bump", "auto", "--changelog", changelog.to_str().unwrap(), "--commit-changelog"];
    // The remote refuses new tags (a protected-tag rule, say), but takes branches.
    let hook = repo.remote.join("hooks/pre-receive");
    std::fs::write(
        &hook,
        "#!/bin/sh\nwhile read old new ref; do case $ref in refs/tags/*) echo no tags >&2; exit 1;; esac; done\n",
    )
    .unwrap();
    make_executable(&hook);
    let remote_main = || repo.git_in(&repo.remote, &["rev-parse", "main"]);
    let before = remote_main();
    for _ in 0..2 {
        let run = repo.do_tag().args(args).run();
        run.assert_code(1);
        assert!(run.stderr.contains("nothing was pushed"), "{}", run.stderr);
        assert_eq!(remote_main(), before, "the changelog commit did not reach the remote without its tag");
    }
    std::fs::remove_file(&hook).unwrap();
    tagged(&repo.do_tag().args(args).run());
    let subjects = repo.git_in(&repo.remote, &["log", "--format=%s", "main"]);
    assert_eq!(subjects.matches("chore(release): v1.1.0").count(), 1, "{subjects}");
    assert_eq!(repo.remote_tags(), ["v1.0.0", "v1.1.0"]);
    let tagged_commit = repo.git_in(&repo.remote, &["rev-list", "-n1", "v1.1.0"]);
    assert_eq!(tagged_commit, remote_main(), "the tag is on the changelog commit");
}

#[test]
fn no_commit_since_the_last_tag_in_the_paths_is_nothing_to_release() {
    let repo = Repo::new();
    repo.tag("api/v1.0.0");
    repo.git(&["push", "-q", "origin", "api/v1.0.0"]);
    repo.commit_pushed("feat: a change outside api/");
    let before = repo.all_refs();
    let outputs = tempfile::tempdir().unwrap();
    let output = outputs.path().join("output");
    let run = repo
        .do_tag()
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_OUTPUT", &output)
        .args(["--prefix", "api/v", "--path", "api", "--bump", "auto"])
        .run();
    run.assert_code(0);
    let record = tagged(&run);
    assert_eq!((record["bump"].as_str(), record["created"].as_bool()), (Some("none"), Some(false)));
    let written = std::fs::read_to_string(&output).unwrap();
    assert!(written.contains("\nnothing_to_release=true\n"), "a workflow's later steps can stop: {written}");
    assert_eq!(record["tag"], "api/v1.0.0", "the release as it was");
    assert_eq!(record["on_remote"], true);
    assert!(record["why"].as_str().unwrap().starts_with("nothing to release since api/v1.0.0"), "{record}");
    assert_eq!(repo.all_refs(), before, "no tag made or pushed");
    // A level named on purpose still releases.
    let run = repo.do_tag().args(["--prefix", "api/v", "--path", "api", "--bump", "patch"]).run();
    assert_eq!(tagged(&run)["tag"], "api/v1.0.1");
}
