//! The message model and the transport registry as a user sees them:
//! conversions, accessors, error kinds and messages, and `Debug` output that
//! never shows payloads.

use std::str::FromStr;
use std::sync::Arc;

use async_trait::async_trait;
use rmpv::Value;
use serde::{Deserialize, Serialize};
use socket_core::config::Config;
use socket_core::{
    Connection, Data, Endpoint, ErrorKind, EventName, Listener, MessageType, SocketMessage, Transport,
    TransportRegistry,
};

fn event(name: &str) -> EventName {
    EventName::new(name).expect("valid event name")
}

#[test]
fn event_name_conversions_agree_with_new() {
    let from_str = EventName::from_str("wallpaper_change").expect("FromStr accepts a valid name");
    let parsed: EventName = "wallpaper_change".parse().expect("parse accepts a valid name");
    let try_from_str = EventName::try_from("wallpaper_change").expect("TryFrom<&str> accepts a valid name");
    let try_from_string =
        EventName::try_from(String::from("wallpaper_change")).expect("TryFrom<String> accepts a valid name");
    assert_eq!(from_str, event("wallpaper_change"));
    assert_eq!(parsed, from_str);
    assert_eq!(try_from_str, from_str);
    assert_eq!(try_from_string, from_str);
    assert_eq!(from_str.to_string(), "wallpaper_change");
    assert_eq!(AsRef::<str>::as_ref(&from_str), "wallpaper_change");
    assert_eq!(format!("{from_str:?}"), "\"wallpaper_change\"");
}

#[test]
fn event_name_conversions_reject_what_new_rejects() {
    for bad in ["", "../etc", "has space", "ü"] {
        let e1 = EventName::from_str(bad).expect_err("FromStr rejects an invalid name");
        let e2 = EventName::try_from(bad).expect_err("TryFrom<&str> rejects an invalid name");
        let e3 = EventName::try_from(bad.to_owned()).expect_err("TryFrom<String> rejects an invalid name");
        for e in [&e1, &e2, &e3] {
            assert_eq!(e.kind(), ErrorKind::Validation, "{bad:?}: {e}");
        }
        assert_eq!(e1.message(), e2.message());
        assert_eq!(e2.message(), e3.message());
    }
    let long = "a".repeat(65);
    let err = EventName::try_from(long).expect_err("65 characters is too long");
    assert!(err.message().contains("too long"), "{err}");
    assert!(EventName::try_from("a".repeat(64)).is_ok(), "64 characters is the limit");
}

#[test]
fn message_type_round_trips_its_wire_spelling() {
    for ty in [MessageType::Data, MessageType::Error, MessageType::Control] {
        assert_eq!(ty.to_string(), ty.as_str());
        assert_eq!(MessageType::from_str(ty.as_str()).expect("the wire spelling parses"), ty);
    }
}

#[test]
fn message_type_rejects_unknown_and_differently_cased_spellings() {
    for bad in ["", "Data", "DATA", "ctrl", "errors"] {
        let err = bad.parse::<MessageType>().expect_err("not a wire spelling");
        assert_eq!(err.kind(), ErrorKind::Validation);
        assert!(err.message().contains("unknown message type"), "{err}");
        assert!(err.message().contains(&format!("{bad:?}")), "the message names the input: {err}");
    }
}

#[test]
fn data_accessors_follow_insertion_order() {
    let mut data = Data::new().with("file", "a.png").with("progress", 42).with("done", false);
    data.insert("progress", 43);
    let keys: Vec<&str> = data.iter().map(|(k, _)| k).collect();
    assert_eq!(keys, ["file", "progress", "done"], "replacing a key keeps its position");
    assert_eq!(data.get_str("file"), Some("a.png"));
    assert_eq!(data.get_str("progress"), None, "a number is not a string");
    assert_eq!(data.get_str("missing"), None);
    assert_eq!(data.get("progress").and_then(Value::as_u64), Some(43));
    assert!(!data.is_empty());
    let entries = data.into_entries();
    assert_eq!(
        entries,
        vec![
            ("file".to_owned(), Value::from("a.png")),
            ("progress".to_owned(), Value::from(43)),
            ("done".to_owned(), Value::from(false)),
        ]
    );
    assert!(Data::new().is_empty());
}

#[test]
fn data_collects_from_an_iterator_keeping_the_last_value_of_a_repeated_key() {
    let data: Data =
        vec![("a".to_owned(), Value::from(1)), ("b".to_owned(), Value::from(2)), ("a".to_owned(), Value::from(3))]
            .into_iter()
            .collect();
    let entries = data.into_entries();
    assert_eq!(entries, vec![("a".to_owned(), Value::from(3)), ("b".to_owned(), Value::from(2))]);
}

