//! Which version comes next: the highest semver tag by precedence, a bump, pre-releases, and
//! the bump that conventional commits ask for. Pure logic, no git.

use std::fmt;

use semver::{Prerelease, Version};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum Bump {
    Patch,
    Minor,
    Major,
    /// From conventional commits since the last tag.
    Auto,
}

impl fmt::Display for Bump {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Bump::Patch => "patch",
            Bump::Minor => "minor",
            Bump::Major => "major",
            Bump::Auto => "auto",
        })
    }
}

/// A version tag found in the repository.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VersionTag {
    pub name: String,
    pub version: Version,
    /// The commit the tag points at (peeled for annotated tags).
    pub commit: String,
}

/// Parses `v1.2.3` with `prefix` `v`; anything that is not exactly prefix + semver is ignored.
pub fn parse_tag(name: &str, prefix: &str) -> Option<Version> {
    Version::parse(name.strip_prefix(prefix)?).ok()
}

/// A longer prefix than `prefix` that `names` use for versions (`api` given, `api/v1.2.0`
/// tagged: `api/v`), with the highest such tag: `--prefix api` would start a new series beside it.
pub fn longer_prefix<'a>(prefix: &str, names: impl IntoIterator<Item = &'a str>) -> Option<(String, String)> {
    let mut found: Option<(Version, String, String)> = None;
    for name in names {
        let Some(rest) = name.strip_prefix(prefix) else { continue };
        let Some(digit) = rest.find(|c: char| c.is_ascii_digit()).filter(|at| *at > 0) else { continue };
        let Ok(version) = Version::parse(&rest[digit..]) else { continue };
        if found.as_ref().is_none_or(|(best, _, _)| version.cmp_precedence(best) == std::cmp::Ordering::Greater) {
            found = Some((version, format!("{prefix}{}", &rest[..digit]), name.to_string()));
        }
    }
    found.map(|(_, longer, name)| (longer, name))
}

/// The highest by semver precedence (build metadata ignored), not the newest or the nearest.
pub fn highest(tags: &[VersionTag]) -> Option<&VersionTag> {
    tags.iter().max_by(|a, b| a.version.cmp_precedence(&b.version).then_with(|| a.name.cmp(&b.name)))
}

/// The release a bump leads to, following semver's rules for pre-releases:
/// `1.3.0-rc.2` bumped by patch or minor is `1.3.0`, by major `2.0.0`.
pub fn bumped(base: &Version, bump: Bump) -> Version {
    let pre = !base.pre.is_empty();
    let (major, minor, patch) = (base.major, base.minor, base.patch);
    let (major, minor, patch) = match bump {
        Bump::Major if pre && minor == 0 && patch == 0 => (major, 0, 0),
        Bump::Major => (major + 1, 0, 0),
        Bump::Minor if pre && patch == 0 => (major, minor, 0),
        Bump::Minor => (major, minor + 1, 0),
        Bump::Patch | Bump::Auto if pre => (major, minor, patch),
        Bump::Patch | Bump::Auto => (major, minor, patch + 1),
    };
    Version::new(major, minor, patch)
}

/// The next version after `base` (the highest tag) for `bump`, as a pre-release when `pre` is given:
/// an existing `-rc.N` of the same release advances to `-rc.N+1`, otherwise `-rc.1`.
pub fn next_version(base: &Version, bump: Bump, pre: Option<&str>) -> Result<Version, String> {
    let release = bumped(base, bump);
    let Some(identifier) = pre else { return Ok(release) };
    let same_release = (base.major, base.minor, base.patch) == (release.major, release.minor, release.patch);
    let number = match pre_number(base, identifier) {
        Some(current) if same_release => current + 1,
        _ => 1,
    };
    let mut next = release;
    next.pre =
        Prerelease::new(&format!("{identifier}.{number}")).map_err(|e| format!("invalid --pre {identifier:?}: {e}"))?;
    if next.cmp_precedence(base) != std::cmp::Ordering::Greater {
        return Err(format!(
            "{next} would not be above the highest tag's {base}; choose a later pre-release name or a bigger --bump"
        ));
    }
    Ok(next)
}

/// `N` of a pre-release `IDENT.N`.
fn pre_number(version: &Version, identifier: &str) -> Option<u64> {
    let rest = version.pre.as_str().strip_prefix(identifier)?.strip_prefix('.')?;
    rest.parse().ok()
}

/// A commit as `git log` gives it.
#[derive(Clone, Debug)]
pub struct Commit {
    /// The full hash.
    pub hash: String,
    pub subject: String,
    pub body: String,
}

