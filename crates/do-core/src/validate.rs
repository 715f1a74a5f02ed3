//! Strict checks of names users give us, before any request is made.
//! The rules are DigitalOcean's (registry names) and the OCI distribution spec's
//! (repositories, tags, digests).

use crate::exit::Failure;

/// A registry name: `^[a-z0-9-]{1,63}$`, starting with a letter and not ending with `-`.
pub fn registry_name(name: &str) -> anyhow::Result<&str> {
    let valid = (1..=63).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && name.as_bytes()[0].is_ascii_lowercase()
        && !name.ends_with('-');
    if valid {
        Ok(name)
    } else {
        Err(Failure::usage(format!(
            "invalid registry name {}: use 1-63 lowercase letters, digits and '-', starting with a letter",
            shown(name)
        )))
    }
}

/// An app as a flag names it (`--app`, `--protect-app`): its name or its id, 1 to 64 letters,
/// digits and `-`.
pub fn app_reference<'a>(app: &'a str, flag: &str) -> anyhow::Result<&'a str> {
    let valid = (1..=64).contains(&app.len()) && app.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    match valid {
        true => Ok(app),
        false => Err(Failure::usage(format!("invalid {flag} {}: give the app's name or id", shown(app)))),
    }
}

/// An app component's name: 1 to 32 lowercase letters, digits and `-`.
pub fn component_name(name: &str) -> anyhow::Result<&str> {
    let valid = (1..=32).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    match valid {
        true => Ok(name),
        false => Err(Failure::usage(format!("invalid --component {}", shown(name)))),
    }
}

/// A repository name: path components of `[a-z0-9]+` joined by one of `.`, `_`, `__` or `-`s,
/// separated by `/`, at most 255 characters.
pub fn repository_name(name: &str) -> anyhow::Result<&str> {
    let component_ok = |component: &str| {
        let bytes = component.as_bytes();
        !bytes.is_empty()
            && bytes.first().is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            && bytes.last().is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-'))
            && !component.contains("..")
            && !component.contains("___")
    };
    if name.len() <= 255 && name.split('/').all(component_ok) {
        Ok(name)
    } else {
        Err(Failure::usage(format!(
            "invalid repository name {}: use lowercase letters, digits and . _ - in parts separated by '/'",
            shown(name)
        )))
    }
}

/// An image tag: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
pub fn tag_name(tag: &str) -> anyhow::Result<&str> {
    let bytes = tag.as_bytes();
    let valid = (1..=128).contains(&bytes.len())
        && (bytes[0].is_ascii_alphanumeric() || bytes[0] == b'_')
        && bytes.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if valid {
        Ok(tag)
    } else {
        Err(Failure::usage(format!(
            "invalid image tag {}: use up to 128 letters, digits and _ . -, not starting with . or -",
            shown(tag)
        )))
    }
}

/// A manifest digest: `sha256:` and 64 lowercase hex digits.
pub fn digest(digest: &str) -> anyhow::Result<&str> {
    let valid = digest
        .strip_prefix("sha256:")
        .is_some_and(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    if valid {
        Ok(digest)
    } else {
        Err(Failure::usage(format!("invalid digest {}: expected sha256: and 64 lowercase hex digits", shown(digest))))
    }
}

/// A user-given value quoted for an error message: control characters escaped, cut at 80 characters.
pub fn shown(value: &str) -> String {
    let mut cut: String = value.chars().take(80).collect();
    if cut.len() < value.len() {
        cut.push('…');
    }
    format!("{cut:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_references_and_component_names_are_checked_once_for_every_tool() {
        assert!(app_reference("my-app", "--app").is_ok());
        assert!(app_reference("4f6c71e2-1e90-4762-9fee-6cc4a0a9f2cf", "--app").is_ok());
        for bad in ["", "my app", "../x", &"a".repeat(65)] {
            let error = app_reference(bad, "--protect-app").unwrap_err().to_string();
            assert!(error.starts_with("invalid --protect-app"), "{error}");
        }
        assert!(app_reference(&"a".repeat(64), "--app").is_ok());
        assert!(component_name("web-2").is_ok());
        for bad in ["", "Web", "a_b", &"a".repeat(33)] {
            assert!(component_name(bad).is_err(), "{bad}");
        }
        assert!(component_name(&"a".repeat(32)).is_ok());
    }

    #[test]
    fn registry_names_follow_digitalocean_rules() {
        assert!(registry_name("my-registry-1").is_ok());
        for bad in ["", "My", "1abc", "abc-", "a_b", &"a".repeat(64)] {
            assert!(registry_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn repository_names_refuse_path_tricks_and_url_syntax() {
        assert!(repository_name("web").is_ok());
        assert!(repository_name("team/web-app_2").is_ok());
        for bad in ["", "../etc", "a/../b", "web?x", "web#x", "web%2F", "we b", "web\n", "/web", "web/", "Web", "a..b"]
        {
            assert!(repository_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn tags_and_digests_are_checked() {
        assert!(tag_name("v1.2.3-rc.1").is_ok());
        assert!(tag_name("latest").is_ok());
        for bad in ["", ".x", "-x", "a/b", "a b", &"a".repeat(129)] {
            assert!(tag_name(bad).is_err(), "{bad:?}");
        }
        assert!(digest(&format!("sha256:{}", "a".repeat(64))).is_ok());
        assert!(digest("sha256:ABC").is_err());
        assert!(digest(&format!("md5:{}", "a".repeat(64))).is_err());
    }

    #[test]
    fn shown_values_escape_control_characters_and_are_cut() {
        assert_eq!(shown("a\nb"), "\"a\\nb\"");
        assert!(shown(&"x".repeat(500)).len() < 100);
    }
}
