//! The hash map of the decision path: `ahash` with per-process random keys,
//! several times faster than the standard SipHash on the short keys toolgate
//! hashes (agent, tool, session names) and still resistant to crafted
//! collisions, since a client cannot know the keys.

/// A `HashMap` hashed with `ahash`.
pub type FastMap<K, V> = std::collections::HashMap<K, V, ahash::RandomState>;
