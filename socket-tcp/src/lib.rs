//! socket-tcp
