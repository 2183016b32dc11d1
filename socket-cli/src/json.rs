//! JSON <-> MessagePack conversion, the one place where `socketctl` turns
//! wire values into JSON lines and JSON input into message data.
//!
//! | MessagePack | JSON |
//! |---|---|
//! | nil | `null` |
//! | bool | `true` / `false` |
//! | int (any width) | number (integer) |
//! | float32 / float64 | number; NaN and infinities become `null` (JSON has none) |
//! | str | string |
//! | bin | `{"$binary": "<base64, standard alphabet, padded>"}` |
//! | array | array |
//! | map (string keys) | object, in wire order |
//! | ext | `{"$ext": {"type": <i8>, "data": "<base64>"}}` |
//!
//! The way back is the same table read from right to left: an object whose only key is
//! `$binary` with a valid base64 string becomes bin, an object whose only key is `$ext`
//! holding exactly `type` (an integer in `-128..=127`) and `data` (base64) becomes ext,
//! and every other object is a map. JSON integers become MessagePack integers, exact over
//! the whole i64 and u64 range; an integer outside it (no fraction, no exponent, e.g.
//! `18446744073709551616`) is refused rather than rounded into a float (SPEC §4). Other
//! numbers become float64.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use rmpv::Value;
use serde_json::{Map, Number, Value as Json};
use socket_factory::{Data, SocketMessage};

/// Key of the object that stands for a MessagePack bin value.
pub(crate) const BINARY_KEY: &str = "$binary";
/// Key of the object that stands for a MessagePack ext value.
pub(crate) const EXT_KEY: &str = "$ext";

/// Converts a MessagePack value to JSON (see the module table).
pub(crate) fn to_json(value: &Value) -> Json {
    match value {
        Value::Nil => Json::Null,
        Value::Boolean(b) => Json::Bool(*b),
        Value::Integer(i) => {
            if let Some(u) = i.as_u64() {
                Json::Number(u.into())
            } else if let Some(s) = i.as_i64() {
                Json::Number(s.into())
            } else {
                // rmpv integers are always u64 or i64; this arm is unreachable in practice.
                Json::Null
            }
        }
        Value::F32(f) => float(f64::from(*f)),
        Value::F64(f) => float(*f),
        Value::String(s) => match s.as_str() {
            Some(text) => Json::String(text.to_owned()),
            // Invalid UTF-8 (our decoder refuses it, but a value may come from elsewhere):
            // keep the bytes rather than lose them.
            None => binary(s.as_bytes()),
        },
        Value::Binary(bytes) => binary(bytes),
        Value::Array(items) => Json::Array(items.iter().map(to_json).collect()),
        Value::Map(entries) => {
            let mut map = Map::with_capacity(entries.len());
            for (k, v) in entries {
                map.insert(key_to_string(k), to_json(v));
            }
            Json::Object(map)
        }
        Value::Ext(kind, bytes) => {
            let mut inner = Map::new();
            inner.insert("type".to_owned(), Json::Number((*kind).into()));
            inner.insert("data".to_owned(), Json::String(BASE64.encode(bytes)));
            let mut outer = Map::new();
            outer.insert(EXT_KEY.to_owned(), Json::Object(inner));
            Json::Object(outer)
        }
    }
}

fn float(f: f64) -> Json {
    Number::from_f64(f).map_or(Json::Null, Json::Number)
}

fn binary(bytes: &[u8]) -> Json {
    let mut map = Map::new();
    map.insert(BINARY_KEY.to_owned(), Json::String(BASE64.encode(bytes)));
    Json::Object(map)
}

/// A map key as a JSON object key: strings as they are, anything else as its JSON text.
fn key_to_string(key: &Value) -> String {
    match key {
        Value::String(s) if s.as_str().is_some() => s.as_str().unwrap_or_default().to_owned(),
        other => to_json(other).to_string(),
    }
}

