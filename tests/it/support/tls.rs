//! The path real users take: TLS in front of the simulator (with a certificate from the test CA
//! in `tests/fixtures/tls`), each host on its own address, and a CONNECT proxy. Both see the
//! traffic they carry, so a test can say which host got which credentials.

use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// The test CA's certificate: what `SSL_CERT_FILE` names in the TLS tests.
pub fn ca_file() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tls/ca.pem")
}

fn server_config() -> Arc<rustls::ServerConfig> {
    let certificates: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(include_bytes!("../../fixtures/tls/server.pem"))
            .collect::<Result<_, _>>()
            .unwrap();
    let key = PrivateKeyDer::from_pem_slice(include_bytes!("../../fixtures/tls/server.key")).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certificates, key)
        .unwrap();
    Arc::new(config)
}

/// What a front or proxy carried from clients: every byte, in the clear for a front (to read
/// the requests and search for what must never be there).
#[derive(Default)]
pub struct Seen {
    pub bytes: Vec<u8>,
}

impl Seen {
    fn feed(&mut self, chunk: &[u8]) {
        self.bytes.extend_from_slice(chunk);
    }

    /// Request lines ("GET /v2/...") and authorization headers, in order (read from the whole
    /// stream, so a line cut across two reads is still whole).
    pub fn requests(&self) -> Vec<String> {
        String::from_utf8_lossy(&self.bytes)
            .split("\r\n")
            .filter(|line| {
                ["GET ", "POST ", "PUT ", "DELETE ", "HEAD ", "PATCH ", "CONNECT "].iter().any(|m| line.starts_with(m))
                    || line.to_ascii_lowercase().starts_with("authorization:")
            })
            .map(str::to_string)
            .collect()
    }

    pub fn contains(&self, needle: &str) -> bool {
        self.bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
    }
}

type Shared = Arc<Mutex<Seen>>;

/// A TLS server on `bind` that hands each connection, decrypted, to `upstream`.
pub struct TlsFront {
    pub addr: SocketAddr,
    seen: Shared,
    stop: Arc<AtomicBool>,
}

impl TlsFront {
    pub fn start(bind: &str, upstream: SocketAddr) -> TlsFront {
        let listener = TcpListener::bind(bind).unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let seen: Shared = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let config = server_config();
        let (seen_, stop_) = (seen.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop_.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((client, _)) => {
                        let (config, seen) = (config.clone(), seen_.clone());
                        std::thread::spawn(move || relay_tls(client, upstream, config, seen));
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(2)),
                    Err(_) => break,
                }
            }
        });
        TlsFront { addr, seen, stop }
    }

    /// What clients sent through this front, decrypted.
    pub fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.seen.lock().unwrap()
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn would_block(error: &std::io::Error) -> bool {
    matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

/// Decrypts what `client` sends into `upstream` and encrypts what comes back, until either side
/// closes. One thread, non-blocking sockets.
fn relay_tls(mut client: TcpStream, upstream: SocketAddr, config: Arc<rustls::ServerConfig>, seen: Shared) {
    let Ok(mut tls) = rustls::ServerConnection::new(config) else { return };
    let Ok(mut server) = TcpStream::connect(upstream) else { return };
    if client.set_nonblocking(true).is_err() || server.set_nonblocking(true).is_err() {
        return;
    }
    let mut buffer = vec![0u8; 64 * 1024];
    let mut to_server: Vec<u8> = Vec::new();
    loop {
        let mut busy = false;
        match tls.read_tls(&mut client) {
            Ok(0) => return,
            Ok(_) => {
                busy = true;
                if tls.process_new_packets().is_err() {
                    let _ = tls.write_tls(&mut client);
                    return;
                }
            }
            Err(e) if would_block(&e) => {}
            Err(_) => return,
        }
        loop {
            match tls.reader().read(&mut buffer) {
                Ok(0) => return,
                Ok(n) => {
                    seen.lock().unwrap().feed(&buffer[..n]);
                    to_server.extend_from_slice(&buffer[..n]);
                    busy = true;
                }
                Err(e) if would_block(&e) => break,
                Err(_) => return,
            }
        }
        if !to_server.is_empty() {
            match server.write(&to_server) {
                Ok(n) => {
                    to_server.drain(..n);
                    busy = true;
                }
                Err(e) if would_block(&e) => {}
                Err(_) => return,
            }
        }
        match server.read(&mut buffer) {
            Ok(0) => {
                tls.send_close_notify();
                flush_tls(&mut tls, &mut client);
                return;
            }
            Ok(n) => {
                if tls.writer().write_all(&buffer[..n]).is_err() {
                    return;
                }
                busy = true;
            }
            Err(e) if would_block(&e) => {}
            Err(_) => return,
        }
        if !flush_tls(&mut tls, &mut client) {
            return;
        }
        if !busy {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// Writes out what TLS has to send; false when the client is gone.
fn flush_tls(tls: &mut rustls::ServerConnection, client: &mut TcpStream) -> bool {
    while tls.wants_write() {
        match tls.write_tls(client) {
            Ok(_) => {}
            Err(e) if would_block(&e) => std::thread::sleep(Duration::from_millis(1)),
            Err(_) => return false,
        }
    }
    true
}

/// An HTTP proxy that only tunnels (`CONNECT host:port`), to the addresses `routes` gives for
/// each `host:port`, as a corporate proxy would; anything else is answered 403.
pub struct ConnectProxy {
    pub addr: SocketAddr,
    seen: Shared,
    stop: Arc<AtomicBool>,
}

impl ConnectProxy {
    pub fn start(routes: BTreeMap<String, SocketAddr>) -> ConnectProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let seen: Shared = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let routes = Arc::new(routes);
        let (seen_, stop_) = (seen.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop_.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((client, _)) => {
                        let (routes, seen) = (routes.clone(), seen_.clone());
                        std::thread::spawn(move || tunnel(client, &routes, seen));
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(2)),
                    Err(_) => break,
                }
            }
        });
        ConnectProxy { addr, seen, stop }
    }

    /// Every byte clients sent through the proxy (the CONNECT lines, then what they tunnelled).
    pub fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.seen.lock().unwrap()
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for ConnectProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn tunnel(mut client: TcpStream, routes: &BTreeMap<String, SocketAddr>, seen: Shared) {
    let _ = client.set_read_timeout(Some(Duration::from_secs(10)));
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match client.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
    }
    {
        // On a line of its own: other tunnels' ciphertext, fed meanwhile, does not end in one.
        let mut seen = seen.lock().unwrap();
        seen.feed(b"\r\n");
        seen.feed(&head);
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let target = text.strip_prefix("CONNECT ").and_then(|rest| rest.split(' ').next()).unwrap_or("");
    let Some(upstream) = routes.get(target).and_then(|addr| TcpStream::connect(addr).ok()) else {
        let _ = client.write_all(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n");
        return;
    };
    if client.write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n").is_err() {
        return;
    }
    let _ = client.set_read_timeout(None);
    let (Ok(mut client_reader), Ok(mut upstream_writer)) = (client.try_clone(), upstream.try_clone()) else { return };
    let outbound = std::thread::spawn(move || {
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            match client_reader.read(&mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    seen.lock().unwrap().feed(&buffer[..n]);
                    if upstream_writer.write_all(&buffer[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = upstream_writer.shutdown(std::net::Shutdown::Write);
    });
    let mut upstream = upstream;
    let _ = std::io::copy(&mut upstream, &mut client);
    let _ = client.shutdown(std::net::Shutdown::Write);
    let _ = outbound.join();
}
