//! Verifying an audit trail: every line sealed, every link intact, and
//! with keys, every record authenticated.

use std::fmt;
use std::io::BufRead;

use super::chain::{Algorithm, GENESIS, Sealer, algorithm, unseal};
use super::key::AuditKey;

/// Why verification stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Break {
    /// The line does not end with a hash field (edited by hand, or cut).
    Unsealed,
    /// The last line has no newline: the file was cut in the middle of it.
    Truncated,
    /// The line is not a JSON object with `seq` and `prev`.
    Malformed,
    /// The stated hash does not match the line's bytes: the line was edited.
    HashMismatch,
    /// `prev` does not name the previous record's hash: a record before it
    /// was removed, replaced or moved.
    BrokenLink,
    /// `seq` does not follow the previous record's.
    Sequence {
        /// The seq that should come next.
        expected: u64,
        /// The seq the line has.
        found: u64,
    },
    /// A plain (`sha256`) record where keys were given: anyone who can
    /// write the trail could have written it.
    Unkeyed,
    /// A keyed record, and no key was given to check it.
    KeyNeeded,
    /// The record's MAC matches none of the keys given.
    UnknownKey,
    /// The trail moves to a key that was not given.
    MissingKey(String),
}

impl fmt::Display for Break {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Break::Unsealed => f.write_str("record has no valid hash field (edited or cut)"),
            Break::Truncated => f.write_str("last record is cut off (no final newline)"),
            Break::Malformed => f.write_str("record is not a JSON object with `seq` and `prev`"),
            Break::HashMismatch => f.write_str("record's hash does not match its contents (edited)"),
            Break::BrokenLink => {
                f.write_str("record does not link to the one before it (removed, inserted or reordered)")
            }
            Break::Sequence { expected, found } => write!(f, "expected seq {expected}, found {found}"),
            Break::Unkeyed => f.write_str(
                "record is not keyed (sha256): anyone who can write the trail could have written it",
            ),
            Break::KeyNeeded => f.write_str("record is keyed (hmac-sha256); verify with --key FILE"),
            Break::UnknownKey => {
                f.write_str("record's MAC matches none of the keys given (forged, edited, or another key's)")
            }
            Break::MissingKey(id) => write!(f, "the trail moves to key {id} here; give its file with --key"),
        }
    }
}

/// Where the chain broke.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BreakAt {
    /// The file, as named by the caller.
    pub file: String,
    /// The 1-based line (0 for a break at the end of the trail).
    pub line: usize,
    /// What is wrong.
    pub why: Break,
}

/// A chain verified so far: the next expected seq and the last hash.
#[derive(Clone, Debug)]
pub struct Verifier {
    next_seq: Option<u64>,
    prev: String,
    /// The keys records may be sealed with; none for a plain trail.
    keys: Vec<Sealer>,
    /// The key of the records now (found by the first keyed record, then
    /// moved by `key_rotated` records).
    current: Option<usize>,
    /// Records verified.
    pub records: u64,
}

impl Verifier {
    /// A verifier for a trail that must start at its beginning (seq 1,
    /// genesis). With keys, every record must be sealed with one of them.
    pub fn from_genesis(keys: Vec<AuditKey>) -> Self {
        Verifier { next_seq: Some(1), prev: GENESIS.to_owned(), ..Verifier::partial(keys) }
    }

    /// A verifier that accepts whatever record comes first as the anchor
    /// (for checking rotated segments on their own, or a trail's tail).
    pub fn partial(keys: Vec<AuditKey>) -> Self {
        let keys = keys.into_iter().map(Sealer::Keyed).collect();
        Verifier { next_seq: None, prev: String::new(), keys, current: None, records: 0 }
    }

    /// Whether `stated` authenticates `prev` and `body` under the keys.
    fn authenticate(&mut self, prev: &str, body: &str, stated: &str) -> Result<(), Break> {
        match (algorithm(stated), self.keys.is_empty()) {
            (Algorithm::Plain, true) if Sealer::Plain.verifies(prev, body.as_bytes(), stated) => Ok(()),
            (Algorithm::Plain, true) => Err(Break::HashMismatch),
            (Algorithm::Plain, false) => Err(Break::Unkeyed),
            (Algorithm::Keyed, true) => Err(Break::KeyNeeded),
            (Algorithm::Keyed, false) => match self.current {
                Some(current) if self.keys[current].verifies(prev, body.as_bytes(), stated) => Ok(()),
                Some(_) => Err(Break::HashMismatch),
                None => {
                    let found = self.keys.iter().position(|k| k.verifies(prev, body.as_bytes(), stated));
                    self.current = Some(found.ok_or(Break::UnknownKey)?);
                    Ok(())
                }
            },
        }
    }

    /// Follows a `key_rotated` record to the key it names.
    fn rotate(&mut self, record: &serde_json::Value) -> Result<(), Break> {
        if record["kind"] != "key_rotated" {
            return Ok(());
        }
        let id = record["new_key"].as_str().ok_or(Break::Malformed)?;
        let next = self.keys.iter().position(|k| matches!(k, Sealer::Keyed(key) if key.id() == id));
        self.current = Some(next.ok_or_else(|| Break::MissingKey(id.to_owned()))?);
        Ok(())
    }

    /// The hash of the last verified record.
    pub fn head(&self) -> &str {
        &self.prev
    }

