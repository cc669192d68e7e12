"""A poll's events to their handlers: stream data to the stream's receiver,
the other stream events to its owner (an endpoint), ACCEPTED to a new
Transport, a raw fd's readiness to its callback.

If a handler raises, the events after it are saved (with their bytes
copied, since the read buffer is reused by the next poll) and dispatched
at the start of the next iteration. The asyncio loop can also ask for a
poll's stream events to be kept rather than dispatched (``keep``), and
dispatched later (``dispatch_saved``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, List

from . import _lib

if TYPE_CHECKING:
    from ._exchange import Exchange
    from ._fds import Registrations
    from ._signals import Signals
    from ._stream_table import StreamTable

_DATA = _lib.EVL_STREAM_DATA
_IO = _lib.EVL_STREAM_IO
_DATAGRAMS = _lib.EVL_STREAM_DATAGRAMS
_FDS = _lib.EVL_STREAM_FDS
# A DATA event whose bytes were copied out of the read buffer, a DATAGRAMS
# event whose datagrams were, an FDS event whose fds were taken (see _save).
_SAVED_DATA, _SAVED_DATAGRAMS, _SAVED_FDS = -1, -2, -3


class Dispatcher:
    """Calls the handlers of a Loop's events (see the module's documentation)."""

    def __init__(self, exchange: "Exchange", streams: "StreamTable", fds: "Registrations", signals: "Signals") -> None:
        self._exchange = exchange
        self._streams = streams
        self._endpoints = streams.endpoints
        self._receivers = streams.receivers
        self._fds = fds
        self._signals = signals
        #: Events not dispatched yet (of a batch a handler interrupted, or kept).
        self.saved: List[tuple] = []

    def dispatch_data(self, count: int) -> None:
        """The hot path: the DATA events at the start of the last poll's
        batch of `count` events, whose bytes lie end to end in the read
        buffer (cut per event from one copy; streams and lengths from one
        struct.unpack_from)."""
        exchange = self._exchange
        if exchange.native_dispatch is not None:
            return self._dispatch_data_natively(count)
        read, fields = exchange.data_read, exchange.data_fields
        receivers = self._receivers
        try:
            for stream, length in zip(fields, fields):
                data = read(length)
                try:
                    receive = receivers[stream]
                except KeyError:  # closed since it was read
                    continue
                try:
                    receive(data)
                except Exception as exc:
                    # The stream's owner decides: an asyncio transport
                    # reports it and closes, evloop.Transport raises it.
                    self._endpoints[stream]._receive_failed(exc)
        except BaseException:
            data_events = self._exchange.data_events
            self._save(self._exchange.events(data_events - len(list(fields)) // 2, count))
            raise

    def _dispatch_data_natively(self, count: int) -> None:
        """dispatch_data() on the native path: the library calls the
        receivers, and stops at one that raises, which is handled here as
        above (the events after it are kept if it propagates)."""
        exchange = self._exchange
        dispatch, events, receivers = exchange.native_dispatch, exchange.events_address, self._receivers
        start, end = 0, exchange.data_events
        while start < end:
            failed = dispatch(events, start, end, receivers)  # type: ignore[misc]
            if failed is None:
                return
            start, exc, stream = failed
            try:
                if not isinstance(exc, Exception):
                    raise exc
                self._endpoints[stream]._receive_failed(exc)
            except BaseException:
                self._save(exchange.events(start, count))
                raise

    def dispatch(self, batch: List[tuple]) -> int:
        """Calls the handlers of a batch of decoded events, in order."""
        receivers = self._receivers
        events = iter(batch)
        try:
            for kind, fd, stream, data, length, userdata, status, revents in events:
                if kind == 1:  # EVL_STREAM_DATA
                    try:
                        receive = receivers[stream]
                    except KeyError:  # closed since it was read
                        continue
                    self._receive(stream, receive, self._exchange.data(data, length))
                else:
                    self._dispatch_other(kind, fd, stream, data, userdata, status, revents, length)
        except BaseException:
            self._save(list(events))
            raise
        return len(batch)

    def _dispatch_other(
        self, kind: int, fd: int, stream: int, data: Any, userdata: int, status: int, revents: int, length: int = 0
    ) -> None:
        if kind == _IO:
            # Userdata 0: one of the loop's own fds, never a registration.
            if not self._fds.ready(fd, userdata, revents) and userdata == 0:
                self._signals.woken(fd)
        elif kind == _SAVED_DATA:
            receiver = self._receivers.get(stream)
            if receiver is not None:
                self._receive(stream, receiver, data)
        elif kind == _DATAGRAMS or kind == _SAVED_DATAGRAMS:
            endpoint = self._endpoints.get(stream)
            if endpoint is not None:
                batch = data if kind == _SAVED_DATAGRAMS else self._streams.datagram_reader.decode(data, length)
                try:
                    endpoint._datagrams(batch)  # type: ignore[attr-defined]
                except Exception as exc:
                    endpoint._receive_failed(exc)
        elif kind == _FDS or kind == _SAVED_FDS:
            fds = data if kind == _SAVED_FDS else self._streams.take_fds(stream, length)
            self._streams.fds_received(stream, fds)
        elif kind == _lib.EVL_STREAM_UDP_ERROR:
            endpoint = self._endpoints.get(stream)
            if endpoint is not None:
                endpoint._udp_error(status)  # type: ignore[attr-defined]
        elif kind == _lib.EVL_STREAM_ACCEPTED:
            self._streams.accepted(stream, fd, userdata)
        elif kind == _lib.EVL_STREAM_CLOSED:
            endpoint = self._streams.ended(stream)
            if endpoint is not None:
                endpoint._stream_closed(status)
        else:
            endpoint = self._endpoints.get(stream)
            if endpoint is None:
                return
            if kind == _lib.EVL_STREAM_CONNECTED:
                if status == 0:
                    endpoint._stream_connected()
                # A failure is reported by the CLOSED event that follows.
            elif kind == _lib.EVL_STREAM_EOF:
                endpoint._stream_eof()
            elif kind == _lib.EVL_STREAM_DRAINED:
                endpoint._stream_drained()

    def _receive(self, stream: int, receiver: Any, data: bytes) -> None:
        """Data to the stream's receiver (the hot path has this inline)."""
        try:
            receiver(data)
        except Exception as exc:
            self._endpoints[stream]._receive_failed(exc)

    # ---- what waits --------------------------------------------------------------

    def save(self, start: int, end: int) -> None:
        """Events start..end of the last poll wait for the next iteration."""
        self._save(self._exchange.events(start, end))

    def _save(self, events: List[tuple]) -> None:
        """Keeps `events` for the next iteration, before those kept already,
        with the bytes of DATA events copied."""
        data = self._exchange.data
        kept = []
        for event in events:
            kind, fd, stream, address, length, userdata, status, revents = event
            if kind == _DATA:
                event = (_SAVED_DATA, fd, stream, data(address, length), length, userdata, status, revents)
            elif kind == _DATAGRAMS:
                decoded = self._streams.datagram_reader.decode(address, length)
                event = (_SAVED_DATAGRAMS, fd, stream, decoded, length, userdata, status, revents)
            elif kind == _FDS:  # the next poll would close them
                event = (_SAVED_FDS, fd, stream, self._streams.take_fds(stream, length), length, userdata, status, revents)
            kept.append(event)
        self.saved = kept + self.saved

    def keep(self, count: int) -> None:
        """The last poll's `count` events: the raw fds' are dispatched, the
        streams' kept (after those kept already) for dispatch_saved()."""
        streams = []
        events = iter(self._exchange.events(0, count))
        try:
            for event in events:
                if event[0] == _IO:
                    self._dispatch_other(event[0], event[1], event[2], event[3], event[5], event[6], event[7])
                else:
                    streams.append(event)
        except BaseException:
            streams.extend(events)
            raise
        finally:
            earlier, self.saved = self.saved, []
            self._save(streams)
            self.saved = earlier + self.saved

    def dispatch_saved(self) -> int:
        """Dispatches what was saved or kept; returns how many events."""
        if not self.saved:
            return 0
        saved, self.saved = self.saved, []
        return self.dispatch(saved)

    def clear(self) -> None:
        self.saved = []
