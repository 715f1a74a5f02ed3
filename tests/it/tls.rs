//! The path real users take: TLS with a CA the tools learn from `SSL_CERT_FILE`, the API and the
//! registry on two hosts, once directly and once through a CONNECT proxy (`HTTPS_PROXY`). Each
//! host gets only its own credentials: the API token goes to the API host alone, the registry's
//! credentials to its token realm (on the API host, as on DOCR) and its tokens to the registry
//! host alone.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use base64::Engine;
use do_sim::Sim;

use crate::support::tls::{ca_file, ConnectProxy, TlsFront};
use crate::support::{sim, Run, Tool, GC_WAIT, PRUNE};

const PROXY_VARIABLES: [&str; 8] =
    ["ALL_PROXY", "all_proxy", "HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy"];

/// The simulator with three releases, behind two TLS fronts: the API's on 127.0.0.1, the
/// registry's on 127.0.0.2.
fn world() -> (Sim, TlsFront, TlsFront) {
    let sim = sim(30);
    for tag in ["v2.0.0", "v2.1.0", "v2.2.0"] {
        sim.push("example-registry", "web", tag, 1000).unwrap();
    }
    let upstream: SocketAddr = sim.url().trim_start_matches("http://").parse().unwrap();
    let api = TlsFront::start("127.0.0.1:0", upstream);
    let registry = TlsFront::start("127.0.0.2:0", upstream);
    (sim, api, registry)
}

/// `binary` against `api_url` and `registry_url`, trusting the test CA, with no proxy variable
/// of the machine's own.
fn tool(binary: &str, sim: &Sim, api_url: &str, registry_url: &str) -> Tool {
    let mut tool = Tool::new(binary);
    for variable in PROXY_VARIABLES {
        tool = tool.env_remove(variable);
    }
    tool.env("DIGITALOCEAN_API_URL", api_url)
        .env("DIGITALOCEAN_REGISTRY_URL", registry_url)
        .env("DIGITALOCEAN_ACCESS_TOKEN", sim.token())
        .env("SSL_CERT_FILE", ca_file())
        .args(["--no-input"])
}

/// A dry-run prune (the API, then manifest reads on the registry host) and a GC wait.
fn release_reads(tool: impl Fn(&str) -> Tool) -> (Run, Run) {
    let prune = tool(PRUNE).args(["--keep-last", "1"]).run();
    prune.assert_code(0);
    let record = prune.record("prune");
    assert!(record["registry_requests"].as_u64().unwrap() > 0, "the registry host was read: {record}");
    assert_eq!(record["repositories"][0]["deleted"].as_array().map(Vec::len), Some(2), "{record}");
    let wait = tool(GC_WAIT).run();
    wait.assert_code(0);
    (prune, wait)
}

/// The decoded `user:password` of every Basic authorization among `lines`.
fn basic_credentials(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .filter_map(|l| l.split_once(": Basic ").or_else(|| l.split_once(": basic ")).map(|(_, v)| v.trim()))
        .map(|v| String::from_utf8(base64::engine::general_purpose::STANDARD.decode(v).unwrap()).unwrap())
        .collect()
}

/// Each host saw only its own: API paths with the API token on the API host (and the registry
/// credentials on its token realm alone); registry paths with registry tokens on the registry
/// host, never the API token in any form.
fn assert_each_host_got_only_its_credentials(sim: &Sim, api: &TlsFront, registry: &TlsFront) {
    let token = sim.token();
    let api_lines = api.seen().requests();
    let registry_lines = registry.seen().requests();
    assert!(api_lines.iter().any(|l| l.starts_with("GET /v2/registries")), "{api_lines:#?}");
    assert!(registry_lines.iter().any(|l| l.contains("/manifests/")), "{registry_lines:#?}");
    for pair in api_lines.chunks(2) {
        let [request, authorization] = pair else { panic!("a request without authorization: {pair:?}") };
        let realm = request.starts_with("GET /v2/registry/auth");
        assert!(!request.contains("/manifests/"), "a registry read went to the API host: {request}");
        match realm {
            true => assert!(authorization.to_ascii_lowercase().starts_with("authorization: basic "), "{pair:?}"),
            false => assert_eq!(authorization, &format!("authorization: Bearer {token}"), "{request}"),
        }
    }
    assert!(!registry.seen().contains(&token), "the API token reached the registry host");
    assert!(basic_credentials(&registry_lines).iter().all(|c| !c.contains(&token)));
    assert!(registry_lines.iter().all(|l| !l.starts_with("GET /v2/registries") && !l.starts_with("GET /v2/apps")));
    assert!(
        registry_lines
            .iter()
            .filter(|l| l.to_ascii_lowercase().starts_with("authorization:"))
            .all(|l| !l.contains(&token)),
        "{registry_lines:#?}"
    );
}

#[test]
fn over_tls_with_a_private_ca_each_of_two_hosts_gets_only_its_own_credentials() {
    let (sim, api, registry) = world();
    let api_url = format!("https://localhost:{}", api.addr.port());
    let registry_url = format!("https://{}", registry.addr);
    sim.state().public_url = Some(api_url.clone());
    release_reads(|binary| tool(binary, &sim, &api_url, &registry_url));
    assert_each_host_got_only_its_credentials(&sim, &api, &registry);

    // Without the CA the certificate is refused, and the message says what to do.
    let untrusted = tool(GC_WAIT, &sim, &api_url, &registry_url)
        .env_remove("SSL_CERT_FILE")
        .env("DO_RELEASE_RETRY_MAX_TIME", "200ms")
        .run();
    assert_ne!(untrusted.code, 0);
    assert!(untrusted.stderr.contains("set SSL_CERT_FILE to a PEM bundle"), "{}", untrusted.stderr);
    let bad = tool(GC_WAIT, &sim, &api_url, &registry_url).env("SSL_CERT_FILE", "/dev/null").run();
    bad.assert_code(2);
    assert!(bad.stderr.contains("SSL_CERT_FILE \"/dev/null\": is not a regular file"), "{}", bad.stderr);
}

#[test]
fn through_a_connect_proxy_the_tools_reach_both_hosts_by_name_and_the_proxy_sees_only_ciphertext() {
    let (sim, api, registry) = world();
    let routes = BTreeMap::from([
        ("api.do.test:443".to_string(), api.addr),
        ("registry.do.test:443".to_string(), registry.addr),
    ]);
    let proxy = ConnectProxy::start(routes);
    sim.state().public_url = Some("https://api.do.test".into());
    release_reads(|binary| {
        tool(binary, &sim, "https://api.do.test", "https://registry.do.test").env("HTTPS_PROXY", proxy.url())
    });
    assert_each_host_got_only_its_credentials(&sim, &api, &registry);
    let tunnels: Vec<String> = proxy.seen().requests().into_iter().filter(|l| !l.is_empty()).collect();
    assert!(tunnels.iter().all(|l| l.starts_with("CONNECT ")), "only tunnels through the proxy: {tunnels:#?}");
    let targets: std::collections::BTreeSet<&str> = tunnels.iter().filter_map(|l| l.split(' ').nth(1)).collect();
    assert_eq!(targets, ["api.do.test:443", "registry.do.test:443"].into(), "{tunnels:#?}");
    assert!(!proxy.seen().contains(&sim.token()), "the proxy never sees the token in the clear");
    assert!(!proxy.seen().contains("/v2/registries"), "nor any request in the clear");
}
