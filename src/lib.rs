//! evloop: an epoll event loop with a stable C ABI.
//!
//! Layers, each only using the one below:
//! - [`sys`]: raw syscalls (epoll, eventfd, signalfd, timerfd) behind thin safe wrappers;
//! - [`event_loop`]: registrations, timers, signals and tasks in safe Rust, no C types;
//! - [`stream`]: buffered streams (listeners, connections, write queues) over the loop;
//! - [`ffi`]: the C ABI (`include/evloop.h`), argument checks and panic catching.

pub mod event_loop;
pub mod ffi;
pub mod stream;
pub mod sys;

pub use event_loop::{Event, EventLoop, HookId, HookKind, LoopHandle, TimerId};
pub use stream::{StreamEvent, StreamEventKind, StreamId, StreamLoop};
