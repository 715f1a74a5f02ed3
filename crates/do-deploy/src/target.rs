//! Which image to deploy: from flags, else from the input records. Checked strictly before
//! any request.

use do_core::contract::Input;
use do_core::{validate, Failure};

pub const DOCR_HOST: &str = "registry.digitalocean.com";

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reference {
    Tag(String),
    Digest(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub registry: Option<String>,
    pub repository: String,
    pub reference: Reference,
    /// Where the choice came from, for people.
    pub source: &'static str,
}

/// Parses `registry.digitalocean.com/REGISTRY/REPO[:TAG|@DIGEST]` (no reference means `latest`).
pub fn parse_image(text: &str) -> anyhow::Result<Target> {
    let bad = |why: &str| {
        Failure::usage(format!(
            "invalid --image {}: {why}; expected {DOCR_HOST}/REGISTRY/REPO[:TAG|@DIGEST]",
            validate::shown(text)
        ))
    };
    let rest = text.strip_prefix(DOCR_HOST).and_then(|r| r.strip_prefix('/')).ok_or_else(|| bad("not a DOCR image"))?;
    let (path, digest) = match rest.split_once('@') {
        Some((path, digest)) => (path, Some(digest)),
        None => (rest, None),
    };
    let (path, tag) = match (digest, path.rfind(':')) {
        (None, Some(colon)) if !path[colon..].contains('/') => (&path[..colon], Some(&path[colon + 1..])),
        _ => (path, None),
    };
    let (registry, repository) = path.split_once('/').ok_or_else(|| bad("no repository"))?;
    validate::registry_name(registry)?;
    validate::repository_name(repository)?;
    let reference = match (digest, tag) {
        (Some(digest), _) => Reference::Digest(validate::digest(digest)?.to_string()),
        (None, Some(tag)) => Reference::Tag(validate::tag_name(tag)?.to_string()),
        (None, None) => Reference::Tag("latest".into()),
    };
    Ok(Target {
        registry: Some(registry.to_string()),
        repository: repository.to_string(),
        reference,
        source: "--image",
    })
}

/// The image flags, in the order they win.
pub struct ImageFlags<'a> {
    pub image: Option<&'a str>,
    pub registry: Option<&'a str>,
    pub repository: Option<&'a str>,
    pub tag: Option<&'a str>,
    pub digest: Option<&'a str>,
}

