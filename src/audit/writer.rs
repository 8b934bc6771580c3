//! Appending to the audit trail, with rotation that keeps one chain across
//! files.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::chain::{Algorithm, GENESIS, Sealer, algorithm, unseal};
use super::key::AuditKey;
use super::verify::Verifier;

/// How much of an existing trail is read at a time, backwards, to find its
/// last complete record.
const CHUNK_BYTES: u64 = 64 * 1024;

/// How much of the end of a trail is verified when it is opened.
const TAIL_BYTES: u64 = 1024 * 1024;

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
    sealer: Sealer,
    /// `<trail>.lock`, locked exclusively while this writer lives: one
    /// writer per trail.
    _lock: File,
}

/// Opens a trail file for appending, readable by its owner only (records
/// hold arguments).
/// Opens the trail's current file: private (0600), owned by this user,
/// never through a symbolic link.
fn open_trail(path: &Path) -> std::io::Result<File> {
    crate::state::private::open(path, OpenOptions::new().read(true).append(true).create(true))
}

/// How long a held lock is waited for: a child this process (or a sibling
/// thread) is starting holds a copy of the lock's descriptor until it
/// executes its program, which can outlast a writer closed just before.
/// A second writer holds the lock for as long as it runs.
const LOCK_PATIENCE: std::time::Duration = std::time::Duration::from_millis(200);

/// Takes the trail's lock file, or fails if another writer holds it.
fn lock_trail(path: &Path) -> std::io::Result<File> {
    let mut name = path.as_os_str().to_owned();
    name.push(".lock");
    let lock = crate::state::private::open(Path::new(&name), OpenOptions::new().write(true).create(true))?;
    let started = std::time::Instant::now();
    let mut locked = lock.try_lock();
    while matches!(locked, Err(std::fs::TryLockError::WouldBlock)) && started.elapsed() < LOCK_PATIENCE {
        std::thread::sleep(std::time::Duration::from_millis(5));
        locked = lock.try_lock();
    }
    match locked {
        Ok(()) => Ok(lock),
        Err(std::fs::TryLockError::WouldBlock) => Err(std::io::Error::new(
            std::io::ErrorKind::WouldBlock,
            format!(
                "another process writes the audit trail `{}` (it holds `{}`); two writers would break its chain",
                path.display(),
                Path::new(&name).display()
            ),
        )),
        Err(std::fs::TryLockError::Error(error)) => Err(error),
    }
}

fn invalid(message: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, message)
}

