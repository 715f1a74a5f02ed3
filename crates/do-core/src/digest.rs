//! A manifest's or blob's digest. Registries write `sha256:` and 64 lowercase hex digits: such
//! a digest is held as its 32 bytes, a fixed-size value compared and copied without a pointer
//! to follow or an allocation. Any other text (another algorithm, a name in a test, a digest
//! the API wrote oddly) is held as written. Either way it reads, orders, compares and
//! serialises exactly as its text does, so a plan or record is the same as with strings.

use std::cmp::Ordering;
use std::fmt;

const PREFIX: &str = "sha256:";
const TEXT_LEN: usize = PREFIX.len() + 64;
const HEX: &[u8; 16] = b"0123456789abcdef";

#[derive(Clone, PartialEq, Eq)]
pub struct Digest(Repr);

/// Only canonical text (the prefix, 64 lowercase hex digits) becomes `Sha256`, so two digests
/// are equal exactly when their texts are.
#[derive(Clone, PartialEq, Eq, Hash)]
enum Repr {
    Sha256([u8; 32]),
    Text(Box<str>),
}

impl Digest {
    /// `text` as a digest, held as bytes when it is a canonical SHA-256 digest.
    pub fn new(text: &str) -> Digest {
        match sha256_bytes(text) {
            Some(bytes) => Digest(Repr::Sha256(bytes)),
            None => Digest(Repr::Text(text.into())),
        }
    }

    /// `text` trimmed, algorithm and hex in lowercase: a digest as the registry host writes it,
    /// whatever case the API used.
    pub fn normalized(text: &str) -> Digest {
        let trimmed = text.trim();
        match sha256_bytes(trimmed) {
            Some(bytes) => Digest(Repr::Sha256(bytes)),
            None => Digest::new(&trimmed.to_ascii_lowercase()),
        }
    }

    /// The SHA-256 digest of `bytes`.
    pub fn sha256_of(bytes: &[u8]) -> Digest {
        let hash = ring::digest::digest(&ring::digest::SHA256, bytes);
        let mut out = [0u8; 32];
        out.copy_from_slice(hash.as_ref());
        Digest(Repr::Sha256(out))
    }

    /// The 32 bytes of a SHA-256 digest.
    pub fn sha256(&self) -> Option<&[u8; 32]> {
        match &self.0 {
            Repr::Sha256(bytes) => Some(bytes),
            Repr::Text(_) => None,
        }
    }

    /// The digest's text, without allocating for a SHA-256 digest.
    pub fn text(&self) -> Text<'_> {
        match &self.0 {
            Repr::Sha256(bytes) => {
                let mut out = [0u8; TEXT_LEN];
                out[..PREFIX.len()].copy_from_slice(PREFIX.as_bytes());
                for (i, byte) in bytes.iter().enumerate() {
                    out[PREFIX.len() + 2 * i] = HEX[usize::from(byte >> 4)];
                    out[PREFIX.len() + 2 * i + 1] = HEX[usize::from(byte & 15)];
                }
                Text(TextRepr::Sha256(out))
            }
            Repr::Text(text) => Text(TextRepr::Borrowed(text)),
        }
    }

    pub fn is_empty(&self) -> bool {
        matches!(&self.0, Repr::Text(text) if text.is_empty())
    }
}

/// The bytes of `text` when it is `sha256:` and 64 lowercase hex digits.
fn sha256_bytes(text: &str) -> Option<[u8; 32]> {
    let hex = text.strip_prefix(PREFIX)?.as_bytes();
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (byte, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
        let (high, low) = (DIGIT[usize::from(pair[0])], DIGIT[usize::from(pair[1])]);
        if high > 15 || low > 15 {
            return None;
        }
        *byte = high * 16 + low;
    }
    Some(out)
}

/// What each byte is worth as a lowercase hex digit; more than 15 for any other byte.
const DIGIT: [u8; 256] = {
    let mut table = [u8::MAX; 256];
    let mut i = 0;
    while i < 16 {
        table[HEX[i] as usize] = i as u8;
        i += 1;
    }
    table
};

/// A digest's text: on the stack for a SHA-256 digest, borrowed otherwise.
pub struct Text<'a>(TextRepr<'a>);

