//! The console's accounts: a YAML file the operator manages, one entry per
//! person, with an Argon2id password hash (`toolgate hash-password` makes
//! one), the groups the policy's `approvers` may name, and whether the
//! person operates the server.
//!
//! ```yaml
//! accounts:
//!   alice:
//!     password: "$argon2id$v=19$m=19456,t=2,p=1$…"
//!     groups: [finance]
//!   olivia:
//!     password: "$argon2id$v=19$m=19456,t=2,p=1$…"
//!     operator: true
//! ```
//!
//! The file must belong to the server's user and be writable by nobody
//! else (whoever can write it can sign in as anyone); it is read again
//! when it changes, so an account removed or a password changed takes
//! effect at the next request, without a restart, and the sessions of a
//! changed account end.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use serde::Deserialize;
use sha2::Digest as _;

use crate::service::Identity;

/// The largest accounts file read.
const MAX_FILE_BYTES: u64 = 1 << 20;

/// The longest password checked (Argon2 takes any length; a megabyte of
/// password would only cost hashing time).
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// One person who may sign in.
#[derive(Clone, Debug)]
pub struct Account {
    /// The name they sign in with; approvers' `users` name it.
    pub name: String,
    hash: String,
    /// Groups approvers' `groups` may name.
    pub groups: Vec<String>,
    /// Operates the server: kills, revivals, the live tail, and every approval.
    pub operator: bool,
}

impl Account {
    /// Who the account is, for approver checks and the audit trail.
    pub fn identity(&self) -> Identity {
        Identity::account(&self.name, &self.groups)
    }

    /// A fingerprint of what the account may do: a session signed in
    /// under another one (a password changed, groups or operator taken
    /// away) has ended.
    pub fn fingerprint(&self) -> String {
        let mut text = format!("{}\u{0}{}\u{0}{}", self.name, self.hash, self.operator);
        for group in &self.groups {
            text.push('\u{0}');
            text.push_str(group);
        }
        crate::hash::sha256_text(sha2::Sha256::new_with_prefix(text.as_bytes()))
    }
}

/// Why the accounts file cannot be used.
#[derive(Debug)]
pub enum AccountsError {
    /// It cannot be read (or is not private to the server's user).
    Unreadable(PathBuf, std::io::Error),
    /// It is not a valid accounts file.
    Invalid(PathBuf, String),
}

impl std::fmt::Display for AccountsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AccountsError::Unreadable(path, error) => {
                write!(f, "cannot read the console accounts `{}`: {error}", path.display())
            }
            AccountsError::Invalid(path, error) => {
                write!(f, "the console accounts `{}` are invalid: {error}", path.display())
            }
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    accounts: BTreeMap<String, Entry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    password: String,
    #[serde(default)]
    groups: Vec<String>,
    #[serde(default)]
    operator: bool,
}

/// The accounts as last read.
#[derive(Debug, Default)]
pub struct Accounts {
    by_name: BTreeMap<String, Account>,
}

impl Accounts {
    /// Parses an accounts file's text.
    pub fn parse(text: &str) -> Result<Accounts, String> {
        let file: File = serde_saphyr::from_str(text).map_err(|e| e.to_string())?;
        let mut by_name = BTreeMap::new();
        for (name, entry) in file.accounts {
            if !possible_name(&name) {
                return Err(format!(
                    "`{}`: an account name is 1 to 64 bytes, no spaces",
                    name.escape_debug()
                ));
            }
            let hash = PasswordHash::new(&entry.password)
                .map_err(|e| format!("`{name}`: `password` is not a password hash ({e}); make one with `toolgate hash-password`"))?;
            if hash.algorithm.as_str() != "argon2id" {
                return Err(format!(
                    "`{name}`: the password hash is `{}`, not `argon2id`; make one with `toolgate hash-password`",
                    hash.algorithm.as_str()
                ));
            }
            let account = Account {
                name: name.clone(),
                hash: entry.password,
                groups: entry.groups,
                operator: entry.operator,
            };
            by_name.insert(name, account);
        }
        Ok(Accounts { by_name })
    }

    /// The account called `name`.
    pub fn get(&self, name: &str) -> Option<&Account> {
        self.by_name.get(name)
    }

    /// How many accounts there are.
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}

/// Whether `name` can be an account's: 1 to 64 bytes, without spaces or
/// control characters.
pub fn possible_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 64 && !name.chars().any(|c| c.is_control() || c.is_whitespace())
}

