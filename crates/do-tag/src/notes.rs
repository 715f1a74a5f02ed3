//! Release notes from the commits since the previous tag, as Markdown: breaking changes first,
//! then features, fixes, performance and everything else, each line with the short hash (a
//! link when the remote is on GitHub). Pure: the commits and the remote's URL come in.

use crate::version::Commit;

/// The sections, in the order they are shown.
const SECTIONS: [(Section, &str); 5] = [
    (Section::Breaking, "Breaking changes"),
    (Section::Features, "Features"),
    (Section::Fixes, "Fixes"),
    (Section::Performance, "Performance"),
    (Section::Other, "Other"),
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Section {
    Breaking,
    Features,
    Fixes,
    Performance,
    Other,
}

/// `feat(scope)!: text` read apart; `None` for a subject that is not a conventional commit.
struct Conventional<'a> {
    kind: String,
    scope: Option<&'a str>,
    bang: bool,
    description: &'a str,
}

fn conventional(subject: &str) -> Option<Conventional<'_>> {
    let colon = subject.find(": ")?;
    let head = &subject[..colon];
    let (head, bang) = match head.strip_suffix('!') {
        Some(head) => (head, true),
        None => (head, false),
    };
    let (kind, scope) = match head.split_once('(') {
        Some((kind, rest)) => (kind, Some(rest.strip_suffix(')')?)),
        None => (head, None),
    };
    if kind.is_empty() || !kind.bytes().all(|b| b.is_ascii_alphabetic()) {
        return None;
    }
    Some(Conventional { kind: kind.to_ascii_lowercase(), scope, bang, description: subject[colon + 2..].trim() })
}

/// Whether a commit breaks compatibility: `type!:` or a `BREAKING CHANGE:` footer.
pub fn is_breaking(commit: &Commit) -> bool {
    conventional(&commit.subject).is_some_and(|c| c.bang)
        || commit.body.lines().any(|line| line.starts_with("BREAKING CHANGE:") || line.starts_with("BREAKING-CHANGE:"))
}

fn section_of(commit: &Commit) -> Section {
    if is_breaking(commit) {
        return Section::Breaking;
    }
    match conventional(&commit.subject).map(|c| c.kind) {
        Some(kind) if kind == "feat" => Section::Features,
        Some(kind) if kind == "fix" => Section::Fixes,
        Some(kind) if kind == "perf" => Section::Performance,
        _ => Section::Other,
    }
}

/// The web address of a GitHub repository from its remote URL (https, ssh or scp-like forms).
pub fn github_url(remote_url: &str) -> Option<String> {
    let url = remote_url.trim();
    let path = url
        .strip_prefix("https://github.com/")
        .or_else(|| url.strip_prefix("http://github.com/"))
        .or_else(|| url.strip_prefix("git@github.com:"))
        .or_else(|| url.strip_prefix("ssh://git@github.com/"))?;
    let path = path.trim_end_matches('/').trim_end_matches(".git");
    let mut parts = path.split('/');
    let (owner, repository) = (parts.next()?, parts.next()?);
    let fine =
        |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    (parts.next().is_none() && fine(owner) && fine(repository))
        .then(|| format!("https://github.com/{owner}/{repository}"))
}

/// The notes: one `### Section` per kind of change present, one line per commit (merges left
/// out), newest first as `git log` gives them. Empty commits give a one-line note.
pub fn notes(commits: &[Commit], github: Option<&str>) -> String {
    let mut text = String::new();
    for (section, title) in SECTIONS {
        let lines: Vec<String> = commits
            .iter()
            .filter(|c| !c.subject.starts_with("Merge ") && section_of(c) == section)
            .map(|commit| line(commit, github))
            .collect();
        if lines.is_empty() {
            continue;
        }
        if !text.is_empty() {
            text.push('\n');
        }
        text.push_str(&format!("### {title}\n\n"));
        for line in lines {
            text.push_str(&line);
            text.push('\n');
        }
    }
    if text.is_empty() {
        text.push_str("No changes.\n");
    }
    text
}

