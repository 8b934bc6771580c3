//! The compiler's inputs and its only I/O: policy sources as read, the
//! [`FileReader`] through which a policy's catalogs and Rego modules are
//! read, and reading policy paths from disk ([`read_policies`], [`DiskFiles`]).
//!
//! A path is a file or a directory; a directory contributes every `*.yaml`
//! and `*.yml` file below it (sorted, hidden entries skipped) except test
//! files (`*.test.yaml`, `*.test.yml`), which hold policy tests.

use std::fmt;
use std::path::{Path, PathBuf};

/// One policy file as read: its name for diagnostics and its raw bytes.
#[derive(Clone, Debug)]
pub struct PolicySource {
    /// The name shown in diagnostics (usually the path as given).
    pub name: String,
    /// Its bytes, not yet known to be UTF-8.
    pub bytes: Vec<u8>,
}

/// Reads the files a policy refers to (tool catalogs, Rego modules): the
/// compiler's only window on the file system, supplied by the caller.
pub trait FileReader {
    /// The bytes of `file` as written in the policy `policy` (the policy's
    /// source name), or what went wrong.
    fn read(&self, policy: &str, file: &str) -> Result<Vec<u8>, String>;

    /// Every Rego module (`*.rego`) beside the policy `policy`, by name.
    fn rego_modules(&self, policy: &str) -> Result<Vec<(String, Vec<u8>)>, String>;
}

/// A reader for callers that compile from memory: every file is an error.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoFiles;

impl FileReader for NoFiles {
    fn read(&self, _policy: &str, _file: &str) -> Result<Vec<u8>, String> {
        Err(String::from("this compiler was given no way to read files"))
    }

    fn rego_modules(&self, _policy: &str) -> Result<Vec<(String, Vec<u8>)>, String> {
        Err(String::from("this compiler was given no way to read files"))
    }
}

/// How deep directories are walked.
const MAX_DIRECTORY_DEPTH: usize = 16;

/// A policy path that could not be read.
#[derive(Debug)]
pub struct FilesError {
    /// The path.
    pub path: PathBuf,
    /// What went wrong.
    pub kind: FilesErrorKind,
}

/// What went wrong reading a policy path.
#[derive(Debug)]
pub enum FilesErrorKind {
    /// The operating system said no.
    Io(std::io::Error),
    /// A directory without any policy file.
    NoPolicies,
    /// Not a regular file (a FIFO, a socket, a device): reading it could
    /// block forever.
    NotAFile,
    /// A directory more than 16 levels below the one
    /// given: its files are not read, and that is not left unsaid.
    TooDeep,
}

impl fmt::Display for FilesError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            FilesErrorKind::Io(e) => write!(f, "cannot read `{}`: {e}", self.path.display()),
            FilesErrorKind::NoPolicies => {
                write!(f, "no policy files (*.yaml, *.yml) in `{}`", self.path.display())
            }
            FilesErrorKind::NotAFile => write!(
                f,
                "`{}` is not a regular file (a FIFO, socket or device); toolgate reads only regular files",
                self.path.display()
            ),
            FilesErrorKind::TooDeep => write!(
                f,
                "`{}` is more than {MAX_DIRECTORY_DEPTH} directories below the directory given, and toolgate reads no deeper: give it (or a directory nearer to it) on the command line, or move its files up",
                self.path.display()
            ),
        }
    }
}

impl std::error::Error for FilesError {}

/// Whether a file name is a policy test file rather than a policy.
pub fn is_test_file(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    name.ends_with(".test.yaml") || name.ends_with(".test.yml")
}

