//! The real MCP server, as a child process: started with piped stdin and
//! stdout (its stderr is the proxy's), and stopped the way the MCP stdio
//! transport says — close its stdin, wait, SIGTERM, wait, SIGKILL.

use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// A started server.
pub struct Upstream {
    child: Child,
}

/// Why the server could not be started.
#[derive(Debug)]
pub struct SpawnError {
    /// The command.
    pub command: String,
    /// The operating system's error.
    pub error: std::io::Error,
}

impl std::fmt::Display for SpawnError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cannot start the MCP server `{}`: {}", self.command, self.error)
    }
}

impl Upstream {
    /// Starts `command` with `args`; the pipes are taken with [`Upstream::pipes`].
    /// `env`: the only environment variables it receives from this
    /// process's (`None`: all of them).
    pub fn spawn(command: &str, args: &[String], env: Option<&[String]>) -> Result<Upstream, SpawnError> {
        let mut command_line = Command::new(command);
        if let Some(names) = env {
            command_line.env_clear();
            for name in names {
                if let Some(value) = std::env::var_os(name) {
                    command_line.env(name, value);
                }
            }
        }
        let child = command_line
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            // Its own process group, so that stopping it stops what it
            // started too (`npx` runs the server as its child).
            .process_group(0)
            // If the proxy itself dies, the server does not outlive it.
            .kill_on_drop(true)
            .spawn()
            .map_err(|error| SpawnError { command: command.to_owned(), error })?;
        Ok(Upstream { child })
    }

    /// The server's stdin and stdout (once).
    pub fn pipes(&mut self) -> Option<(ChildStdin, ChildStdout)> {
        Some((self.child.stdin.take()?, self.child.stdout.take()?))
    }

    /// Stops the server (its stdin must already be closed): waits `grace`
    /// for it to exit, then [`Upstream::terminate`]s it.
    pub async fn stop(mut self, grace: Duration) -> Option<ExitStatus> {
        if let Ok(status) = tokio::time::timeout(grace, self.child.wait()).await {
            return status.ok();
        }
        self.terminate(grace).await
    }

    /// Sends SIGTERM to the server's process group, waits `grace`, then
    /// SIGKILL.
    pub async fn terminate(mut self, grace: Duration) -> Option<ExitStatus> {
        self.signal(rustix::process::Signal::TERM);
        if let Ok(status) = tokio::time::timeout(grace, self.child.wait()).await {
            // What it started may linger in the group; it goes too.
            self.signal(rustix::process::Signal::KILL);
            return status.ok();
        }
        self.signal(rustix::process::Signal::KILL);
        let _ = self.child.start_kill();
        self.child.wait().await.ok()
    }

    fn signal(&self, signal: rustix::process::Signal) {
        if let Some(group) =
            self.child.id().and_then(|pid| rustix::process::Pid::from_raw(i32::try_from(pid).ok()?))
        {
            let _ = rustix::process::kill_process_group(group, signal);
        }
    }
}
