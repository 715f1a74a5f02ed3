//! What every part of the simulator uses: its error (a status and a DigitalOcean error body)
//! and the clock in RFC 3339.

#[derive(Debug, Clone)]
pub struct SimError {
    pub status: u16,
    pub id: &'static str,
    pub message: String,
}

impl SimError {
    pub fn new(status: u16, id: &'static str, message: impl Into<String>) -> SimError {
        SimError { status, id, message: message.into() }
    }
    pub fn not_found() -> SimError {
        SimError::new(404, "not_found", "The resource you requested could not be found.")
    }
    pub fn bad_request(message: impl Into<String>) -> SimError {
        SimError::new(400, "bad_request", message)
    }
}

pub fn now_rfc3339() -> String {
    let now = jiff::Timestamp::now();
    jiff::Timestamp::from_second(now.as_second()).unwrap_or(now).to_string()
}

pub fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(high), Some(low)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push(high * 16 + low);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub(crate) fn check_name(name: &str) -> anyhow::Result<()> {
    let valid = (1..=63).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    anyhow::ensure!(valid, "invalid registry name {name:?}: use 1-63 lowercase letters, digits and '-'");
    // The registry host shares the simulator's address with the API: these would collide.
    anyhow::ensure!(
        !matches!(name, "registries" | "registry" | "apps" | "account"),
        "the simulator cannot hold a registry named {name:?}: the name is an API path"
    );
    Ok(())
}
