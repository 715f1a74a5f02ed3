//! GitHub Actions output, used when `GITHUB_ACTIONS=true`: step outputs in `$GITHUB_OUTPUT`,
//! a Markdown summary in `$GITHUB_STEP_SUMMARY`, and workflow commands (`::error::`,
//! `::group::`) on stderr, so that stdout stays JSON Lines.

use std::io::Write;
use std::path::PathBuf;

pub struct GitHub {
    output: Option<PathBuf>,
    summary: Option<PathBuf>,
}

impl GitHub {
    /// `Some` when running in GitHub Actions.
    pub fn from_env() -> Option<GitHub> {
        if std::env::var("GITHUB_ACTIONS").ok().as_deref() != Some("true") {
            return None;
        }
        let path = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
        Some(GitHub { output: path("GITHUB_OUTPUT"), summary: path("GITHUB_STEP_SUMMARY") })
    }

    /// Appends `name=value` lines to `$GITHUB_OUTPUT`. Values are single lines; a newline in
    /// one would start another output, so it becomes a space.
    pub fn outputs(&self, pairs: &[(&str, String)]) -> std::io::Result<()> {
        let Some(path) = &self.output else { return Ok(()) };
        let mut text = String::new();
        for (name, value) in pairs {
            text.push_str(&format!("{name}={}\n", crate::redact::redact(value).replace(['\r', '\n'], " ")));
        }
        append(path, &text)
    }

    /// Appends a multi-line output with GitHub's delimiter syntax (`name<<DELIMITER`), the
    /// delimiter chosen so that no line of the value can end it early.
    pub fn multiline_output(&self, name: &str, value: &str) -> std::io::Result<()> {
        let Some(path) = &self.output else { return Ok(()) };
        append(path, &multiline(name, &crate::redact::redact(value)))
    }

    /// Appends Markdown to `$GITHUB_STEP_SUMMARY`.
    pub fn summary(&self, markdown: &str) -> std::io::Result<()> {
        match &self.summary {
            Some(path) => append(path, &format!("{}\n", crate::redact::redact(markdown.trim_end()))),
            None => Ok(()),
        }
    }
}

fn multiline(name: &str, value: &str) -> String {
    let mut delimiter = "DO_RELEASE_EOF".to_string();
    while value.lines().any(|line| line.trim_end() == delimiter) {
        delimiter.push('_');
    }
    format!("{name}<<{delimiter}\n{}\n{delimiter}\n", value.trim_end_matches('\n'))
}

fn append(path: &PathBuf, text: &str) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
    file.write_all(text.as_bytes())
}

/// Whether workflow commands should be written.
pub fn active() -> bool {
    std::env::var("GITHUB_ACTIONS").ok().as_deref() == Some("true")
}

/// Escapes a workflow-command message: `%`, CR and LF.
pub fn escape(message: &str) -> String {
    message.replace('%', "%25").replace('\r', "%0D").replace('\n', "%0A")
}

/// An `::error::` annotation on stderr.
pub fn error(tool: &str, message: &str) {
    if active() {
        eprintln!("::error title={tool}::{}", escape(&crate::redact::redact(message)));
    }
}

/// Starts a collapsible group in the log (GitHub Actions only).
pub fn group(title: &str) {
    if active() {
        eprintln!("::group::{}", escape(&crate::redact::redact(title)));
    }
}

pub fn end_group() {
    if active() {
        eprintln!("::endgroup::");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_multiline_output_uses_a_delimiter_no_line_of_it_equals() {
        assert_eq!(multiline("notes", "a\nb\n"), "notes<<DO_RELEASE_EOF\na\nb\nDO_RELEASE_EOF\n");
        assert_eq!(
            multiline("notes", "DO_RELEASE_EOF\nx"),
            "notes<<DO_RELEASE_EOF_\nDO_RELEASE_EOF\nx\nDO_RELEASE_EOF_\n"
        );
    }

    #[test]
    fn messages_are_escaped() {
        assert_eq!(escape("50% done\nnext\r"), "50%25 done%0Anext%0D");
    }
}
