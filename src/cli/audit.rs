//! `toolgate audit`: verify a trail's chain; make and rotate its key.

use std::io::{BufReader, Write};
use std::path::{Path, PathBuf};

use toolgate::audit::{AuditKey, AuditWriter, Sealer, Verifier, trail_files};
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
    // One path names a whole trail: its rotated files, oldest first, then
    // itself (unless the check is partial: then it names one file).
    let files = match files {
        [single] if !partial => match trail_files(single) {
            Ok(found) if !found.is_empty() => found,
            Ok(_) => vec![single.clone()],
            Err(error) => {
                output::error(&format!("cannot read `{}`: {error}", single.display()));
                return Exit::Usage;
            }
        },
        many => many.to_vec(),
    };
    let keyed = !keys.is_empty();
    let mut verifier = if partial { Verifier::partial(keys) } else { Verifier::from_genesis(keys) };
    for path in &files {
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
    if let Some(expected) = head.filter(|h| *h != verifier.head()) {
        output::error(&format!(
            "trail ends at {}, expected {expected}: records were removed from its end",
            verifier.head()
        ));
        return Exit::Invalid;
    }
    let _ = writeln!(
        std::io::stdout(),
        "ok: {} {} records in {} file{}, head {}",
        verifier.records,
        if keyed { "keyed" } else { "unkeyed" },
        files.len(),
        if files.len() == 1 { "" } else { "s" },
        verifier.head()
    );
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
