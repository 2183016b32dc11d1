//! socket-factory
