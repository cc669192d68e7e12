//! evloop: an epoll event loop with a stable C ABI.
//!
//! Layers, each only using the one below:
//! - `sys` (private): raw syscalls (epoll, eventfd, signalfd, timerfd,
//!   sockets) behind thin wrappers;
//! - [`event_loop`]: registrations, timers, signals and tasks in safe Rust, no C types;
//! - [`stream`]: buffered streams (listeners, connections, write queues) over the loop;
//! - [`tls`]: TLS configurations (rustls), which streams take on;
//! - [`ffi`]: the C ABI (`include/evloop.h`), argument checks and panic catching;
//! - `cpython` (private, beside `ffi`, over `stream`): asyncio's hot path for
//!   the Python package, calling CPython's functions found at run time; its
//!   one entry point, `evl_cpython_init`, is not part of the C API.
//!
//! Beside them, `slab` (private): the generational ids of timers, streams
//! and listeners; and `pool` (private): the thread pool a loop runs work
//! and name resolution on.

mod cpython;
pub mod event_loop;
pub mod ffi;
mod pool;
mod slab;
pub mod stream;
mod sys;
#[cfg(test)]
mod test_rng;
pub mod tls;

pub use event_loop::{Event, EventLoop, HookId, HookKind, LoopHandle, TimerId};
pub use stream::{StreamEvent, StreamEventKind, StreamId, StreamLoop};
pub use sys::{AddrInfo, AddrList, Errno, GaiError, Hints, SockAddr};
