//! `toolgate audit`: verify a trail's chain; make and rotate its key.

use std::io::{BufReader, Write};
use std::path::{Path, PathBuf};

use toolgate::audit::{AuditKey, AuditWriter, Sealer, Verifier};
use toolgate::state::{Clock, SystemClock};

use super::{Exit, output};

/// Loads every key file, or reports the first that cannot be used.
fn load_keys(paths: &[PathBuf]) -> Result<Vec<AuditKey>, Exit> {
    paths
        .iter()
        .map(|path| {
            AuditKey::load(path).map_err(|error| {
                output::error(&error.to_string());
                Exit::Usage
            })
        })
        .collect()
}

/// `audit verify`.
pub fn verify(files: &[PathBuf], partial: bool, head: Option<&str>, keys: &[PathBuf]) -> Exit {
    let keys = match load_keys(keys) {
        Ok(keys) => keys,
        Err(exit) => return exit,
    };
    let keyed = !keys.is_empty();
    let kind = if keyed { "keyed" } else { "unkeyed" };
    // One path names a whole trail: its rotated files, oldest first, then
    // itself (unless the check is partial: then it names one file).
    if let ([single], false) = (files, partial) {
        return match toolgate::audit::verify_trail(single, keys, false) {
            Ok(verified) => report(head, &verified.head, verified.records, kind, verified.files),
            Err(error @ toolgate::audit::TrailError::Unreadable(..)) => {
                output::error(&error.to_string());
                Exit::Usage
            }
            Err(error) => {
                output::error(&error.to_string());
                Exit::Invalid
            }
        };
    }
    let mut verifier = if partial { Verifier::partial(keys) } else { Verifier::from_genesis(keys) };
    for path in files {
        let file = match std::fs::File::open(path) {
            Ok(file) => file,
            Err(error) => {
                output::error(&format!("cannot read `{}`: {error}", path.display()));
                return Exit::Usage;
            }
        };
        if let Err(broken) = verifier.verify_file(&path.display().to_string(), BufReader::new(file)) {
            output::error(&format!("{}:{}: {}", broken.file, broken.line, broken.why));
            return Exit::Invalid;
        }
    }
    report(head, verifier.head(), verifier.records, kind, files.len())
}

/// The end of `audit verify`: the trail must end at `expected` if given.
fn report(expected: Option<&str>, head: &str, records: u64, kind: &str, files: usize) -> Exit {
    if let Some(expected) = expected.filter(|h| *h != head) {
        output::error(&format!(
            "trail ends at {head}, expected {expected}: records were removed from its end"
        ));
        return Exit::Invalid;
    }
    let plural = if files == 1 { "" } else { "s" };
    let _ = writeln!(std::io::stdout(), "ok: {records} {kind} records in {files} file{plural}, head {head}");
    Exit::Ok
}

/// `audit new-key FILE`.
pub fn new_key(file: &Path) -> Exit {
    match AuditKey::generate().and_then(|key| key.save_new(file).map(|()| key)) {
        Ok(key) => {
            let _ = writeln!(std::io::stdout(), "wrote key {} to {}", key.id(), file.display());
            Exit::Ok
        }
        Err(error) => {
            output::error(&error.to_string());
            Exit::Usage
        }
    }
}

/// `audit rotate-key TRAIL --key OLD --new-key NEW`.
pub fn rotate_key(trail: &Path, old: &Path, new: &Path) -> Exit {
    let (old, new) = match (AuditKey::load(old), AuditKey::load(new)) {
        (Ok(old), Ok(new)) => (old, new),
        (Err(error), _) | (_, Err(error)) => {
            output::error(&error.to_string());
            return Exit::Usage;
        }
    };
    if old.id() == new.id() {
        output::error("the new key is the old key; make one with `toolgate audit new-key FILE`");
        return Exit::Usage;
    }
    let (old_id, new_id) = (old.id().to_owned(), new.id().to_owned());
    let rotated = AuditWriter::open(trail, None, Sealer::Keyed(old))
        .and_then(|mut writer| writer.rotate_key(new, &SystemClock.rfc3339_micros()));
    match rotated {
        Ok(()) => {
            let _ = writeln!(std::io::stdout(), "{}: key {old_id} -> {new_id}", trail.display());
            Exit::Ok
        }
        Err(error) => {
            output::error(&format!("cannot rotate the key of `{}`: {error}", trail.display()));
            Exit::Invalid
        }
    }
}
