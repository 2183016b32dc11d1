//! `socket-bench-server`: the lean idle server of `socket-bench`'s memory test.
//!
//! It links only std and the library (no libzmq, no libstdc++), so its RSS is
//! what a small server process costs. `socket-bench` starts it as a child,
//! connects the clients itself and reads the child's `VmRSS`.
//!
//! Usage: `socket-bench-server <ceiling|lib> <unix|tcp> <addr> <max-clients>`.

use std::process::ExitCode;

#[path = "serve.rs"]
mod serve;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match serve::run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("socket-bench-server: {e}");
            ExitCode::FAILURE
        }
    }
}
