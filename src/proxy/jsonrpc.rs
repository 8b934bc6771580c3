//! JSON-RPC 2.0 as MCP uses it: messages kept as written, what a message
//! is, the errors the proxy answers with, and the routes that map request
//! ids between the two sides.
//!
//! A message is an [`Envelope`]: its top-level members in order, each
//! value as the exact JSON text that was sent. The proxy reads and replaces
//! only the members it needs, so everything else — fields it does not
//! know, number formats, key order — reaches the other side byte for byte.

use std::collections::HashMap;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Value, json};

/// A JSON object's members in order, each value as its exact JSON text.
#[derive(Debug, Default)]
pub struct Envelope {
    members: Vec<(String, Box<RawValue>)>,
}

/// Why a line is not a message.
#[derive(Debug)]
pub enum EnvelopeError {
    /// Not JSON at all.
    NotJson(serde_json::Error),
    /// JSON, but not an object (a batch array, a scalar), or an object
    /// naming a member twice (the two sides could read different values).
    NotAnObject(&'static str),
}

impl Envelope {
    /// Reads one JSON object, in [`single_line`] form.
    pub fn parse(bytes: &[u8]) -> Result<Envelope, EnvelopeError> {
        let bytes = single_line(bytes);
        let bytes = &*bytes;
        match serde_json::from_slice::<Envelope>(bytes) {
            Ok(envelope) => Ok(envelope),
            Err(error) if error.is_data() => {
                let why = match serde_json::from_slice::<Value>(bytes) {
                    Ok(Value::Array(_)) => "batches are not supported: send one message per line",
                    Ok(Value::Object(_)) => "a member is named twice",
                    _ => "not a JSON object",
                };
                Err(EnvelopeError::NotAnObject(why))
            }
            Err(error) => Err(EnvelopeError::NotJson(error)),
        }
    }

    /// A message the proxy wrote itself.
    pub fn from_value(value: &Value) -> Envelope {
        Envelope::parse(value.to_string().as_bytes()).unwrap_or_default()
    }

    /// A member's JSON text.
    pub fn raw(&self, key: &str) -> Option<&RawValue> {
        self.members.iter().find(|(k, _)| k == key).map(|(_, v)| &**v)
    }

    /// A member, read as `T` (`None` if absent or not a `T`).
    pub fn get<'a, T: Deserialize<'a>>(&'a self, key: &str) -> Option<T> {
        serde_json::from_str(self.raw(key)?.get()).ok()
    }

    /// Whether the member is present.
    pub fn has(&self, key: &str) -> bool {
        self.raw(key).is_some()
    }

    /// Replaces (or adds) a member.
    pub fn set(&mut self, key: &str, value: Box<RawValue>) {
        match self.members.iter_mut().find(|(k, _)| k == key) {
            Some((_, old)) => *old = value,
            None => self.members.push((key.to_owned(), value)),
        }
    }

    /// Removes a member.
    pub fn remove(&mut self, key: &str) {
        self.members.retain(|(k, _)| k != key);
    }

    /// Replaces (or adds) a member with a value.
    pub fn set_value(&mut self, key: &str, value: &impl serde::Serialize) {
        if let Ok(raw) = serde_json::value::to_raw_value(value) {
            self.set(key, raw);
        }
    }

    /// The object as one line of JSON (without a newline).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.members.iter().map(|(k, v)| k.len() + v.get().len() + 4).sum());
        out.push(b'{');
        for (n, (key, value)) in self.members.iter().enumerate() {
            if n > 0 {
                out.push(b',');
            }
            // Writing a string into memory cannot fail.
            let _ = serde_json::to_writer(&mut out, key);
            out.push(b':');
            out.extend_from_slice(value.get().as_bytes());
        }
        out.push(b'}');
        out
    }

    /// The object as a JSON text value (to nest it in another envelope).
    pub fn to_raw(&self) -> Option<Box<RawValue>> {
        String::from_utf8(self.to_bytes()).ok().and_then(|text| RawValue::from_string(text).ok())
    }
}