/// `--image`; else `--repository` with `--tag`/`--digest`; else the last `image` record; else the
/// last `tag` record's tag with `--repository`.
pub fn choose(flags: &ImageFlags, input: &Input) -> anyhow::Result<Target> {
    if let Some(registry) = flags.registry {
        validate::registry_name(registry)?;
    }
    if let Some(image) = flags.image {
        let mut target = parse_image(image)?;
        if let (Some(flag), Some(from_image)) = (flags.registry, target.registry.as_deref()) {
            if flag != from_image {
                return Err(Failure::usage(format!(
                    "--registry {flag} differs from the registry in --image ({from_image})"
                )));
            }
        }
        target.registry = target.registry.or(flags.registry.map(str::to_string));
        return Ok(target);
    }
    let repository = flags.repository.map(validate::repository_name).transpose()?;
    let registry = flags.registry.map(str::to_string);
    match (repository, flags.tag, flags.digest) {
        (Some(repository), tag, Some(digest)) => {
            if let Some(tag) = tag {
                validate::tag_name(tag)?;
            }
            return Ok(Target {
                registry,
                repository: repository.to_string(),
                reference: Reference::Digest(validate::digest(digest)?.to_string()),
                source: "--digest",
            });
        }
        (Some(repository), Some(tag), None) => {
            return Ok(Target {
                registry,
                repository: repository.to_string(),
                reference: Reference::Tag(validate::tag_name(tag)?.to_string()),
                source: "--tag",
            });
        }
        (None, Some(_), _) | (None, _, Some(_)) => {
            return Err(Failure::usage("--tag and --digest need --repository (or give --image)"));
        }
        _ => {}
    }
    if let Some(record) = input.last("image") {
        let record_repository = record.str("repository").unwrap_or_default();
        if repository.is_none_or(|r| r == record_repository) {
            let record_registry = record.str("registry").unwrap_or_default();
            validate::registry_name(record_registry)?;
            validate::repository_name(record_repository)?;
            let digest = validate::digest(record.str("digest").unwrap_or_default())?;
            return Ok(Target {
                registry: registry.or(Some(record_registry.to_string())),
                repository: record_repository.to_string(),
                reference: Reference::Digest(digest.to_string()),
                source: "the image record",
            });
        }
    }
    if let (Some(record), Some(repository)) = (input.last("tag"), repository) {
        let tag = validate::tag_name(record.str("tag").unwrap_or_default())?;
        return Ok(Target {
            registry,
            repository: repository.to_string(),
            reference: Reference::Tag(tag.to_string()),
            source: "the tag record",
        });
    }
    Err(Failure::usage(
        "no image to deploy: give --image, or --repository with --tag or --digest, or pipe in an image record (or a tag record with --repository)",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest() -> String {
        format!("sha256:{}", "ab".repeat(32))
    }

    #[test]
    fn docr_image_references_parse() {
        let target = parse_image("registry.digitalocean.com/my-reg/team/web:v1.2.3").unwrap();
        assert_eq!((target.registry.as_deref(), target.repository.as_str()), (Some("my-reg"), "team/web"));
        assert_eq!(target.reference, Reference::Tag("v1.2.3".into()));
        let pinned = parse_image(&format!("registry.digitalocean.com/my-reg/web@{}", digest())).unwrap();
        assert_eq!(pinned.reference, Reference::Digest(digest()));
        assert_eq!(
            parse_image("registry.digitalocean.com/my-reg/web").unwrap().reference,
            Reference::Tag("latest".into())
        );
        for bad in [
            "docker.io/library/web:1",
            "registry.digitalocean.com/my-reg",
            "registry.digitalocean.com/My/web",
            "registry.digitalocean.com/r/web@sha256:zz",
            "registry.digitalocean.com/r/../x:1",
            "registry.digitalocean.com/r/web:t?x",
        ] {
            assert!(parse_image(bad).is_err(), "{bad}");
        }
    }

    fn input(lines: &str) -> Input {
        Input::parse(lines.as_bytes()).unwrap()
    }

    fn flags<'a>(repository: Option<&'a str>, tag: Option<&'a str>) -> ImageFlags<'a> {
        ImageFlags { image: None, registry: None, repository, tag, digest: None }
    }

    #[test]
    fn flags_win_then_the_image_record_then_the_tag_record() {
        let lines = format!(
            "{{\"kind\":\"tag\",\"v\":1,\"data\":{{\"tag\":\"v2.0.0\",\"version\":\"2.0.0\",\"commit\":\"c\"}}}}\n{{\"kind\":\"image\",\"v\":1,\"data\":{{\"registry\":\"reg\",\"repository\":\"web\",\"digest\":\"{}\"}}}}",
            digest()
        );
        let both = input(&lines);
        assert_eq!(choose(&flags(Some("web"), Some("v9")), &both).unwrap().reference, Reference::Tag("v9".into()));
        let from_image = choose(&flags(None, None), &both).unwrap();
        assert_eq!((from_image.reference, from_image.registry.as_deref()), (Reference::Digest(digest()), Some("reg")));
        let tag_only =
            input("{\"kind\":\"tag\",\"v\":1,\"data\":{\"tag\":\"v2.0.0\",\"version\":\"2.0.0\",\"commit\":\"c\"}}");
        let from_tag = choose(&flags(Some("web"), None), &tag_only).unwrap();
        assert_eq!((from_tag.reference, from_tag.source), (Reference::Tag("v2.0.0".into()), "the tag record"));
        let error = choose(&flags(None, None), &tag_only).unwrap_err().to_string();
        assert!(error.contains("no image to deploy"), "{error}");
        assert!(choose(&flags(None, Some("v1")), &Input::default()).is_err());
    }
}
