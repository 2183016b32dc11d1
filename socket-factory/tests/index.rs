//! Integration tests of the facade: registry contents per feature, builder errors, and end to
//! end runs over each compiled-in transport.

mod util;

mod builders;
mod e2e;
mod registry;
#[cfg(any(feature = "unix", feature = "tcp"))]
mod reliability;
mod settings;
