//! The JSON Lines contract between tools. Every line is `{"kind": K, "v": N, "data": {...}}`.
//! A tool reads and checks all of its input before acting, copies every input line to stdout
//! byte for byte, then appends its own records.

use std::io::{self, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use serde::de::{Deserialize, Deserializer, Error as _, MapAccess, SeqAccess, Visitor};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::exit::Failure;

/// The longest input line accepted, the most input read, and the most records: a pipeline's
/// report is a handful of records; anything near these limits is a mistake, not a report.
pub const MAX_LINE_BYTES: usize = 1024 * 1024;
pub const MAX_INPUT_BYTES: usize = 16 * 1024 * 1024;
pub const MAX_RECORDS: usize = 10_000;

static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);

/// Whether a write to stdout found it closed (the reader of a pipeline went away).
pub fn stdout_was_closed() -> bool {
    STDOUT_CLOSED.load(Ordering::Relaxed)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FieldType {
    String,
    Bool,
    Integer,
}

/// The kinds this toolkit knows, each with its version and required fields.
/// A line of a known kind with another `v`, or without one of these fields, is refused.
type RequiredFields = &'static [(&'static str, FieldType)];

const KNOWN_KINDS: &[(&str, u64, RequiredFields)] = &[
    ("tag", 1, &[("tag", FieldType::String), ("version", FieldType::String), ("commit", FieldType::String)]),
    ("gc-wait", 1, &[("registry", FieldType::String), ("outcome", FieldType::String)]),
    ("image", 1, &[("registry", FieldType::String), ("repository", FieldType::String), ("digest", FieldType::String)]),
    ("deploy", 1, &[("app_id", FieldType::String), ("phase", FieldType::String), ("changed", FieldType::Bool)]),
    ("prune", 2, &[("registry", FieldType::String), ("dry_run", FieldType::Bool), ("requests", FieldType::Integer)]),
    ("login", 1, &[("host", FieldType::String), ("logged_out", FieldType::Bool)]),
    ("preview-delete", 1, &[("app_name", FieldType::String), ("deleted", FieldType::Bool)]),
    ("preview-sweep", 1, &[("spec", FieldType::String), ("dry_run", FieldType::Bool), ("deleted", FieldType::Integer)]),
];

/// One checked input line: the exact bytes it arrived as, and its parsed record.
#[derive(Clone, Debug)]
pub struct Line {
    /// The line number in the input, from 1.
    pub number: usize,
    pub raw: Vec<u8>,
    pub record: Record,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    pub kind: String,
    pub v: u64,
    pub data: Map<String, Value>,
}

impl Record {
    pub fn str(&self, field: &str) -> Option<&str> {
        self.data.get(field).and_then(Value::as_str)
    }
}

/// Where input comes from.
#[derive(Clone, Debug)]
pub enum Source {
    Stdin,
    File(PathBuf),
    Nothing,
}

impl Source {
    /// `--input FILE` wins, `--no-input` reads nothing, otherwise stdin when it is not a terminal.
    pub fn choose(input: Option<&Path>, no_input: bool) -> Source {
        match (input, no_input) {
            (Some(path), _) => Source::File(path.to_path_buf()),
            (None, true) => Source::Nothing,
            (None, false) if io::stdin().is_terminal() => Source::Nothing,
            (None, false) => Source::Stdin,
        }
    }
}

/// All input lines, read and checked.
#[derive(Clone, Debug, Default)]
pub struct Input {
    pub lines: Vec<Line>,
}

