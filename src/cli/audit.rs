//! `toolgate audit verify`: check an audit trail's hash chain.

use std::io::{BufReader, Write};
use std::path::PathBuf;

use toolgate::audit::{Verifier, trail_files};

use super::{Exit, output};

pub fn verify(files: &[PathBuf], partial: bool, head: Option<&str>) -> Exit {
    // One path names a whole trail: its rotated files, oldest first, then itself.
    let files = match files {
        [single] => match trail_files(single) {
            Ok(found) if !found.is_empty() => found,
            Ok(_) => vec![single.clone()],
            Err(error) => {
                output::error(&format!("cannot read `{}`: {error}", single.display()));
                return Exit::Usage;
            }
        },
        many => many.to_vec(),
    };
    let mut verifier = if partial { Verifier::partial() } else { Verifier::from_genesis() };
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
        "ok: {} records in {} file{}, head {}",
        verifier.records,
        files.len(),
        if files.len() == 1 { "" } else { "s" },
        verifier.head()
    );
    Exit::Ok
}
