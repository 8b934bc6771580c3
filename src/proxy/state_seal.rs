//! The `requestState` of the 2026-07-28 protocol's `input_required` result:
//! the proxy's question to the user travels through the client and comes
//! back with the retried call. The state names the approval and is sealed
//! (HMAC-SHA-256 under a key of this proxy process) to exactly one call
//! and an expiry, so a client can neither forge one nor move one to
//! another call.

use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Map, Value};
use sha2::Sha256;

/// What the proxy's states start with: a state without it is the server's
/// own, and passes through.
pub const PREFIX: &str = "toolgate:v1:";

/// Seals and opens request states.
pub struct Sealer {
    /// One block of SHA-256: HMAC's key as it is used.
    key: [u8; 64],
}

impl Sealer {
    /// A sealer with a fresh key from the operating system.
    pub fn new() -> Option<Sealer> {
        let mut key = [0u8; 64];
        getrandom::fill(&mut key).ok()?;
        Some(Sealer { key })
    }

    fn mac(&self, approval: &str, expires_at: u64, tool: &str, args: &Map<String, Value>) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as KeyInit>::new(&self.key.into());
        let digest = crate::state::approval::args_digest(args);
        for part in [approval, &expires_at.to_string(), tool, &digest] {
            mac.update(&(part.len() as u64).to_le_bytes());
            mac.update(part.as_bytes());
        }
        mac
    }

    /// The state for a question about `approval`, for this call, until
    /// `expires_at` (seconds since the epoch).
    pub fn seal(&self, approval: &str, expires_at: u64, tool: &str, args: &Map<String, Value>) -> String {
        let tag = self.mac(approval, expires_at, tool, args).finalize().into_bytes();
        let hex: String = tag.iter().map(|b| format!("{b:02x}")).collect();
        format!("{PREFIX}{approval}:{expires_at}:{hex}")
    }

    /// The approval a state names, if the state is this proxy's, unexpired
    /// at `now`, and sealed for exactly this call.
    pub fn open(&self, state: &str, now: u64, tool: &str, args: &Map<String, Value>) -> Option<String> {
        let mut parts = state.strip_prefix(PREFIX)?.split(':');
        let (approval, expires_at, tag) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let expires_at: u64 = expires_at.parse().ok()?;
        let tag: Vec<u8> = (0..tag.len())
            .step_by(2)
            .map(|i| tag.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
            .collect::<Option<_>>()?;
        self.mac(approval, expires_at, tool, args).verify_slice(&tag).ok()?;
        (now < expires_at).then(|| approval.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_state_opens_only_for_its_call_before_it_expires_and_only_here() {
        let sealer = Sealer::new().expect("randomness");
        let args = json!({"a": 1000}).as_object().cloned().expect("object");
        let state = sealer.seal("apr_1", 100, "fx/add", &args);
        assert_eq!(sealer.open(&state, 99, "fx/add", &args).as_deref(), Some("apr_1"));
        assert_eq!(sealer.open(&state, 100, "fx/add", &args), None, "expired");
        let other = json!({"a": 1001}).as_object().cloned().expect("object");
        assert_eq!(sealer.open(&state, 99, "fx/add", &other), None, "other arguments");
        assert_eq!(sealer.open(&state, 99, "fx/sub", &args), None, "another tool");
        assert_eq!(sealer.open(&state.replace("apr_1", "apr_2"), 99, "fx/add", &args), None, "forged");
        assert_eq!(
            Sealer::new().expect("randomness").open(&state, 99, "fx/add", &args),
            None,
            "another proxy"
        );
        assert_eq!(sealer.open("toolgate:v1:apr_1:100:zz", 99, "fx/add", &args), None);
    }
}