impl Input {
    /// Reads and checks all input. Reading ends at `deadline`: stdin left open, or a FIFO no
    /// one writes to, is exit 3 instead of a wait without end.
    pub fn read(source: &Source, deadline: Option<Instant>) -> anyhow::Result<Input> {
        let (what, path) = match source {
            Source::Nothing => return Ok(Input::default()),
            Source::Stdin => ("stdin".to_string(), None),
            Source::File(path) => (format!("--input {}", path.display()), Some(path.clone())),
        };
        let (sender, receiver) = std::sync::mpsc::channel();
        // Opening a FIFO blocks until a writer comes; reading stdin blocks until it closes.
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let read = match path {
                None => read_capped(io::stdin().lock(), &mut bytes),
                Some(path) => std::fs::File::open(path).and_then(|file| read_capped(file, &mut bytes)),
            };
            let _ = sender.send(read.map(|()| bytes));
        });
        // Input that is already there takes a moment to read even with a --timeout of 0s.
        let least = Instant::now() + std::time::Duration::from_secs(1);
        let received = match deadline {
            None => receiver.recv().map_err(|_| None),
            Some(deadline) => receiver
                .recv_timeout(deadline.max(least).saturating_duration_since(Instant::now()))
                .map_err(|e| Some(e == std::sync::mpsc::RecvTimeoutError::Timeout)),
        };
        let bytes = match received {
            Ok(read) => read.map_err(|e| Failure::usage(format!("cannot read {what}: {e}")))?,
            Err(Some(true)) => {
                return Err(Failure::deadline(format!(
                    "{what} did not end within --timeout; close it, or pass --no-input to start a pipeline"
                )))
            }
            Err(_) => return Err(Failure::usage(format!("cannot read {what}"))),
        };
        Input::parse(&bytes).map_err(|message| Failure::usage(format!("{what}: {message}")))
    }

    /// Parses and checks JSON Lines. Blank lines are skipped; a last line without a newline counts.
    pub fn parse(bytes: &[u8]) -> Result<Input, String> {
        let mut lines = Vec::new();
        let mut chunks: Vec<&[u8]> = bytes.split(|&b| b == b'\n').collect();
        if chunks.last().is_some_and(|last| last.is_empty()) {
            chunks.pop();
        }
        for (index, chunk) in chunks.into_iter().enumerate() {
            let number = index + 1;
            if chunk.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            if lines.len() == MAX_RECORDS {
                return Err(format!(
                    "line {number}: more than {MAX_RECORDS} records; a pipeline's report is a few records"
                ));
            }
            let record = parse_line(chunk).map_err(|problem| format!("line {number}: {problem}"))?;
            lines.push(Line { number, raw: chunk.to_vec(), record });
        }
        Ok(Input { lines })
    }

    /// The last record of a kind: a tool that needs something from upstream takes the latest.
    pub fn last(&self, kind: &str) -> Option<&Record> {
        self.lines.iter().rev().map(|line| &line.record).find(|record| record.kind == kind)
    }

    pub fn all<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a Record> + 'a {
        self.lines.iter().map(|line| &line.record).filter(move |record| record.kind == kind)
    }
}

fn read_capped(reader: impl Read, into: &mut Vec<u8>) -> io::Result<()> {
    let read = reader.take(MAX_INPUT_BYTES as u64 + 1).read_to_end(into);
    match read {
        // A closed stdin (CI with no standard input) is an empty input.
        Err(error) if error.raw_os_error() == Some(9) => Ok(()),
        Err(error) => Err(error),
        Ok(_) if into.len() > MAX_INPUT_BYTES => Err(io::Error::other(format!(
            "input is larger than {} MiB; a pipeline's report is a few records",
            MAX_INPUT_BYTES >> 20
        ))),
        Ok(_) => Ok(()),
    }
}

fn parse_line(chunk: &[u8]) -> Result<Record, String> {
    if chunk.len() > MAX_LINE_BYTES {
        return Err(format!("longer than {} MiB; a record is one short JSON object", MAX_LINE_BYTES >> 20));
    }
    let text = std::str::from_utf8(chunk).map_err(|e| format!("not valid UTF-8 (at byte {})", e.valid_up_to()))?;
    let value: Value = serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))?;
    serde_json::from_str::<NoDuplicateKeys>(text)
        .map_err(|e| e.to_string().split(" at line").next().unwrap_or("").to_string())?;
    let Value::Object(mut object) = value else {
        return Err("expected a JSON object like {\"kind\": ..., \"v\": 1, \"data\": {...}}".into());
    };
    let kind = match object.remove("kind") {
        Some(Value::String(kind)) if !kind.is_empty() => kind,
        Some(_) => return Err("\"kind\" must be a non-empty string".into()),
        None => return Err("missing \"kind\"; expected {\"kind\": ..., \"v\": 1, \"data\": {...}}".into()),
    };
    let v = match object.remove("v") {
        Some(v) => v.as_u64().ok_or_else(|| format!("\"v\" of a {kind:?} record must be a whole number"))?,
        None => return Err(format!("missing \"v\" in a {kind:?} record")),
    };
    let data = match object.remove("data") {
        Some(Value::Object(data)) => data,
        Some(_) => return Err(format!("\"data\" of a {kind:?} record must be an object")),
        None => return Err(format!("missing \"data\" in a {kind:?} record")),
    };
    if let Some((_, known_v, fields)) = KNOWN_KINDS.iter().find(|(known, _, _)| *known == kind) {
        if v != *known_v {
            return Err(format!("{kind:?} record has v {v}, this version of do-release reads v {known_v}; upgrade the tool that reads it"));
        }
        for (field, expected) in fields.iter() {
            let ok = match (data.get(*field), expected) {
                (Some(Value::String(s)), FieldType::String) => !s.is_empty(),
                (Some(Value::Bool(_)), FieldType::Bool) => true,
                (Some(value), FieldType::Integer) => value.is_u64(),
                _ => false,
            };
            if !ok {
                let wanted = match expected {
                    FieldType::String => "a non-empty string",
                    FieldType::Bool => "true or false",
                    FieldType::Integer => "a whole number",
                };
                return Err(format!("{kind:?} record needs data.{field} as {wanted}"));
            }
        }
    }
    Ok(Record { kind, v, data })
}

