//! The approvals' file: an append-only log of JSON lines, one line per
//! change (the approval as it stands after it), with group commit.
//!
//! A change costs one appended line, not a rewrite of every approval: the
//! writer appends under the ledger's lock, then waits, outside it, for an
//! `fdatasync` that covers its line; one sync covers every line appended
//! before it began, so concurrent changes share it. When the log holds far
//! more lines than live approvals it is compacted: the live approvals are
//! written to a fresh file that replaces it atomically.
//!
//! A write or sync that fails poisons the log: changes are refused until a
//! compaction (tried on the next change) rewrites the file from memory, so
//! a line the kernel may have dropped after a failed sync is never trusted.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use super::approval::Approval;

/// The log is compacted when it is larger than this many bytes and more
/// than four times the size of its live lines.
const COMPACT_ABOVE_BYTES: u64 = 4 << 20;

/// An open approvals log.
#[derive(Debug)]
pub struct ApprovalLog {
    path: PathBuf,
    /// The file being appended to; replaced by a compaction.
    file: Arc<File>,
    bytes: u64,
    /// The length of the last line appended: about what a live approval takes.
    line_bytes: u64,
    /// Set by a failed write: the next change compacts first.
    poisoned: bool,
    shared: Arc<Shared>,
}

/// What appenders and syncers share. Appenders never wait for a sync in
/// progress: they touch only the atomics.
#[derive(Debug)]
struct Shared {
    /// Lines appended (a sequence number for group commit).
    appended: AtomicU64,
    /// A sync failed: the next change compacts first.
    failed: AtomicBool,
    synced: Mutex<Synced>,
}

/// How far the log is known to be durable.
#[derive(Debug)]
struct Synced {
    /// The file being appended to.
    file: Arc<File>,
    /// Every line up to this one is durable.
    through: u64,
}

/// A ticket for [`Appended::wait_durable`], taken under the ledger's lock.
#[derive(Clone, Debug)]
pub struct Appended {
    seq: u64,
    shared: Arc<Shared>,
}

impl ApprovalLog {
    /// Opens the log at `path` (created, private, if missing) and reads the
    /// approvals in it, the last line of each id winning. A last line cut
    /// short by a crash is dropped; any other unreadable line is an error.
    pub fn open(path: &Path) -> std::io::Result<(ApprovalLog, Vec<Approval>)> {
        super::private::existing_file(path)?;
        let mut approvals: Vec<Approval> = Vec::new();
        let mut index = std::collections::HashMap::new();
        let mut bytes = 0;
        let existing = match super::private::open(path, File::options().read(true)) {
            Ok(file) => Some(file),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
            // Anything else must not be taken for an empty ledger (and rewritten as one).
            Err(error) => return Err(error),
        };
        if let Some(file) = existing {
            let mut lines = BufReader::new(file).split(b'\n').peekable();
            let mut number = 0;
            while let Some(line) = lines.next() {
                let line = line?;
                number += 1;
                bytes += line.len() as u64 + 1;
                match serde_json::from_slice::<Approval>(&line) {
                    Ok(approval) => match index.get(&approval.id) {
                        Some(&at) => approvals[at] = approval,
                        None => {
                            index.insert(approval.id.clone(), approvals.len());
                            approvals.push(approval);
                        }
                    },
                    Err(_) if lines.peek().is_none() => {}
                    Err(error) => {
                        let message = format!("`{}` line {number}: {error}", path.display());
                        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, message));
                    }
                }
            }
        }
        let file = Arc::new(super::private::open(path, File::options().append(true).create(true))?);
        let shared = Arc::new(Shared {
            appended: AtomicU64::new(0),
            failed: AtomicBool::new(false),
            synced: Mutex::new(Synced { file: Arc::clone(&file), through: 0 }),
        });
        let mut log =
            ApprovalLog { path: path.to_owned(), file, bytes, line_bytes: 512, poisoned: false, shared };
        // Start from a file of exactly the approvals read (a torn line gone).
        log.compact(&approvals.iter().collect::<Vec<_>>())?;
        Ok((log, approvals))
    }

    /// Whether the next change must rewrite the file from memory
    /// ([`ApprovalLog::rewrite`]) instead of appending: a write or a sync
    /// failed, or the file is mostly approvals long changed or forgotten.
    pub fn needs_rewrite(&self, live: usize) -> bool {
        let live_bytes = (live as u64).saturating_mul(self.line_bytes.max(1));
        self.poisoned
            || self.shared.failed.load(Ordering::Acquire)
            || (self.bytes > COMPACT_ABOVE_BYTES && self.bytes / 4 > live_bytes)
    }

    /// Appends `approval` as it now stands. Call under the ledger's lock;
    /// then, outside it, [`Appended::wait_durable`] before answering.
    pub fn append(&mut self, approval: &Approval) -> std::io::Result<Appended> {
        let mut line = serde_json::to_vec(approval).map_err(std::io::Error::other)?;
        line.push(b'\n');
        if let Err(error) = (&*self.file).write_all(&line) {
            self.poisoned = true;
            return Err(error);
        }
        self.shared.appended.fetch_add(1, Ordering::AcqRel);
        self.bytes += line.len() as u64;
        self.line_bytes = line.len() as u64;
        Ok(self.ticket())
    }

    /// Rewrites the file with exactly `live` (the approvals after the
    /// change), durably: a compaction, and the cure for a failed write.
    pub fn rewrite(&mut self, live: &[&Approval]) -> std::io::Result<Appended> {
        self.compact(live)?;
        Ok(self.ticket())
    }

    fn ticket(&self) -> Appended {
        Appended { seq: self.shared.appended.load(Ordering::Acquire), shared: Arc::clone(&self.shared) }
    }

    /// Writes the live approvals to a fresh file that replaces the log,
    /// durably; the log is then healthy again.
    fn compact(&mut self, live: &[&Approval]) -> std::io::Result<()> {
        let mut bytes = Vec::with_capacity(live.len() * self.line_bytes as usize);
        for approval in live {
            serde_json::to_writer(&mut bytes, approval).map_err(std::io::Error::other)?;
            bytes.push(b'\n');
        }
        super::atomic_file::replace(&self.path, &bytes)?;
        let file = Arc::new(super::private::open(&self.path, File::options().append(true))?);
        self.file = Arc::clone(&file);
        self.bytes = bytes.len() as u64;
        self.poisoned = false;
        let through = self.shared.appended.fetch_add(1, Ordering::AcqRel) + 1;
        *self.shared.synced.lock().unwrap_or_else(PoisonError::into_inner) = Synced { file, through };
        self.shared.failed.store(false, Ordering::Release);
        Ok(())
    }
}

impl Appended {
    /// Waits until the line is durable: one `fdatasync` covers every line
    /// appended before it began. An error means it may not be.
    pub fn wait_durable(&self) -> std::io::Result<()> {
        let mut synced = self.shared.synced.lock().unwrap_or_else(PoisonError::into_inner);
        if synced.through >= self.seq {
            return Ok(());
        }
        if self.shared.failed.load(Ordering::Acquire) {
            return Err(std::io::Error::other("an earlier sync of the approvals failed"));
        }
        // Everything appended by now is covered by this sync.
        let through = self.shared.appended.load(Ordering::Acquire).max(self.seq);
        match synced.file.sync_data() {
            Ok(()) => {
                synced.through = through;
                Ok(())
            }
            Err(error) => {
                self.shared.failed.store(true, Ordering::Release);
                Err(error)
            }
        }
    }
}
