//! The client's end: the proxy's own stdin and stdout, read and written
//! without a thread hop when they are pipes or sockets (as MCP clients
//! launch servers: Python's `subprocess` gives pipes, Node's
//! `child_process` sockets). Anything else (a terminal, a file) goes
//! through tokio's blocking stdio, which leaves the descriptor's flags
//! alone.

use std::os::fd::{AsFd, OwnedFd};
use std::pin::Pin;

use tokio::io::{AsyncRead, AsyncWrite};

/// The client's stdin, as an async reader.
pub fn stdin() -> Pin<Box<dyn AsyncRead + Send>> {
    let std_in = std::io::stdin();
    match kind(std_in.as_fd().try_clone_to_owned()) {
        Some((Kind::Pipe, fd)) => {
            if let Ok(pipe) = tokio::net::unix::pipe::Receiver::from_owned_fd(fd) {
                return Box::pin(pipe);
            }
        }
        Some((Kind::Socket, fd)) => {
            if let Some(stream) = unix_stream(fd) {
                return Box::pin(stream);
            }
        }
        None => {}
    }
    Box::pin(tokio::io::stdin())
}

/// The client's stdout, as an async writer.
pub fn stdout() -> Pin<Box<dyn AsyncWrite + Send>> {
    let std_out = std::io::stdout();
    match kind(std_out.as_fd().try_clone_to_owned()) {
        Some((Kind::Pipe, fd)) => {
            if let Ok(pipe) = tokio::net::unix::pipe::Sender::from_owned_fd(fd) {
                return Box::pin(pipe);
            }
        }
        Some((Kind::Socket, fd)) => {
            if let Some(stream) = unix_stream(fd) {
                return Box::pin(stream);
            }
        }
        None => {}
    }
    Box::pin(tokio::io::stdout())
}

enum Kind {
    Pipe,
    Socket,
}

/// What a duplicated descriptor is, if it can be used without blocking.
fn kind(fd: std::io::Result<OwnedFd>) -> Option<(Kind, OwnedFd)> {
    let fd = fd.ok()?;
    let stat = rustix::fs::fstat(&fd).ok()?;
    match rustix::fs::FileType::from_raw_mode(stat.st_mode) {
        rustix::fs::FileType::Fifo => Some((Kind::Pipe, fd)),
        rustix::fs::FileType::Socket => Some((Kind::Socket, fd)),
        _ => None,
    }
}

fn unix_stream(fd: OwnedFd) -> Option<tokio::net::UnixStream> {
    let stream = std::os::unix::net::UnixStream::from(fd);
    stream.set_nonblocking(true).ok()?;
    tokio::net::UnixStream::from_std(stream).ok()
}