/// Walks a JSON document and fails on an object with the same key twice (serde_json would keep
/// the last one silently, so a record could say two things at once).
struct NoDuplicateKeys;

impl<'de> Deserialize<'de> for NoDuplicateKeys {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NoDuplicateKeysVisitor)
    }
}

struct NoDuplicateKeysVisitor;

impl<'de> Visitor<'de> for NoDuplicateKeysVisitor {
    type Value = NoDuplicateKeys;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("JSON")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(NoDuplicateKeys)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(NoDuplicateKeys)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(NoDuplicateKeys)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(NoDuplicateKeys)
    }
    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(NoDuplicateKeys)
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(NoDuplicateKeys)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<NoDuplicateKeys>()?.is_some() {}
        Ok(NoDuplicateKeys)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut seen = std::collections::HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if !seen.insert(key.clone()) {
                return Err(A::Error::custom(format!(
                    "the key {key:?} appears twice in one object; a record must say each thing once"
                )));
            }
            map.next_value::<NoDuplicateKeys>()?;
        }
        Ok(NoDuplicateKeys)
    }
}

/// Writes records to stdout: first the input lines unchanged, then the tool's own. A reader
/// that went away (a closed pipe) does not stop the work: later writes are dropped, and
/// [`stdout_was_closed`] says so, so the exit code still tells the outcome.
pub struct Output<W: Write> {
    writer: W,
}

impl Output<io::Stdout> {
    pub fn stdout() -> Output<io::Stdout> {
        Output { writer: io::stdout() }
    }
}

impl<W: Write> Output<W> {
    pub fn new(writer: W) -> Output<W> {
        Output { writer }
    }

    pub fn pass_through(&mut self, input: &Input) -> io::Result<()> {
        for line in &input.lines {
            self.write(&line.raw)?;
            self.write(b"\n")?;
        }
        self.flush()
    }

    /// Writes one record, redacted: server text inside it (an error body, a log line) cannot
    /// carry a credential out.
    /// Written as it is serialised, never held whole (a prune of 100,000 manifests makes a
    /// record of tens of MB).
    pub fn emit(&mut self, kind: &str, v: u64, data: &impl Serialize) -> io::Result<()> {
        if stdout_was_closed() {
            return Ok(());
        }
        let written = crate::redact::write_json(&mut self.writer, &Envelope { kind, v, data }, false);
        closed_is_fine(written.map(drop))?;
        self.write(b"\n")?;
        self.flush()
    }

    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        if stdout_was_closed() {
            return Ok(());
        }
        closed_is_fine(self.writer.write_all(bytes))
    }

    fn flush(&mut self) -> io::Result<()> {
        if stdout_was_closed() {
            return Ok(());
        }
        closed_is_fine(self.writer.flush())
    }

    pub fn into_inner(self) -> W {
        self.writer
    }
}

fn closed_is_fine(result: io::Result<()>) -> io::Result<()> {
    match result {
        Err(error) if error.kind() == io::ErrorKind::BrokenPipe => {
            STDOUT_CLOSED.store(true, Ordering::Relaxed);
            Ok(())
        }
        other => other,
    }
}

#[derive(Serialize)]
struct Envelope<'a, T> {
    kind: &'a str,
    v: u64,
    data: &'a T,
}

