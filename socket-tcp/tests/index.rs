//! Integration tests of the TCP transport, through the `Transport` and `Listener` traits, the
//! concrete listener and raw streams. Test ids (T1..T7) refer to RELIABILITY.md.

mod util;

mod bind;
mod connection;
mod discovery;
mod more;
