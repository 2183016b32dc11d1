//! The message model: event names, message types and [`SocketMessage`].

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use rmpv::Value;

use crate::error::{Error, ErrorKind, Result};

/// Longest valid event name, in characters.
pub const MAX_EVENT_NAME_LEN: usize = 64;

/// A validated event name: 1 to 64 characters from `[a-zA-Z0-9_-]`.
///
/// The name of the channel a server is bound to; it becomes the socket file
/// name (`{socket_dir}/{event}.sock`) and the seed of the TCP port.
///
/// # Examples
///
/// ```
/// use socket_core::EventName;
///
/// let name = EventName::new("wallpaper_change")?;
/// assert_eq!(name.as_str(), "wallpaper_change");
/// assert!(EventName::new("").is_err());
/// assert!(EventName::new("../etc").is_err());
/// # Ok::<(), socket_core::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventName(Arc<str>);

impl EventName {
    /// Validates `name` and wraps it.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Validation`] with one of three messages: the name is
    /// empty, longer than 64 characters, or contains characters outside
    /// `[a-zA-Z0-9_-]`.
    pub fn new(name: impl Into<String>) -> Result<Self> {
        let name = name.into();
        validate_event_name(&name)?;
        Ok(EventName(Arc::from(name)))
    }

    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Checks an event name against the rules of [`EventName`].
///
/// # Errors
///
/// See [`EventName::new`].
pub fn validate_event_name(name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(Error::new(
            ErrorKind::Validation,
            "event name is empty: use 1 to 64 characters from a-z, A-Z, 0-9, '_' and '-'",
        ));
    }
    let chars = name.chars().count();
    if chars > MAX_EVENT_NAME_LEN {
        return Err(Error::new(
            ErrorKind::Validation,
            format!("event name is too long: {chars} characters, at most {MAX_EVENT_NAME_LEN} allowed"),
        ));
    }
    if let Some(bad) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-')) {
        return Err(Error::new(
            ErrorKind::Validation,
            format!("event name {name:?} contains invalid characters ({bad:?}): only a-z, A-Z, 0-9, '_' and '-' are allowed"),
        ));
    }
    Ok(())
}

impl fmt::Debug for EventName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for EventName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for EventName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl FromStr for EventName {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        EventName::new(s)
    }
}

impl TryFrom<&str> for EventName {
    type Error = Error;
    fn try_from(s: &str) -> Result<Self> {
        EventName::new(s)
    }
}

impl TryFrom<String> for EventName {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        EventName::new(s)
    }
}

/// The kind of a message: application data, an error report, or control.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageType {
    /// Application data (`"data"`).
    Data,
    /// An error report (`"error"`); server errors carry `code` and `error` in `data`.
    Error,
    /// Control (`"control"`); protocol control has a string `control` key in `data`.
    Control,
}

impl MessageType {
    /// The wire spelling: `"data"`, `"error"` or `"control"`.
    pub fn as_str(self) -> &'static str {
        match self {
            MessageType::Data => "data",
            MessageType::Error => "error",
            MessageType::Control => "control",
        }
    }
}

impl fmt::Display for MessageType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for MessageType {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "data" => Ok(MessageType::Data),
            "error" => Ok(MessageType::Error),
            "control" => Ok(MessageType::Control),
            other => Err(Error::new(
                ErrorKind::Validation,
                format!("unknown message type {other:?}: expected \"data\", \"error\" or \"control\""),
            )),
        }
    }
}

/// The `data` map of a message: string keys, any MessagePack values, in insertion order.
///
/// Nested maps inside values must have string keys too; the encoder refuses
/// anything else, because Python peers reject integer keys.
///
/// # Examples
///
/// ```
/// use socket_core::Data;
///
/// let mut data = Data::new();
/// data.insert("progress", 42);
/// data.insert("file", "a.png");
/// assert_eq!(data.get("progress").and_then(|v| v.as_u64()), Some(42));
/// assert_eq!(data.len(), 2);
/// ```
#[derive(Clone, Default, PartialEq)]
pub struct Data(Vec<(String, Value)>);

impl Data {
    /// An empty map.
    pub fn new() -> Self {
        Data(Vec::new())
    }

