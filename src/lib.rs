//! evloop: an epoll event loop with a stable C ABI.
//!
//! Layers, each only using the one below:
//! - `sys` (private): raw syscalls (epoll, eventfd, signalfd, timerfd,
//!   sockets) behind thin wrappers;
//! - [`event_loop`]: registrations, timers, signals and tasks in safe Rust, no C types;
//! - [`stream`]: buffered streams (listeners, connections, write queues) over the loop;
//! - [`tls`]: TLS configurations (rustls), which streams take on;
//! - [`ffi`]: the C ABI (`include/evloop.h`), argument checks and panic catching.
//!
//! Beside them, `slab` (private): the generational ids of timers, streams
//! and listeners.

pub mod event_loop;
pub mod ffi;
mod slab;
pub mod stream;
mod sys;
#[cfg(test)]
mod test_rng;
pub mod tls;

pub use event_loop::{Event, EventLoop, HookId, HookKind, LoopHandle, TimerId};
pub use stream::{StreamEvent, StreamEventKind, StreamId, StreamLoop};
pub use sys::{Errno, SockAddr};
