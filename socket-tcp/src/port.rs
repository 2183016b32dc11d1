//! Port discovery: the preferred port of an event and the probe sequence around it.

/// FNV-1a, 32 bits (offset basis 2166136261, prime 16777619).
///
/// # Examples
///
/// ```
/// assert_eq!(socket_tcp::fnv1a_32(b"a"), 0xe40c_292c);
/// assert_eq!(socket_tcp::fnv1a_32(b"foobar"), 0xbf9c_f968);
/// ```
pub fn fnv1a_32(bytes: &[u8]) -> u32 {
    bytes.iter().fold(2_166_136_261_u32, |hash, &byte| (hash ^ u32::from(byte)).wrapping_mul(16_777_619))
}

/// Orders a range's bounds.
fn bounds(start: u16, end: u16) -> (u16, u16) {
    (start.min(end), start.max(end))
}

/// The port a server of `event` tries first: `start + fnv1a_32(event) % (end - start + 1)`.
///
/// Bounds given in the wrong order are swapped.
///
/// # Examples
///
/// ```
/// assert_eq!(socket_tcp::preferred_port("wallpaper_change", 9000, 9100), 9084);
/// ```
pub fn preferred_port(event: impl AsRef<str>, start: u16, end: u16) -> u16 {
    let (start, end) = bounds(start, end);
    let size = u32::from(end) - u32::from(start) + 1;
    let offset = fnv1a_32(event.as_ref().as_bytes()) % size;
    // start + offset <= end, so it fits.
    u16::try_from(u32::from(start) + offset).unwrap_or(end)
}

/// Every port of `start..=end`, from the preferred port of `event` upward, wrapping around to
/// `start`: the order in which a server binds and a client without an explicit port probes.
///
/// # Examples
///
/// ```
/// assert_eq!(socket_tcp::probe_sequence("system_status", 9000, 9002), [9001, 9002, 9000]);
/// ```
pub fn probe_sequence(event: impl AsRef<str>, start: u16, end: u16) -> Vec<u16> {
    let first = preferred_port(event, start, end);
    let (start, end) = bounds(start, end);
    (first..=end).chain(start..first).collect()
}

/// The system's ephemeral port range, where the kernel picks client ports (Linux only).
pub(crate) fn ephemeral_range() -> Option<(u16, u16)> {
    let text = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    let mut parts = text.split_whitespace().map(str::parse::<u16>);
    match (parts.next(), parts.next()) {
        (Some(Ok(low)), Some(Ok(high))) => Some((low, high)),
        _ => None,
    }
}

/// True if the two inclusive ranges share a port.
pub(crate) fn overlaps(a: (u16, u16), b: (u16, u16)) -> bool {
    a.0 <= b.1 && b.0 <= a.1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv_known_values() {
        // Reference vectors of FNV-1a 32 and values computed independently.
        assert_eq!(fnv1a_32(b""), 0x811c_9dc5);
        assert_eq!(fnv1a_32(b"a"), 0xe40c_292c);
        assert_eq!(fnv1a_32(b"foobar"), 0xbf9c_f968);
        assert_eq!(fnv1a_32(b"wallpaper_change"), 2_220_625_878);
        assert_eq!(fnv1a_32(b"color-scheme-update"), 3_757_007_266);
        assert_eq!(fnv1a_32(b"system_status"), 2_824_866_619);
    }

    #[test]
    fn preferred_ports_pinned() {
        assert_eq!(preferred_port("wallpaper_change", 9000, 9100), 9084);
        assert_eq!(preferred_port("color-scheme-update", 9000, 9100), 9075);
        assert_eq!(preferred_port("system_status", 9000, 9100), 9043);
        assert_eq!(preferred_port("a", 9000, 9100), 9010);
        assert_eq!(preferred_port("system_status", 9000, 9002), 9001);
        assert_eq!(preferred_port("system_status", 9000, 9000), 9000);
        assert_eq!(preferred_port("system_status", 9100, 9000), 9043, "bounds are ordered");
        assert_eq!(preferred_port("x", 1024, 65535), 38023);
        assert_eq!(preferred_port("x", 65535, 65535), 65535);
    }

    #[test]
    fn probe_sequence_wraps_and_covers_the_range() {
        assert_eq!(probe_sequence("system_status", 9000, 9002), [9001, 9002, 9000]);
        let seq = probe_sequence("wallpaper_change", 9000, 9100);
        assert_eq!(seq.len(), 101);
        assert_eq!(&seq[..3], [9084, 9085, 9086]);
        assert_eq!(&seq[16..19], [9100, 9000, 9001]);
        assert_eq!(seq[100], 9083);
        let mut sorted = seq.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (9000..=9100).collect::<Vec<_>>());
        assert_eq!(probe_sequence("x", 65535, 65535), [65535]);
        assert_eq!(probe_sequence("x", 1024, 65535).len(), 64512);
    }

    #[test]
    fn overlap() {
        assert!(overlaps((9000, 9100), (9100, 9200)));
        assert!(overlaps((32768, 60999), (40000, 40010)));
        assert!(!overlaps((9000, 9100), (32768, 60999)));
    }
}
