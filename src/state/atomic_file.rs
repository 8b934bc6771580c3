//! Replacing a small file so that a crash leaves either the old contents or
//! the new, never a mixture: write a temporary file beside it, sync it,
//! rename it over the old one, and sync the directory.

use std::io::Write;
use std::path::Path;

/// Replaces `file` with `bytes`, durably and atomically.
pub fn replace(file: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let temporary = file.with_extension("tmp");
    // A fresh, private file, never through a link someone planted there.
    let mut out = super::private::create_new(&temporary)?;
    out.write_all(bytes)?;
    out.sync_all()?;
    std::fs::rename(&temporary, file)?;
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Reads a JSON file written by [`replace`]; `None` if it does not exist.
/// A file another user could have written is refused.
pub fn read_json<T: serde::de::DeserializeOwned>(file: &Path) -> std::io::Result<Option<T>> {
    super::private::existing_file(file)?;
    match std::fs::read(file) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e)),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error),
    }
}
