//! Appending to the audit trail, with rotation that keeps one chain across
//! files.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::chain::{GENESIS, seal, unseal};

/// How much of an existing trail is read at a time, backwards, to find its
/// last complete record.
const CHUNK_BYTES: u64 = 64 * 1024;

/// An open audit trail.
#[derive(Debug)]
pub struct AuditWriter {
    path: PathBuf,
    file: File,
    /// Sealed lines not yet handed to the operating system.
    pending: Vec<u8>,
    /// Bytes of the current file, counting `pending`.
    bytes: u64,
    seq: u64,
    prev: String,
    /// The file length, seq and hash at the end of the last successful
    /// write: what a failed write rolls back to.
    written: (u64, u64, String),
    rotate_bytes: Option<u64>,
}

/// Opens a trail file for appending, readable by its owner only (records
/// hold arguments).
/// Opens the trail's current file: private (0600), owned by this user,
/// never through a symbolic link.
fn open_trail(path: &Path) -> std::io::Result<File> {
    crate::state::private::open(path, OpenOptions::new().read(true).append(true).create(true))
}

impl AuditWriter {
    /// Opens (or creates) the trail at `path` and continues its chain. A
    /// last line cut off by a crash is removed first: it was never
    /// acknowledged, because records are written before answers.
    pub fn open(path: &Path, rotate_bytes: Option<u64>) -> std::io::Result<AuditWriter> {
        let mut file = open_trail(path)?;
        let (seq, prev, keep) = last_record(&mut file, path)?;
        let bytes = file.metadata()?.len();
        if keep < bytes {
            file.set_len(keep)?;
        }
        Ok(AuditWriter {
            path: path.to_path_buf(),
            file,
            pending: Vec::new(),
            bytes: keep,
            written: (keep, seq, prev.clone()),
            seq,
            prev,
            rotate_bytes,
        })
    }

    /// The seq and hash of the last record written.
    pub fn head(&self) -> (u64, &str) {
        (self.seq, &self.prev)
    }

    /// Appends a record: `seq` and `prev` are filled in and the line is
    /// sealed. It reaches the operating system at the next
    /// [`AuditWriter::flush`] (or [`AuditWriter::sync`]), so that a batch of
    /// records costs one write.
    pub fn append(&mut self, mut record: Map<String, Value>) -> std::io::Result<()> {
        record.insert("seq".into(), Value::from(self.seq + 1));
        record.insert("prev".into(), Value::from(self.prev.clone()));
        let body = serde_json::to_string(&record).map_err(std::io::Error::other)?;
        let (line, hash) = seal(&self.prev, &body);
        self.pending.extend_from_slice(line.as_bytes());
        self.seq += 1;
        self.prev = hash;
        self.bytes += line.len() as u64;
        if self.rotate_bytes.is_some_and(|limit| self.bytes >= limit) {
            self.rotate()?;
        }
        Ok(())
    }

    /// Hands every appended record to the operating system (one write).
    ///
    /// If the write fails, the file is cut back to where the last
    /// successful write ended and the unwritten records are forgotten, seq
    /// and hash included: the trail never holds a record whose answer was
    /// not sent, and the chain goes on from the last record really written.
    pub fn flush(&mut self) -> std::io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        match self.file.write_all(&self.pending) {
            Ok(()) => {
                self.pending.clear();
                self.written = (self.bytes, self.seq, self.prev.clone());
                Ok(())
            }
            Err(error) => {
                self.roll_back();
                Err(error)
            }
        }
    }

    fn roll_back(&mut self) {
        let (length, seq, prev) = self.written.clone();
        // Best effort: if even this fails, reopening the trail drops a cut
        // last line, and `audit verify` reports anything else.
        let _ = self.file.set_len(length);
        self.pending.clear();
        self.bytes = length;
        self.seq = seq;
        self.prev = prev;
    }

    /// Forgets records appended since the last flush (a batch that will not
    /// be answered).
    pub fn discard(&mut self) {
        if !self.pending.is_empty() {
            self.roll_back();
        }
    }

    /// Makes everything appended so far durable (write and fsync).
    ///
    /// If the sync fails, what this call wrote is cut off again, as for a
    /// failed write: those records' answers will not be sent.
    pub fn sync(&mut self) -> std::io::Result<()> {
        let before = self.written.clone();
        self.flush()?;
        self.file.sync_data().inspect_err(|_| {
            self.written = before;
            self.roll_back();
        })
    }

    /// Renames the full file to `<path>.<last seq>` and starts a new one; the
    /// new file's first record links to the old file's last.
    fn rotate(&mut self) -> std::io::Result<()> {
        self.sync()?;
        let rotated = rotated_name(&self.path, self.seq);
        std::fs::rename(&self.path, &rotated)?;
        self.file = open_trail(&self.path)?;
        self.bytes = 0;
        self.written = (0, self.seq, self.prev.clone());
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            File::open(dir)?.sync_all()?;
        }
        Ok(())
    }
}

