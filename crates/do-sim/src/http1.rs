//! The simulator's HTTP/1.1 server: a thread per connection, connections kept alive as the
//! real API and registry keep them, request heads parsed by `httparse`.
//!
//! Not tiny_http: its connection pool hands a new connection to a thread only when it sees one
//! idle, and two connections accepted together can both be queued behind one thread that then
//! serves a keep-alive connection for as long as the client keeps it, so the other waits as
//! long. A thread of our own per connection has no such queue, and requests on one connection
//! are answered in order on it, as HTTP/1.1 says.

use std::cell::Cell;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crate::wire::Shared;

/// The largest request head and body the simulator reads.
const MAX_HEAD_BYTES: usize = 64 * 1024;
const MAX_BODY_BYTES: u64 = 64 * 1024 * 1024;
const MAX_HEADERS: usize = 64;
const IDLE_CONNECTION: std::time::Duration = std::time::Duration::from_secs(300);

/// A request as read off a connection, with the connection to answer on.
pub(crate) struct Request {
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    stream: TcpStream,
    /// Whether the connection stays open after the answer: the client did not ask to close,
    /// and the answer was not a broken one.
    keep: Rc<Cell<bool>>,
}

impl Request {
    pub(crate) fn method(&self) -> &str {
        &self.method
    }

    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// The first header of that name (case-insensitive).
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        header_in(&self.headers, name)
    }

    pub(crate) fn take_body(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.body)
    }

    /// Whether the answer should say `Connection: close`.
    pub(crate) fn closes(&self) -> bool {
        !self.keep.get()
    }

    /// The connection to write the answer on; `close` ends it after this answer.
    pub(crate) fn into_writer(self, close: bool) -> TcpStream {
        if close {
            self.keep.set(false);
        }
        self.stream
    }
}

/// The connections being served, so that stopping the simulator can end them.
#[derive(Default)]
pub(crate) struct Connections {
    open: Mutex<Vec<(TcpStream, JoinHandle<()>)>>,
}

impl Connections {
    /// Ends every connection and waits for its thread.
    pub(crate) fn close_all(&self) {
        let open = std::mem::take(&mut *self.open.lock().unwrap_or_else(|e| e.into_inner()));
        for (stream, thread) in open {
            let _ = stream.shutdown(Shutdown::Both);
            let _ = thread.join();
        }
    }
}

/// Accepts connections until the simulator stops, each served on a thread of its own.
pub(crate) fn accept(shared: Arc<Shared>, listener: TcpListener, connections: Arc<Connections>) {
    for stream in listener.incoming() {
        if shared.stop.load(Ordering::Relaxed) {
            break;
        }
        let Ok(stream) = stream else { continue };
        shared.connections.fetch_add(1, Ordering::Relaxed);
        let _ = stream.set_nodelay(true);
        // A connection idle this long is closed, so that clients that never close do not keep
        // a thread each for ever (clients keep idle connections 15 s; ureq's default).
        let _ = stream.set_read_timeout(Some(IDLE_CONNECTION));
        let Ok(handle) = stream.try_clone() else { continue };
        let shared = Arc::clone(&shared);
        let thread = std::thread::spawn(move || serve_connection(&shared, stream));
        let mut open = connections.open.lock().unwrap_or_else(|e| e.into_inner());
        open.retain(|(_, thread)| !thread.is_finished());
        open.push((handle, thread));
    }
}

/// Wakes the accepting thread (blocked in accept) so that it sees the simulator stopping.
pub(crate) fn wake(address: std::net::SocketAddr) {
    let _ = TcpStream::connect_timeout(&address, std::time::Duration::from_secs(1));
}