#[test]
fn data_from_entries_handles_large_maps_with_repeats() {
    // More than 16 entries switches to the indexed path; repeats must still collapse.
    let mut pairs: Vec<(String, Value)> = (0..40).map(|i| (format!("k{i}"), Value::from(i))).collect();
    pairs.push(("k3".to_owned(), Value::from("late")));
    pairs.push(("k39".to_owned(), Value::from("last")));
    let data = Data::from_entries(pairs);
    assert_eq!(data.len(), 40);
    assert_eq!(data.get_str("k3"), Some("late"));
    assert_eq!(data.get_str("k39"), Some("last"));
    assert_eq!(data.iter().nth(3).map(|(k, _)| k), Some("k3"), "the first position is kept");
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Progress {
    percent: u8,
    file: String,
}

#[test]
fn serde_round_trip_through_a_message() -> socket_core::Result<()> {
    let value = Progress { percent: 7, file: "x.png".into() };
    let msg = SocketMessage::from_serialize(event("progress"), &value)?;
    assert_eq!(msg.message_type, MessageType::Data);
    assert_eq!(msg.data.get_str("file"), Some("x.png"));
    let back: Progress = msg.deserialize_data()?;
    assert_eq!(back, value);
    Ok(())
}

#[test]
fn from_serialize_refuses_values_that_are_not_string_keyed_maps() {
    let not_a_map = Data::from_serialize(&42u32).expect_err("a number is not a map");
    assert_eq!(not_a_map.kind(), ErrorKind::Message);
    assert!(not_a_map.message().contains("map"), "{not_a_map}");

    let seq = SocketMessage::from_serialize(event("e"), &vec![1, 2]).expect_err("a list is not a map");
    assert_eq!(seq.kind(), ErrorKind::Message);

    let int_keys: std::collections::BTreeMap<u8, u8> = [(1, 2)].into_iter().collect();
    let err = Data::from_serialize(&int_keys).expect_err("integer keys are refused");
    assert_eq!(err.kind(), ErrorKind::Message);
    assert!(err.message().contains("non-string key"), "{err}");
}

#[test]
fn from_serialize_refuses_nested_maps_with_non_string_keys() {
    #[derive(Serialize)]
    struct Outer {
        inner: Vec<std::collections::BTreeMap<u8, u8>>,
    }
    let value = Outer { inner: vec![[(1, 2)].into_iter().collect()] };
    let err = Data::from_serialize(&value).expect_err("a nested integer key is refused");
    assert_eq!(err.kind(), ErrorKind::Message);
    assert!(err.message().contains("not a string"), "{err}");
}

#[test]
fn from_serialize_reports_serializer_failures_as_message_errors() {
    struct Fails;
    impl Serialize for Fails {
        fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
            Err(serde::ser::Error::custom("refused"))
        }
    }
    let err = Data::from_serialize(&Fails).expect_err("the serializer fails");
    assert_eq!(err.kind(), ErrorKind::Message);
    assert!(err.message().contains("cannot serialize"), "{err}");
    assert!(std::error::Error::source(&err).is_some(), "the cause is kept as the source");
}

#[test]
fn to_deserialize_reports_a_mismatch_as_a_message_error() {
    let msg = SocketMessage::data(event("progress"), Data::new().with("percent", "not a number"));
    let err = msg.deserialize_data::<Progress>().expect_err("a string is not a u8");
    assert_eq!(err.kind(), ErrorKind::Message);
    assert!(err.message().contains("does not match"), "{err}");
}

#[test]
fn try_from_value_checks_keys_and_shape() {
    let err = Data::try_from_value(Value::from(1)).expect_err("not a map");
    assert_eq!(err.kind(), ErrorKind::Message);
    assert!(err.message().contains("must be a map"), "{err}");

    // {"\xff\xfe": nil}, as a peer could send it.
    let bad_utf8 = rmpv::decode::read_value(&mut &[0x81u8, 0xa2, 0xff, 0xfe, 0xc0][..]).expect("valid msgpack");
    let err = Data::try_from_value(bad_utf8).expect_err("a key must be UTF-8");
    assert!(err.message().contains("UTF-8"), "{err}");

    let nested = Value::Map(vec![(
        Value::from("list"),
        Value::Array(vec![Value::Map(vec![(Value::from("ok"), Value::Map(vec![(Value::from(1), Value::Nil)]))])]),
    )]);
    let err = Data::try_from_value(nested).expect_err("a deeply nested integer key is refused");
    assert_eq!(err.kind(), ErrorKind::Message);

    let good = Value::Map(vec![(Value::from("a"), Value::Array(vec![Value::Map(vec![(Value::from("b"), 1.into())])]))]);
    let data = Data::try_from_value(good.clone()).expect("string keys everywhere");
    assert_eq!(data.to_value(), good);
}

#[test]
fn debug_output_never_contains_payloads() {
    let secret = "hunter2-secret-payload";
    let data = Data::new().with("password", secret).with("nested", Value::Array(vec![Value::from(secret)]));
    let shown = format!("{data:?}");
    assert!(shown.contains("password") && shown.contains("nested"), "keys are shown: {shown}");
    assert!(!shown.contains(secret), "payload leaked: {shown}");

    let msg = SocketMessage::data(event("login"), data);
    let shown = format!("{msg:?}");
    assert!(shown.contains("login") && shown.contains("password"), "{shown}");
    assert!(!shown.contains(secret), "payload leaked: {shown}");
    let alternate = format!("{msg:#?}");
    assert!(!alternate.contains(secret), "payload leaked: {alternate}");
}