enum TextRepr<'a> {
    Sha256([u8; TEXT_LEN]),
    Borrowed(&'a str),
}

impl std::ops::Deref for Text<'_> {
    type Target = str;

    fn deref(&self) -> &str {
        match &self.0 {
            TextRepr::Sha256(bytes) => std::str::from_utf8(bytes).expect("a prefix and hex digits are ASCII"),
            TextRepr::Borrowed(text) => text,
        }
    }
}

impl Ord for Digest {
    #[inline]
    fn cmp(&self, other: &Digest) -> Ordering {
        match (&self.0, &other.0) {
            // Hex digits order as the bytes they spell, after the same prefix. Compared as two
            // big-endian halves: the same order as the bytes, without a call to memcmp.
            (Repr::Sha256(a), Repr::Sha256(b)) => halves(a).cmp(&halves(b)),
            (Repr::Text(a), Repr::Text(b)) => a.cmp(b),
            (Repr::Sha256(_), Repr::Text(b)) => (*self.text()).cmp(&**b),
            (Repr::Text(a), Repr::Sha256(_)) => (**a).cmp(&*other.text()),
        }
    }
}

#[inline]
fn halves(bytes: &[u8; 32]) -> (u128, u128) {
    let (high, low) = bytes.split_at(16);
    let half = |part: &[u8]| u128::from_be_bytes(part.try_into().expect("16 bytes"));
    (half(high), half(low))
}

impl PartialOrd for Digest {
    #[inline]
    fn partial_cmp(&self, other: &Digest) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq<str> for Digest {
    fn eq(&self, other: &str) -> bool {
        match &self.0 {
            Repr::Sha256(bytes) => sha256_bytes(other).as_ref() == Some(bytes),
            Repr::Text(text) => **text == *other,
        }
    }
}

impl PartialEq<&str> for Digest {
    fn eq(&self, other: &&str) -> bool {
        *self == **other
    }
}

impl PartialEq<String> for Digest {
    fn eq(&self, other: &String) -> bool {
        *self == **other
    }
}

impl PartialEq<Digest> for str {
    fn eq(&self, other: &Digest) -> bool {
        *other == *self
    }
}

impl PartialEq<Digest> for &str {
    fn eq(&self, other: &Digest) -> bool {
        *other == **self
    }
}

impl PartialEq<Digest> for String {
    fn eq(&self, other: &Digest) -> bool {
        *other == **self
    }
}

/// A SHA-256 digest is hashed by its first 8 bytes: already uniform, and equal digests agree.
impl std::hash::Hash for Digest {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        match &self.0 {
            Repr::Sha256(bytes) => state.write_u64(u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"))),
            Repr::Text(text) => text.hash(state),
        }
    }
}

impl Default for Digest {
    fn default() -> Digest {
        Digest(Repr::Text("".into()))
    }
}

impl From<&str> for Digest {
    fn from(text: &str) -> Digest {
        Digest::new(text)
    }
}

impl From<String> for Digest {
    fn from(text: String) -> Digest {
        match sha256_bytes(&text) {
            Some(bytes) => Digest(Repr::Sha256(bytes)),
            None => Digest(Repr::Text(text.into_boxed_str())),
        }
    }
}

impl From<[u8; 32]> for Digest {
    fn from(bytes: [u8; 32]) -> Digest {
        Digest(Repr::Sha256(bytes))
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.text())
    }
}