    /// Sets `key` to `value`, replacing an earlier value of the same key in place.
    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<Value>) {
        let key = key.into();
        let value = value.into();
        match self.0.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => self.0.push((key, value)),
        }
    }

    /// Builder form of [`insert`](Self::insert).
    #[must_use]
    pub fn with(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.insert(key, value);
        self
    }

    /// The value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// The value of `key` if it is a string.
    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(Value::as_str)
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there are no entries.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Entries in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// The entries as a vector of pairs.
    pub fn into_entries(self) -> Vec<(String, Value)> {
        self.0
    }

    /// Builds the map from pairs; a repeated key keeps its last value (at
    /// the position of its first occurrence).
    pub fn from_entries(entries: impl IntoIterator<Item = (String, Value)>) -> Self {
        let entries = entries.into_iter();
        let mut out: Vec<(String, Value)> = Vec::with_capacity(entries.size_hint().0);
        // Index of each key in `out`: keeps large maps linear.
        let mut index: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
        for (k, v) in entries {
            if out.len() < 16 && index.is_empty() {
                match out.iter_mut().find(|(key, _)| *key == k) {
                    Some(slot) => slot.1 = v,
                    None => out.push((k, v)),
                }
                continue;
            }
            if index.is_empty() {
                index.extend(out.iter().enumerate().map(|(i, (key, _))| (key.clone(), i)));
            }
            match index.get(&k) {
                Some(&i) => out[i].1 = v,
                None => {
                    index.insert(k.clone(), out.len());
                    out.push((k, v));
                }
            }
        }
        Data(out)
    }

    /// Wraps pairs whose keys are known to be distinct (checked by the decoder).
    pub(crate) fn from_unique_entries(entries: Vec<(String, Value)>) -> Self {
        Data(entries)
    }

    /// Serializes `value` (which must serialize as a map with string keys) into a `Data`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Message`] if `value` does not serialize to a map with string keys.
    ///
    /// # Examples
    ///
    /// ```
    /// #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    /// struct Progress { percent: u8, file: String }
    ///
    /// let data = socket_core::Data::from_serialize(&Progress { percent: 7, file: "x".into() })?;
    /// let back: Progress = data.to_deserialize()?;
    /// assert_eq!(back.percent, 7);
    /// # Ok::<(), socket_core::Error>(())
    /// ```
    pub fn from_serialize<T: serde::Serialize + ?Sized>(value: &T) -> Result<Self> {
        let bytes = rmp_serde::to_vec_named(value)
            .map_err(|e| Error::new(ErrorKind::Message, "cannot serialize value as message data").with_source(e))?;
        let value = rmpv::decode::read_value(&mut bytes.as_slice())
            .map_err(|e| Error::new(ErrorKind::Message, "cannot serialize value as message data").with_source(e))?;
        Data::try_from_value(value)
    }

    /// Deserializes the map into a `T`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Message`] if the map does not match `T`.
    pub fn to_deserialize<T: serde::de::DeserializeOwned>(&self) -> Result<T> {
        let value = self.to_value();
        let mut bytes = Vec::new();
        rmpv::encode::write_value(&mut bytes, &value)
            .map_err(|e| Error::new(ErrorKind::Message, "cannot encode message data").with_source(e))?;
        rmp_serde::from_slice(&bytes).map_err(|e| {
            Error::new(ErrorKind::Message, "message data does not match the requested type").with_source(e)
        })
    }

    /// The map as a MessagePack value.
    pub fn to_value(&self) -> Value {
        Value::Map(self.0.iter().map(|(k, v)| (Value::from(k.as_str()), v.clone())).collect())
    }

    /// Converts a MessagePack map with string keys into a `Data`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Message`] if `value` is not a map, or a key anywhere in it is not a string.
    pub fn try_from_value(value: Value) -> Result<Self> {
        match value {
            Value::Map(entries) => {
                let mut out = Vec::with_capacity(entries.len());
                for (k, v) in entries {
                    check_string_keys(&v)?;
                    match k {
                        Value::String(s) => match s.into_str() {
                            Some(s) => out.push((s, v)),
                            None => return Err(Error::new(ErrorKind::Message, "data key is not valid UTF-8")),
                        },
                        _ => return Err(Error::new(ErrorKind::Message, "data has a non-string key")),
                    }
                }
                Ok(Data::from_entries(out))
            }
            _ => Err(Error::new(ErrorKind::Message, "data must be a map with string keys")),
        }
    }
}

/// Checks that every map inside `value` has string keys.
pub(crate) fn check_string_keys(value: &Value) -> Result<()> {
    match value {
        Value::Map(entries) => {
            for (k, v) in entries {
                if !matches!(k, Value::String(s) if s.is_str()) {
                    return Err(Error::new(
                        ErrorKind::Message,
                        "a map key is not a string (peers require string keys)",
                    ));
                }
                check_string_keys(v)?;
            }
            Ok(())
        }
        Value::Array(items) => items.iter().try_for_each(check_string_keys),
        _ => Ok(()),
    }
}

impl fmt::Debug for Data {
    /// Prints the keys only: payloads never reach logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.0.iter().map(|(k, _)| k)).finish()
    }
}