/// Whether `password` is the one `account` was given. Costs an Argon2
/// hash (tens of milliseconds, by design): run it off the async threads.
/// Without an account, a hash of the same cost is computed all the same,
/// so that the time taken does not tell which names exist.
pub fn verify(account: Option<&Account>, password: &str) -> bool {
    let argon2 = argon2::Argon2::default();
    match account.map(|a| PasswordHash::new(&a.hash)) {
        Some(Ok(hash)) => argon2.verify_password(password.as_bytes(), &hash).is_ok(),
        _ => {
            let _ = argon2.hash_password_with_salt(password.as_bytes(), b"toolgate-no-such-account");
            false
        }
    }
}

/// An Argon2id hash of `password` with a fresh random salt, in PHC form,
/// for an accounts file.
pub fn hash_password(password: &str) -> Result<String, String> {
    argon2::Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// The accounts file, read again when it changes.
#[derive(Debug)]
pub struct AccountBook {
    path: PathBuf,
    loaded: Mutex<Loaded>,
}

#[derive(Debug)]
struct Loaded {
    stamp: Option<(SystemTime, u64)>,
    accounts: Arc<Accounts>,
}

impl AccountBook {
    /// Reads the accounts file at `path`: an error if it cannot be used.
    pub fn open(path: &Path) -> Result<AccountBook, AccountsError> {
        let (stamp, accounts) = read(path)?;
        let loaded = Loaded { stamp: Some(stamp), accounts: Arc::new(accounts) };
        Ok(AccountBook { path: path.to_path_buf(), loaded: Mutex::new(loaded) })
    }

    /// The accounts now: read again if the file changed. A file that has
    /// become unusable leaves no account (nobody signs in until it is
    /// fixed), and says why in the log.
    pub fn current(&self) -> Arc<Accounts> {
        let mut loaded = self.loaded.lock().unwrap_or_else(PoisonError::into_inner);
        let stamp = std::fs::metadata(&self.path)
            .ok()
            .map(|m| (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len()));
        if stamp.is_some() && stamp == loaded.stamp {
            return Arc::clone(&loaded.accounts);
        }
        let accounts = match read(&self.path) {
            Ok((stamp, accounts)) => {
                tracing::info!(accounts = accounts.len(), path = %self.path.display(), "console accounts read");
                loaded.stamp = Some(stamp);
                accounts
            }
            Err(error) => {
                tracing::error!(%error, "no console account can sign in until the file is fixed");
                loaded.stamp = stamp;
                Accounts::default()
            }
        };
        loaded.accounts = Arc::new(accounts);
        Arc::clone(&loaded.accounts)
    }
}

fn read(path: &Path) -> Result<((SystemTime, u64), Accounts), AccountsError> {
    let unreadable = |e| AccountsError::Unreadable(path.to_path_buf(), e);
    let file =
        crate::state::private::open(path, std::fs::OpenOptions::new().read(true)).map_err(unreadable)?;
    let metadata = file.metadata().map_err(unreadable)?;
    let mut text = String::new();
    file.take(MAX_FILE_BYTES + 1).read_to_string(&mut text).map_err(unreadable)?;
    if text.len() as u64 > MAX_FILE_BYTES {
        return Err(AccountsError::Invalid(
            path.to_path_buf(),
            format!("larger than {MAX_FILE_BYTES} bytes"),
        ));
    }
    let accounts = Accounts::parse(&text).map_err(|e| AccountsError::Invalid(path.to_path_buf(), e))?;
    let stamp = (metadata.modified().unwrap_or(SystemTime::UNIX_EPOCH), metadata.len());
    Ok((stamp, accounts))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_password_only() {
        let hash = hash_password("correct horse").expect("hashes");
        let text = format!("accounts:\n  alice:\n    password: \"{hash}\"\n    groups: [finance]\n");
        let accounts = Accounts::parse(&text).expect("parses");
        let alice = accounts.get("alice");
        assert!(verify(alice, "correct horse"));
        assert!(!verify(alice, "correct horse "));
        assert!(!verify(None, "correct horse"));
        assert_eq!(alice.map(|a| a.identity().to_string()), Some(String::from("alice (console)")));
    }

    #[test]
    fn bad_files_say_what_is_wrong() {
        for (text, wanted) in [
            ("accounts:\n  alice:\n    password: hunter2\n", "not a password hash"),
            (
                "accounts:\n  alice:\n    password: \"$argon2i$v=19$m=16,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo\"\n",
                "not `argon2id`",
            ),
            ("accounts:\n  alice:\n    pasword: x\n", "pasword"),
            ("acounts: {}\n", "acounts"),
            ("accounts:\n  \"a b\":\n    password: x\n", "no spaces"),
        ] {
            let error = Accounts::parse(text).expect_err(text);
            assert!(error.contains(wanted), "{text}: {error}");
        }
    }
}
