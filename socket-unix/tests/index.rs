//! Integration tests of the Unix transport, through the `Transport` and `Listener` traits and raw
//! byte streams. Test ids (S1..S13, P1..P3) refer to RELIABILITY.md.

mod util;

mod bind;
mod connection;
mod dir;
mod more;
mod paths;
mod peer;
