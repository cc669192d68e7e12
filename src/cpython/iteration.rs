//! One iteration of the native loop, in asyncio's order (`_run_once` of
//! base_events.py), top to bottom:
//!
//! 1. drop cancelled timers from the heap (all, when they are many);
//! 2. wait, the GIL released, as long as nothing is ready: not at all when
//!    callbacks are queued or the loop is stopping, until the next timer
//!    otherwise;
//! 3. take the timers due by now (their callbacks run in step 6);
//! 4. run the callbacks queued before the wait, and only those (what they
//!    queue runs in the next iteration);
//! 5. dispatch the wait's I/O: data, end-of-file and closes to the
//!    transports' protocols, asyncio's fd callbacks, accepts; then tell
//!    the protocols whose write buffer fell to its low-water mark;
//! 6. run the due timers' callbacks.
//!
//! asyncio runs 4 to 6 from one list built after the wait; here they run
//! in the same order without the list. `SystemExit` and `KeyboardInterrupt`
//! end the iteration where they are raised, as in asyncio: what was not run
//! yet stays (queued callbacks, the heap's timers, the stream layer's
//! events, which the next wait hands out without waiting).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

use super::api::api;
use super::call;
use super::error::{raise, raise_errno, PyErr, PyResult};
use super::event_loop::{now, LoopCore, Token};
use super::handle;
use super::module::rt;
use super::object::Owned;
use super::ready::ReadyItem;
use crate::stream::{Event, Ready, StreamEvent, StreamEventKind};

/// asyncio's `MAXIMUM_SELECT_TIMEOUT`: the longest wait, one day.
const MAXIMUM_WAIT: f64 = 24.0 * 3600.0;

/// asyncio's `_clock_resolution` for CLOCK_MONOTONIC: a timer due within
/// it of the clock's reading runs now.
const CLOCK_RESOLUTION: f64 = 1e-9;

/// What the I/O phase does next, taken out of the stream layer's loop so
/// that its borrow ends before any Python code runs.
enum Step {
    /// Bytes for a transport's protocol: where they are in the read buffer.
    Data {
        transport: Token,
        start: *const u8,
        len: usize,
    },
    /// Readiness of a transport that reads into its protocol's buffer.
    Buffered {
        transport: Token,
        stream: u64,
        revents: u32,
    },
    /// Any other stream event.
    Stream(StreamEvent<Token>),
    /// An event of a datagram transport's UDP socket.
    Datagram(StreamEvent<Token>),
    /// A registered fd (asyncio's reader or writer, or a listener).
    Fd { fd: i32, revents: u32, token: Token },
    /// The core loop's own events: none of ours; nothing to do.
    Nothing,
}

impl LoopCore {
    pub(super) fn run_once(&self) -> PyResult<()> {
        let timeout = self.timeout();
        self.wait(timeout)?;
        let due = self.take_due_timers(now() + CLOCK_RESOLUTION);
        let queued = self.ready.borrow().len();
        self.run_ready(queued)?;
        self.dispatch_io()?;
        self.resume_writers()?;
        self.run_timers(due)
    }

    /// Steps 1 and 2's timeout: `None` waits for I/O alone.
    fn timeout(&self) -> Option<Duration> {
        let purged = self.timers.borrow_mut().purge();
        drop(purged);
        if !self.ready.borrow().is_empty() || self.stopping.get() {
            return Some(Duration::ZERO);
        }
        let when = self.timers.borrow().next_when()?;
        let seconds = when - now();
        // NaN (a timer due at NaN) does not wait, as asyncio's max(0, nan).
        let seconds = if seconds >= 0.0 {
            seconds.min(MAXIMUM_WAIT)
        } else {
            0.0
        };
        Some(Duration::from_secs_f64(seconds))
    }

