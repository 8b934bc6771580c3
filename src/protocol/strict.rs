//! Strict request input: JSON without duplicate keys. With duplicate keys,
//! serde_json keeps the last value; a component downstream that keeps the
//! first would act on another call than the one decided (`{"path":
//! "/etc/shadow", "path": "/srv/docs/a.md"}`). (The rules for names are
//! the compiler's: [`crate::compiler::names`].)

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// A JSON value parsed without accepting duplicate keys at any level.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StrictValue(pub Value);

/// The start of the message of a duplicate-key error (for the error code).
pub const DUPLICATE_KEY: &str = "duplicate key";

impl<'de> Deserialize<'de> for StrictValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<StrictValue, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(StrictValue)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        StrictValue::deserialize(deserializer).map(|v| v.0)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        while let Some(StrictValue(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let StrictValue(value) = map.next_value()?;
            if object.contains_key(&key) {
                return Err(de::Error::custom(format!("{DUPLICATE_KEY} `{key}`")));
            }
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

/// A JSON object parsed without duplicate keys at any level.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StrictMap(pub Map<String, Value>);

impl<'de> Deserialize<'de> for StrictMap {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<StrictMap, D::Error> {
        match StrictValue::deserialize(deserializer)?.0 {
            Value::Object(map) => Ok(StrictMap(map)),
            _ => Err(de::Error::custom("expected an object")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_keys_are_refused_at_every_level() {
        for text in [
            r#"{"a": 1, "a": 2}"#,
            r#"{"x": {"path": "/etc/shadow", "path": "/srv/a"}}"#,
            r#"[{"k": 1, "k": 1}]"#,
        ] {
            let error = serde_json::from_str::<StrictValue>(text).expect_err(text);
            assert!(error.to_string().starts_with(DUPLICATE_KEY), "{error}");
        }
        let value: StrictValue =
            serde_json::from_str(r#"{"a": [1, {"b": null}], "c": 1.5}"#).expect("strict");
        assert_eq!(value.0, serde_json::json!({"a": [1, {"b": null}], "c": 1.5}));
    }
}
