//! The C ABI: a thin layer over [`StreamLoop`](crate::StreamLoop) that
//! checks arguments, converts errors to negative errno values and catches
//! every panic.
//!
//! Every function body runs inside `boundary::guard`. The loop is reached
//! only through `boundary::core`, which hands out a borrow for one step at a
//! time: no borrow is alive while a C callback runs, so callbacks may call
//! back into any function here. Every unsafe operation is in a block of its
//! own with the reason it is sound; most rest on the header's contract (a
//! loop pointer is NULL or one this library made, used on its thread).
//!
//! One file per part of the header: `types.rs` (constants, structs,
//! callback types), `loop_api.rs`, `timers.rs`, `signals.rs`, `embed.rs`
//! (hooks, and the backend fd and timeout for a host loop), `stream_api.rs`, `batch.rs`,
//! `udp_api.rs`, `unix_api.rs` (Unix-domain sockets), `tls_api.rs` (TLS configurations and
//! streams), `errors.rs`; beside them `boundary.rs` (the
//! pattern every function follows) and `iteration.rs` (the one
//! wait-then-dispatch loop every running function shares).

#![allow(non_camel_case_types)]
// The doc comments become the C header, where each function states what its
// pointers must be (NULL is always checked; anything else must come from this
// library and not be freed), so no Rust-style `# Safety` section is repeated.
#![allow(clippy::missing_safety_doc)]

// In the header's order (cbindgen follows it): its types, then the loop
// API, the stream API, the batch API, errors and versions.
mod types;

mod loop_api;

mod timers;

mod signals;

mod embed;

mod stream_api;

mod batch;

mod udp_api;

mod unix_api;

mod tls_api;

mod errors;

// The two parts every function above uses.
mod boundary;
mod iteration;

pub use batch::*;
pub use boundary::{arm_test_panic, hide_proc_for_tests};
pub use embed::*;
pub use errors::*;
pub use loop_api::*;
pub use signals::*;
pub use stream_api::*;
pub use timers::*;
pub use tls_api::*;
pub use types::*;
pub use udp_api::*;
pub use unix_api::*;
