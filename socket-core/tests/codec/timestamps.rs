//! `timestamp_ms` and `timestamp_iso` from one instant (SPEC §4).

use jiff::tz::TimeZone;
use jiff::Timestamp;
use socket_core::message::timestamps;
use socket_core::{Data, EventName, MessageType, SocketMessage};

fn ts(s: &str) -> Timestamp {
    s.parse().expect("valid timestamp")
}

fn tz(name: &str) -> TimeZone {
    TimeZone::get(name).expect("zone in the bundled database")
}

#[test]
fn utc_has_six_digits_and_a_numeric_offset() {
    let (ms, iso) = timestamps(ts("2026-11-27T03:10:10.123456Z"), &TimeZone::UTC);
    assert_eq!(iso, "2026-11-27T03:10:10.123456+00:00");
    assert_eq!(ms, 1_795_749_010_123);
}

#[test]
fn zero_fraction_keeps_six_digits() {
    let (ms, iso) = timestamps(ts("2026-11-27T03:10:10Z"), &TimeZone::UTC);
    assert_eq!(iso, "2026-11-27T03:10:10.000000+00:00");
    assert_eq!(ms % 1000, 0);
}

#[test]
fn nanoseconds_are_truncated_not_rounded() {
    let (ms, iso) = timestamps(ts("2026-11-27T03:10:10.999999999Z"), &TimeZone::UTC);
    assert_eq!(iso, "2026-11-27T03:10:10.999999+00:00");
    assert_eq!(ms % 1000, 999);
}

#[test]
fn berlin_winter_is_plus_one() {
    let (ms, iso) = timestamps(ts("2026-11-27T03:10:10.123456Z"), &tz("Europe/Berlin"));
    assert_eq!(iso, "2026-11-27T04:10:10.123456+01:00");
    assert_eq!(ms, 1_795_749_010_123);
}

#[test]
fn berlin_summer_is_plus_two() {
    let (_, iso) = timestamps(ts("2026-07-01T12:00:00.5Z"), &tz("Europe/Berlin"));
    assert_eq!(iso, "2026-07-01T14:00:00.500000+02:00");
}

#[test]
fn kolkata_has_a_half_hour_offset() {
    let (_, iso) = timestamps(ts("2026-11-27T03:10:10.123456Z"), &tz("Asia/Kolkata"));
    assert_eq!(iso, "2026-11-27T08:40:10.123456+05:30");
}

#[test]
fn negative_offsets_and_date_change() {
    let (_, iso) = timestamps(ts("2026-01-01T03:00:00.000001Z"), &tz("America/New_York"));
    assert_eq!(iso, "2025-12-31T22:00:00.000001-05:00");
}

#[test]
fn both_timestamps_describe_the_same_instant() {
    // One clock read: the ISO string parsed back gives the same millisecond.
    for zone in ["UTC", "Europe/Berlin", "Asia/Kolkata", "America/St_Johns"] {
        let msg = SocketMessage::new_in(EventName::new("t").unwrap(), MessageType::Data, Data::new(), &tz(zone));
        let parsed: Timestamp = msg.timestamp_iso.parse().expect("RFC 3339");
        assert_eq!(parsed.as_millisecond() as u64, msg.timestamp_ms, "{zone}: {}", msg.timestamp_iso);
        assert!(!msg.timestamp_iso.ends_with('Z'), "{}", msg.timestamp_iso);
        let frac = msg.timestamp_iso.split('.').nth(1).expect("a fraction");
        assert_eq!(frac.find(['+', '-']), Some(6), "six digits: {}", msg.timestamp_iso);
    }
}

#[test]
fn before_the_epoch_is_clamped_to_zero_ms() {
    let (ms, iso) = timestamps(ts("1969-12-31T23:59:59Z"), &TimeZone::UTC);
    assert_eq!(ms, 0);
    assert_eq!(iso, "1969-12-31T23:59:59.000000+00:00");
}