impl<'de> Deserialize<'de> for Envelope {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Members;
        impl<'de> Visitor<'de> for Members {
            type Value = Envelope;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Envelope, A::Error> {
                let mut members: Vec<(String, Box<RawValue>)> = Vec::new();
                while let Some((key, value)) = map.next_entry::<String, Box<RawValue>>()? {
                    if members.iter().any(|(k, _)| *k == key) {
                        return Err(serde::de::Error::custom("a member is named twice"));
                    }
                    members.push((key, value));
                }
                Ok(Envelope { members })
            }
        }
        deserializer.deserialize_map(Members)
    }
}

/// Invalid JSON was received.
pub const PARSE_ERROR: i64 = -32700;
/// The JSON sent is not a valid request object.
pub const INVALID_REQUEST: i64 = -32600;
/// Invalid method parameters (MCP: also an unknown tool).
pub const INVALID_PARAMS: i64 = -32602;
/// Internal JSON-RPC error.
pub const INTERNAL_ERROR: i64 = -32603;

/// A line in a form every line reader reads as one line, with the same
/// meaning: carriage returns removed (in JSON text a raw CR can only be
/// whitespace, but Python's text streams and Node's `readline` end a line
/// there, so a CR inside a message would let a second, undecided message
/// reach the server), and the characters some readers also take for line
/// ends (U+0085, U+2028, U+2029, which can only stand inside strings)
/// written as escapes.
pub fn single_line(bytes: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    let breaks = |window: &[u8]| matches!(window, [0xC2, 0x85, ..] | [0xE2, 0x80, 0xA8 | 0xA9]);
    let clean = !bytes.contains(&b'\r') && !bytes.windows(3).any(breaks) && !bytes.ends_with(&[0xC2, 0x85]);
    if clean {
        return std::borrow::Cow::Borrowed(bytes);
    }
    let mut out = Vec::with_capacity(bytes.len() + 16);
    let mut i = 0;
    while i < bytes.len() {
        match &bytes[i..] {
            [b'\r', ..] => i += 1,
            [0xC2, 0x85, ..] => {
                out.extend_from_slice(b"\\u0085");
                i += 2;
            }
            [0xE2, 0x80, last @ (0xA8 | 0xA9), ..] => {
                out.extend_from_slice(if *last == 0xA8 { b"\\u2028" } else { b"\\u2029" });
                i += 3;
            }
            [byte, ..] => {
                out.push(*byte);
                i += 1;
            }
            [] => break,
        }
    }
    std::borrow::Cow::Owned(out)
}

/// What one message is.
#[derive(Debug)]
pub enum Message {
    /// A request: a method and an id; an answer is due.
    Request {
        /// The method.
        method: String,
        /// The sender's id.
        id: Value,
    },
    /// A notification: a method and no id.
    Notification {
        /// The method.
        method: String,
    },
    /// An answer to a request: an id and a result or an error.
    Response {
        /// The id of the request answered.
        id: Value,
    },
    /// Anything else: an object that is none of the above.
    Invalid {
        /// The id, if one can be read, for the error answer.
        id: Option<Value>,
    },
}

/// Classifies a message by its members.
pub fn classify(message: &Envelope) -> Message {
    let id = message.get::<Value>("id").filter(is_valid_id);
    let method = message.get::<String>("method");
    if message.get::<String>("jsonrpc").as_deref() != Some("2.0") {
        return Message::Invalid { id };
    }
    match (method, id) {
        (Some(method), Some(id)) => Message::Request { method, id },
        (Some(method), None) if !message.has("id") => Message::Notification { method },
        (None, Some(id)) if message.has("result") || message.has("error") => Message::Response { id },
        (_, id) => Message::Invalid { id },
    }
}

/// The longest string id accepted: ids are remembered while their request
/// is in flight.
pub const MAX_ID_BYTES: usize = 256;