/// As a string's: `"sha256:…"`, quotes and all.
impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.text(), f)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text())
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Digest, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Digest;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a digest")
            }

            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Digest, E> {
                Ok(Digest::new(text))
            }

            fn visit_string<E: serde::de::Error>(self, text: String) -> Result<Digest, E> {
                Ok(Digest::from(text))
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    const B: &str = "sha256:f3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b800";

    #[test]
    fn a_canonical_sha256_digest_is_held_as_its_bytes_and_reads_back_as_written() {
        let digest = Digest::new(A);
        assert_eq!(digest.sha256().map(|b| b[0]), Some(0xe3));
        assert_eq!(&*digest.text(), A);
        assert_eq!(digest.to_string(), A);
        assert_eq!(format!("{digest:?}"), format!("{A:?}"));
        assert_eq!(format!("[{digest:>72}]"), format!("[ {A}]"), "Display pads as a string does");
        assert_eq!(Digest::sha256_of(b""), digest);
        assert_eq!(Digest::from(A.to_string()), digest);
        assert_eq!(Digest::from(*digest.sha256().unwrap()), digest);
        assert!(!digest.is_empty() && Digest::default().is_empty() && !Digest::new("k").is_empty());
    }

    #[test]
    fn other_text_is_held_as_written_and_never_equals_a_canonical_digest() {
        let upper = A.to_ascii_uppercase();
        let odd = [A.replace('e', "g"), A.replace('e', "/"), A.replace('e', ":"), A.replace("e3", "é")];
        for text in ["k", "sha256:AB", &upper, &A[..70], &format!("{A}0"), "sha512:00", ""]
            .into_iter()
            .chain(odd.iter().map(String::as_str))
        {
            let digest = Digest::new(text);
            assert_eq!(digest.sha256(), None, "{text}");
            assert_eq!(&*digest.text(), text);
            assert_eq!(digest, *text);
            assert_ne!(digest, Digest::new(A));
        }
        assert_eq!(Digest::normalized(&format!("  {upper} ")), Digest::new(A));
        let digits = format!("sha256:{}", "0123456789abcdef".repeat(4));
        assert_eq!(Digest::new(&digits).sha256().map(|b| (b[0], b[7], b[31])), Some((0x01, 0xef, 0xef)));
        assert_eq!(Digest::normalized(" SHA256:AbC "), Digest::new("sha256:abc"));
    }

    #[test]
    fn digests_order_and_compare_as_their_texts() {
        let low = format!("{}1", &A[..70]);
        let high = format!("sha256:{}", "0".repeat(64));
        let texts = [A, B, &low, &high, "k", "sha256:", "sha256:f", "sha256:e3", "sha512:00", "a", "z", ""];
        for x in texts {
            for y in texts {
                let (dx, dy) = (Digest::new(x), Digest::new(y));
                assert_eq!(dx.cmp(&dy), x.cmp(y), "{x} against {y}");
                assert_eq!(dx.partial_cmp(&dy), Some(x.cmp(y)));
                assert_eq!(dx == dy, x == y);
                let state = std::hash::RandomState::new();
                let same = |a: &Digest, b: &Digest| {
                    std::hash::BuildHasher::hash_one(&state, a) == std::hash::BuildHasher::hash_one(&state, b)
                };
                if x == y {
                    assert!(same(&dx, &dy), "equal digests hash alike");
                }
                assert_eq!(dx == *y, x == y);
                assert_eq!(dx == y, x == y);
                let owned = y.to_string();
                assert_eq!(dx == owned, x == y);
                assert_eq!(*y == dx, x == y);
                assert_eq!(y == dx, x == y);
                assert_eq!(owned == dx, x == y);
            }
        }
    }

    #[test]
    fn different_digests_hash_apart() {
        let state = std::hash::RandomState::new();
        let hash = |text: &str| std::hash::BuildHasher::hash_one(&state, Digest::new(text));
        assert_ne!(hash(A), hash(B));
        assert_ne!(hash("k"), hash("j"));
        assert_eq!(hash(A), hash(A));
    }

    #[test]
    fn a_digest_serialises_as_its_text() {
        for text in [A, "k"] {
            let digest: Digest = serde_json::from_str(&format!("{text:?}")).unwrap();
            assert_eq!(digest, Digest::new(text));
            assert_eq!(serde_json::to_string(&digest).unwrap(), format!("{text:?}"));
            let owned: Digest = serde_json::from_value(serde_json::Value::String(text.into())).unwrap();
            assert_eq!(owned, digest);
        }
        let error = serde_json::from_str::<Digest>("7").unwrap_err().to_string();
        assert!(error.contains("expected a digest"), "{error}");
        assert_eq!(std::mem::size_of::<Digest>(), 40);
        assert_eq!(std::mem::size_of::<Option<Digest>>(), 40);
    }
}
