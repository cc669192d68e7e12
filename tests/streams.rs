//! The stream layer (`StreamLoop`) through its Rust API: listeners,
//! connections, streams over pipes and socket pairs, queues and
//! watermarks, half-close, abort, batches that fill the read buffer, and
//! events that must not outlive the stream they are for.

mod stream_events;
use stream_events::*;

use evloop::stream::{Event, StreamLoop, DEFAULT_HIGH_WATER};
use evloop::{StreamEventKind as Kind, StreamId};
use std::io::{Read, Write};
use std::os::fd::IntoRawFd;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

#[test]
fn listener_and_connection_in_one_loop_echo_then_half_close() {
    let mut lp = StreamLoop::new().unwrap();
    let listener = lp.listen(&localhost(0), 16, false, 1).unwrap();
    let port = lp.listener_port(listener).unwrap();
    assert_ne!(port, 0);
    let client = lp.connect(&localhost(port), 2).unwrap();
    // Queued before the connection is made, sent once it is.
    lp.write(client, b"hello").unwrap();
    let seen = run_until(&mut lp, |s| {
        s.iter().any(|e| e.kind == Kind::Accepted) && s.iter().any(|e| e.kind == Kind::Data)
    });
    let accepted = seen.iter().find(|s| s.kind == Kind::Accepted).unwrap();
    let server = accepted.stream;
    assert_eq!(
        accepted.data, 1,
        "accepted streams start with the listener's data"
    );
    assert!(seen.contains(&Seen {
        kind: Kind::Connected,
        stream: client,
        error: 0,
        bytes: vec![],
        data: 2
    }));
    assert_eq!(bytes_of(&seen, server), b"hello");

    // Echo back, then the client shuts down: the server sees EOF, its own
    // shutdown then ends both directions, and both streams close with 0.
    lp.write(server, b"HELLO").unwrap();
    lp.shutdown(client).unwrap();
    assert_eq!(lp.write(client, b"late"), Err(libc::EPIPE));
    let seen = run_until(&mut lp, has(Kind::Eof, server));
    assert_eq!(bytes_of(&seen, client), b"HELLO");
    lp.shutdown(server).unwrap();
    let seen = run_until(&mut lp, |s| {
        has(Kind::Closed, server)(s) && has(Kind::Closed, client)(s)
    });
    assert!(
        seen.iter()
            .filter(|s| s.kind == Kind::Closed)
            .all(|s| s.error == 0),
        "{seen:?}"
    );
    // Dead ids are refused.
    assert_eq!(lp.write(server, b"x"), Err(libc::ENOENT));
    assert_eq!(lp.close(client), Err(libc::ENOENT));
    lp.close_listener(listener).unwrap();
    assert_eq!(lp.listener_port(listener), Err(libc::ENOENT));
    assert!(!lp.is_alive());
}

#[test]
fn refused_connection_reports_connected_with_the_error_then_closed() {
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let mut lp = StreamLoop::new().unwrap();
    let client = lp.connect(&localhost(port), 9).unwrap();
    let seen = run_until(&mut lp, has(Kind::Closed, client));
    let kinds: Vec<(Kind, i32)> = seen.iter().map(|s| (s.kind, s.error)).collect();
    assert_eq!(
        kinds,
        [
            (Kind::Connected, libc::ECONNREFUSED),
            (Kind::Closed, libc::ECONNREFUSED)
        ]
    );
}

#[test]
fn streams_over_pipes_carry_bytes_and_end_of_file() {
    let mut lp = StreamLoop::new().unwrap();
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two fds pipe writes.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    let reader = lp.open(fds[0], 1).unwrap();
    let writer = lp.open(fds[1], 2).unwrap();
    let message: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
    lp.write(writer, &message).unwrap();
    // Closing the writer sends what is queued first.
    lp.close(writer).unwrap();
    let seen = run_until(&mut lp, has(Kind::Eof, reader));
    assert_eq!(bytes_of(&seen, reader).len(), message.len());
    assert!(bytes_of(&seen, reader) == message);
    assert!(has(Kind::Closed, writer)(&seen));
    lp.close(reader).unwrap();
    assert!(has(Kind::Closed, reader)(&iteration(&mut lp, 0)));
    assert_eq!(lp.open(-1, 0), Err(libc::EINVAL));
}

