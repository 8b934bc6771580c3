//! `toolgate diff OLD NEW`: what a policy change widens and narrows.
//!
//! OLD and NEW are policy files or directories, or `REV:PATH` for PATH as
//! it was at a git revision (`main:policies/`, `HEAD~1:policies/app.yaml`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use toolgate::authoring::diff::Change;
use toolgate::authoring::diff::Direction;
use toolgate::compiler::CheckedPolicySet;

use super::{Exit, output};

/// How the diff is printed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum DiffFormat {
    /// Grouped by agent, one line per change.
    #[default]
    Human,
    /// A Markdown table, for a pull-request comment.
    Markdown,
    /// One JSON object with counts and every change.
    Json,
}

pub fn run(old: &str, new: &str, format: DiffFormat, fail_on_widen: bool) -> Exit {
    let (old_policy, _old_tree) = match load(old) {
        Ok(loaded) => loaded,
        Err(exit) => return exit,
    };
    let (new_policy, _new_tree) = match load(new) {
        Ok(loaded) => loaded,
        Err(exit) => return exit,
    };
    let changes = toolgate::authoring::diff::diff(old_policy, new_policy);
    let text = match format {
        DiffFormat::Human => human(&changes),
        DiffFormat::Markdown => markdown(old, new, &changes),
        DiffFormat::Json => json(&changes),
    };
    let _ = std::io::stdout().write_all(text.as_bytes());
    let widened = changes.iter().any(|c| c.direction == Direction::Widened);
    if fail_on_widen && widened { Exit::Findings } else { Exit::Ok }
}

/// Compiles one side; a `REV:PATH` side is read from a checkout of REV in a
/// temporary directory, removed when the returned guard drops.
fn load(spec: &str) -> Result<(CheckedPolicySet, Option<Checkout>), Exit> {
    if Path::new(spec).exists() {
        return Ok((output::compile_or_report(&[PathBuf::from(spec)])?, None));
    }
    let Some((rev, path)) = spec.split_once(':') else {
        output::error(&format!("`{spec}` does not exist (for a git revision, write `REV:PATH`)"));
        return Err(Exit::Usage);
    };
    let checkout = Checkout::new(rev).map_err(|message| {
        output::error(&message);
        Exit::Usage
    })?;
    let path = checkout.path(path);
    Ok((output::compile_or_report(&[path])?, Some(checkout)))
}

/// The whole tree of a git revision, extracted with `git archive`, so that
/// catalogs beside the policies are there too.
struct Checkout {
    dir: PathBuf,
    prefix: PathBuf,
}

impl Checkout {
    fn new(rev: &str) -> Result<Checkout, String> {
        let git = |args: &[&str]| -> Result<String, String> {
            let output =
                Command::new("git").args(args).output().map_err(|e| format!("cannot run git: {e}"))?;
            if !output.status.success() {
                return Err(format!(
                    "git {}: {}",
                    args.join(" "),
                    String::from_utf8_lossy(&output.stderr).trim()
                ));
            }
            Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
        };
        let top = git(&["rev-parse", "--show-toplevel"])?;
        let prefix = git(&["rev-parse", "--show-prefix"])?;
        git(&["rev-parse", "--verify", "--quiet", &format!("{rev}^{{commit}}")])
            .map_err(|_| format!("`{rev}` is not a git revision"))?;
        let dir = std::env::temp_dir().join(format!("toolgate-diff-{}-{}", std::process::id(), unique()));
        std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let checkout = Checkout { dir, prefix: PathBuf::from(prefix) };
        let mut archive = Command::new("git")
            .args(["-C", &top, "archive", "--format=tar", rev])
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run git archive: {e}"))?;
        let tar_input = archive.stdout.take().ok_or("git archive has no output")?;
        let tar = Command::new("tar")
            .args(["-x", "-C"])
            .arg(&checkout.dir)
            .stdin(tar_input)
            .status()
            .map_err(|e| format!("cannot run tar: {e}"))?;
        let archived = archive.wait().map_err(|e| format!("git archive: {e}"))?;
        if !tar.success() || !archived.success() {
            return Err(format!("cannot extract revision `{rev}`"));
        }
        Ok(checkout)
    }

    /// A path as the user wrote it (relative to the current directory).
    fn path(&self, path: &str) -> PathBuf {
        self.dir.join(&self.prefix).join(path)
    }
}

impl Drop for Checkout {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn unique() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos())
}

fn sign(direction: Direction) -> &'static str {
    match direction {
        Direction::Widened => "+",
        Direction::Narrowed => "-",
        Direction::Changed => "~",
    }
}

fn word(direction: Direction) -> &'static str {
    match direction {
        Direction::Widened => "widened",
        Direction::Narrowed => "narrowed",
        Direction::Changed => "changed",
    }
}

fn counts(changes: &[Change]) -> [usize; 3] {
    let count = |d| changes.iter().filter(|c| c.direction == d).count();
    [count(Direction::Widened), count(Direction::Narrowed), count(Direction::Changed)]
}

fn human(changes: &[Change]) -> String {
    let mut out = String::new();
    let mut agent = None;
    for change in changes {
        if agent != Some(&change.agent) {
            out.push_str(&format!("{}\n", change.agent));
            agent = Some(&change.agent);
        }
        let tool = change.tool.as_deref().map_or(String::new(), |t| format!("{t}: "));
        out.push_str(&format!("  {} {tool}{}\n", sign(change.direction), change.what));
    }
    let [widened, narrowed, changed] = counts(changes);
    out.push_str(&format!("{widened} widened (+), {narrowed} narrowed (-), {changed} to review (~)\n"));
    out
}

fn markdown(old: &str, new: &str, changes: &[Change]) -> String {
    let [widened, narrowed, changed] = counts(changes);
    let mut out = format!("### toolgate: policy decisions `{old}` → `{new}`\n\n");
    if changes.is_empty() {
        out.push_str("No decision changes.\n");
        return out;
    }
    out.push_str(&format!(
        "**{widened} widened**, {narrowed} narrowed, {changed} to review.\n\n| | Agent | Tool | Change |\n| --- | --- | --- | --- |\n"
    ));
    let cell = |text: &str| text.replace('|', "\\|");
    for change in changes {
        let icon = match change.direction {
            Direction::Widened => "⚠️ widened",
            Direction::Narrowed => "narrowed",
            Direction::Changed => "review",
        };
        let tool = change.tool.as_deref().map_or(String::from("(agent)"), |t| format!("`{t}`"));
        out.push_str(&format!(
            "| {icon} | `{}` | {} | {} |\n",
            cell(&change.agent),
            cell(&tool),
            cell(&change.what)
        ));
    }
    out
}

fn json(changes: &[Change]) -> String {
    let [widened, narrowed, changed] = counts(changes);
    let value = serde_json::json!({
        "widened": widened,
        "narrowed": narrowed,
        "changed": changed,
        "changes": changes.iter().map(|c| serde_json::json!({
            "agent": c.agent,
            "tool": c.tool,
            "direction": word(c.direction),
            "change": c.what,
        })).collect::<Vec<_>>(),
    });
    format!("{}\n", serde_json::to_string_pretty(&value).unwrap_or_default())
}
