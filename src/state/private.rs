//! Files only this server's user controls. State and evidence a server
//! trusts (kills, approvals, counters, the audit trail) must not be
//! plantable by another user: a state directory someone else created could
//! hold a granted approval; a symbolic link in place of a file the server
//! writes would make it overwrite the link's target.
//!
//! So: directories are created 0700 and files 0600; an existing one must be
//! owned by the server's user, must not be writable by anyone else, and must
//! not be a symbolic link (read permissions are tightened, not refused, so
//! that older state directories keep working); files are opened without
//! following links.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Refuses `path` unless it is owned by this process's user, writable by
/// no one else and not a symbolic link; tightens its permissions to the
/// owner's alone. Whether it must be a directory is `directory`.
fn check(path: &Path, directory: bool) -> io::Result<()> {
    let metadata = std::fs::symlink_metadata(path)?;
    let refuse = |why: String| {
        Err(io::Error::new(io::ErrorKind::PermissionDenied, format!("refusing `{}`: {why}", path.display())))
    };
    if metadata.file_type().is_symlink() {
        return refuse(String::from("it is a symbolic link; give the real path"));
    }
    if directory != metadata.is_dir() || (!directory && !metadata.is_file()) {
        let wanted = if directory { "a directory" } else { "a regular file" };
        return refuse(format!("it is not {wanted}"));
    }
    let me = rustix::process::geteuid().as_raw();
    if metadata.uid() != me {
        return refuse(format!(
            "it is owned by uid {}, not by this server's user (uid {me}); another user's files could hold planted state",
            metadata.uid()
        ));
    }
    if metadata.mode() & 0o022 != 0 {
        return refuse(format!(
            "it is writable by others (mode {:o}); make it {}",
            metadata.mode() & 0o777,
            if directory { "0700" } else { "0600" }
        ));
    }
    let private = if directory { 0o700 } else { 0o600 };
    if metadata.mode() & 0o077 != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(private))?;
    }
    Ok(())
}

/// Makes sure `dir` is a directory only this user controls: creates it
/// (0700) if missing, else checks it.
pub fn directory(dir: &Path) -> io::Result<()> {
    match std::fs::symlink_metadata(dir) {
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)
        }
        Err(error) => Err(error),
        Ok(_) => check(dir, true),
    }
}

/// Checks an existing file (a missing one is fine: it will be created 0600).
pub fn existing_file(path: &Path) -> io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(error),
        Ok(_) => check(path, false),
    }
}

/// Opens `path` with `options`, creating it 0600 if asked to, without
/// following a symbolic link; an existing file is checked first.
pub fn open(path: &Path, options: &mut OpenOptions) -> io::Result<File> {
    existing_file(path)?;
    options.mode(0o600).custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32).open(path)
}

/// Reads a secret (a password, a private key): a regular file (links are
/// followed: secret mounts are links) owned by this user or root that no
/// one else may read or write. `what` names it in the error.
pub fn read_secret(path: &Path, what: &str) -> io::Result<Vec<u8>> {
    // The file read is the file checked: its metadata from the open handle.
    let mut file = File::open(path)?;
    let metadata = file.metadata()?;
    let refuse = |why: String| Err(io::Error::new(io::ErrorKind::PermissionDenied, why));
    if !metadata.is_file() {
        return refuse(format!("the {what} `{}` is not a regular file", path.display()));
    }
    if metadata.mode() & 0o077 != 0 {
        return refuse(format!(
            "the {what} `{}` is readable or writable by others (mode {:o}): run `chmod 600` on it, and change the secret if it may have been read",
            path.display(),
            metadata.mode() & 0o777
        ));
    }
    let me = rustix::process::geteuid().as_raw();
    if metadata.uid() != me && metadata.uid() != 0 {
        return refuse(format!(
            "the {what} `{}` belongs to uid {}, not to this user or root: its owner could have replaced it",
            path.display(),
            metadata.uid()
        ));
    }
    let mut bytes = Vec::new();
    io::Read::read_to_end(&mut file, &mut bytes)?;
    Ok(bytes)
}

/// Creates `path` anew (0600), never through a symbolic link: whatever is
/// at the path (a stale temporary file, a planted link) is removed first.
pub fn create_new(path: &Path) -> io::Result<File> {
    match std::fs::remove_file(path) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => return Err(error),
        _ => {}
    }
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path)
}
