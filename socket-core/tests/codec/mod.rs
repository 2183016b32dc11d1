//! The wire codec and the message model.

mod data;
mod decoder;
mod golden;
mod malformed;
mod prop;
mod timestamps;

pub(crate) use golden::{golden_dir, golden_messages};