fn serve_connection(shared: &Shared, stream: TcpStream) {
    let Ok(read_half) = stream.try_clone() else { return };
    let mut reader = BufReader::new(read_half);
    let keep = Rc::new(Cell::new(true));
    while keep.get() && !shared.stop.load(Ordering::Relaxed) {
        match read_request(&mut reader, &stream, &keep) {
            Ok(Some(request)) => crate::server::handle(shared, request),
            Ok(None) => break,
            Err(error) => {
                if error.kind() == std::io::ErrorKind::InvalidData {
                    let _ = (&stream)
                        .write_all(b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
                }
                break;
            }
        }
    }
    let _ = stream.shutdown(Shutdown::Both);
}

/// The next request on the connection; `None` when the client closed it.
fn read_request(
    reader: &mut BufReader<TcpStream>,
    stream: &TcpStream,
    keep: &Rc<Cell<bool>>,
) -> std::io::Result<Option<Request>> {
    let Some(head) = read_head(reader)? else { return Ok(None) };
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    let status = parsed.parse(&head).map_err(|e| invalid(&format!("a request head that does not parse: {e}")))?;
    if status.is_partial() {
        return Err(invalid("a partial request head"));
    }
    let method = parsed.method.unwrap_or("GET").to_ascii_uppercase();
    let url = parsed.path.unwrap_or("/").to_string();
    let http10 = parsed.version == Some(0);
    let headers: Vec<(String, String)> =
        parsed.headers.iter().map(|h| (h.name.to_string(), String::from_utf8_lossy(h.value).into_owned())).collect();
    let find = |name: &str| header_in(&headers, name).map(str::to_ascii_lowercase);
    let connection = find("connection").unwrap_or_default();
    keep.set(if http10 { connection.contains("keep-alive") } else { !connection.contains("close") });
    if find("expect").is_some_and(|e| e.contains("100-continue")) {
        (&*stream).write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
    }
    let body = if find("transfer-encoding").is_some_and(|t| t.contains("chunked")) {
        read_chunked(reader)?
    } else {
        let length = find("content-length")
            .map(|l| l.trim().parse::<u64>())
            .transpose()
            .map_err(|_| invalid("content-length"))?;
        let length = length.unwrap_or(0);
        if length > MAX_BODY_BYTES {
            return Err(invalid("a body over 64 MiB"));
        }
        let mut body = Vec::with_capacity(length as usize);
        reader.by_ref().take(length).read_to_end(&mut body)?;
        body
    };
    let stream = stream.try_clone()?;
    Ok(Some(Request { method, url, headers, body, stream, keep: Rc::clone(keep) }))
}

/// The first of `headers` named `name` (case-insensitive).
fn header_in<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

/// The bytes up to and including the blank line that ends a head; `None` at a clean end.
fn read_head(reader: &mut BufReader<TcpStream>) -> std::io::Result<Option<Vec<u8>>> {
    let mut head = Vec::new();
    loop {
        let mut line = Vec::new();
        let n = reader.by_ref().take(MAX_HEAD_BYTES as u64).read_until(b'\n', &mut line)?;
        if n == 0 {
            return if head.is_empty() { Ok(None) } else { Err(invalid("the connection ended inside a head")) };
        }
        // Blank lines before a request line are allowed (RFC 9112 2.2).
        if head.is_empty() && (line == b"\r\n" || line == b"\n") {
            continue;
        }
        head.extend_from_slice(&line);
        if head.len() > MAX_HEAD_BYTES {
            return Err(invalid("a request head over 64 KiB"));
        }
        if line == b"\r\n" || line == b"\n" {
            return Ok(Some(head));
        }
    }
}

fn read_chunked(reader: &mut BufReader<TcpStream>) -> std::io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let mut size_line = String::new();
        reader.by_ref().take(1024).read_line(&mut size_line)?;
        let size_text = size_line.trim().split(';').next().unwrap_or("");
        let size = u64::from_str_radix(size_text, 16).map_err(|_| invalid("a chunk size"))?;
        if size == 0 {
            // Trailers, up to the blank line.
            loop {
                let mut trailer = String::new();
                if reader.by_ref().take(8192).read_line(&mut trailer)? == 0 || trailer.trim().is_empty() {
                    return Ok(body);
                }
            }
        }
        if body.len() as u64 + size > MAX_BODY_BYTES {
            return Err(invalid("a body over 64 MiB"));
        }
        reader.by_ref().take(size).read_to_end(&mut body)?;
        let mut end = [0u8; 2];
        reader.read_exact(&mut end)?;
    }
}

fn invalid(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string())
}
