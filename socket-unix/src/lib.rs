//! socket-unix
