//! The chain of the audit trail.
//!
//! Every record is one JSON object on one line, ending with
//! `,"hash":"<algorithm>:<hex>"}`. The hash is computed over the previous
//! record's hash (as its text) followed by the exact bytes of the line
//! without that final field (closed with `}`). Every record also names the
//! previous hash in its `prev` field and carries a `seq` one above the
//! previous record's, so an edited, deleted, inserted, reordered or
//! truncated record breaks the chain at a line that verification reports.
//! Verification never re-serialises JSON: it hashes the bytes as written.
//!
//! Two algorithms: `sha256` (anyone can recompute the chain, so it shows
//! accidents and careless edits, not forgery) and `hmac-sha256` under a
//! secret [`AuditKey`] (whoever can write the trail but not read the key
//! can neither forge a record nor recompute the chain after an edit).

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

use super::key::AuditKey;

/// The `prev` of the first record of a new trail.
pub const GENESIS: &str = "sha256:0000000000000000000000000000000000000000000000000000000000000000";

const HASH_FIELD: &str = ",\"hash\":\"";
const PLAIN: &str = "sha256:";
const KEYED: &str = "hmac-sha256:";

/// How records are sealed.
#[derive(Clone, Debug)]
pub enum Sealer {
    /// A SHA-256 chain.
    Plain,
    /// An HMAC-SHA-256 chain under a secret key.
    Keyed(AuditKey),
}

/// The algorithm a stated hash names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    /// `sha256:`
    Plain,
    /// `hmac-sha256:`
    Keyed,
}

impl Sealer {
    /// The algorithm of the hashes this sealer writes.
    pub fn algorithm(&self) -> Algorithm {
        match self {
            Sealer::Plain => Algorithm::Plain,
            Sealer::Keyed(_) => Algorithm::Keyed,
        }
    }

    /// `<algorithm>:<hex>` of `prev` followed by `body`.
    pub fn link(&self, prev: &str, body: &[u8]) -> String {
        let (prefix, digest) = match self {
            Sealer::Plain => {
                let mut hasher = Sha256::new();
                hasher.update(prev.as_bytes());
                hasher.update(body);
                (PLAIN, hasher.finalize().to_vec())
            }
            Sealer::Keyed(key) => (KEYED, keyed(key, prev, body).finalize().into_bytes().to_vec()),
        };
        let mut text = String::with_capacity(prefix.len() + 64);
        text.push_str(prefix);
        crate::hash::push_hex(&mut text, &digest);
        text
    }

    /// Whether `stated` is the hash of `prev` followed by `body` under this
    /// sealer (a keyed hash is compared in constant time).
    pub fn verifies(&self, prev: &str, body: &[u8], stated: &str) -> bool {
        match self {
            Sealer::Plain => self.link(prev, body) == stated,
            Sealer::Keyed(key) => stated
                .strip_prefix(KEYED)
                .and_then(parse_hex)
                .is_some_and(|mac| keyed(key, prev, body).verify_slice(&mac).is_ok()),
        }
    }

    /// Seals a serialised record (`{...}`, no newline) into a chained line:
    /// returns the line (with its newline) and its hash.
    pub fn seal(&self, prev: &str, body: &str) -> (String, String) {
        let hash = self.link(prev, body.as_bytes());
        let open = body.strip_suffix('}').unwrap_or(body);
        let line = format!("{open}{HASH_FIELD}{hash}\"}}\n");
        (line, hash)
    }
}

fn keyed(key: &AuditKey, prev: &str, body: &[u8]) -> Hmac<Sha256> {
    // HMAC pads a key shorter than the hash's block with zeros (RFC 2104),
    // so the padded block is the same key, given in the infallible form.
    let mut block = [0; 64];
    block[..key.bytes().len()].copy_from_slice(key.bytes());
    let mut mac = <Hmac<Sha256> as KeyInit>::new(&block.into());
    mac.update(prev.as_bytes());
    mac.update(body);
    mac
}

fn parse_hex(hex: &str) -> Option<Vec<u8>> {
    (hex.len() == 64)
        .then(|| {
            hex.as_bytes()
                .chunks(2)
                .map(|p| u8::from_str_radix(std::str::from_utf8(p).ok()?, 16).ok())
                .collect()
        })
        .flatten()
}

/// The algorithm a well-formed stated hash names.
pub fn algorithm(stated: &str) -> Algorithm {
    if stated.starts_with(KEYED) { Algorithm::Keyed } else { Algorithm::Plain }
}

/// Splits a chained line (without its newline) into the hashed body and the
/// stated hash (with its algorithm), if the line ends with a well-formed
/// hash field.
pub fn unseal(line: &str) -> Option<(String, &str)> {
    let at = line.rfind(HASH_FIELD)?;
    let stated = line.get(at + HASH_FIELD.len()..)?.strip_suffix("\"}")?;
    let hex = stated.strip_prefix(PLAIN).or_else(|| stated.strip_prefix(KEYED))?;
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()) {
        return None;
    }
    let body = format!("{}}}", line.get(..at)?);
    Some((body, stated))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_and_unseal_round_trip() {
        let key = AuditKey::from_bytes([7; 32]);
        for sealer in [Sealer::Plain, Sealer::Keyed(key)] {
            let (line, hash) = sealer.seal(GENESIS, r#"{"seq":1,"prev":"x"}"#);
            let (body, stated) = unseal(line.trim_end()).expect("sealed");
            assert_eq!(body, r#"{"seq":1,"prev":"x"}"#);
            assert_eq!((stated, algorithm(stated)), (hash.as_str(), sealer.algorithm()));
            assert!(sealer.verifies(GENESIS, body.as_bytes(), stated));
            assert!(!sealer.verifies(GENESIS, b"{\"seq\":2}", stated), "an edit");
            assert!(serde_json::from_str::<serde_json::Value>(&line).is_ok());
        }
    }

    #[test]
    fn a_keyed_hash_needs_the_key() {
        let (line, _) = Sealer::Keyed(AuditKey::from_bytes([7; 32])).seal(GENESIS, "{}");
        let (body, stated) = unseal(line.trim_end()).expect("sealed");
        let other = Sealer::Keyed(AuditKey::from_bytes([8; 32]));
        assert!(!other.verifies(GENESIS, body.as_bytes(), stated));
        // RFC 4231, test case 2 ("Jefe"), is what HMAC-SHA-256 computes;
        // here, the same construction over prev and body.
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(b"Jefe").expect("key");
        mac.update(b"what do ya want ");
        mac.update(b"for nothing?");
        let mut hex = String::new();
        crate::hash::push_hex(&mut hex, &mac.finalize().into_bytes());
        assert_eq!(hex, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
        // The zero-padded form of a short key is the same key.
        let mut block = [0; 64];
        block[..4].copy_from_slice(b"Jefe");
        let mut padded = <Hmac<Sha256> as KeyInit>::new(&block.into());
        padded.update(b"what do ya want for nothing?");
        let mut same = String::new();
        crate::hash::push_hex(&mut same, &padded.finalize().into_bytes());
        assert_eq!(same, hex);
    }
}