    /// Verifies the lines of one file, continuing the chain.
    pub fn verify_file(&mut self, name: &str, mut reader: impl BufRead) -> Result<(), BreakAt> {
        let at = |line: usize, why: Break| BreakAt { file: name.to_owned(), line, why };
        let mut line = Vec::new();
        for number in 1.. {
            line.clear();
            let read = reader.read_until(b'\n', &mut line).map_err(|_| at(number, Break::Malformed))?;
            if read == 0 {
                break;
            }
            // Only a last line without its newline was cut; an ended line
            // without a seal was written or edited that way.
            let ended = line.last() == Some(&b'\n');
            let text = std::str::from_utf8(line.strip_suffix(b"\n").unwrap_or(&line))
                .map_err(|_| at(number, Break::Malformed))?;
            let (body, stated) = unseal(text)
                .ok_or_else(|| at(number, if ended { Break::Unsealed } else { Break::Truncated }))?;
            let record: serde_json::Value =
                serde_json::from_str(&body).map_err(|_| at(number, Break::Malformed))?;
            let (Some(seq), Some(prev)) = (record["seq"].as_u64(), record["prev"].as_str()) else {
                return Err(at(number, Break::Malformed));
            };
            let anchoring = self.next_seq.is_none();
            if !anchoring && prev != self.prev {
                return Err(at(number, Break::BrokenLink));
            }
            self.authenticate(prev, &body, stated).map_err(|why| at(number, why))?;
            if let Some(expected) = self.next_seq.filter(|e| *e != seq) {
                return Err(at(number, Break::Sequence { expected, found: seq }));
            }
            self.rotate(&record).map_err(|why| at(number, why))?;
            self.next_seq = Some(seq + 1);
            self.prev = stated.to_owned();
            self.records += 1;
        }
        Ok(())
    }
}

/// A whole trail checked from its first record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    /// Records verified.
    pub records: u64,
    /// Files read (rotated ones, then the trail itself).
    pub files: usize,
    /// The hash of the last record verified.
    pub head: String,
}

/// Why a trail could not be verified.
#[derive(Debug)]
pub enum TrailError {
    /// A file of it cannot be read.
    Unreadable(std::path::PathBuf, std::io::Error),
    /// The chain is broken.
    Broken(BreakAt),
}

impl std::fmt::Display for TrailError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TrailError::Unreadable(path, error) => write!(f, "cannot read `{}`: {error}", path.display()),
            TrailError::Broken(at) => write!(f, "{}:{}: {}", at.file, at.line, at.why),
        }
    }
}

/// Verifies the trail at `path` from its first record: its rotated files,
/// oldest first, then the file itself. A `live` trail (one a server is
/// writing) is read up to its last complete line, as it stood when the
/// check began: the batch being written is not part of it yet.
pub fn verify_trail(path: &std::path::Path, keys: Vec<AuditKey>, live: bool) -> Result<Verified, TrailError> {
    use std::io::{BufReader, Read};
    let unreadable = |path: &std::path::Path, error| TrailError::Unreadable(path.to_path_buf(), error);
    let files = match super::writer::trail_files(path).map_err(|e| unreadable(path, e))? {
        found if found.is_empty() => vec![path.to_path_buf()],
        found => found,
    };
    let mut verifier = Verifier::from_genesis(keys);
    for file_path in &files {
        let mut file = std::fs::File::open(file_path).map_err(|e| unreadable(file_path, e))?;
        let length = match live {
            true => complete_lines(&mut file).map_err(|e| unreadable(file_path, e))?,
            false => u64::MAX,
        };
        let reader = BufReader::new(Read::take(file, length));
        verifier.verify_file(&file_path.display().to_string(), reader).map_err(TrailError::Broken)?;
    }
    Ok(Verified { records: verifier.records, files: files.len(), head: verifier.head().to_owned() })
}

/// The length of `file` up to and including its last newline (0 if none);
/// leaves the file at its start.
fn complete_lines(file: &mut std::fs::File) -> std::io::Result<u64> {
    use std::io::{Read, Seek, SeekFrom};
    let mut end = file.metadata()?.len();
    let mut chunk = vec![0u8; 64 * 1024];
    while end > 0 {
        let start = end.saturating_sub(chunk.len() as u64);
        let size = usize::try_from(end - start).unwrap_or(chunk.len());
        let Some(window) = chunk.get_mut(..size) else { break };
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(window)?;
        if let Some(at) = window.iter().rposition(|b| *b == b'\n') {
            file.seek(SeekFrom::Start(0))?;
            return Ok(start + at as u64 + 1);
        }
        end = start;
    }
    file.seek(SeekFrom::Start(0))?;
    Ok(0)
}

#[cfg(test)]
mod trail_tests {
    use super::*;

    #[test]
    fn a_live_trail_is_verified_up_to_its_last_complete_line() {
        let dir = std::env::temp_dir().join(format!("toolgate-verify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("audit.log");
        let _ = std::fs::remove_file(&path);
        {
            let mut writer =
                super::super::AuditWriter::open(&path, None, super::super::Sealer::Plain).expect("opens");
            for i in 0..3 {
                let mut record = serde_json::Map::new();
                record.insert(String::from("kind"), serde_json::json!(format!("r{i}")));
                writer.append(record).expect("appends");
            }
            writer.flush().expect("flushes");
        }
        let whole = verify_trail(&path, Vec::new(), false).expect("verifies");
        assert_eq!((whole.records, whole.files), (3, 1));
        // A batch half written: a live check stops before it, an offline one reports it.
        let mut text = std::fs::read(&path).expect("reads");
        text.extend_from_slice(br#"{"seq":4,"prev":"#);
        std::fs::write(&path, &text).expect("writes");
        assert_eq!(verify_trail(&path, Vec::new(), true).expect("verifies").head, whole.head);
        assert!(matches!(verify_trail(&path, Vec::new(), false), Err(TrailError::Broken(_))));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