/// MCP ids are strings (here of at most [`MAX_ID_BYTES`]) or integers
/// (never null).
fn is_valid_id(id: &Value) -> bool {
    id.as_str().is_some_and(|id| id.len() <= MAX_ID_BYTES) || id.as_i64().is_some() || id.as_u64().is_some()
}

/// A JSON-RPC error response.
pub fn error(id: Option<&Value>, code: i64, message: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id.cloned().unwrap_or(Value::Null), "error": {"code": code, "message": message}})
}

/// A JSON-RPC success response.
pub fn result(id: &Value, result: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "result": result})
}

/// The most requests in flight in each direction: a peer that never waits
/// for its answers cannot make the proxy remember without bound.
pub const MAX_IN_FLIGHT: usize = 4096;

/// Why a request could not be routed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouteError {
    /// The sender already has a request with this id in flight.
    DuplicateId,
    /// [`MAX_IN_FLIGHT`] requests are already in flight.
    TooMany,
}

impl RouteError {
    /// The error message sent back.
    pub fn message(self) -> &'static str {
        match self {
            RouteError::DuplicateId => "a request with this id is already in flight",
            RouteError::TooMany => "too many requests in flight; wait for answers",
        }
    }
}

/// Requests of one side in flight to the other, under the proxy's own ids:
/// ids the proxy issues never collide with either side's, and requests the
/// proxy itself originates take ids from the same sequence.
#[derive(Debug)]
pub struct Routes<T> {
    /// Proxy id → the sender's id and what the proxy does with the answer.
    by_proxy_id: HashMap<u64, (Value, T)>,
    /// The sender's id (as JSON text) → proxy id: cancellations name it.
    by_sender_id: HashMap<String, u64>,
}

impl<T> Default for Routes<T> {
    fn default() -> Self {
        Routes { by_proxy_id: HashMap::new(), by_sender_id: HashMap::new() }
    }
}

impl<T> Routes<T> {
    /// Remembers a request with the sender's `id` under `proxy_id`.
    pub fn insert(&mut self, proxy_id: u64, id: &Value, purpose: T) -> Result<(), RouteError> {
        if self.by_proxy_id.len() >= MAX_IN_FLIGHT {
            return Err(RouteError::TooMany);
        }
        let key = id.to_string();
        if self.by_sender_id.contains_key(&key) {
            return Err(RouteError::DuplicateId);
        }
        self.by_sender_id.insert(key, proxy_id);
        self.by_proxy_id.insert(proxy_id, (id.clone(), purpose));
        Ok(())
    }

    /// The request answered under `proxy_id`, forgotten.
    pub fn take(&mut self, proxy_id: &Value) -> Option<(Value, T)> {
        let (id, purpose) = self.by_proxy_id.remove(&proxy_id.as_u64()?)?;
        self.by_sender_id.remove(&id.to_string());
        Some((id, purpose))
    }

    /// The proxy id of the sender's request `id`, if it is in flight.
    pub fn proxy_id(&self, id: &Value) -> Option<u64> {
        self.by_sender_id.get(&id.to_string()).copied()
    }

    /// Forgets the sender's request `id` (it was cancelled); its proxy id.
    pub fn forget(&mut self, id: &Value) -> Option<u64> {
        let proxy_id = self.by_sender_id.remove(&id.to_string())?;
        self.by_proxy_id.remove(&proxy_id);
        Some(proxy_id)
    }

    /// Whether no request is in flight.
    pub fn is_empty(&self) -> bool {
        self.by_proxy_id.is_empty()
    }

