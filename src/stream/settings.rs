//! What a stream starts with and the application may change: watermarks
//! (backpressure), the idle timeout, and the bounds of a lingering close.

use std::time::Duration;

use super::connection::{sync_interest, THROTTLED};
use super::{Owner, StreamId, StreamLoop};
use crate::sys::Errno;

/// Default high watermark of a write queue: above it, reading pauses.
pub const DEFAULT_HIGH_WATER: usize = 1 << 20;

/// Default low watermark: at or below it, paused reading resumes.
pub const DEFAULT_LOW_WATER: usize = 256 << 10;

/// Default bound of a lingering close: the socket closes once the peer has
/// sent more than this after the close (see `ending.rs`).
pub const DEFAULT_LINGER_BYTES: usize = 1 << 20;

/// Default bound of a lingering close: the socket closes this long after
/// the close at the latest.
pub const DEFAULT_LINGER_MS: u32 = 2000;

/// Settings a stream starts with (a listener hands its own to what it accepts).
#[derive(Clone, Copy)]
pub(super) struct Settings {
    /// 0: no idle timeout.
    pub(super) idle_ms: u32,
    /// How long a graceful close lingers at most (0: it does not).
    pub(super) linger_ms: u32,
    /// How much input a graceful close discards at most (0: none).
    pub(super) linger_bytes: usize,
    /// usize::MAX: reading never pauses for the queue.
    pub(super) high_water: usize,
    pub(super) low_water: usize,
}

pub(super) const DEFAULT_SETTINGS: Settings = Settings {
    idle_ms: 0,
    linger_ms: DEFAULT_LINGER_MS,
    linger_bytes: DEFAULT_LINGER_BYTES,
    high_water: DEFAULT_HIGH_WATER,
    low_water: DEFAULT_LOW_WATER,
};

impl<D: Copy + Default> StreamLoop<D> {
    /// Above `high` queued bytes reading pauses, until the queue is down to
    /// `low` (EINVAL if `low` > `high`). `high` 0: reading never pauses for
    /// the queue. Given a listener, sets what the streams it accepts start with.
    pub fn set_watermarks(&mut self, id: u64, high: usize, low: usize) -> Result<(), Errno> {
        let (high, low) = match high {
            0 => (usize::MAX, 0), // `low` means nothing then
            _ if low > high => return Err(libc::EINVAL),
            _ => (high, low),
        };
        self.update_settings(id, |s| {
            s.high_water = high;
            s.low_water = low;
        })
    }

    /// Closes the stream (`Closed` with ETIMEDOUT) when no byte has moved
    /// either way for `ms` milliseconds; 0 turns it off. Given a listener,
    /// sets what the streams it accepts start with.
    pub fn set_idle_timeout(&mut self, id: u64, ms: u32) -> Result<(), Errno> {
        self.update_settings(id, |s| s.idle_ms = ms)
    }

    /// How a graceful close ends the stream's socket (see `ending.rs`):
    /// it lingers until the peer's end-of-file, or the peer has sent more
    /// than `max_bytes`, or `max_ms` have passed. `max_ms` 0: no lingering;
    /// what has arrived (up to `max_bytes`) is discarded and the socket
    /// closed. `max_bytes` 0: nothing is discarded (close(2) as it is).
    /// Given a listener, sets what the streams it accepts start with.
    pub fn set_linger(&mut self, id: u64, max_bytes: usize, max_ms: u32) -> Result<(), Errno> {
        self.update_settings(id, |s| {
            s.linger_bytes = max_bytes;
            s.linger_ms = max_ms;
        })
    }

    pub(super) fn update_settings(
        &mut self,
        id: u64,
        change: impl Fn(&mut Settings),
    ) -> Result<(), Errno> {
        if let Some(l) = self.listeners.get_mut(id) {
            change(&mut l.settings);
            return Ok(());
        }
        let Some(s) = self.streams.get(id) else {
            return self.not_live(id, Ok(()));
        };
        let mut settings = s.settings;
        change(&mut settings);
        self.apply_settings(id, settings);
        Ok(())
    }

    pub(super) fn apply_settings(&mut self, id: StreamId, settings: Settings) {
        let Some(s) = self.streams.get_mut(id) else {
            return;
        };
        let old = std::mem::replace(&mut s.settings, settings);
        // No high mark ("never pause") resumes a stream the queue paused.
        if s.queued() <= settings.low_water || settings.high_water == usize::MAX {
            s.flags &= !THROTTLED;
        } else if s.queued() > settings.high_water {
            s.flags |= THROTTLED;
        }
        if old.idle_ms != settings.idle_ms {
            if s.idle_timer != 0 {
                let _ = self.core.stop_timer(std::mem::take(&mut s.idle_timer));
            }
            if settings.idle_ms != 0 {
                // The loop's clock, fresh now, and after every wait from now
                // on (a timer runs): what I/O stamps streams with.
                self.core.refresh_now();
                s.last_active = self.core.now();
                s.idle_timer = self.core.start_timer(
                    Duration::from_millis(settings.idle_ms.into()),
                    Duration::ZERO,
                    Owner::IdleTimer(id),
                );
            }
        }
        if let Err(e) = sync_interest(&mut self.core, s) {
            self.close_now(id, e, false);
        }
    }

    pub(super) fn on_idle_timer(&mut self, id: StreamId) {
        let now = self.core.now();
        let Some(s) = self.streams.get_mut(id) else {
            return;
        };
        let deadline = s.last_active + s.settings.idle_ms as u64 * 1_000_000;
        if now >= deadline {
            s.idle_timer = 0; // a one-shot timer is over once it fired
            self.close_now(id, libc::ETIMEDOUT, false);
        } else {
            // Bytes moved since it was set: wait for the rest of the timeout.
            s.idle_timer = self.core.start_timer(
                Duration::from_nanos(deadline - now),
                Duration::ZERO,
                Owner::IdleTimer(id),
            );
        }
    }
}