/// The name of a rotated file ending at `seq`.
pub fn rotated_name(path: &Path, seq: u64) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{seq:012}"));
    PathBuf::from(name)
}

/// The files of a trail, oldest first: `<path>.<seq>` in seq order, then `<path>`.
pub fn trail_files(path: &Path) -> std::io::Result<Vec<PathBuf>> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let stem = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let mut rotated: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            let seq = name.strip_prefix(&stem)?.strip_prefix('.')?.parse().ok()?;
            Some((seq, entry.path()))
        })
        .collect();
    rotated.sort();
    let mut files: Vec<PathBuf> = rotated.into_iter().map(|(_, p)| p).collect();
    if path.exists() {
        files.push(path.to_path_buf());
    }
    Ok(files)
}

/// The last complete record of an open trail (or of the newest rotated file
/// when the active one is empty): its seq, its hash, and the length of the
/// file up to the end of that record. Only an unterminated last line is ever
/// cut; records of any length are found by reading backwards in chunks.
fn last_record(file: &mut File, path: &Path) -> std::io::Result<(u64, String, u64)> {
    let len = file.metadata()?.len();
    let keep = match find_newline_before(file, len)? {
        Some(position) => position + 1,
        None => 0,
    };
    if keep > 0 {
        let start = find_newline_before(file, keep - 1)?.map_or(0, |p| p + 1);
        let mut line = vec![0; usize::try_from(keep - 1 - start).map_err(std::io::Error::other)?];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut line)?;
        return parse_head(&line).map(|(seq, hash)| (seq, hash, keep));
    }
    // No complete record in the active file: continue from the newest rotated file, if any.
    let files = trail_files(path)?;
    match files.iter().rev().find(|p| p.as_path() != path) {
        Some(previous) => {
            let mut previous = File::open(previous)?;
            let (seq, hash, _) = last_record(&mut previous, Path::new(""))?;
            Ok((seq, hash, keep))
        }
        None => Ok((0, GENESIS.to_owned(), keep)),
    }
}

/// The position of the last newline before byte `end`, reading backwards.
fn find_newline_before(file: &mut File, end: u64) -> std::io::Result<Option<u64>> {
    let mut chunk_end = end;
    let mut buffer = Vec::new();
    while chunk_end > 0 {
        let chunk_start = chunk_end.saturating_sub(CHUNK_BYTES);
        buffer.resize(usize::try_from(chunk_end - chunk_start).map_err(std::io::Error::other)?, 0);
        file.seek(SeekFrom::Start(chunk_start))?;
        file.read_exact(&mut buffer)?;
        if let Some(i) = buffer.iter().rposition(|&b| b == b'\n') {
            return Ok(Some(chunk_start + i as u64));
        }
        chunk_end = chunk_start;
    }
    Ok(None)
}

fn parse_head(line: &[u8]) -> std::io::Result<(u64, String)> {
    let invalid = || {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "the audit trail's last record is not a sealed record; run `toolgate audit verify`",
        )
    };
    let text = std::str::from_utf8(line).map_err(|_| invalid())?;
    let (body, hash) = unseal(text).ok_or_else(invalid)?;
    let record: Value = serde_json::from_str(&body).map_err(|_| invalid())?;
    let seq = record["seq"].as_u64().ok_or_else(invalid)?;
    Ok((seq, hash.to_owned()))
}
