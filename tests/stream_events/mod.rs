//! What the stream tests share: a stream event with its bytes copied out
//! of the loop's buffer, iterations collected into a list, and waiting
//! until a condition holds over everything seen (a bound of 10 s, since CI
//! machines are loaded). Used by tests/streams.rs and tests/tls_streams.rs.
#![allow(dead_code)] // each test file uses part of it

use evloop::stream::{Event, StreamLoop};
use evloop::SockAddr;
use evloop::{StreamEvent, StreamEventKind as Kind, StreamId};
use std::time::{Duration, Instant};

/// A stream event with its bytes copied out of the loop's buffer.
#[derive(Debug, Clone, PartialEq)]
pub struct Seen {
    pub kind: Kind,
    pub stream: StreamId,
    pub error: i32,
    pub bytes: Vec<u8>,
    pub data: u32,
}

pub fn seen(lp: &StreamLoop<u32>, e: &StreamEvent<u32>) -> Seen {
    Seen {
        kind: e.kind,
        stream: e.stream,
        error: e.error,
        bytes: lp.bytes(e).to_vec(),
        data: e.data,
    }
}

pub fn iteration(lp: &mut StreamLoop<u32>, timeout_ms: u64) -> Vec<Seen> {
    lp.wait(Some(Duration::from_millis(timeout_ms)), 1024)
        .unwrap();
    let mut out = Vec::new();
    while let Some(event) = lp.next_event() {
        match event {
            Event::Stream(e) => out.push(seen(lp, &e)),
            other => panic!("unexpected {other:?}"),
        }
        lp.release_reads();
    }
    out
}

/// Runs iterations until `until` holds for everything seen, or 10 s pass;
/// `each` may act on every event as it comes.
pub fn run_until_with(
    lp: &mut StreamLoop<u32>,
    mut each: impl FnMut(&mut StreamLoop<u32>, &Seen),
    until: impl Fn(&[Seen]) -> bool,
) -> Vec<Seen> {
    let start = Instant::now();
    let mut all = Vec::new();
    while !until(&all) {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "gave up; saw {:?}",
            all.iter()
                .map(|s: &Seen| (s.kind, s.stream, s.error, s.bytes.len()))
                .collect::<Vec<_>>()
        );
        for s in iteration(lp, 20) {
            each(lp, &s);
            all.push(s);
        }
    }
    all
}

pub fn run_until(lp: &mut StreamLoop<u32>, until: impl Fn(&[Seen]) -> bool) -> Vec<Seen> {
    run_until_with(lp, |_, _| {}, until)
}

pub fn has(kind: Kind, stream: StreamId) -> impl Fn(&[Seen]) -> bool {
    move |seen| seen.iter().any(|s| s.kind == kind && s.stream == stream)
}

pub fn bytes_of(seen: &[Seen], stream: StreamId) -> Vec<u8> {
    seen.iter()
        .filter(|s| s.kind == Kind::Data && s.stream == stream)
        .flat_map(|s| s.bytes.clone())
        .collect()
}

pub fn localhost(port: u16) -> SockAddr {
    SockAddr::resolve(c"127.0.0.1", port).unwrap()
}
