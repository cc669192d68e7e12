//! Connecting by name (StreamLoop::connect_host, evl_connect_host) on
//! loopback, where the only addresses are 127.0.0.1 and ::1. Names that
//! resolve to a chosen mix come from a test resolver (no /etc/hosts
//! needed); an address that blackholes is a listener whose accept queue is
//! full (backlog 0 and one connection never accepted: the kernel drops
//! further SYNs, so a connect to it hangs). Checked: the stagger (the next
//! address only 250 ms later, never earlier), the winner taking the
//! stream, the losers' sockets and timers gone (the loop has nothing left
//! once the stream closes), failures reported once with the last error.

use evloop::stream::Event;
use evloop::{StreamEventKind, StreamId, StreamLoop};
use std::collections::HashMap;
use std::ffi::CStr;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What the test resolver answers for a name: addresses or an EAI code.
type Answer = Result<Vec<SocketAddr>, i32>;

/// What the test resolver answers, by host name (each test its own name).
static NAMES: Mutex<Option<HashMap<String, Answer>>> = Mutex::new(None);

fn name(host: &str, answer: Result<Vec<&str>, i32>) {
    let answer = answer.map(|addrs| addrs.iter().map(|a| a.parse().unwrap()).collect());
    NAMES
        .lock()
        .unwrap()
        .get_or_insert_with(HashMap::new)
        .insert(host.to_string(), answer);
}

fn test_resolver(host: &CStr, _port: u16) -> Result<Vec<SocketAddr>, i32> {
    let names = NAMES.lock().unwrap();
    let host = host.to_str().unwrap();
    names
        .as_ref()
        .and_then(|n| n.get(host).cloned())
        .unwrap_or(Err(libc::EAI_NONAME))
}

fn new_loop() -> StreamLoop<u32> {
    let mut lp = StreamLoop::new().unwrap();
    lp.set_host_resolver(Some(test_resolver));
    lp
}

/// Stream events of `stream` (kind, error) until `done` says so, at most 30 s.
fn events_until(
    lp: &mut StreamLoop<u32>,
    stream: StreamId,
    mut done: impl FnMut(&[(StreamEventKind, i32)]) -> bool,
) -> Vec<(StreamEventKind, i32)> {
    let give_up = Instant::now() + Duration::from_secs(30);
    let mut seen = Vec::new();
    while !done(&seen) {
        assert!(Instant::now() < give_up, "no end: {seen:?}");
        lp.wait(Some(Duration::from_millis(20)), usize::MAX)
            .unwrap();
        while let Some(event) = lp.next_event() {
            if let Event::Stream(e) = event {
                if e.stream == stream {
                    seen.push((e.kind, e.error));
                }
            }
        }
        lp.release_reads();
    }
    seen
}

/// Runs the loop until `stream` has nothing queued (at most 30 s).
fn flush(lp: &mut StreamLoop<u32>, stream: StreamId) {
    let give_up = Instant::now() + Duration::from_secs(30);
    while lp.queued(stream).unwrap() > 0 {
        assert!(Instant::now() < give_up, "the queue never drained");
        lp.wait(Some(Duration::from_millis(20)), usize::MAX)
            .unwrap();
        while lp.next_event().is_some() {}
        lp.release_reads();
    }
}

fn connected(seen: &[(StreamEventKind, i32)]) -> bool {
    seen.iter().any(|e| e.0 == StreamEventKind::Connected)
}

fn closed(seen: &[(StreamEventKind, i32)]) -> bool {
    seen.iter().any(|e| e.0 == StreamEventKind::Closed)
}

/// A listener whose accept queue is full: a connect to it hangs.
struct Blackhole {
    _listener: std::os::fd::OwnedFd,
    _filler: TcpStream,
}

/// A TCP socket bound to `addr`, listening with `backlog` if given. Bound
/// and not listening, it holds the port: a connect to it is refused, and
/// no other socket can take the port meanwhile. (A listener dropped to
/// make a refused port is not enough in a test binary whose other threads
/// start processes: a child between its fork and its exec holds a copy.)
fn bound(addr: SocketAddr, backlog: Option<i32>) -> std::io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::{FromRawFd, OwnedFd};
    let family = if addr.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    // SAFETY: plain socket calls on a socket this function owns.
    unsafe {
        let fd = libc::socket(family, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0);
        let owned = OwnedFd::from_raw_fd(fd);
        let raw = evloop::SockAddr::from_std(addr);
        let bytes = raw.as_bytes();
        if libc::bind(fd, bytes.as_ptr().cast(), bytes.len() as u32) != 0
            || backlog.is_some_and(|b| libc::listen(fd, b) != 0)
        {
            return Err(std::io::Error::last_os_error());
        }
        Ok(owned)
    }
}