/// Converts JSON to a MessagePack value (see the module table).
pub(crate) fn from_json(json: &Json) -> Value {
    match json {
        Json::Null => Value::Nil,
        Json::Bool(b) => Value::Boolean(*b),
        Json::Number(n) => {
            if let Some(u) = n.as_u64() {
                Value::from(u)
            } else if let Some(i) = n.as_i64() {
                Value::from(i)
            } else {
                Value::F64(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        Json::String(s) => Value::from(s.as_str()),
        Json::Array(items) => Value::Array(items.iter().map(from_json).collect()),
        Json::Object(map) => {
            if let Some(special) = special_from_json(map) {
                return special;
            }
            Value::Map(map.iter().map(|(k, v)| (Value::from(k.as_str()), from_json(v))).collect())
        }
    }
}

/// `{"$binary": "..."}` and `{"$ext": {"type": n, "data": "..."}}`, when well formed.
fn special_from_json(map: &Map<String, Json>) -> Option<Value> {
    if map.len() != 1 {
        return None;
    }
    if let Some(Json::String(b64)) = map.get(BINARY_KEY) {
        return BASE64.decode(b64).ok().map(Value::Binary);
    }
    if let Some(Json::Object(ext)) = map.get(EXT_KEY) {
        if ext.len() != 2 {
            return None;
        }
        let kind = ext.get("type")?.as_i64().and_then(|k| i8::try_from(k).ok())?;
        let data = BASE64.decode(ext.get("data")?.as_str()?).ok()?;
        return Some(Value::Ext(kind, data));
    }
    None
}

/// Converts a JSON object into message data.
pub(crate) fn object_to_data(object: &Map<String, Json>) -> Data {
    object.iter().map(|(k, v)| (k.clone(), from_json(v))).collect()
}

/// Parses one line of JSON text that must be an object, into message data.
///
/// # Errors
///
/// A lower-case message saying what is wrong: not JSON (with serde_json's position), or
/// JSON but not an object.
pub(crate) fn parse_data(text: &str) -> Result<Data, String> {
    let json: Json = serde_json::from_str(text).map_err(|e| format!("invalid JSON: {e}"))?;
    // The text is valid JSON: refuse an integer serde_json would have rounded into a float.
    check_integers(text)?;
    match json {
        Json::Object(map) => Ok(object_to_data(&map)),
        other => Err(format!("invalid JSON: expected an object, got {}", kind_name(&other))),
    }
}

/// Checks that every integer number in the (valid) JSON `text` fits i64 or u64.
///
/// A number token outside strings with no fraction and no exponent is an integer; serde_json
/// turns one beyond `u64::MAX` or below `i64::MIN` into a float, losing its value, so it is
/// refused here with its text.
///
/// # Errors
///
/// A message naming the number and the range.
fn check_integers(text: &str) -> Result<(), String> {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                // Skip the string, escapes included (the text is valid JSON).
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            b'-' | b'0'..=b'9' => {
                let start = i;
                i += 1;
                while i < bytes.len() && matches!(bytes[i], b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-') {
                    i += 1;
                }
                let token = &text[start..i];
                let integer = !token.contains(['.', 'e', 'E']);
                if integer && token.parse::<u64>().is_err() && token.parse::<i64>().is_err() {
                    let shown = if token.len() > 40 {
                        format!("{}... ({} digits)", &token[..40], token.len())
                    } else {
                        token.to_owned()
                    };
                    return Err(format!(
                        "invalid JSON: the integer {shown} is outside the 64-bit range {}..={}; \
                         write it as a string, or as a float (e.g. 1.8e19) if an approximation is meant",
                        i64::MIN,
                        u64::MAX
                    ));
                }
            }
            _ => i += 1,
        }
    }
    Ok(())
}

fn kind_name(json: &Json) -> &'static str {
    match json {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

/// Message data as a JSON object.
pub(crate) fn data_to_json(data: &Data) -> Json {
    Json::Object(data.iter().map(|(k, v)| (k.to_owned(), to_json(v))).collect())
}

/// A message as a JSON object with the five wire keys, in wire order.
pub(crate) fn message_to_json(msg: &SocketMessage) -> Json {
    let mut map = Map::with_capacity(5);
    map.insert("event_name".to_owned(), Json::String(msg.event_name.as_str().to_owned()));
    map.insert("timestamp_ms".to_owned(), Json::Number(msg.timestamp_ms.into()));
    map.insert("timestamp_iso".to_owned(), Json::String(msg.timestamp_iso.clone()));
    map.insert("message_type".to_owned(), Json::String(msg.message_type.as_str().to_owned()));
    map.insert("data".to_owned(), data_to_json(&msg.data));
    Json::Object(map)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use socket_factory::{EventName, MessageType};

    #[test]
    fn scalars_map_to_json() {
        assert_eq!(to_json(&Value::Nil), Json::Null);
        assert_eq!(to_json(&Value::Boolean(true)), json!(true));
        assert_eq!(to_json(&Value::from(42u8)), json!(42));
        assert_eq!(to_json(&Value::from(-7i64)), json!(-7));
        assert_eq!(to_json(&Value::from(u64::MAX)), json!(u64::MAX));
        assert_eq!(to_json(&Value::from(i64::MIN)), json!(i64::MIN));
        assert_eq!(to_json(&Value::F64(1.5)), json!(1.5));
        assert_eq!(to_json(&Value::F32(0.25)), json!(0.25));
        assert_eq!(to_json(&Value::from("héllo")), json!("héllo"));
    }

    #[test]
    fn non_finite_floats_become_null() {
        assert_eq!(to_json(&Value::F64(f64::NAN)), Json::Null);
        assert_eq!(to_json(&Value::F64(f64::INFINITY)), Json::Null);
        assert_eq!(to_json(&Value::F32(f32::NEG_INFINITY)), Json::Null);
    }

    #[test]
    fn binary_is_a_base64_document() {
        let v = Value::Binary(vec![0, 1, 2, 0xff]);
        assert_eq!(to_json(&v), json!({"$binary": "AAEC/w=="}));
        assert_eq!(from_json(&json!({"$binary": "AAEC/w=="})), v);
        assert_eq!(to_json(&Value::Binary(Vec::new())), json!({"$binary": ""}));
    }

    #[test]
    fn ext_is_a_document() {
        let v = Value::Ext(-1, vec![1, 2, 3, 4]);
        let j = to_json(&v);
        assert_eq!(j, json!({"$ext": {"type": -1, "data": "AQIDBA=="}}));
        assert_eq!(from_json(&j), v);
    }

    #[test]
    fn malformed_specials_stay_plain_objects() {
        // Not base64: an ordinary map.
        let v = from_json(&json!({"$binary": "not base64!"}));
        assert_eq!(v, Value::Map(vec![(Value::from("$binary"), Value::from("not base64!"))]));
        // A second key: an ordinary map.
        let v = from_json(&json!({"$binary": "AA==", "x": 1}));
        assert!(matches!(v, Value::Map(ref m) if m.len() == 2));
        // Ext type out of i8 range: an ordinary map.
        let v = from_json(&json!({"$ext": {"type": 300, "data": "AA=="}}));
        assert!(matches!(v, Value::Map(_)));
    }

    #[test]
    fn containers_round_trip_in_order() {
        let j = json!({"z": [1, "two", null, {"n": -3.5}], "a": {"b": true}, "m": {"$binary": "aGk="}});
        let v = from_json(&j);
        let Value::Map(entries) = &v else { panic!("expected a map, got {v:?}") };
        let keys: Vec<_> = entries.iter().filter_map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["z", "a", "m"]);
        assert_eq!(entries[2].1, Value::Binary(b"hi".to_vec()));
        let back = to_json(&v);
        assert_eq!(back, j);
        assert_eq!(back.to_string(), j.to_string(), "key order is kept");
    }

    #[test]
    fn json_numbers_pick_the_right_msgpack_type() {
        assert_eq!(from_json(&json!(5)), Value::from(5u64));
        assert_eq!(from_json(&json!(-5)), Value::from(-5i64));
        assert_eq!(from_json(&json!(2.0)), Value::F64(2.0));
        assert_eq!(from_json(&json!(u64::MAX)), Value::from(u64::MAX));
    }

    #[test]
    fn integers_are_exact_over_the_whole_64_bit_range() {
        for (text, want) in [
            (r#"{"n": 18446744073709551615}"#, Value::from(u64::MAX)),
            (r#"{"n": -9223372036854775808}"#, Value::from(i64::MIN)),
            (r#"{"n": 9223372036854775807}"#, Value::from(i64::MAX)),
            (r#"{"n": 0}"#, Value::from(0u64)),
        ] {
            let data = parse_data(text).unwrap_or_default();
            assert_eq!(data.get("n"), Some(&want), "{text}");
        }
    }

    #[test]
    fn integers_outside_the_64_bit_range_are_refused_not_rounded() {
        for text in [
            r#"{"n": 18446744073709551616}"#,
            r#"{"n": -9223372036854775809}"#,
            r#"{"deep": [{"n": 100000000000000000000000000000}]}"#,
            r#"{"s": "18446744073709551616 in a string is fine", "n": 18446744073709551616}"#,
        ] {
            let err = parse_data(text).unwrap_err();
            assert!(err.starts_with("invalid JSON: the integer "), "{text}: {err}");
            assert!(err.contains("outside the 64-bit range"), "{text}: {err}");
        }
        // In a string, with escapes, or written as a float: not an integer, accepted.
        let data = parse_data(r#"{"s": "\"18446744073709551616\"", "f": 1.8446744073709552e19}"#);
        assert!(data.is_ok(), "{data:?}");
        let data = parse_data(r#"{"f": 18446744073709551616.0}"#).unwrap_or_default();
        assert!(matches!(data.get("f"), Some(Value::F64(_))));
    }

    #[test]
    fn non_string_keys_are_stringified() {
        let v = Value::Map(vec![(Value::from(1u8), Value::from("one"))]);
        assert_eq!(to_json(&v), json!({"1": "one"}));
    }

    #[test]
    fn invalid_utf8_string_is_kept_as_binary() {
        // A fixstr of two bytes that are not UTF-8.
        let v = rmpv::decode::read_value(&mut &[0xa2u8, 0xff, 0xfe][..]).map_err(|e| e.to_string());
        assert!(matches!(v, Ok(Value::String(ref s)) if s.as_str().is_none()), "{v:?}");
        assert_eq!(v.map(|v| to_json(&v)), Ok(json!({"$binary": "//4="})));
    }

    #[test]
    fn parse_data_accepts_objects_only() {
        let data = parse_data(r#"{"percent": 42, "file": "a.png"}"#).unwrap_or_default();
        assert_eq!(data.get("percent").and_then(Value::as_u64), Some(42));
        assert_eq!(data.get_str("file"), Some("a.png"));

        let err = parse_data("[1, 2]").unwrap_err();
        assert_eq!(err, "invalid JSON: expected an object, got an array");
        let err = parse_data("42").unwrap_err();
        assert!(err.ends_with("got a number"), "{err}");
        let err = parse_data("{\"a\":").unwrap_err();
        assert!(err.starts_with("invalid JSON: EOF while parsing"), "{err}");
        let err = parse_data("").unwrap_err();
        assert!(err.starts_with("invalid JSON:"), "{err}");
    }

    #[test]
    fn message_has_the_five_wire_keys_in_order() -> Result<(), socket_factory::Error> {
        let event = EventName::new("system_status")?;
        let data = Data::new().with("cpu", 12).with("raw", Value::Binary(vec![1]));
        let msg = SocketMessage::at(
            event,
            MessageType::Error,
            data,
            jiff::Timestamp::from_millisecond(1_700_000_000_123).map_err(|e| {
                socket_factory::Error::new(socket_factory::ErrorKind::Validation, "bad test timestamp").with_source(e)
            })?,
            &jiff::tz::TimeZone::UTC,
        );
        let j = message_to_json(&msg);
        assert_eq!(
            j.to_string(),
            r#"{"event_name":"system_status","timestamp_ms":1700000000123,"timestamp_iso":"2023-11-14T22:13:20.123000+00:00","message_type":"error","data":{"cpu":12,"raw":{"$binary":"AQ=="}}}"#
        );
        Ok(())
    }
}
