//! Verifying an audit trail: every line sealed, every link intact.

use std::fmt;
use std::io::BufRead;

use super::chain::{GENESIS, link, unseal};

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
    /// Records verified.
    pub records: u64,
}

impl Verifier {
    /// A verifier for a trail that must start at its beginning (seq 1, genesis).
    pub fn from_genesis() -> Self {
        Verifier { next_seq: Some(1), prev: GENESIS.to_owned(), records: 0 }
    }

    /// A verifier that accepts whatever record comes first as the anchor
    /// (for checking rotated segments on their own).
    pub fn partial() -> Self {
        Verifier { next_seq: None, prev: String::new(), records: 0 }
    }

    /// The hash of the last verified record.
    pub fn head(&self) -> &str {
        &self.prev
    }

    /// Verifies the lines of one file, continuing the chain.
    pub fn verify_file(&mut self, name: &str, reader: impl BufRead) -> Result<(), BreakAt> {
        let at = |line: usize, why: Break| BreakAt { file: name.to_owned(), line, why };
        let mut lines = reader.split(b'\n').enumerate().peekable();
        while let Some((index, line)) = lines.next() {
            let number = index + 1;
            let line = line.map_err(|_| at(number, Break::Malformed))?;
            let text = std::str::from_utf8(&line).map_err(|_| at(number, Break::Malformed))?;
            let (body, stated) = unseal(text).ok_or_else(|| {
                let cut = lines.peek().is_none();
                at(number, if cut { Break::Truncated } else { Break::Unsealed })
            })?;
            let record: serde_json::Value =
                serde_json::from_str(&body).map_err(|_| at(number, Break::Malformed))?;
            let (Some(seq), Some(prev)) = (record["seq"].as_u64(), record["prev"].as_str()) else {
                return Err(at(number, Break::Malformed));
            };
            let anchoring = self.next_seq.is_none();
            if !anchoring && prev != self.prev {
                return Err(at(number, Break::BrokenLink));
            }
            if link(prev, body.as_bytes()) != stated {
                return Err(at(number, Break::HashMismatch));
            }
            if let Some(expected) = self.next_seq.filter(|e| *e != seq) {
                return Err(at(number, Break::Sequence { expected, found: seq }));
            }
            self.next_seq = Some(seq + 1);
            self.prev = stated.to_owned();
            self.records += 1;
        }
        Ok(())
    }
}