    /// Waits for I/O, the GIL released. A signal interrupting the wait runs
    /// Python's handlers at once (KeyboardInterrupt leaves from here). A
    /// wait that cannot block (callbacks are ready) keeps the GIL: releasing
    /// it costs hundreds of instructions and lets no thread wait less.
    fn wait(&self, timeout: Option<Duration>) -> PyResult<()> {
        let api = api();
        let result = {
            let mut io = self.io()?;
            if timeout == Some(Duration::ZERO) {
                catch_unwind(AssertUnwindSafe(|| io.wait(timeout, usize::MAX)))
            } else {
                // SAFETY: this thread holds the GIL; nothing below touches a
                // Python object until it is taken back.
                let state = unsafe { (api.PyEval_SaveThread)() };
                let result = catch_unwind(AssertUnwindSafe(|| io.wait(timeout, usize::MAX)));
                // SAFETY: the state saved above, on this thread.
                unsafe { (api.PyEval_RestoreThread)(state) };
                result
            }
        };
        match result {
            Ok(Ok(())) => Ok(()),
            // SAFETY: the GIL is held; runs the handlers of pending signals.
            Ok(Err(libc::EINTR)) => match unsafe { (api.PyErr_CheckSignals)() } {
                0 => Ok(()),
                _ => Err(PyErr::taken()),
            },
            Ok(Err(errno)) => Err(raise_errno(errno)),
            Err(_) => Err(raise(
                api.PyExc_RuntimeError,
                c"evloop: internal error (a Rust panic in the loop's wait); please report it",
            )),
        }
    }

    /// Step 3: the timers due before `end`, out of the heap, in order.
    fn take_due_timers(&self, end: f64) -> Vec<Owned> {
        let mut due = Vec::new();
        let mut timers = self.timers.borrow_mut();
        while let Some(handle) = timers.pop_due(end) {
            // SAFETY: the heap holds our TimerHandles.
            unsafe { handle::fields(handle.as_ptr()) }
                .scheduled
                .set(false);
            due.push(handle);
        }
        due
    }

    /// Step 4: the first `count` callbacks of the queue.
    fn run_ready(&self, count: usize) -> PyResult<()> {
        for _ in 0..count {
            let Some(item) = self.ready.borrow_mut().pop_front() else {
                break;
            };
            self.run_item(item)?;
        }
        Ok(())
    }

    /// Step 6.
    fn run_timers(&self, due: Vec<Owned>) -> PyResult<()> {
        let mut due = due.into_iter();
        while let Some(handle) = due.next() {
            if let Err(exit) = self.run_item(ReadyItem::Handle(handle)) {
                // Not run: back in the heap, as asyncio keeps them queued.
                for handle in due {
                    // SAFETY: our TimerHandles.
                    let fields = unsafe { handle::fields(handle.as_ptr()) };
                    fields.scheduled.set(true);
                    self.timers.borrow_mut().push(fields.when.get(), handle);
                }
                return Err(exit);
            }
        }
        Ok(())
    }

    /// Runs one callback. `Err` only for SystemExit and KeyboardInterrupt
    /// (everything else went to the exception handler).
    pub(super) fn run_item(&self, item: ReadyItem) -> PyResult<()> {
        if self.debug.get() {
            return self.run_item_debug(item);
        }
        self.run_item_now(item)
    }

    fn run_item_now(&self, item: ReadyItem) -> PyResult<()> {
        match item {
            ReadyItem::Handle(handle) => {
                // SAFETY: one of our handles, kept alive by `handle`.
                if unsafe { handle::fields(handle.as_ptr()) }.cancelled.get() {
                    return Ok(());
                }
                // SAFETY: as above.
                unsafe { handle::run(handle.as_ptr()) }
            }
            ReadyItem::Foreign(handle) => {
                let names = &rt().names;
                let cancelled = call::getattr(handle.as_ptr(), names.cancelled.as_ptr())?;
                if call::is_true(cancelled.as_ptr())? {
                    return Ok(());
                }
                call::method0(handle.as_ptr(), names.run.as_ptr()).map(drop)
            }
            ReadyItem::ConnectionMade { transport, context } => {
                super::protocol::connection_made(self, &transport, &context)
            }
            ReadyItem::ConnectionLost {
                transport,
                exc,
                context,
            } => super::protocol::connection_lost(self, &transport, exc, context),
            ReadyItem::HeldPlaintext(transport) => super::tls::deliver_held(self, &transport),
        }
    }