fn line(commit: &Commit, github: Option<&str>) -> String {
    let short = commit.hash.get(..7).unwrap_or(&commit.hash);
    let hash = match github {
        Some(base) => format!("[{short}]({base}/commit/{})", commit.hash),
        None => short.to_string(),
    };
    // Under "Other" the type says what the change was (docs, refactor, chore): it stays.
    match conventional(&commit.subject).filter(|_| section_of(commit) != Section::Other) {
        Some(parsed) => {
            let scope = parsed.scope.map(|s| format!("**{s}:** ")).unwrap_or_default();
            format!("- {scope}{} ({hash})", parsed.description)
        }
        None => format!("- {} ({hash})", commit.subject.trim()),
    }
}

/// `## [1.5.0] - 2026-11-29` and the notes under it, as Keep a Changelog lays a release out.
pub fn changelog_section(version: &str, date: &str, notes: &str) -> String {
    format!("## [{version}] - {date}\n\n{}\n", notes.trim_end())
}

const CHANGELOG_HEADER: &str = "# Changelog\n\nAll notable changes to this project are documented in this file.\n\nThe format is based on [Keep a Changelog](https://keepachangelog.com/en/1.1.0/),\nand this project adheres to [Semantic Versioning](https://semver.org/spec/v2.0.0.html).\n";

