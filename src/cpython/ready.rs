//! The ready queue: what runs in the next iteration's callback phase, in
//! order. Mostly handles from `call_soon`; also asyncio's own handles (its
//! signal and fd callbacks, given to `_add_callback`), and the two steps of
//! a transport's life that asyncio runs as callbacks.

use std::collections::VecDeque;

use super::object::Owned;

pub(super) enum ReadyItem {
    /// One of our handles (`call_soon`, or a timer that is due).
    Handle(Owned),
    /// Another object with asyncio's Handle interface (`_cancelled`, `_run()`).
    Foreign(Owned),
    /// A transport's `connection_made(transport)` in `context`, after which
    /// it starts reading.
    ConnectionMade { transport: Owned, context: Owned },
    /// A transport's `connection_lost(exc)`, after which its socket closes;
    /// in `context`, a copy of the one current when the transport was
    /// closed (as asyncio's call_soon makes it), or when the loop closed it
    /// (`None`), in the transport's.
    ConnectionLost {
        transport: Owned,
        exc: Option<Owned>,
        context: Option<Owned>,
    },
    /// A TLS transport's held plaintext for its BufferedProtocol, after
    /// `resume_reading()` (`tls::deliver_held`).
    HeldPlaintext(Owned),
}

impl ReadyItem {
    /// Every reference the item holds (for the garbage collector).
    pub(super) fn references(&self) -> Box<dyn Iterator<Item = &Owned> + '_> {
        let (first, second) = match self {
            ReadyItem::Handle(handle)
            | ReadyItem::Foreign(handle)
            | ReadyItem::HeldPlaintext(handle) => (handle, None),
            ReadyItem::ConnectionMade { transport, context } => (transport, Some(context)),
            ReadyItem::ConnectionLost {
                transport,
                exc,
                context,
            } => {
                return Box::new(
                    [Some(transport), exc.as_ref(), context.as_ref()]
                        .into_iter()
                        .flatten(),
                ) as Box<dyn Iterator<Item = &Owned>>
            }
        };
        Box::new(std::iter::once(first).chain(second))
    }
}

pub(super) type ReadyQueue = VecDeque<ReadyItem>;
