//! Compiling policies into decision tables, and reloading them: on file
//! changes (watched with `notify`), on SIGHUP, and on the `reload` operation.
//!
//! A reload compiles the policy set off the async threads and swaps the
//! table atomically (the state stays); a policy with errors is never
//! swapped in, and its diagnostics are kept for `status`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use notify::{RecursiveMode, Watcher};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::Service;
use crate::diagnostic::render;
use crate::engine::Engine;
use crate::engine::table::DecisionTable;

/// Why a policy set could not become an engine.
#[derive(Debug, Clone)]
pub enum LoadError {
    /// A path could not be read.
    Files(String),
    /// The policy set has errors; one rendered line per diagnostic.
    Invalid(Vec<String>),
}

impl LoadError {
    /// The error lines, for logs and `status`.
    pub fn lines(&self) -> Vec<String> {
        match self {
            LoadError::Files(message) => vec![message.clone()],
            LoadError::Invalid(lines) => lines.clone(),
        }
    }
}

/// Reads and compiles `paths` into a decision table.
pub fn compile_table(paths: &[PathBuf]) -> Result<DecisionTable, LoadError> {
    let sources =
        crate::compiler::files::read_policies(paths).map_err(|e| LoadError::Files(e.to_string()))?;
    let checked = crate::compiler::compile(sources, &crate::compiler::DiskFiles);
    match checked.policy {
        Some(policy) => Ok(DecisionTable::build(policy)),
        None => Err(LoadError::Invalid(
            checked
                .diagnostics
                .as_slice()
                .iter()
                .filter(|d| d.is_error())
                .map(|d| render::plain_line(d, &checked.sources))
                .collect(),
        )),
    }
}

/// What `status` reports about loading.
#[derive(Debug, Clone)]
pub struct ReloadStatus {
    /// When the serving policy was loaded.
    pub loaded_at: SystemTime,
    /// When the last reload attempt ended, successful or not.
    pub last_attempt: Option<SystemTime>,
    /// The errors of the last attempt, if it failed.
    pub last_error: Option<LoadError>,
    /// Successful reloads since start.
    pub reloads: u64,
    /// Failed reloads since start.
    pub failures: u64,
}

impl ReloadStatus {
    /// The status of a policy loaded at `loaded_at`.
    pub fn new(loaded_at: SystemTime) -> Self {
        ReloadStatus { loaded_at, last_attempt: None, last_error: None, reloads: 0, failures: 0 }
    }

    /// As JSON for `status`.
    pub fn to_json(&self) -> Value {
        let time = |t: SystemTime| humantime::format_rfc3339_millis(t).to_string();
        json!({
            "loaded_at": time(self.loaded_at),
            "last_attempt": self.last_attempt.map(time),
            "last_error": self.last_error.as_ref().map(LoadError::lines),
            "reloads": self.reloads,
            "failures": self.failures,
        })
    }
}

/// Why a reload was asked for.
#[derive(Clone, Copy, Debug)]
pub enum Trigger {
    /// A watched file changed.
    FileChange,
    /// SIGHUP.
    Signal,
    /// The `reload` operation.
    Request,
}

impl Trigger {
    /// The name recorded in logs and the audit trail.
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::FileChange => "file_change",
            Trigger::Signal => "sighup",
            Trigger::Request => "request",
        }
    }
}

impl Service {
    /// Recompiles and, if the policy is valid, swaps its table in (the
    /// state stays). Reloads are serialised, so a slow one cannot overwrite
    /// a newer one. A reload that cannot be recorded in the audit trail is
    /// not made: a policy nobody can see being loaded must not serve.
    pub async fn reload(&self, trigger: Trigger) -> Result<String, LoadError> {
        let _serial = self.reload_lock.lock().await;
        let paths = self.config.policies.clone();
        let result = tokio::task::spawn_blocking(move || compile_table(&paths))
            .await
            .unwrap_or_else(|e| Err(LoadError::Files(format!("policy compilation failed: {e}"))));
        if self.audit.is_some() {
            let (ok, policy, errors) = match &result {
                Ok(table) => (true, table.hash().to_owned(), Vec::new()),
                Err(error) => (false, self.engine().policy_hash().to_owned(), error.lines()),
            };
            let time = self.state.clock.rfc3339_micros();
            let record = crate::audit::record::reload(&time, trigger.as_str(), ok, &policy, &errors);
            let records = vec![crate::audit::record::encode(&record)];
            if let Err(error) = self.submit_records(records).confirmed().await {
                tracing::error!(%error, "cannot record the reload in the audit trail; keeping the current policy");
                return Err(LoadError::Files(format!(
                    "the reload could not be recorded in the audit trail: {error}"
                )));
            }
        }
        let now = self.state.clock.now();
        let mut status = self.reloads.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        status.last_attempt = Some(now);
        match result {
            Ok(table) => {
                let hash = table.hash().to_owned();
                let previous = self.engine().policy_hash().to_owned();
                self.engine.store(Arc::new(Engine::with_table(Arc::new(table), self.state.clone())));
                status.loaded_at = now;
                status.last_error = None;
                status.reloads += 1;
                tracing::info!(?trigger, policy = %hash, previous = %previous, "policy reloaded");
                Ok(hash)
            }
            Err(error) => {
                status.failures += 1;
                status.last_error = Some(error.clone());
                tracing::warn!(?trigger, errors = ?error.lines(), "policy reload failed; still serving the last good policy");
                Err(error)
            }
        }
    }
}