    /// Every request in flight, forgotten (the other side is gone).
    pub fn drain(&mut self) -> Vec<(Value, T)> {
        self.by_sender_id.clear();
        self.by_proxy_id.drain().map(|(_, entry)| entry).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_told_apart_by_their_members() {
        let kind = |text: &str| match Envelope::parse(text.as_bytes()) {
            Ok(envelope) => format!("{:?}", classify(&envelope)),
            Err(error) => format!("Invalid {error:?}"),
        };
        assert!(kind(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call"}"#).starts_with("Request"));
        assert!(
            kind(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#).starts_with("Notification")
        );
        assert!(kind(r#"{"jsonrpc":"2.0","id":"a","result":{}}"#).starts_with("Response"));
        for invalid in [
            r#"[{"jsonrpc":"2.0","id":1,"method":"tools/call"}]"#,
            r#"{"id":1,"method":"tools/call"}"#,
            r#"{"jsonrpc":"2.0","id":null,"method":"tools/call"}"#,
            r#"{"jsonrpc":"2.0","id":1.5,"method":"tools/call"}"#,
            r#"{"jsonrpc":"2.0","id":1}"#,
            r#"7"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","method":"tools/call"}"#,
        ] {
            assert!(kind(invalid).starts_with("Invalid"), "{invalid}: {}", kind(invalid));
        }
    }

    #[test]
    fn members_nobody_touched_pass_byte_for_byte() {
        let text = r#"{"jsonrpc":"2.0","id":"x","result":{"n":1e400,"big":123456789012345678901234567890,"z":1,"a":[1.50]},"zz":{"b":1,"a":2}}"#;
        let mut envelope = Envelope::parse(text.as_bytes()).expect("object");
        assert_eq!(envelope.to_bytes(), text.as_bytes());
        envelope.set_value("id", &7);
        let expected = text.replacen(r#""id":"x""#, r#""id":7"#, 1);
        assert_eq!(String::from_utf8(envelope.to_bytes()).expect("utf-8"), expected);
    }

    #[test]
    fn a_message_stays_one_line_for_every_reader() {
        let smuggled =
            b"{\"jsonrpc\":\"2.0\",\"id\":\"p\",\"method\":\"ping\",\"params\":{\"x\":\r{\"a\":1}\r}}";
        let envelope = Envelope::parse(smuggled).expect("valid JSON: the CRs are whitespace");
        let out = envelope.to_bytes();
        assert!(!out.contains(&b'\r'), "{}", String::from_utf8_lossy(&out));
        let text = "{\"jsonrpc\":\"2.0\",\"method\":\"m\",\"params\":{\"s\":\"a\u{2028}b\u{2029}c\u{85}d\"}}";
        let out = Envelope::parse(text.as_bytes()).expect("valid").to_bytes();
        let out = String::from_utf8(out).expect("utf-8");
        assert!(out.contains(r"a\u2028b\u2029c\u0085d"), "{out}");
        let same: Value = serde_json::from_str(&out).expect("JSON");
        assert_eq!(same["params"]["s"], "a\u{2028}b\u{2029}c\u{85}d", "the same string");
    }

    #[test]
    fn an_id_too_long_to_remember_is_refused() {
        let long = format!(r#"{{"jsonrpc":"2.0","id":"{}","method":"ping"}}"#, "x".repeat(MAX_ID_BYTES + 1));
        let envelope = Envelope::parse(long.as_bytes()).expect("object");
        assert!(matches!(classify(&envelope), Message::Invalid { id: None }));
    }

    #[test]
    fn routes_refuse_a_duplicate_id_and_the_request_beyond_the_bound() {
        let mut routes = Routes::default();
        routes.insert(1, &json!("a"), ()).expect("first");
        assert_eq!(routes.insert(2, &json!("a"), ()), Err(RouteError::DuplicateId));
        // The number 1 and the string "1" are different ids.
        routes.insert(3, &json!(1), ()).expect("number");
        routes.insert(4, &json!("1"), ()).expect("string");
        assert_eq!(routes.proxy_id(&json!("1")), Some(4));
        assert_eq!(routes.take(&json!(4)).map(|(id, ())| id), Some(json!("1")));
        assert_eq!(routes.take(&json!(4)), None);
        for n in 10..(10 + MAX_IN_FLIGHT as u64) {
            let _ = routes.insert(n, &json!(n), ());
        }
        assert_eq!(routes.insert(1, &json!("late"), ()), Err(RouteError::TooMany));
    }
}