#[test]
fn writing_to_a_peer_that_has_gone_is_an_error_not_sigpipe() {
    let mut lp = StreamLoop::new().unwrap();
    let (ours, theirs) = UnixStream::pair().unwrap();
    let stream = lp.open(ours.into_raw_fd(), 0).unwrap();
    drop(theirs);
    let error = lp.write(stream, b"anyone?").unwrap_err();
    assert!(error == libc::EPIPE || error == libc::ECONNRESET, "{error}");
    let seen = iteration(&mut lp, 0);
    assert_eq!(seen.last().unwrap().kind, Kind::Closed);
    assert_eq!(seen.last().unwrap().error, error);
}

/// A peer that does not read: the queue holds what the kernel did not take,
/// reading pauses above the high watermark and resumes once it drains.
#[test]
fn the_high_watermark_pauses_reading_until_the_queue_drains() {
    let mut lp = StreamLoop::new().unwrap();
    let (ours, mut theirs) = UnixStream::pair().unwrap();
    let stream = lp.open(ours.into_raw_fd(), 0).unwrap();
    let big = vec![7u8; 4 * DEFAULT_HIGH_WATER];
    lp.write(stream, &big).unwrap();
    let queued = lp.queued(stream).unwrap();
    assert!(queued > DEFAULT_HIGH_WATER, "{queued} queued");
    theirs.write_all(b"while you were busy").unwrap();
    assert!(
        bytes_of(&iteration(&mut lp, 100), stream).is_empty(),
        "read while over the high watermark"
    );
    // The peer reads everything: the queue drains and reading resumes.
    let reader = std::thread::spawn(move || {
        let mut got = vec![0u8; big.len()];
        theirs.read_exact(&mut got).unwrap();
        theirs
    });
    // Reading resumes at the low watermark, before the queue is empty.
    let seen = run_until(&mut lp, |s| {
        has(Kind::Drained, stream)(s) && !bytes_of(s, stream).is_empty()
    });
    assert_eq!(bytes_of(&seen, stream), b"while you were busy");
    let data_at = seen.iter().position(|s| s.kind == Kind::Data).unwrap();
    let drained_at = seen.iter().position(|s| s.kind == Kind::Drained).unwrap();
    assert!(data_at < drained_at, "{seen:?}");
    assert_eq!(lp.queued(stream), Ok(0));
    drop(reader.join().unwrap());
    assert_eq!(lp.set_watermarks(stream, 10, 20), Err(libc::EINVAL));
}

#[test]
fn pause_and_resume_by_hand() {
    let mut lp = StreamLoop::new().unwrap();
    let (ours, mut theirs) = UnixStream::pair().unwrap();
    let stream = lp.open(ours.into_raw_fd(), 0).unwrap();
    lp.pause(stream).unwrap();
    theirs.write_all(b"later").unwrap();
    assert!(iteration(&mut lp, 50).is_empty());
    lp.resume(stream).unwrap();
    assert_eq!(bytes_of(&iteration(&mut lp, 1000), stream), b"later");
}

/// The application ends a stream while events for it wait: none of them is
/// handed out, only its Closed.
#[test]
fn no_event_for_a_stream_after_the_application_ended_it() {
    let mut lp = StreamLoop::new().unwrap();
    let pairs: Vec<(StreamId, UnixStream)> = (0..4)
        .map(|_| {
            let (ours, theirs) = UnixStream::pair().unwrap();
            (lp.open(ours.into_raw_fd(), 0).unwrap(), theirs)
        })
        .collect();
    for (_, theirs) in &pairs {
        (&*theirs).write_all(b"data").unwrap();
    }
    lp.wait(Some(Duration::from_secs(1)), 1024).unwrap();
    let Some(Event::Stream(first)) = lp.next_event() else {
        panic!("no first event")
    };
    // The first handler aborts every other stream.
    let others: Vec<StreamId> = pairs
        .iter()
        .map(|(s, _)| *s)
        .filter(|&s| s != first.stream)
        .collect();
    for &other in &others {
        lp.abort(other).unwrap();
    }
    let mut rest = Vec::new();
    while let Some(event) = lp.next_event() {
        let Event::Stream(e) = event else { panic!() };
        rest.push((e.kind, e.stream, e.error));
    }
    let expected: Vec<_> = others
        .iter()
        .map(|&s| (Kind::Closed, s, libc::ECONNABORTED))
        .collect();
    assert_eq!(rest, expected);
}

