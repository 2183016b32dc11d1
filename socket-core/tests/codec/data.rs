//! `Data`, the `data` map: insertion order, repeated keys, large maps.

use rmpv::Value;
use socket_core::Data;

#[test]
fn repeated_keys_keep_the_last_value_at_the_first_position() {
    let data = Data::from_entries(vec![
        ("a".to_owned(), Value::from(1)),
        ("b".to_owned(), Value::from(2)),
        ("a".to_owned(), Value::from(3)),
    ]);
    let entries: Vec<(&str, &Value)> = data.iter().collect();
    assert_eq!(entries, vec![("a", &Value::from(3)), ("b", &Value::from(2))]);
}

#[test]
fn large_maps_build_in_linear_time_and_keep_order() {
    let n = 50_000;
    let mut entries: Vec<(String, Value)> = (0..n).map(|i| (format!("k{i}"), Value::from(i))).collect();
    entries.push(("k7".to_owned(), Value::from("last")));
    let start = std::time::Instant::now();
    let data = Data::from_entries(entries);
    assert!(start.elapsed() < std::time::Duration::from_secs(2), "took {:?}", start.elapsed());
    assert_eq!(data.len(), n);
    assert_eq!(data.get_str("k7"), Some("last"));
    assert_eq!(data.iter().nth(8).map(|(k, _)| k), Some("k8"));
}

#[test]
fn data_from_a_value_requires_string_keys() {
    let bad = Value::Map(vec![(Value::from(1), Value::Nil)]);
    assert!(Data::try_from_value(bad).is_err());
    let nested = Value::Map(vec![(Value::from("a"), Value::Map(vec![(Value::Nil, Value::Nil)]))]);
    assert!(Data::try_from_value(nested).is_err());
    let good = Value::Map(vec![(Value::from("a"), Value::from(1))]);
    assert_eq!(Data::try_from_value(good).unwrap().get("a").and_then(Value::as_u64), Some(1));
}
