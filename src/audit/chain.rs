//! The hash chain of the audit trail.
//!
//! Every record is one JSON object on one line, ending with
//! `,"hash":"sha256:<hex>"}`. The hash is SHA-256 over the previous record's
//! hash (as its `sha256:<hex>` text) followed by the exact bytes of the line
//! without that final field (closed with `}`). Every record also names the
//! previous hash in its `prev` field and carries a `seq` one above the
//! previous record's, so an edited, deleted, inserted, reordered or
//! truncated record breaks the chain at a line that verification reports.
//! Verification never re-serialises JSON: it hashes the bytes as written.

use sha2::{Digest, Sha256};

/// The `prev` of the first record of a new trail.
pub const GENESIS: &str = "sha256:0000000000000000000000000000000000000000000000000000000000000000";

const HASH_FIELD: &str = ",\"hash\":\"sha256:";

/// `sha256:<hex>` of `prev` followed by `body`.
pub fn link(prev: &str, body: &[u8]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(prev.as_bytes());
    hasher.update(body);
    crate::hash::sha256_text(hasher)
}

/// Seals a serialised record (`{...}`, no newline) into a chained line:
/// returns the line (with its newline) and its hash.
pub fn seal(prev: &str, body: &str) -> (String, String) {
    let hash = link(prev, body.as_bytes());
    let open = body.strip_suffix('}').unwrap_or(body);
    let line = format!("{open}{HASH_FIELD}{}\"}}\n", hash.trim_start_matches("sha256:"));
    (line, hash)
}

/// Splits a chained line (without its newline) into the hashed body and the
/// stated hash, if the line ends with a well-formed hash field.
pub fn unseal(line: &str) -> Option<(String, &str)> {
    let at = line.rfind(HASH_FIELD)?;
    let stated = line.get(at + HASH_FIELD.len()..)?.strip_suffix("\"}")?;
    if stated.len() != 64 || !stated.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()) {
        return None;
    }
    let body = format!("{}}}", line.get(..at)?);
    let hash_start = at + HASH_FIELD.len() - "sha256:".len();
    Some((body, line.get(hash_start..line.len() - 2)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_and_unseal_round_trip() {
        let (line, hash) = seal(GENESIS, r#"{"seq":1,"prev":"x"}"#);
        let (body, stated) = unseal(line.trim_end()).expect("sealed");
        assert_eq!(body, r#"{"seq":1,"prev":"x"}"#);
        assert_eq!(stated, hash);
        assert_eq!(link(GENESIS, body.as_bytes()), hash);
        assert!(serde_json::from_str::<serde_json::Value>(&line).is_ok());
    }
}