fn is_policy_file(path: &Path) -> bool {
    matches!(path.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")) && !is_test_file(path)
}

/// Reads every test file (`*.test.yaml`, `*.test.yml`) named by `paths` or
/// found below the directories among them, in a stable order.
pub fn read_tests(paths: &[PathBuf]) -> Result<Vec<PolicySource>, FilesError> {
    read_selected(
        paths,
        &is_test_file,
        Selection { named_files_always: false, empty_directory_is_error: false },
    )
}

/// Reads every policy file named by `paths`, in a stable order.
pub fn read_policies(paths: &[PathBuf]) -> Result<Vec<PolicySource>, FilesError> {
    read_selected(
        paths,
        &is_policy_file,
        Selection { named_files_always: true, empty_directory_is_error: true },
    )
}

/// How [`read_selected`] treats what it is given.
struct Selection {
    /// A file named directly is read even if `wanted` would skip it.
    named_files_always: bool,
    /// A directory holding no wanted file is an error.
    empty_directory_is_error: bool,
}

fn read_selected(
    paths: &[PathBuf],
    wanted: &dyn Fn(&Path) -> bool,
    selection: Selection,
) -> Result<Vec<PolicySource>, FilesError> {
    let mut files = Vec::new();
    for path in paths {
        let error = |kind| FilesError { path: path.clone(), kind };
        let metadata = std::fs::metadata(path).map_err(|e| error(FilesErrorKind::Io(e)))?;
        if metadata.is_dir() {
            let before = files.len();
            walk_matching(path, 0, &mut files, wanted)?;
            if selection.empty_directory_is_error && files.len() == before {
                return Err(error(FilesErrorKind::NoPolicies));
            }
        } else if selection.named_files_always || wanted(path) {
            files.push(path.clone());
        }
    }
    // The same file named twice (`a.yaml .`) is one file, not two
    // definitions of its agents.
    let mut seen = std::collections::HashSet::new();
    files.retain(|path| seen.insert(std::fs::canonicalize(path).unwrap_or_else(|_| path.clone())));
    files
        .into_iter()
        .map(|path| {
            let bytes = read_bounded(&path).map_err(|e| {
                let kind = match e.kind() {
                    std::io::ErrorKind::InvalidInput => FilesErrorKind::NotAFile,
                    _ => FilesErrorKind::Io(e),
                };
                FilesError { path: path.clone(), kind }
            })?;
            Ok(PolicySource { name: path.display().to_string(), bytes })
        })
        .collect()
}

/// Reads at most one byte more than the loader accepts, so a huge file is
/// refused by the loader without being read whole.
fn read_bounded(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let limit = crate::compiler::yaml::MAX_FILE_BYTES as u64 + 1;
    let mut bytes = Vec::new();
    open_regular(path)?.take(limit).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Opens a regular file for reading, following links (a ConfigMap's files
/// are links). Anything else — a FIFO, a socket, a device — is refused with
/// `InvalidInput` before a read could block on it (it is opened
/// non-blocking, and checked once open).
fn open_regular(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a regular file"));
    }
    Ok(file)
}

fn walk_matching(
    dir: &Path,
    depth: usize,
    out: &mut Vec<PathBuf>,
    wanted: &dyn Fn(&Path) -> bool,
) -> Result<(), FilesError> {
    if depth > MAX_DIRECTORY_DEPTH {
        return Err(FilesError { path: dir.to_path_buf(), kind: FilesErrorKind::TooDeep });
    }
    let error = |e| FilesError { path: dir.to_path_buf(), kind: FilesErrorKind::Io(e) };
    let mut entries: Vec<_> =
        std::fs::read_dir(dir).map_err(error)?.collect::<Result<_, _>>().map_err(error)?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let file_type = entry.file_type().map_err(error)?;
        if file_type.is_dir() {
            walk_matching(&path, depth + 1, out, wanted)?;
        } else if wanted(&path) {
            out.push(path);
        }
    }
    Ok(())
}

/// The largest catalog or Rego file read.
const MAX_FILE_BYTES: u64 = 64 << 20;

/// Reads the files policies refer to from disk, relative to the directory
/// of the policy file that names them.
#[derive(Clone, Copy, Debug, Default)]
pub struct DiskFiles;

impl crate::compiler::FileReader for DiskFiles {
    fn read(&self, policy: &str, file: &str) -> Result<Vec<u8>, String> {
        read_referenced(&directory_of(policy).join(file))
    }

    fn rego_modules(&self, policy: &str) -> Result<Vec<(String, Vec<u8>)>, String> {
        let directory = directory_of(policy);
        let listing = if directory.as_os_str().is_empty() { Path::new(".") } else { directory };
        let entries =
            std::fs::read_dir(listing).map_err(|e| format!("cannot list `{}`: {e}", listing.display()))?;
        let mut paths: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "rego") && p.is_file())
            .collect();
        paths.sort();
        paths.into_iter().map(|p| Ok((p.display().to_string(), read_referenced(&p)?))).collect()
    }
}

fn directory_of(policy: &str) -> &Path {
    Path::new(policy).parent().unwrap_or(Path::new(""))
}

/// Reads a referenced file whole, refusing one above [`MAX_FILE_BYTES`].
fn read_referenced(path: &Path) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let opened = open_regular(path).map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
    let mut bytes = Vec::new();
    opened
        .take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(format!("`{}` is larger than {} MiB", path.display(), MAX_FILE_BYTES >> 20));
    }
    Ok(bytes)
}
