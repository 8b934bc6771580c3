//! Socket hygiene: owner-only permissions from the moment the socket
//! exists, no clobbering of a live server, removal of stale and own sockets.

use std::fmt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

/// Why the socket could not be bound.
#[derive(Debug)]
pub enum BindError {
    /// Another server answers on the path.
    InUse(PathBuf),
    /// Something that is not a socket is at the path.
    NotASocket(PathBuf),
    /// The operating system said no.
    Io(PathBuf, std::io::Error),
}

impl fmt::Display for BindError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BindError::InUse(p) => write!(f, "another server is listening on `{}`", p.display()),
            BindError::NotASocket(p) => {
                write!(f, "`{}` exists and is not a socket; refusing to replace it", p.display())
            }
            BindError::Io(p, e) => write!(f, "cannot bind `{}`: {e}", p.display()),
        }
    }
}

impl std::error::Error for BindError {}

/// A bound socket that removes its file when dropped, if the file is still
/// the one it created.
#[derive(Debug)]
pub struct BoundSocket {
    listener: Option<UnixListener>,
    path: PathBuf,
    inode: u64,
}

impl BoundSocket {
    /// The listener, taken once to hand to the server.
    pub fn take_listener(&mut self) -> Option<UnixListener> {
        self.listener.take()
    }

    /// Where the socket is.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for BoundSocket {
    fn drop(&mut self) {
        let ours = std::fs::symlink_metadata(&self.path).is_ok_and(|m| m.ino() == self.inode);
        if ours {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Binds `path` with permissions `mode` (e.g. `0o600`), owned by the group
/// `group` if one is given (this user must be a member).
///
/// A socket file nobody answers on (left by a crash) is removed first; a
/// live one, or anything that is not a socket, is left alone and refused.
/// The socket is created under a restrictive umask and given its group
/// before its mode is widened, so it is never reachable with wider
/// permissions than `mode`, nor by another group, not even for an instant.
/// Call this before other threads start: the umask is process-wide.
pub fn bind(path: &Path, mode: u32, group: Option<u32>) -> Result<BoundSocket, BindError> {
    match std::fs::symlink_metadata(path) {
        Ok(metadata) if metadata.file_type().is_socket() => {
            if UnixStream::connect(path).is_ok() {
                return Err(BindError::InUse(path.to_path_buf()));
            }
            std::fs::remove_file(path).map_err(|e| BindError::Io(path.to_path_buf(), e))?;
        }
        Ok(_) => return Err(BindError::NotASocket(path.to_path_buf())),
        Err(_) => {}
    }
    let restrictive = rustix::fs::Mode::from_bits_truncate(0o177);
    let previous = rustix::process::umask(restrictive);
    let bound = UnixListener::bind(path);
    rustix::process::umask(previous);
    let listener = bound.map_err(|e| BindError::Io(path.to_path_buf(), e))?;
    let io = |e| BindError::Io(path.to_path_buf(), e);
    if let Some(gid) = group {
        rustix::fs::chown(path, None, Some(rustix::fs::Gid::from_raw(gid))).map_err(|e| io(e.into()))?;
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o777)).map_err(io)?;
    let inode = std::fs::symlink_metadata(path).map_err(io)?.ino();
    Ok(BoundSocket { listener: Some(listener), path: path.to_path_buf(), inode })
}