impl AuditWriter {
    /// Opens (or creates) the trail at `path` and continues its chain,
    /// sealing new records with `sealer`.
    ///
    /// The trail is locked for this writer alone. Its end is verified
    /// first: the last records must chain and, for a keyed trail, be
    /// authenticated by the key, so a server never extends a trail whose
    /// end was forged or edited, nor mixes plain and keyed records. A last
    /// line cut off by a crash is removed: it was never acknowledged,
    /// because records are written before answers.
    pub fn open(path: &Path, rotate_bytes: Option<u64>, sealer: Sealer) -> std::io::Result<AuditWriter> {
        let lock = lock_trail(path)?;
        let mut file = open_trail(path)?;
        let (seq, prev, keep) = last_record(&mut file, path, &sealer)?;
        let bytes = file.metadata()?.len();
        if keep < bytes {
            file.set_len(keep)?;
        }
        Ok(AuditWriter {
            sealer,
            _lock: lock,
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
    pub fn append(&mut self, record: Map<String, Value>) -> std::io::Result<()> {
        let body = serde_json::to_vec(&record).map_err(std::io::Error::other)?;
        self.append_encoded(&body)
    }

    /// Appends a record given as the JSON text of an object (serialised by
    /// the caller, so that the one writer only frames, seals and writes):
    /// the line is `{"seq":…,"prev":…,` then the object's fields, then
    /// the hash.
    pub fn append_encoded(&mut self, record: &[u8]) -> std::io::Result<()> {
        let fields = record
            .strip_prefix(b"{")
            .and_then(|r| r.strip_suffix(b"}"))
            .ok_or_else(|| invalid(String::from("an audit record must be a JSON object")))?;
        let seq = self.seq + 1;
        let mut body = String::with_capacity(record.len() + self.prev.len() + 32);
        body.push_str("{\"seq\":");
        body.push_str(&seq.to_string());
        body.push_str(",\"prev\":\"");
        body.push_str(&self.prev);
        body.push('"');
        if !fields.is_empty() {
            body.push(',');
            body.push_str(std::str::from_utf8(fields).map_err(std::io::Error::other)?);
        }
        body.push('}');
        let (line, hash) = self.sealer.seal(&self.prev, &body);
        self.pending.extend_from_slice(line.as_bytes());
        self.seq = seq;
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

    /// Moves the trail to a new key: a `key_rotated` record naming the new
    /// key, sealed with the old one, ends the current file; the next file
    /// starts with a `key_started` record sealed with the new key. So the
    /// old key vouches for the change and the files written from now on
    /// verify with the new key alone.
    pub fn rotate_key(&mut self, key: AuditKey, time: &str) -> std::io::Result<()> {
        let Sealer::Keyed(old) = &self.sealer else {
            return Err(invalid(String::from("the trail is not keyed: there is no key to rotate")));
        };
        let old = old.id().to_owned();
        let rotated =
            serde_json::json!({"time": time, "kind": "key_rotated", "key": old, "new_key": key.id()});
        self.append(object(rotated))?;
        self.rotate()?;
        let started =
            serde_json::json!({"time": time, "kind": "key_started", "key": key.id(), "previous_key": old});
        self.sealer = Sealer::Keyed(key);
        self.append(object(started))?;
        self.sync()
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

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// The last complete record of an open trail (or of the newest rotated file
/// when the active one is empty): its seq, its hash, and the length of the
/// file up to the end of that record, after verifying the file's last
/// [`TAIL_BYTES`] with `sealer`. Only an unterminated last line is ever
/// cut; records of any length are found by reading backwards in chunks.
fn last_record(file: &mut File, path: &Path, sealer: &Sealer) -> std::io::Result<(u64, String, u64)> {
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
        let (seq, hash) = parse_head(&line, sealer)?;
        verify_tail(file, keep, path, sealer)?;
        return Ok((seq, hash, keep));
    }
    // No complete record in the active file: continue from the newest rotated file, if any.
    let files = trail_files(path)?;
    match files.iter().rev().find(|p| p.as_path() != path) {
        Some(previous) => {
            let mut previous_file = File::open(previous)?;
            let (seq, hash, _) = last_record(&mut previous_file, previous, sealer)?;
            Ok((seq, hash, keep))
        }
        None => Ok((0, GENESIS.to_owned(), keep)),
    }
}

/// Verifies the complete records in the last [`TAIL_BYTES`] before `end`.
fn verify_tail(file: &mut File, end: u64, path: &Path, sealer: &Sealer) -> std::io::Result<()> {
    let start = end.saturating_sub(TAIL_BYTES);
    let mut tail = vec![0; usize::try_from(end - start).map_err(std::io::Error::other)?];
    file.seek(SeekFrom::Start(start))?;
    file.read_exact(&mut tail)?;
    // A window that starts mid-line starts at the next line.
    let from =
        if start == 0 { 0 } else { tail.iter().position(|&b| b == b'\n').map_or(tail.len(), |i| i + 1) };
    let keys = match sealer {
        Sealer::Plain => Vec::new(),
        Sealer::Keyed(key) => vec![key.clone()],
    };
    Verifier::partial(keys).verify_file(&path.display().to_string(), &tail[from..]).map_err(|broken| {
        invalid(format!(
            "the end of the audit trail `{}` does not verify (record {} of its last {} KiB: {}); a server does not extend a broken or forged trail: run `toolgate audit verify`, keep the trail as evidence and start a new one",
            path.display(),
            broken.line,
            TAIL_BYTES / 1024,
            broken.why
        ))
    })
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

/// The seq and hash of a trail's last record, which must be sealed the way
/// `sealer` seals.
fn parse_head(line: &[u8], sealer: &Sealer) -> std::io::Result<(u64, String)> {
    let unsealed = || {
        invalid(String::from(
            "the audit trail's last record is not a sealed record; run `toolgate audit verify`",
        ))
    };
    let text = std::str::from_utf8(line).map_err(|_| unsealed())?;
    let (body, hash) = unseal(text).ok_or_else(unsealed)?;
    match (algorithm(hash), sealer.algorithm()) {
        (Algorithm::Plain, Algorithm::Keyed) => {
            return Err(invalid(String::from(
                "the audit trail's last record is not keyed (sha256): either the trail was never keyed (a keyed server starts a new trail: keep this one as evidence and give another --audit path) or someone without the key appended it (run `toolgate audit verify --key FILE`)",
            )));
        }
        (Algorithm::Keyed, Algorithm::Plain) => {
            return Err(invalid(String::from(
                "the audit trail is keyed (hmac-sha256): start the server with --audit-key",
            )));
        }
        _ => {}
    }
    let record: Value = serde_json::from_str(&body).map_err(|_| unsealed())?;
    let (Some(seq), Some(prev)) = (record["seq"].as_u64(), record["prev"].as_str()) else {
        return Err(unsealed());
    };
    // The last record itself, whatever its length (the tail window may
    // start inside it).
    if !sealer.verifies(prev, body.as_bytes(), hash) {
        return Err(invalid(String::from(
            "the audit trail's last record does not verify (forged, edited, or sealed with another key); a server does not extend a broken or forged trail: run `toolgate audit verify`, keep the trail as evidence and start a new one",
        )));
    }
    Ok((seq, hash.to_owned()))
}