/// What to watch for a policy path: a file's directory (editors replace
/// files by renaming, which would end a watch on the file itself), or a
/// directory with everything below it.
fn watch_target(path: &Path) -> (PathBuf, RecursiveMode) {
    if path.is_dir() {
        (path.to_path_buf(), RecursiveMode::Recursive)
    } else {
        let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        (parent.to_path_buf(), RecursiveMode::NonRecursive)
    }
}

/// Whether a changed path can affect the policy set: a policy file, or a
/// Rego module or catalog (`.json`) beside or below one.
fn relevant(changed: &Path, policies: &[PathBuf]) -> bool {
    let extension = changed.extension().and_then(|e| e.to_str());
    let referenced = matches!(extension, Some("rego" | "json"));
    let is_policy_name = matches!(extension, Some("yaml" | "yml")) || referenced;
    policies.iter().any(|p| {
        let p = std::fs::canonicalize(p).unwrap_or_else(|_| p.clone());
        if p.is_dir() {
            changed.starts_with(&p) && is_policy_name
        } else {
            changed == p || (referenced && changed.parent() == p.parent())
        }
    })
}

/// Whether an event completes a change: a file closed after writing, a
/// file renamed into (or out of) place, a file deleted. A write in progress
/// (a modification before the close), a file just created (still empty or
/// half written), or a read is not: a policy rewritten in place in chunks
/// must never be compiled from its prefix, and the reload's own reads must
/// not trigger the next reload.
fn completes_a_change(kind: &notify::EventKind) -> bool {
    use notify::EventKind;
    use notify::event::{AccessKind, AccessMode, ModifyKind};
    matches!(
        kind,
        EventKind::Access(AccessKind::Close(AccessMode::Write))
            | EventKind::Modify(ModifyKind::Name(_))
            | EventKind::Remove(_)
    )
}

/// Watches the policy paths and reloads on completed changes (see
/// `completes_a_change`) until the returned guard is dropped. A burst of
/// changes within `debounce` causes one reload.
pub fn watch(service: Arc<Service>, debounce: Duration) -> Result<WatchGuard, notify::Error> {
    let (sender, mut receiver) = mpsc::channel::<()>(1);
    let sender_for_poll = sender.clone();
    let policies: Vec<PathBuf> = service.config.policies.clone();
    let filter = policies.clone();
    let mut watcher = notify::recommended_watcher(move |result: notify::Result<notify::Event>| {
        let Ok(event) = result else { return };
        if !completes_a_change(&event.kind) {
            return;
        }
        let touches_policy = event.paths.iter().any(|path| {
            relevant(path, &filter) || std::fs::canonicalize(path).is_ok_and(|c| relevant(&c, &filter))
        });
        if touches_policy {
            // A full channel already holds a pending reload; that one will do.
            let _ = sender.try_send(());
        }
    })?;
    for policy in &policies {
        let (target, mode) = watch_target(policy);
        watcher.watch(&target, mode)?;
    }
    // The files as the last reload (or the start) saw them: the poller asks
    // for a reload only when they differ, so an edit the events saw is not
    // reloaded twice.
    let seen = Arc::new(std::sync::atomic::AtomicU64::new(fingerprint(&policies)));
    let (seen_by_task, paths) = (Arc::clone(&seen), policies.clone());
    let task = tokio::spawn(async move {
        while receiver.recv().await.is_some() {
            // Let the burst settle, then take everything it queued as one.
            tokio::time::sleep(debounce).await;
            let paths = paths.clone();
            if let Ok(now) = tokio::task::spawn_blocking(move || fingerprint(&paths)).await {
                seen_by_task.store(now, std::sync::atomic::Ordering::Relaxed);
            }
            // Whatever the events or the poller asked for until now, this
            // reload reads.
            while receiver.try_recv().is_ok() {}
            let _ = service.reload(Trigger::FileChange).await;
        }
    });
    let poller = tokio::spawn(poll(policies, seen, sender_for_poll));
    Ok(WatchGuard { _watcher: Box::new(watcher), task, poller })
}