/// In a batch (bytes kept until release_reads), a full read buffer ends the
/// batch early; the rest of the iteration follows after release_reads, and
/// every byte arrives once, in order.
#[test]
fn a_full_read_buffer_ends_a_batch_and_nothing_is_lost() {
    let mut lp = StreamLoop::new().unwrap();
    let mut peers = Vec::new();
    let mut streams = Vec::new();
    for i in 0..12u8 {
        let (ours, theirs) = UnixStream::pair().unwrap();
        (&theirs).write_all(&vec![i; 60_000]).unwrap();
        streams.push(lp.open(ours.into_raw_fd(), i as u32).unwrap());
        peers.push(theirs);
    }
    let mut got: Vec<Vec<u8>> = vec![Vec::new(); streams.len()];
    let mut batches = 0;
    let start = Instant::now();
    while got.iter().map(Vec::len).sum::<usize>() < 12 * 60_000 {
        assert!(start.elapsed() < Duration::from_secs(5));
        lp.release_reads();
        lp.wait(Some(Duration::from_millis(100)), 1024).unwrap();
        let mut batch = Vec::new();
        while let Some(Event::Stream(e)) = lp.next_event() {
            batch.push(e);
        }
        // Every event of the batch still points at its own bytes.
        for e in &batch {
            got[e.data as usize].extend_from_slice(lp.bytes(e));
        }
        batches += 1;
    }
    assert!(batches > 1);
    for (i, bytes) in got.iter().enumerate() {
        assert!(bytes.iter().all(|&b| b == i as u8), "stream {i} mixed up");
    }
}

#[test]
fn a_streams_fd_is_not_the_applications_to_change() {
    let mut lp: StreamLoop<u32> = StreamLoop::new().unwrap();
    let (ours, _theirs) = UnixStream::pair().unwrap();
    let stream = lp.open(ours.into_raw_fd(), 0).unwrap();
    let fd = lp.stream_fd(stream).unwrap();
    assert_eq!(lp.modify(fd, evloop::event_loop::WRITE), Err(libc::EBUSY));
    assert_eq!(lp.unregister(fd), Err(libc::EBUSY));
    assert_eq!(
        lp.register(fd, evloop::event_loop::READ, 1),
        Err(libc::EEXIST)
    );
    // Timer ids of the loop's own timers cannot be stopped from outside.
    lp.set_idle_timeout(stream, 60_000).unwrap();
    for id in 1..4u64 {
        assert_eq!(lp.stop_timer(1 << 32 | id), Err(libc::ENOENT));
    }
}

#[test]
fn idle_streams_close_with_etimedout() {
    let mut lp = StreamLoop::new().unwrap();
    let (ours, mut theirs) = UnixStream::pair().unwrap();
    let stream = lp.open(ours.into_raw_fd(), 0).unwrap();
    lp.set_idle_timeout(stream, 200).unwrap();
    let start = Instant::now();
    // Activity pushes the deadline back.
    for _ in 0..3 {
        theirs.write_all(b".").unwrap();
        std::thread::sleep(Duration::from_millis(100));
        iteration(&mut lp, 0);
    }
    let seen = run_until(&mut lp, has(Kind::Closed, stream));
    assert_eq!(seen.last().unwrap().error, libc::ETIMEDOUT);
    assert!(start.elapsed() >= Duration::from_millis(450));
}