/// The changelog with `section` added above the releases already in it (below an
/// `## [Unreleased]` section, which stays on top); a new file gets the usual header.
pub fn prepend(existing: Option<&str>, section: &str) -> String {
    let Some(existing) = existing.filter(|e| !e.trim().is_empty()) else {
        return format!("{CHANGELOG_HEADER}\n{section}");
    };
    let release_heading =
        |line: &str| line.starts_with("## ") && !line.to_ascii_lowercase().starts_with("## [unreleased]");
    let mut offset = 0;
    // The fence a fenced code block opened with (``` or ~~~), while inside one: a `## ` line
    // there is code, not a heading.
    let mut fence: Option<&str> = None;
    for line in existing.split_inclusive('\n') {
        let trimmed = line.trim_start();
        let marker = ["```", "~~~"].into_iter().find(|m| trimmed.starts_with(m));
        match (fence, marker) {
            (None, Some(opened)) => fence = Some(opened),
            (Some(open), Some(closing)) if open == closing => fence = None,
            (None, None) if release_heading(line) => {
                return format!("{}{section}\n{}", &existing[..offset], &existing[offset..]);
            }
            _ => {}
        }
        offset += line.len();
    }
    let separator = if existing.ends_with("\n\n") {
        ""
    } else if existing.ends_with('\n') {
        "\n"
    } else {
        "\n\n"
    };
    format!("{existing}{separator}{section}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn commit(hash: &str, subject: &str, body: &str) -> Commit {
        Commit { hash: hash.repeat(40 / hash.len()), subject: subject.into(), body: body.into() }
    }

    #[test]
    fn commits_are_grouped_breaking_first_with_scopes_and_hashes() {
        let commits = [
            commit("a1", "feat(ui): dark mode", ""),
            commit("b2", "fix: a typo on the home page", ""),
            commit("c3", "feat!: drop the v1 API", ""),
            commit("d4", "refactor: tidy", "BREAKING CHANGE: the config moved"),
            commit("e5", "perf: cache the index", ""),
            commit("f6", "Update README", ""),
            commit("a7", "Merge branch 'x'", ""),
        ];
        assert_eq!(
            notes(&commits, None),
            "### Breaking changes\n\n- drop the v1 API (c3c3c3c)\n- tidy (d4d4d4d)\n\n### Features\n\n- **ui:** dark mode (a1a1a1a)\n\n### Fixes\n\n- a typo on the home page (b2b2b2b)\n\n### Performance\n\n- cache the index (e5e5e5e)\n\n### Other\n\n- Update README (f6f6f6f)\n"
        );
        let linked = notes(&commits[..1], Some("https://github.com/acme/shop"));
        assert_eq!(
            linked,
            format!(
                "### Features\n\n- **ui:** dark mode ([a1a1a1a](https://github.com/acme/shop/commit/{}))\n",
                "a1".repeat(20)
            )
        );
        assert_eq!(notes(&[], None), "No changes.\n");
    }

    #[test]
    fn only_conventional_headers_count_and_footers_must_start_a_line() {
        assert!(is_breaking(&commit("a", "fix(api)!: x", "")));
        assert!(is_breaking(&commit("a", "chore: x", "text\nBREAKING-CHANGE: y")));
        assert!(!is_breaking(&commit("a", "chore: x", "mentions BREAKING CHANGE: in passing")));
        assert!(conventional("feat x: y").is_none(), "a space in the type");
        assert!(conventional("feat(ui: y").is_none(), "an unclosed scope");
        assert!(conventional(": y").is_none());
        assert_eq!(section_of(&commit("a", "FEAT: loud", "")), Section::Features);
    }

    #[test]
    fn github_remotes_in_every_form_give_the_web_address() {
        for url in [
            "https://github.com/acme/shop.git",
            "https://github.com/acme/shop",
            "git@github.com:acme/shop.git",
            "ssh://git@github.com/acme/shop.git",
            "https://github.com/acme/shop/",
        ] {
            assert_eq!(github_url(url).as_deref(), Some("https://github.com/acme/shop"), "{url}");
        }
        for url in [
            "https://gitlab.com/acme/shop",
            "/tmp/origin.git",
            "https://github.com/acme",
            "https://github.com/a/b/c",
            "https://github.com/a b/c",
        ] {
            assert_eq!(github_url(url), None, "{url}");
        }
    }

    #[test]
    fn a_heading_inside_a_fenced_code_block_is_code() {
        let section = changelog_section("1.5.0", "2026-11-29", "- x\n");
        let existing = "# Changelog\n\nHow to write an entry:\n\n```markdown\n## [1.0.0] - 2020-01-01\n```\n\n~~~\n## not a heading\n```\n## still code\n~~~\n\n## [1.4.0] - 2026-10-01\n\n- old\n";
        let merged = prepend(Some(existing), &section);
        let at = merged.find("## [1.5.0]").unwrap();
        assert!(at > merged.find("## still code").unwrap(), "{merged}");
        assert!(at < merged.find("## [1.4.0]").unwrap(), "{merged}");
        assert!(merged.contains("```markdown\n## [1.0.0] - 2020-01-01\n```"), "the code block is untouched: {merged}");
    }

    #[test]
    fn a_release_goes_above_the_releases_and_below_unreleased() {
        let section = changelog_section("1.5.0", "2026-11-29", "### Fixes\n\n- x (abc)\n");
        assert_eq!(section, "## [1.5.0] - 2026-11-29\n\n### Fixes\n\n- x (abc)\n");
        let fresh = prepend(None, &section);
        assert!(fresh.starts_with("# Changelog\n") && fresh.ends_with(&section), "{fresh}");
        let existing = "# Changelog\n\nintro\n\n## [Unreleased]\n\n- wip\n\n## [1.4.0] - 2026-10-01\n\n- old\n";
        assert_eq!(
            prepend(Some(existing), &section),
            "# Changelog\n\nintro\n\n## [Unreleased]\n\n- wip\n\n## [1.5.0] - 2026-11-29\n\n### Fixes\n\n- x (abc)\n\n## [1.4.0] - 2026-10-01\n\n- old\n"
        );
        assert_eq!(prepend(Some("# Changelog\n"), &section), format!("# Changelog\n\n{section}"));
        assert_eq!(prepend(Some("# Changelog"), &section), format!("# Changelog\n\n{section}"));
    }
}