/// What conventional commits since the last tag ask for, and why.
pub fn bump_from_commits(
    commits: &[Commit],
    base: Option<&Version>,
    major_zero_breaking: bool,
    since: &str,
) -> (Bump, String) {
    let header = regex::Regex::new(r"^(?P<type>[A-Za-z]+)(?:\([^)]*\))?(?P<bang>!)?:\s").expect("a valid pattern");
    let (mut breaking, mut features, mut fixes, mut others) = (0, 0, 0, 0);
    for commit in commits {
        let parsed = header.captures(&commit.subject);
        let kind = parsed.as_ref().map(|c| c["type"].to_ascii_lowercase());
        let is_breaking = parsed.as_ref().is_some_and(|c| c.name("bang").is_some())
            || commit
                .body
                .lines()
                .any(|line| line.starts_with("BREAKING CHANGE:") || line.starts_with("BREAKING-CHANGE:"));
        match kind.as_deref() {
            _ if is_breaking => breaking += 1,
            Some("feat") => features += 1,
            Some("fix") => fixes += 1,
            _ => others += 1,
        }
    }
    let plural = |n: usize| if n == 1 { "" } else { "s" };
    let below_one = base.is_some_and(|v| v.major == 0);
    if breaking > 0 {
        if below_one && !major_zero_breaking {
            return (
                Bump::Minor,
                format!("minor: {breaking} breaking commit{} since {since} (below 1.0.0; --major-zero-breaking makes it major)", plural(breaking)),
            );
        }
        return (Bump::Major, format!("major: {breaking} breaking commit{} since {since}", plural(breaking)));
    }
    if features > 0 {
        return (Bump::Minor, format!("minor: {features} feat commit{} since {since}", plural(features)));
    }
    if fixes > 0 && others == 0 {
        return (Bump::Patch, format!("patch: {fixes} fix commit{} since {since}", plural(fixes)));
    }
    let total = fixes + others;
    (Bump::Patch, format!("patch: {total} commit{} since {since}, none feat or breaking", plural(total)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(text: &str) -> Version {
        Version::parse(text).unwrap()
    }

    fn tag(name: &str) -> VersionTag {
        VersionTag { name: name.into(), version: parse_tag(name, "v").unwrap(), commit: "c".into() }
    }

    #[test]
    fn only_exact_prefix_plus_semver_counts() {
        assert_eq!(parse_tag("v1.2.3", "v"), Some(v("1.2.3")));
        assert_eq!(parse_tag("v1.2.3-rc.1+build.5", "v"), Some(v("1.2.3-rc.1+build.5")));
        for ignored in ["1.2.3", "v1.2", "release-1.2.3", "v01.2.3", "vv1.2.3", "v1.2.3 ", "latest"] {
            assert_eq!(parse_tag(ignored, "v"), None, "{ignored}");
        }
        assert_eq!(parse_tag("app/v2.0.0", "app/v"), Some(v("2.0.0")));
    }

    #[test]
    fn highest_is_by_precedence_not_order() {
        let tags = [tag("v1.10.0"), tag("v1.9.0"), tag("v2.0.0-rc.1"), tag("v1.2.0")];
        assert_eq!(highest(&tags).unwrap().name, "v2.0.0-rc.1");
        let tags = [tag("v2.0.0-rc.1"), tag("v2.0.0"), tag("v1.99.99")];
        assert_eq!(highest(&tags).unwrap().name, "v2.0.0");
        assert!(highest(&[]).is_none());
    }

    #[test]
    fn bumps_follow_semver() {
        assert_eq!(next_version(&v("1.4.2"), Bump::Patch, None).unwrap(), v("1.4.3"));
        assert_eq!(next_version(&v("1.4.2"), Bump::Minor, None).unwrap(), v("1.5.0"));
        assert_eq!(next_version(&v("1.4.2"), Bump::Major, None).unwrap(), v("2.0.0"));
        assert_eq!(next_version(&v("1.3.0-rc.2"), Bump::Patch, None).unwrap(), v("1.3.0"));
        assert_eq!(next_version(&v("1.3.0-rc.2"), Bump::Minor, None).unwrap(), v("1.3.0"));
        assert_eq!(next_version(&v("1.3.1-rc.2"), Bump::Minor, None).unwrap(), v("1.4.0"));
        assert_eq!(next_version(&v("2.0.0-rc.2"), Bump::Major, None).unwrap(), v("2.0.0"));
    }

    #[test]
    fn pre_releases_start_and_advance() {
        assert_eq!(next_version(&v("1.2.0"), Bump::Minor, Some("rc")).unwrap(), v("1.3.0-rc.1"));
        assert_eq!(next_version(&v("1.3.0-rc.1"), Bump::Minor, Some("rc")).unwrap(), v("1.3.0-rc.2"));
        assert_eq!(next_version(&v("1.3.0-rc.9"), Bump::Patch, Some("rc")).unwrap(), v("1.3.0-rc.10"));
        assert_eq!(next_version(&v("1.3.0-beta.4"), Bump::Patch, Some("rc")).unwrap(), v("1.3.0-rc.1"));
        assert_eq!(next_version(&v("1.3.0-rc.2"), Bump::Major, Some("rc")).unwrap(), v("2.0.0-rc.1"));
        let error = next_version(&v("1.3.0-beta.4"), Bump::Patch, Some("alpha")).unwrap_err();
        assert!(error.contains("would not be above"), "{error}");
        assert!(next_version(&v("1.0.0"), Bump::Patch, Some("r c")).is_err());
    }

    fn commits(subjects: &[&str]) -> Vec<Commit> {
        subjects.iter().map(|s| Commit { hash: String::new(), subject: s.to_string(), body: String::new() }).collect()
    }

    #[test]
    fn conventional_commits_choose_the_bump() {
        let base = v("1.4.2");
        let (bump, why) =
            bump_from_commits(&commits(&["feat: a", "fix: b", "feat(ui): c"]), Some(&base), false, "v1.4.2");
        assert_eq!((bump, why.as_str()), (Bump::Minor, "minor: 2 feat commits since v1.4.2"));
        let (bump, why) = bump_from_commits(&commits(&["fix: a"]), Some(&base), false, "v1.4.2");
        assert_eq!((bump, why.as_str()), (Bump::Patch, "patch: 1 fix commit since v1.4.2"));
        let (bump, _) =
            bump_from_commits(&commits(&["docs: a", "chore: b", "Update readme"]), Some(&base), false, "v1.4.2");
        assert_eq!(bump, Bump::Patch);
        let (bump, why) = bump_from_commits(&commits(&["feat!: drop v1 api", "feat: x"]), Some(&base), false, "v1.4.2");
        assert_eq!((bump, why.as_str()), (Bump::Major, "major: 1 breaking commit since v1.4.2"));
        let body = vec![Commit {
            hash: String::new(),
            subject: "refactor(core): rename".into(),
            body: "details\n\nBREAKING CHANGE: renamed".into(),
        }];
        assert_eq!(bump_from_commits(&body, Some(&base), false, "v1.4.2").0, Bump::Major);
        assert_eq!(bump_from_commits(&commits(&["fix(api)!: x"]), Some(&base), false, "v1.4.2").0, Bump::Major);
    }

    #[test]
    fn below_one_a_breaking_change_is_minor_unless_asked() {
        let base = v("0.4.0");
        let (bump, why) = bump_from_commits(&commits(&["feat!: x"]), Some(&base), false, "v0.4.0");
        assert_eq!(bump, Bump::Minor);
        assert!(why.contains("below 1.0.0"), "{why}");
        assert_eq!(bump_from_commits(&commits(&["feat!: x"]), Some(&base), true, "v0.4.0").0, Bump::Major);
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    fn version() -> impl Strategy<Value = Version> {
        (0u64..4, 0u64..4, 0u64..4, proptest::option::of((prop_oneof!["alpha", "beta", "rc"], 1u64..4))).prop_map(
            |(major, minor, patch, pre)| {
                let mut version = Version::new(major, minor, patch);
                if let Some((name, number)) = pre {
                    version.pre = Prerelease::new(&format!("{name}.{number}")).unwrap();
                }
                version
            },
        )
    }

    proptest! {
        /// Whatever the existing tags, bump and pre-release name, a next version that is
        /// computed at all is above every existing one.
        #[test]
        fn the_next_version_is_above_every_existing_one(
            existing in proptest::collection::vec(version(), 1..12),
            bump in prop_oneof![Just(Bump::Patch), Just(Bump::Minor), Just(Bump::Major), Just(Bump::Auto)],
            pre in proptest::option::of(prop_oneof!["alpha", "beta", "rc"]),
        ) {
            let tags: Vec<VersionTag> = existing
                .iter()
                .map(|v| VersionTag { name: format!("v{v}"), version: v.clone(), commit: String::new() })
                .collect();
            let base = &highest(&tags).unwrap().version;
            if let Ok(next) = next_version(base, bump, pre.as_deref()) {
                for tag in &tags {
                    prop_assert_eq!(next.cmp_precedence(&tag.version), std::cmp::Ordering::Greater, "{} after {}", next, tag.version);
                }
            } else {
                // Only a pre-release name that sorts below the current one is refused.
                prop_assert!(pre.is_some() && !base.pre.is_empty());
            }
        }
    }

    #[test]
    fn a_longer_prefix_in_use_is_found_with_its_highest_tag() {
        let names = ["api/v1.2.0", "api/v1.10.0", "api/notes", "apiv", "web/v3.0.0", "api1.0.0"];
        assert_eq!(longer_prefix("api", names), Some(("api/v".to_string(), "api/v1.10.0".to_string())));
        assert_eq!(longer_prefix("web", names), Some(("web/v".to_string(), "web/v3.0.0".to_string())));
        assert_eq!(longer_prefix("api/v", names), None, "the prefix itself is in use: not longer");
        assert_eq!(longer_prefix("db", names), None);
        assert_eq!(
            longer_prefix("api", ["api-2.0.0-rc.1", "api/v1.0.0"]),
            Some(("api-".into(), "api-2.0.0-rc.1".into()))
        );
    }
}