/// One record as a JSON line without the newline.
pub fn record_line(kind: &str, v: u64, data: &impl Serialize) -> io::Result<String> {
    serde_json::to_string(&Envelope { kind, v, data }).map_err(io::Error::other)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_pass_through_byte_for_byte_and_records_follow() {
        let input = b"{\"kind\":\"x-custom\",  \"v\":7,\"data\":{\"z\":1, \"a\":[ ]}}\n\n{\"kind\":\"gc-wait\",\"v\":1,\"data\":{\"registry\":\"r\",\"outcome\":\"clear\"}}";
        let parsed = Input::parse(input).unwrap();
        assert_eq!(parsed.lines.len(), 2);
        let mut output = Output::new(Vec::new());
        output.pass_through(&parsed).unwrap();
        output.emit("tag", 1, &serde_json::json!({"tag": "v1"})).unwrap();
        let written = String::from_utf8(output.into_inner()).unwrap();
        let lines: Vec<&str> = written.lines().collect();
        assert_eq!(lines[0], "{\"kind\":\"x-custom\",  \"v\":7,\"data\":{\"z\":1, \"a\":[ ]}}");
        assert_eq!(lines[1], "{\"kind\":\"gc-wait\",\"v\":1,\"data\":{\"registry\":\"r\",\"outcome\":\"clear\"}}");
        assert_eq!(lines[2], r#"{"kind":"tag","v":1,"data":{"tag":"v1"}}"#);
    }

    #[test]
    fn the_last_record_of_a_kind_wins() {
        let input = Input::parse(
            br#"{"kind":"image","v":1,"data":{"registry":"r","repository":"a","digest":"sha256:1"}}
{"kind":"image","v":1,"data":{"registry":"r","repository":"b","digest":"sha256:2"}}
"#,
        )
        .unwrap();
        assert_eq!(input.last("image").unwrap().str("repository"), Some("b"));
        assert_eq!(input.all("image").count(), 2);
        assert!(input.last("tag").is_none());
    }

    #[test]
    fn bad_lines_name_the_line_and_the_problem() {
        let cases: &[(&[u8], &str)] = &[
            (b"{}\nnot json", "line 1: missing \"kind\""),
            (b"\n{\"kind\":\"a\",\"v\":1,\"data\":{}}\n[1]", "line 3: expected a JSON object"),
            (b"{\"kind\":\"a\",\"v\":1,\"data\":{}}\n{\"kind\":\"a\",\"v\":1,\"data\":{", "line 2: not valid JSON"),
            (b"\xff\xfe", "line 1: not valid UTF-8"),
            (br#"{"kind":"tag","v":2,"data":{}}"#, "line 1: \"tag\" record has v 2"),
            (br#"{"kind":"tag","v":1,"data":{"tag":"v1","version":"1.0.0"}}"#, "needs data.commit"),
            (
                br#"{"kind":"prune","v":2,"data":{"registry":"r","dry_run":"yes","requests":1}}"#,
                "data.dry_run as true or false",
            ),
            (br#"{"kind":"x","v":-1,"data":{}}"#, "must be a whole number"),
            (br#"{"kind":"x","v":1,"data":[]}"#, "must be an object"),
            (br#"{"kind":7,"v":1,"data":{}}"#, "\"kind\" must be a non-empty string"),
        ];
        for (input, expected) in cases {
            let error = Input::parse(input).unwrap_err();
            assert!(error.contains(expected), "{:?}: {error}", String::from_utf8_lossy(input));
        }
        let twice = br#"{"kind":"tag","v":1,"data":{"tag":"v1","version":"1.0.0","commit":"c","tag":"v2"}}"#;
        let error = Input::parse(&[b"\n".as_slice(), twice].concat()).unwrap_err();
        assert!(error.starts_with("line 2: the key \"tag\" appears twice"), "{error}");
        let nested = br#"{"kind":"x","v":1,"data":{"a":{"b":1,"b":2}}}"#;
        assert!(Input::parse(nested).unwrap_err().contains("\"b\" appears twice"));
        let many: String = (0..=MAX_RECORDS).map(|_| "{\"kind\":\"x\",\"v\":1,\"data\":{}}\n").collect();
        assert!(Input::parse(many.as_bytes()).unwrap_err().contains("more than 10000 records"));
        let deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
        assert!(Input::parse(deep.as_bytes()).unwrap_err().contains("not valid JSON"));
        let huge = format!("{{\"kind\":\"x\",\"v\":1,\"data\":{{\"s\":\"{}\"}}}}", "a".repeat(MAX_LINE_BYTES));
        assert!(Input::parse(huge.as_bytes()).unwrap_err().contains("longer than"));
    }
}
