//! Short texts held without an allocation of their own. Every listed manifest has an
//! `updated_at` of about 20 bytes, and so has every deletion planned for it: as `String`s,
//! 180,000 allocations of 32 bytes at 100,000 manifests. A [`ShortText`] is as large as a
//! `String` (24 bytes) and holds up to 22 bytes in place; a longer text is boxed.

use std::fmt;

/// The longest text held in place.
const INLINE: usize = 22;

/// A text of any length, up to 22 bytes of it held in place. It reads, compares, orders,
/// hashes and serialises exactly as its text does.
#[derive(Clone)]
pub struct ShortText(Repr);

#[derive(Clone)]
enum Repr {
    Inline { len: u8, bytes: [u8; INLINE] },
    Boxed(Box<str>),
}

impl ShortText {
    pub fn new(text: &str) -> ShortText {
        match u8::try_from(text.len()) {
            Ok(len) if text.len() <= INLINE => {
                let mut bytes = [0; INLINE];
                bytes[..text.len()].copy_from_slice(text.as_bytes());
                ShortText(Repr::Inline { len, bytes })
            }
            _ => ShortText(Repr::Boxed(text.into())),
        }
    }

    pub fn as_str(&self) -> &str {
        match &self.0 {
            // Made from a whole `&str` only, so the bytes are always UTF-8.
            Repr::Inline { len, bytes } => std::str::from_utf8(&bytes[..usize::from(*len)]).unwrap_or_default(),
            Repr::Boxed(text) => text,
        }
    }
}

impl std::ops::Deref for ShortText {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl From<&str> for ShortText {
    fn from(text: &str) -> ShortText {
        ShortText::new(text)
    }
}

impl From<String> for ShortText {
    fn from(text: String) -> ShortText {
        ShortText::new(&text)
    }
}

impl PartialEq for ShortText {
    fn eq(&self, other: &ShortText) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for ShortText {}

impl PartialEq<str> for ShortText {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for ShortText {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialOrd for ShortText {
    fn partial_cmp(&self, other: &ShortText) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ShortText {
    fn cmp(&self, other: &ShortText) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl std::hash::Hash for ShortText {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl fmt::Debug for ShortText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for ShortText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for ShortText {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for ShortText {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<ShortText, D::Error> {
        String::deserialize(deserializer).map(ShortText::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_text_reads_back_as_written_whatever_its_length_and_is_no_larger_than_a_string() {
        assert_eq!(std::mem::size_of::<ShortText>(), std::mem::size_of::<String>());
        assert_eq!(std::mem::size_of::<Option<ShortText>>(), std::mem::size_of::<Option<String>>());
        for text in [
            "",
            "a",
            "2026-12-05T06:43:50Z",
            "22 bytes, exactly: ok.",
            "23 bytes, exactly: yes.",
            "ü 2026-12-05T06:43:50.123456789Z",
        ] {
            let short = ShortText::from(text);
            assert_eq!((short.as_str(), &*short, short.len()), (text, text, text.len()));
            assert_eq!(ShortText::from(text.to_string()), short);
            assert_eq!(format!("{short} {short:?}"), format!("{text} {text:?}"));
            assert_eq!(serde_json::to_string(&short).unwrap(), serde_json::to_string(text).unwrap());
            assert_eq!(serde_json::from_str::<ShortText>(&serde_json::to_string(text).unwrap()).unwrap(), short);
        }
        assert!(matches!(ShortText::from("22 bytes, exactly: ok.").0, Repr::Inline { len: 22, .. }));
        assert!(matches!(ShortText::from("23 bytes, exactly: yes.").0, Repr::Boxed(_)));
        let error = serde_json::from_str::<ShortText>("12").unwrap_err().to_string();
        assert!(error.contains("expected a string"), "{error}");
    }

    #[test]
    fn texts_compare_order_and_hash_as_their_text_does_held_in_place_or_boxed() {
        use std::collections::hash_map::DefaultHasher;
        use std::hash::{Hash, Hasher};
        let hash = |value: &dyn Fn(&mut DefaultHasher)| {
            let mut hasher = DefaultHasher::new();
            value(&mut hasher);
            hasher.finish()
        };
        let texts = ["", "a", "b", "ab", "2026-12-05T06:43:50Z", "2026-12-05T06:43:50.5Z", "2026-12-05T06:43:51Z"];
        for a in texts {
            for b in texts {
                let (x, y) = (ShortText::from(a), ShortText::from(b));
                assert_eq!((x == y, x.cmp(&y), x.partial_cmp(&y)), (a == b, a.cmp(b), Some(a.cmp(b))), "{a:?} {b:?}");
                assert_eq!((x == *b, x == b), (a == b, a == b));
            }
            assert_eq!(hash(&|h| ShortText::from(a).hash(h)), hash(&|h| a.hash(h)));
        }
    }
}