/// How often the policy files are looked at besides the events: a policy
/// that is a link to a file elsewhere, a directory deleted and made again,
/// a ConfigMap's `..data` link swapped — changes the watches do not see.
pub const POLL_INTERVAL: Duration = Duration::from_secs(2);

/// Asks for a reload whenever the policy files' fingerprint differs from
/// the one the last reload saw (`seen`).
async fn poll(mut policies: Vec<PathBuf>, seen: Arc<std::sync::atomic::AtomicU64>, reload: mpsc::Sender<()>) {
    loop {
        tokio::time::sleep(POLL_INTERVAL).await;
        let Ok((now, back)) = tokio::task::spawn_blocking(move || (fingerprint(&policies), policies)).await
        else {
            return;
        };
        policies = back;
        if now != seen.load(std::sync::atomic::Ordering::Relaxed) {
            let _ = reload.try_send(());
        }
    }
}

/// What the policy set's files are, as the file system says (following
/// links): each one's path, identity, size and modification time. Cheap
/// next to a compilation; a change means a reload may be due.
fn fingerprint(policies: &[PathBuf]) -> u64 {
    use std::hash::{Hash, Hasher};
    use std::os::unix::fs::MetadataExt;
    fn visit(path: &Path, depth: usize, hasher: &mut std::collections::hash_map::DefaultHasher) {
        let Ok(metadata) = std::fs::metadata(path) else {
            path.hash(hasher);
            return;
        };
        if !metadata.is_dir() {
            (path, metadata.dev(), metadata.ino(), metadata.len(), metadata.mtime(), metadata.mtime_nsec())
                .hash(hasher);
            return;
        }
        // A directory by identity only: its time changes with any file made
        // in it (a socket, a trail), and its policy files are listed below.
        (path, metadata.dev(), metadata.ino()).hash(hasher);
        if depth < 16 {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
                .map(|list| list.filter_map(|e| e.ok().map(|e| e.path())).collect())
                .unwrap_or_default();
            entries.sort();
            for entry in entries {
                let extension = entry.extension().and_then(|e| e.to_str());
                if entry.is_dir() || matches!(extension, Some("yaml" | "yml" | "rego" | "json")) {
                    visit(&entry, depth + 1, hasher);
                }
            }
        }
    }
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    for policy in policies {
        visit(policy, 0, &mut hasher);
        // Catalogs and Rego modules beside a policy file.
        if let Some(parent) = policy.parent().filter(|_| !policy.is_dir()) {
            let parent = if parent.as_os_str().is_empty() { Path::new(".") } else { parent };
            visit(parent, 15, &mut hasher);
        }
    }
    hasher.finish()
}

/// Keeps the watcher alive; dropping it stops watching.
pub struct WatchGuard {
    _watcher: Box<dyn notify::Watcher + Send>,
    task: tokio::task::JoinHandle<()>,
    poller: tokio::task::JoinHandle<()>,
}

impl Drop for WatchGuard {
    fn drop(&mut self) {
        self.task.abort();
        self.poller.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rego_modules_and_catalogs_beside_policies_trigger_a_reload() {
        let dir = std::env::temp_dir().join(format!("toolgate-relevant-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("catalogs")).expect("dir");
        let policy = dir.join("p.yaml");
        std::fs::write(&policy, "agentPolicies: {}\n").expect("write");
        let canonical = std::fs::canonicalize(&dir).expect("canonical");
        for (changed, by_directory, by_file) in [
            ("p.yaml", true, true),
            ("rules.rego", true, true),
            ("catalogs/github.tools.json", true, false),
            ("notes.txt", false, false),
        ] {
            let changed = canonical.join(changed);
            assert_eq!(relevant(&changed, std::slice::from_ref(&dir)), by_directory, "{}", changed.display());
            assert_eq!(relevant(&changed, std::slice::from_ref(&policy)), by_file, "{}", changed.display());
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