impl FromIterator<(String, Value)> for Data {
    fn from_iter<I: IntoIterator<Item = (String, Value)>>(iter: I) -> Self {
        Data::from_entries(iter)
    }
}

/// One message, as it travels on the wire.
///
/// # Examples
///
/// ```
/// use socket_core::{Data, EventName, MessageType, SocketMessage};
///
/// let event = EventName::new("system_status")?;
/// let msg = SocketMessage::data(event, Data::new().with("cpu", 12));
/// assert_eq!(msg.message_type, MessageType::Data);
/// assert!(msg.timestamp_iso.ends_with("+00:00"));
/// # Ok::<(), socket_core::Error>(())
/// ```
#[derive(Clone, PartialEq)]
pub struct SocketMessage {
    /// The event (channel) this message belongs to.
    pub event_name: EventName,
    /// Milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    /// The same instant as RFC 3339 with a numeric offset and six fractional digits.
    pub timestamp_iso: String,
    /// Data, error or control.
    pub message_type: MessageType,
    /// The payload map.
    pub data: Data,
}

impl SocketMessage {
    /// A message stamped now, in UTC.
    pub fn new(event_name: EventName, message_type: MessageType, data: Data) -> Self {
        Self::new_in(event_name, message_type, data, &jiff::tz::TimeZone::UTC)
    }

    /// A message stamped now, with `timestamp_iso` in time zone `tz`.
    ///
    /// Both timestamps come from one clock read.
    pub fn new_in(event_name: EventName, message_type: MessageType, data: Data, tz: &jiff::tz::TimeZone) -> Self {
        Self::at(event_name, message_type, data, jiff::Timestamp::now(), tz)
    }

    /// A message stamped at `when`, with `timestamp_iso` in time zone `tz`.
    pub fn at(
        event_name: EventName,
        message_type: MessageType,
        data: Data,
        when: jiff::Timestamp,
        tz: &jiff::tz::TimeZone,
    ) -> Self {
        let (timestamp_ms, timestamp_iso) = timestamps(when, tz);
        SocketMessage { event_name, timestamp_ms, timestamp_iso, message_type, data }
    }

    /// A DATA message stamped now, in UTC.
    pub fn data(event_name: EventName, data: Data) -> Self {
        Self::new(event_name, MessageType::Data, data)
    }

    /// A DATA message whose `data` is the serialized `value`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Message`] if `value` does not serialize as a map with string keys.
    pub fn from_serialize<T: serde::Serialize + ?Sized>(event_name: EventName, value: &T) -> Result<Self> {
        Ok(Self::data(event_name, Data::from_serialize(value)?))
    }

    /// Deserializes `data` into a `T`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Message`] if `data` does not match `T`.
    pub fn deserialize_data<T: serde::de::DeserializeOwned>(&self) -> Result<T> {
        self.data.to_deserialize()
    }
}

impl fmt::Debug for SocketMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SocketMessage")
            .field("event_name", &self.event_name)
            .field("timestamp_ms", &self.timestamp_ms)
            .field("timestamp_iso", &self.timestamp_iso)
            .field("message_type", &self.message_type)
            .field("data", &self.data)
            .finish()
    }
}

/// Both wire timestamps from one instant: epoch milliseconds and RFC 3339
/// with a numeric offset and six fractional digits.
pub fn timestamps(when: jiff::Timestamp, tz: &jiff::tz::TimeZone) -> (u64, String) {
    let ms = u64::try_from(when.as_millisecond()).unwrap_or(0);
    let zoned = when.to_zoned(tz.clone());
    let iso = zoned.strftime("%Y-%m-%dT%H:%M:%S%.6f%:z").to_string();
    (ms, iso)
}

#[cfg(test)]
mod from_entries_tests {
    use super::*;

    #[test]
    fn a_repeated_key_keeps_its_last_value_at_its_first_place() {
        let small =
            Data::from_entries([("a".to_owned(), Value::from(1)), ("b".into(), 2.into()), ("a".into(), 3.into())]);
        assert_eq!(small.into_entries(), vec![("a".to_owned(), Value::from(3)), ("b".to_owned(), Value::from(2))]);
        // Past 16 keys the index takes over; same rule.
        let mut pairs: Vec<(String, Value)> = (0..20).map(|i| (format!("k{i}"), Value::from(i))).collect();
        pairs.push(("k3".to_owned(), Value::from(-1)));
        let big = Data::from_entries(pairs).into_entries();
        assert_eq!(big.len(), 20);
        assert_eq!(big[3], ("k3".to_owned(), Value::from(-1)));
    }
}
