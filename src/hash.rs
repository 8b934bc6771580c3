//! Hashing, in its two roles: the keyed hash of the decision path's maps,
//! and SHA-256 digests written as `sha256:<hex>` (policy hashes, argument
//! digests, the audit chain).

use sha2::{Digest, Sha256};

/// A `HashMap` hashed with `ahash` with per-process random keys: several
/// times faster than the standard SipHash on the short keys toolgate hashes
/// (agent, tool, session names) and still resistant to crafted collisions,
/// since a client cannot know the keys.
pub type FastMap<K, V> = std::collections::HashMap<K, V, ahash::RandomState>;

/// `sha256:<hex>` of a finished SHA-256 hasher.
pub fn sha256_text(hasher: Sha256) -> String {
    let mut text = String::with_capacity(7 + 64);
    text.push_str("sha256:");
    push_hex(&mut text, &hasher.finalize());
    text
}

/// Appends `bytes` as lowercase hex.
pub fn push_hex(text: &mut String, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for byte in bytes {
        text.push(char::from(HEX[usize::from(byte >> 4)]));
        text.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
}

#[cfg(test)]
mod tests {
    use sha2::Digest;

    #[test]
    fn digests_are_lowercase_hex_with_their_algorithm() {
        assert_eq!(
            super::sha256_text(sha2::Sha256::new_with_prefix(b"abc")),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
