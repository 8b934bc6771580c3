//! The secret key of a keyed audit trail.
//!
//! A key is 32 random bytes, stored as 64 hex digits (and an optional
//! newline) in a file only its owner can read. Its id — `k` and the first 16
//! hex digits of a SHA-256 over a fixed label and the key — names it in the
//! trail and in messages without revealing it.

use std::fmt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// The length of a key, in bytes.
pub const KEY_BYTES: usize = 32;

/// An audit key.
#[derive(Clone)]
pub struct AuditKey {
    bytes: [u8; KEY_BYTES],
    id: String,
}

impl fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditKey").field("id", &self.id).finish_non_exhaustive()
    }
}

/// Why a key file cannot be used.
#[derive(Debug)]
pub enum KeyError {
    /// The file cannot be read.
    Read(PathBuf, std::io::Error),
    /// Someone other than its owner may read or write it.
    Exposed(PathBuf, u32),
    /// It belongs to another user (not this process's user or root).
    Foreign(PathBuf, u32),
    /// It is not 64 hex digits.
    Malformed(PathBuf),
    /// The file to write a new key to exists already.
    Exists(PathBuf),
    /// No randomness for a new key.
    Random(String),
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::Read(path, error) => {
                write!(f, "cannot read the audit key `{}`: {error}", path.display())
            }
            KeyError::Exposed(path, mode) => write!(
                f,
                "the audit key `{}` is readable or writable by others (mode {:o}): whoever reads it can forge the trail; run `chmod 600` on it, and make a new key if it may have been read",
                path.display(),
                mode & 0o777
            ),
            KeyError::Foreign(path, uid) => write!(
                f,
                "the audit key `{}` belongs to uid {uid}, not to this user or root: its owner could have replaced it",
                path.display()
            ),
            KeyError::Malformed(path) => write!(
                f,
                "the audit key `{}` is not 64 hex digits; make one with `toolgate audit new-key FILE`",
                path.display()
            ),
            KeyError::Exists(path) => {
                write!(f, "`{}` exists; a new key is never written over a file", path.display())
            }
            KeyError::Random(error) => write!(f, "no randomness for a new key: {error}"),
        }
    }
}

impl std::error::Error for KeyError {}

impl AuditKey {
    /// A key from its bytes.
    pub fn from_bytes(bytes: [u8; KEY_BYTES]) -> AuditKey {
        let mut hasher = Sha256::new_with_prefix(b"toolgate audit key id\n");
        hasher.update(bytes);
        let mut id = String::from("k");
        crate::hash::push_hex(&mut id, &hasher.finalize()[..8]);
        AuditKey { bytes, id }
    }

    /// A new random key.
    pub fn generate() -> Result<AuditKey, KeyError> {
        let mut bytes = [0; KEY_BYTES];
        getrandom::fill(&mut bytes).map_err(|error| KeyError::Random(error.to_string()))?;
        Ok(AuditKey::from_bytes(bytes))
    }

    /// Reads a key file: a regular file (links are followed: secret mounts
    /// are links) owned by this user or root, which no one else may read or
    /// write, holding 64 hex digits.
    pub fn load(path: &Path) -> Result<AuditKey, KeyError> {
        let metadata = std::fs::metadata(path).map_err(|e| KeyError::Read(path.to_path_buf(), e))?;
        if !metadata.is_file() {
            let error = std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a regular file");
            return Err(KeyError::Read(path.to_path_buf(), error));
        }
        if metadata.mode() & 0o077 != 0 {
            return Err(KeyError::Exposed(path.to_path_buf(), metadata.mode()));
        }
        let me = rustix::process::geteuid().as_raw();
        if metadata.uid() != me && metadata.uid() != 0 {
            return Err(KeyError::Foreign(path.to_path_buf(), metadata.uid()));
        }
        let text = std::fs::read_to_string(path).map_err(|e| KeyError::Read(path.to_path_buf(), e))?;
        let hex = text.strip_suffix('\n').unwrap_or(&text);
        parse_hex(hex).map(AuditKey::from_bytes).ok_or_else(|| KeyError::Malformed(path.to_path_buf()))
    }

    /// Writes the key to a new file (0600), never over an existing one.
    pub fn save_new(&self, path: &Path) -> Result<(), KeyError> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut file =
            std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).map_err(
                |error| match error.kind() {
                    std::io::ErrorKind::AlreadyExists => KeyError::Exists(path.to_path_buf()),
                    _ => KeyError::Read(path.to_path_buf(), error),
                },
            )?;
        let mut hex = String::with_capacity(2 * KEY_BYTES + 1);
        crate::hash::push_hex(&mut hex, &self.bytes);
        hex.push('\n');
        file.write_all(hex.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|error| KeyError::Read(path.to_path_buf(), error))
    }

    /// The key's id, `k` and 16 hex digits.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The key's bytes.
    pub(crate) fn bytes(&self) -> &[u8; KEY_BYTES] {
        &self.bytes
    }
}

/// 64 lowercase or uppercase hex digits as 32 bytes.
fn parse_hex(hex: &str) -> Option<[u8; KEY_BYTES]> {
    if hex.len() != 2 * KEY_BYTES {
        return None;
    }
    let mut bytes = [0; KEY_BYTES];
    for (byte, pair) in bytes.iter_mut().zip(hex.as_bytes().chunks(2)) {
        *byte = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
    }
    Some(bytes)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn a_key_file_must_be_private_and_well_formed() {
        let dir = std::env::temp_dir().join(format!("toolgate-key-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("audit.key");
        let key = AuditKey::generate().expect("random");
        key.save_new(&path).expect("saved");
        assert!(matches!(key.save_new(&path), Err(KeyError::Exists(_))), "never overwritten");
        let loaded = AuditKey::load(&path).expect("loads");
        assert_eq!((loaded.id(), loaded.bytes()), (key.id(), key.bytes()));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).expect("chmod");
        assert!(matches!(AuditKey::load(&path), Err(KeyError::Exposed(..))));
        std::fs::write(dir.join("short.key"), "abcd\n").expect("write");
        std::fs::set_permissions(dir.join("short.key"), std::fs::Permissions::from_mode(0o600))
            .expect("chmod");
        assert!(matches!(AuditKey::load(&dir.join("short.key")), Err(KeyError::Malformed(_))));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