/// `stream_ready_into` (the read of a `BufferedProtocol`): a stream's bytes
/// go into the caller's buffer, end to end, never into the shared one,
/// with writes and end-of-file as `stream_ready` has them; `stream_data`
/// names what the stream was given.
#[test]
fn stream_ready_into_reads_into_the_callers_buffer() {
    use evloop::stream::Ready;
    let mut lp = StreamLoop::new().unwrap();
    let (ours, mut peer) = UnixStream::pair().unwrap();
    let id = lp.open(ours.into_raw_fd(), 7).unwrap();
    assert_eq!(lp.stream_data(id), Some(7));
    let sent: Vec<u8> = (0..50_000u32).map(|i| (i % 251) as u8).collect();
    peer.write_all(&sent).unwrap();
    peer.shutdown(std::net::Shutdown::Write).unwrap();
    let mut received = Vec::new();
    let mut eof = false;
    let start = Instant::now();
    while !eof {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "got {}",
            received.len()
        );
        lp.wait(Some(Duration::from_millis(50)), 1024).unwrap();
        loop {
            let event = match lp.next_ready() {
                Some(Ready::Stream { stream, revents }) => {
                    assert_eq!(stream, id);
                    let mut buf = [0u8; 1000]; // smaller than what waits: several reads
                    let event = lp.stream_ready_into(stream, revents, &mut buf);
                    if let Some(e) = event.filter(|e| e.kind == Kind::Data) {
                        assert_eq!((e.offset, e.data), (0, 7));
                        received.extend_from_slice(&buf[..e.len]);
                        continue;
                    }
                    event.map(Event::Stream)
                }
                Some(other) => panic!("{other:?}"),
                None => lp.next_event(),
            };
            match event {
                Some(Event::Stream(e)) if e.kind == Kind::Eof => eof = true,
                Some(other) => panic!("{other:?}"),
                None => break,
            }
        }
    }
    assert!(
        received == sent,
        "{} bytes, not the {} sent",
        received.len(),
        sent.len()
    );
    lp.write(id, b"after eof").unwrap();
    let mut reply = [0u8; 9];
    peer.read_exact(&mut reply).unwrap();
    assert_eq!(&reply, b"after eof");
    lp.abort(id).unwrap();
    assert_eq!(
        lp.stream_data(id),
        None,
        "a closed stream has no data to give"
    );
}

/// Turning the watermarks off (high 0: "never pause") resumes a stream
/// that its queue had paused, at once: before, it stayed paused until the
/// whole queue drained, so two such streams writing to each other (or a
/// peer that waits for an answer before it reads) never moved again.
/// A readiness whose flush empties the queue (DRAINED) and whose read goes
/// into the caller's buffer: the DATA comes from `stream_ready_into` itself,
/// its bytes in that buffer (never left to wait, to pass later for the
/// shared buffer's), and the drain after it.
#[test]
fn stream_ready_into_hands_out_its_read_before_the_drain_of_the_same_readiness() {
    use evloop::stream::Ready;
    let mut lp = StreamLoop::new().unwrap();
    let (ours, mut peer) = UnixStream::pair().unwrap();
    let id = lp.open(ours.into_raw_fd(), 7).unwrap();
    // A little more than the kernel takes: a short queue, which one write
    // sends once the peer has read.
    let chunk = [1u8; 4096];
    let mut written = 0;
    while lp.queued(id).unwrap() == 0 {
        lp.write(id, &chunk).unwrap();
        written += chunk.len();
    }
    let mut got = vec![0u8; written - lp.queued(id).unwrap()];
    peer.read_exact(&mut got).unwrap();
    peer.write_all(b"sent as the queue drains").unwrap();
    lp.wait(Some(Duration::from_secs(5)), 16).unwrap();
    let Some(Ready::Stream { stream, revents }) = lp.next_ready() else {
        panic!("no readiness of the stream");
    };
    assert_eq!(stream, id);
    let mut buf = [0u8; 100];
    let event = lp.stream_ready_into(stream, revents, &mut buf).unwrap();
    assert_eq!((event.kind, event.offset), (Kind::Data, 0), "{event:?}");
    assert_eq!(&buf[..event.len], b"sent as the queue drains");
    match lp.next_event() {
        Some(Event::Stream(e)) => assert_eq!((e.kind, e.stream), (Kind::Drained, id)),
        other => panic!("{other:?}"),
    }
    assert_eq!(lp.queued(id), Ok(0));
}

#[test]
fn watermarks_turned_off_resume_a_stream_its_queue_paused() {
    let mut lp = StreamLoop::new().unwrap();
    let (ours, mut peer) = UnixStream::pair().unwrap();
    let id = lp.open(ours.into_raw_fd(), 1).unwrap();
    // The peer reads nothing: most of this stays queued, over the high mark.
    lp.write(id, &vec![7u8; 3 * DEFAULT_HIGH_WATER]).unwrap();
    assert!(lp.queued(id).unwrap() > DEFAULT_HIGH_WATER);
    peer.write_all(b"hello").unwrap();
    for _ in 0..5 {
        assert!(
            bytes_of(&iteration(&mut lp, 10), id).is_empty(),
            "read while throttled"
        );
    }
    lp.set_watermarks(id, 0, 0).unwrap();
    let seen = run_until(&mut lp, |s| !bytes_of(s, id).is_empty());
    assert_eq!(bytes_of(&seen, id), b"hello");
    assert!(
        lp.queued(id).unwrap() > DEFAULT_HIGH_WATER,
        "the queue is still there"
    );
    drop(peer);
}