    /// Debug mode: asyncio's `_current_handle`, and its warning about a
    /// callback that ran longer than `slow_callback_duration`.
    #[cold]
    fn run_item_debug(&self, item: ReadyItem) -> PyResult<()> {
        let rt = rt();
        let what = match &item {
            ReadyItem::Handle(handle) | ReadyItem::Foreign(handle) => handle.clone_ref(),
            ReadyItem::ConnectionMade { transport, .. }
            | ReadyItem::ConnectionLost { transport, .. }
            | ReadyItem::HeldPlaintext(transport) => transport.clone_ref(),
        };
        call::setattr(self.pyloop, rt.names.current_handle.as_ptr(), what.as_ptr())?;
        let start = now();
        let result = self.run_item_now(item);
        let elapsed = now() - start;
        let reset = call::setattr(self.pyloop, rt.names.current_handle.as_ptr(), api().none);
        result?;
        reset?;
        if let Some(hook) = rt.hooks.slow_callback.get_owned() {
            let seconds = handle::float(elapsed)?;
            // SAFETY: live objects; the list of arguments ends with NULL.
            unsafe {
                Owned::new((api().PyObject_CallFunctionObjArgs)(
                    hook.as_ptr(),
                    self.pyloop,
                    what.as_ptr(),
                    seconds.as_ptr(),
                    std::ptr::null_mut::<super::api::PyObject>(),
                ))?
            };
        }
        Ok(())
    }

    /// Step 5: everything the wait found, in the stream layer's order.
    fn dispatch_io(&self) -> PyResult<()> {
        loop {
            match self.next_step()? {
                None => return Ok(()),
                Some(Step::Nothing) => {}
                Some(Step::Data {
                    transport,
                    start,
                    len,
                }) => {
                    // SAFETY: the bytes of a Data event stay in the read
                    // buffer until release_reads, which the next step makes;
                    // no read happens meanwhile (this phase is the only reader).
                    let bytes = unsafe {
                        Owned::new((api().PyBytes_FromStringAndSize)(
                            start.cast(),
                            len as isize,
                        ))?
                    };
                    super::protocol::data_received(self, transport, bytes)?;
                }
                Some(Step::Buffered {
                    transport,
                    stream,
                    revents,
                }) => {
                    super::protocol::read_into_buffer(self, transport, stream, revents)?;
                }
                Some(Step::Stream(event)) => super::protocol::stream_event(self, event)?,
                Some(Step::Datagram(event)) => super::datagram::event(self, event)?,
                Some(Step::Fd { fd, revents, token }) => {
                    super::watches::fd_ready(self, fd, revents, token)?
                }
            }
        }
    }

    /// The next thing the stream layer hands out, with its borrow ended.
    fn next_step(&self) -> PyResult<Option<Step>> {
        let mut io = self.io()?;
        // The last Data event's bytes were copied: the buffer may be reused.
        io.release_reads();
        let event = match io.next_ready() {
            Some(Ready::Stream { stream, revents }) => {
                let transport = io.stream_data(stream).unwrap_or_default();
                if super::transport::reads_into_buffer(transport) {
                    return Ok(Some(Step::Buffered {
                        transport,
                        stream,
                        revents,
                    }));
                }
                match io.stream_ready(stream, revents) {
                    Some(event) => event,
                    None => return Ok(Some(Step::Nothing)),
                }
            }
            Some(Ready::Io { fd, revents, data }) => {
                return Ok(Some(Step::Fd {
                    fd,
                    revents,
                    token: data,
                }));
            }
            Some(Ready::Udp { socket, revents }) => match io.udp_ready(socket, revents) {
                Some(event) => event,
                None => return Ok(Some(Step::Nothing)),
            },
            None => match io.next_event() {
                None => return Ok(None),
                Some(Event::Stream(event)) => event,
                Some(Event::Io { fd, revents, data }) => {
                    return Ok(Some(Step::Fd {
                        fd,
                        revents,
                        token: data,
                    }));
                }
                Some(_) => return Ok(Some(Step::Nothing)),
            },
        };
        Ok(Some(match event.kind {
            StreamEventKind::Data => Step::Data {
                transport: event.data,
                start: io.bytes_ptr(&event),
                len: event.len,
            },
            _ if event.data.as_datagram().is_some() => Step::Datagram(event),
            _ => Step::Stream(event),
        }))
    }

    /// Step 5's end: protocols paused for writing whose buffer is down to
    /// the low-water mark hear `resume_writing()`.
    fn resume_writers(&self) -> PyResult<()> {
        if self.paused_writers.borrow().is_empty() {
            return Ok(());
        }
        let paused: Vec<Owned> = self
            .paused_writers
            .borrow()
            .iter()
            .map(Owned::clone_ref)
            .collect();
        for transport in paused {
            super::protocol::maybe_resume_writing(self, &transport)?;
        }
        Ok(())
    }
}