/// The port a bound socket holds.
fn port_of(fd: &std::os::fd::OwnedFd) -> u16 {
    use std::os::fd::AsRawFd;
    // SAFETY: room for any address, its size passed.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: as above.
    let rc = unsafe {
        libc::getsockname(
            fd.as_raw_fd(),
            (&mut storage as *mut libc::sockaddr_storage).cast(),
            &mut len,
        )
    };
    assert_eq!(rc, 0);
    // SAFETY: sin_port and sin6_port sit at the same offset.
    u16::from_be(unsafe {
        (*(&storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>()).sin_port
    })
}

fn blackhole(addr: SocketAddr) -> std::io::Result<Blackhole> {
    let listener = bound(addr, Some(0))?;
    // One connection fills the queue of a backlog 0 listener.
    let filler = TcpStream::connect(addr)?;
    Ok(Blackhole {
        _listener: listener,
        _filler: filler,
    })
}

/// Two sockets on the same port: a blackhole on `dark` and a listener on
/// `open` (127.0.0.1 / ::1, in either order). Retries with other ports.
fn dark_and_open(dark: &str, open: &str) -> (Blackhole, TcpListener, u16) {
    for _ in 0..50 {
        let listener = TcpListener::bind(format!("{open}:0")).unwrap();
        let port = listener.local_addr().unwrap().port();
        let dark_addr: SocketAddr = format!("{dark}:{port}").parse().unwrap();
        if let Ok(hole) = blackhole(dark_addr) {
            return (hole, listener, port);
        }
    }
    panic!("no port free on both addresses");
}

/// Two bound, not listening sockets on the same port, on 127.0.0.1 and
/// ::1: a connect to either is refused while they are held.
fn refusing_port() -> (std::os::fd::OwnedFd, std::os::fd::OwnedFd, u16) {
    for _ in 0..50 {
        let v4 = bound("127.0.0.1:0".parse().unwrap(), None).unwrap();
        let port = port_of(&v4);
        if let Ok(v6) = bound(format!("[::1]:{port}").parse().unwrap(), None) {
            return (v4, v6, port);
        }
    }
    panic!("no port free on both addresses");
}

fn peer_of(lp: &StreamLoop<u32>, stream: StreamId) -> SocketAddr {
    let fd = lp.stream_fd(stream).unwrap();
    // SAFETY: borrows the stream's fd for getpeername only (not closed).
    let socket = std::mem::ManuallyDrop::new(unsafe {
        <TcpStream as std::os::fd::FromRawFd>::from_raw_fd(fd)
    });
    socket.peer_addr().unwrap()
}

#[test]
fn the_next_family_gets_its_turn_250_ms_after_a_blackholed_first() {
    for (first, second, name_) in [
        ("127.0.0.1", "[::1]", "dark-v4.test"),
        ("[::1]", "127.0.0.1", "dark-v6.test"),
    ] {
        let (hole, listener, port) = dark_and_open(first, second);
        let f = format!("{first}:1");
        let s = format!("{second}:1");
        name(name_, Ok(vec![f.as_str(), s.as_str()]));
        let mut lp = new_loop();
        let c_name = std::ffi::CString::new(name_).unwrap();
        let start = Instant::now();
        let stream = lp.connect_host(&c_name, port, 7).unwrap();
        assert_eq!(lp.stream_fd(stream), Err(libc::ENOTCONN));
        lp.write(stream, b"ping").unwrap();
        let seen = events_until(&mut lp, stream, connected);
        let elapsed = start.elapsed();
        assert_eq!(seen, [(StreamEventKind::Connected, 0)], "{name_}");
        assert!(
            elapsed >= Duration::from_millis(245),
            "{name_}: the second address was tried {elapsed:?} after the first"
        );
        let peer = peer_of(&lp, stream);
        assert_eq!(peer.port(), port);
        assert_eq!(peer.ip(), listener.local_addr().unwrap().ip(), "{name_}");
        // Queued before the connection, sent once it is made.
        flush(&mut lp, stream);
        let (mut accepted, _) = listener.accept().unwrap();
        let mut got = [0u8; 4];
        accepted.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"ping");
        // The loser's socket and the stagger timer are gone: once the
        // stream has closed, the loop has nothing left.
        lp.close(stream).unwrap();
        let seen = events_until(&mut lp, stream, closed);
        assert_eq!(seen, [(StreamEventKind::Closed, 0)]);
        assert!(!lp.is_alive(), "{name_}: something of the attempts is left");
        drop(hole);
    }
}

