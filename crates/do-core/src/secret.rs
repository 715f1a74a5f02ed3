//! The API token and registry credentials: checked once, kept out of every output.

use std::fmt;

use crate::exit::Failure;

/// A value that must never be shown: its `Debug` and `Display` print `***`.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Secret {
        Secret(value)
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// A token must be one printable ASCII word: anything else (a space, a byte-order mark, a
/// non-ASCII character) would fail on every request, so it is a usage error, told without the
/// token itself. `what` names where it came from.
pub fn check_token(text: &str, what: &str) -> anyhow::Result<Secret> {
    if text.starts_with('\u{feff}') {
        return Err(Failure::usage(format!("{what} starts with a byte-order mark; save it without one")));
    }
    let token = text.trim_matches(|c: char| c == '\n' || c == '\r' || c == ' ' || c == '\t');
    if token.is_empty() {
        return Err(Failure::usage(format!("{what} is empty")));
    }
    if let Some((at, _)) = token.char_indices().find(|(_, c)| !c.is_ascii_graphic()) {
        return Err(Failure::usage(format!(
            "{what} has a character that is not printable ASCII at position {} (a space, a control or a non-ASCII character); a token is one word",
            at + 1
        )));
    }
    Ok(Secret::new(token.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_do_not_print() {
        assert_eq!(format!("{:?}", Secret::new("dop_v1_abc".into())), "***");
    }
}