#[test]
fn a_message_carries_the_time_zone_it_was_stamped_in() -> Result<(), Box<dyn std::error::Error>> {
    let when: jiff::Timestamp = "2024-03-01T12:00:00.123456Z".parse()?;
    let tz = jiff::tz::TimeZone::fixed(jiff::tz::offset(2));
    let msg = SocketMessage::at(event("e"), MessageType::Control, Data::new(), when, &tz);
    assert_eq!(msg.timestamp_ms, 1_709_294_400_123);
    assert_eq!(msg.timestamp_iso, "2024-03-01T14:00:00.123456+02:00");
    assert_eq!(msg.message_type, MessageType::Control);
    let utc = SocketMessage::new_in(event("e"), MessageType::Error, Data::new(), &jiff::tz::TimeZone::UTC);
    assert!(utc.timestamp_iso.ends_with("+00:00"), "{}", utc.timestamp_iso);
    Ok(())
}

/// A transport that only has a scheme and a name (to tell registrations apart).
#[derive(Debug)]
struct Named {
    scheme: &'static str,
    name: &'static str,
}

#[async_trait]
impl Transport for Named {
    fn scheme(&self) -> &str {
        self.scheme
    }

    async fn bind(&self, _event: &EventName, _config: &Config) -> socket_core::Result<Box<dyn Listener>> {
        Err(socket_core::Error::new(ErrorKind::Connection, self.name))
    }

    fn endpoints(&self, _event: &EventName, _config: &Config) -> socket_core::Result<Vec<Endpoint>> {
        Ok(vec![Endpoint { address: self.name.to_owned(), explicit: true }])
    }

    async fn connect(&self, _endpoint: &Endpoint, _config: &Config) -> socket_core::Result<Connection> {
        Err(socket_core::Error::new(ErrorKind::Connection, self.name))
    }
}

fn name_of(registry: &TransportRegistry, scheme: &str) -> String {
    let transport = registry.get(scheme).expect("registered");
    let endpoints = transport.endpoints(&event("e"), &Config::default()).expect("endpoints");
    endpoints[0].address.clone()
}

#[test]
fn registry_is_case_insensitive_and_replaces_by_scheme() {
    let registry = TransportRegistry::new();
    assert!(registry.schemes().is_empty());
    assert!(!registry.contains("mem"));
    registry.register(Named { scheme: "MEM", name: "first" });
    assert!(registry.contains("mem") && registry.contains("Mem") && registry.contains("MEM"));
    assert_eq!(registry.schemes(), ["mem"], "schemes are stored lower case");
    assert_eq!(name_of(&registry, "mEm"), "first");

    registry.register_arc(Arc::new(Named { scheme: "mem", name: "second" }));
    assert_eq!(registry.schemes(), ["mem"], "re-registering replaces, it does not add");
    assert_eq!(name_of(&registry, "MEM"), "second");
}

#[test]
fn registry_lists_schemes_sorted_and_clones_share_the_map() {
    let registry = TransportRegistry::new();
    let clone = registry.clone();
    registry.register(Named { scheme: "zeta", name: "z" });
    clone.register(Named { scheme: "alpha", name: "a" });
    assert_eq!(registry.schemes(), ["alpha", "zeta"]);
    assert_eq!(clone.schemes(), registry.schemes());
    let shown = format!("{registry:?}");
    assert!(shown.contains("TransportRegistry") && shown.contains("alpha") && shown.contains("zeta"), "{shown}");
}

#[test]
fn registry_unknown_scheme_error_lists_what_is_available() {
    let registry = TransportRegistry::new();
    let err = registry.get("tcp").expect_err("empty registry");
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(err.message().contains("available: none"), "{err}");
    registry.register(Named { scheme: "unix", name: "u" });
    registry.register(Named { scheme: "mem", name: "m" });
    let err = registry.get("tcp").expect_err("tcp is not registered");
    assert!(err.message().contains("\"tcp\""), "{err}");
    assert!(err.message().contains("available: mem, unix"), "{err}");
}

#[test]
fn transport_default_methods_use_the_config() {
    let t = Named { scheme: "mem", name: "m" };
    let config = Config::default();
    assert!(t.validate(&config).is_ok(), "the default validation accepts any config");
    assert_eq!(t.max_connections(&config), config.max_connections("mem"));
}

#[test]
fn connection_debug_shows_the_peer_only() {
    let conn = Connection {
        reader: Box::new(futures_lite::io::empty()),
        writer: Box::new(futures_lite::io::sink()),
        peer: socket_core::PeerInfo { address: "/tmp/x.sock".into(), pid: Some(7), uid: None },
    };
    let shown = format!("{conn:?}");
    assert!(shown.contains("/tmp/x.sock") && shown.contains("7"), "{shown}");
}