#[test]
fn a_refused_address_hands_over_at_once_and_the_families_interleave() {
    // Two refused IPv6 addresses, then IPv4: the order tried is ::1, v4 (the
    // families alternate), so the open IPv4 listener wins second. (The test
    // resolver's addresses all get the connect's port: nothing may listen
    // on ::1 there.)
    let (listener, _refusing, port) = loop {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        if let Ok(refusing) = bound(format!("[::1]:{port}").parse().unwrap(), None) {
            break (listener, refusing, port);
        }
    };
    name(
        "mixed.test",
        Ok(vec!["[::1]:1", "[::1]:2", "127.0.0.1:3", "127.0.0.1:4"]),
    );
    let mut lp = new_loop();
    let stream = lp.connect_host(c"mixed.test", port, 1).unwrap();
    let seen = events_until(&mut lp, stream, connected);
    assert_eq!(seen, [(StreamEventKind::Connected, 0)]);
    assert!(peer_of(&lp, stream).is_ipv4());
    let _ = listener.accept().unwrap();
    lp.abort(stream).unwrap();
    events_until(&mut lp, stream, closed);
    assert!(!lp.is_alive());
}

#[test]
fn every_address_failing_gives_one_connected_with_the_last_error_then_closed() {
    let (_v4, _v6, port) = refusing_port();
    name("refused.test", Ok(vec!["127.0.0.1:1", "[::1]:1"]));
    name("nowhere.test", Err(libc::EAI_NONAME));
    name("later.test", Err(libc::EAI_AGAIN));
    name("empty.test", Ok(vec![]));
    let mut lp = new_loop();
    for (host, error) in [
        (c"refused.test", libc::ECONNREFUSED),
        (c"nowhere.test", libc::EADDRNOTAVAIL),
        (c"later.test", libc::EAGAIN),
        (c"empty.test", libc::EADDRNOTAVAIL),
    ] {
        let stream = lp.connect_host(host, port, 2).unwrap();
        let seen = events_until(&mut lp, stream, closed);
        assert_eq!(
            seen,
            [
                (StreamEventKind::Connected, error),
                (StreamEventKind::Closed, error)
            ],
            "{host:?}"
        );
        assert_eq!(lp.write(stream, b"x"), Err(libc::ENOENT));
    }
    assert!(!lp.is_alive());
}

#[test]
fn closing_while_attempts_hang_ends_them_and_the_timer() {
    // Both addresses blackhole: both attempts start (250 ms apart) and hang.
    let (hole4, listener6, port) = dark_and_open("127.0.0.1", "[::1]");
    drop(listener6);
    let hole6 = blackhole(format!("[::1]:{port}").parse().unwrap()).unwrap();
    name("hang.test", Ok(vec!["127.0.0.1:1", "[::1]:1"]));
    let mut lp = new_loop();
    let stream = lp.connect_host(c"hang.test", port, 3).unwrap();
    let until = Instant::now() + Duration::from_millis(400);
    while Instant::now() < until {
        lp.wait(Some(Duration::from_millis(20)), usize::MAX)
            .unwrap();
        if let Some(event) = lp.next_event() {
            panic!("nothing may happen yet: {event:?}");
        }
    }
    assert_eq!(lp.stream_fd(stream), Err(libc::ENOTCONN));
    lp.close(stream).unwrap();
    let seen = events_until(&mut lp, stream, closed);
    assert_eq!(seen, [(StreamEventKind::Closed, 0)], "no CONNECTED");
    assert!(
        !lp.is_alive(),
        "an attempt, its timer or the lookup is left"
    );
    drop((hole4, hole6));
}

#[test]
fn localhost_resolves_with_getaddrinfo_and_connects() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut lp: StreamLoop<u32> = StreamLoop::new().unwrap(); // no test resolver
    let stream = lp.connect_host(c"localhost", port, 4).unwrap();
    let seen = events_until(&mut lp, stream, |s| connected(s) || closed(s));
    assert_eq!(seen[0], (StreamEventKind::Connected, 0), "{seen:?}");
    let (mut accepted, _) = listener.accept().unwrap();
    lp.write(stream, b"hi").unwrap();
    flush(&mut lp, stream);
    let mut got = [0u8; 2];
    accepted.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"hi");
    accepted.write_all(b"yo").unwrap();
    drop(accepted);
    lp.close(stream).unwrap();
    events_until(&mut lp, stream, closed);
}
