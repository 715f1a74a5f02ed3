//! Which registry a tool works on: the one named, or the account's only one.

use crate::exit::Failure;
use crate::types::Registry;
use crate::Client;

/// The registry named `wanted`, or, with no name, the only registry of the account.
/// Several registries and no name is a usage error that lists them.
pub fn choose<'a>(registries: &'a [Registry], wanted: Option<&str>) -> anyhow::Result<&'a Registry> {
    match (wanted, registries) {
        (Some(name), _) => registries.iter().find(|r| r.name == name).ok_or_else(|| {
            let names: Vec<&str> = registries.iter().map(|r| r.name.as_str()).collect();
            let has = if names.is_empty() { "no registry".to_string() } else { names.join(", ") };
            Failure::usage(format!(
                "registry {name:?} does not exist in this account, which has: {has}; check --registry"
            ))
        }),
        (None, [only]) => Ok(only),
        (None, []) => anyhow::bail!("this account has no container registry; create one or check the token's account"),
        (None, many) => Err(Failure::usage(format!(
            "this account has {} registries ({}); choose one with --registry",
            many.len(),
            many.iter().map(|r| r.name.as_str()).collect::<Vec<_>>().join(", ")
        ))),
    }
}

/// Lists the account's registries (one request) and chooses as [`choose`] does.
pub fn find(client: &Client, wanted: Option<&str>) -> anyhow::Result<Registry> {
    let registries: Vec<Registry> = client.get_object("/v2/registries", "registries")?;
    choose(&registries, wanted).cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(name: &str) -> Registry {
        Registry { name: name.into(), ..Registry::default() }
    }

    #[test]
    fn the_only_registry_or_the_named_one() {
        let one = [named("a")];
        assert_eq!(choose(&one, None).unwrap().name, "a");
        let two = [named("a"), named("b")];
        assert_eq!(choose(&two, Some("b")).unwrap().name, "b");
        let error = choose(&two, None).unwrap_err();
        assert_eq!(crate::exit::exit_code_of(&error), crate::Exit::Usage);
        assert!(error.to_string().contains("2 registries (a, b)"));
        let missing = choose(&two, Some("c")).unwrap_err();
        assert!(missing.to_string().contains("\"c\" does not exist in this account, which has: a, b"), "{missing}");
        assert_eq!(crate::exit::exit_code_of(&missing), crate::Exit::Usage);
        assert!(choose(&[], None).is_err());
    }
}
