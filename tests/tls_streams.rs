//! TLS streams through the Rust API (`StreamLoop` and `tls::TlsConfig`):
//! a TLS listener and TLS connects in one loop, with certificates made by
//! the test: echo both ways at many sizes, writes before the handshake,
//! ALPN, versions, SNI, the peer's certificate, close_notify as EOF and
//! half-close, pause across the handshake, STARTTLS on plain streams, and
//! failures (wrong name, expired, self-signed, no common ALPN, garbage, a
//! stalled handshake) that end one stream with the right code and leave the
//! listener serving.

mod stream_events;
use stream_events::*;
mod tls_certs;

use evloop::stream::StreamLoop;
use evloop::tls::{TlsConfig, Verify, ETLS_CERT, ETLS_HANDSHAKE};
use evloop::{StreamEventKind as Kind, StreamId};
use std::io::{Read, Write};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

fn certs() -> &'static tls_certs::Certs {
    static CERTS: OnceLock<tls_certs::Certs> = OnceLock::new();
    CERTS.get_or_init(tls_certs::make)
}

fn server_config(pair: &tls_certs::Pair, alpn: &[&str]) -> TlsConfig {
    let config = TlsConfig::new(true);
    config
        .set_certificate_pem(pair.chain.as_bytes(), pair.key.as_bytes())
        .unwrap();
    config
        .set_alpn(alpn.iter().map(|p| p.as_bytes().to_vec()).collect())
        .unwrap();
    config
}

fn client_config(alpn: &[&str]) -> TlsConfig {
    let config = TlsConfig::new(false);
    assert_eq!(config.add_ca_pem(certs().ca.as_bytes()), Ok(1));
    config
        .set_alpn(alpn.iter().map(|p| p.as_bytes().to_vec()).collect())
        .unwrap();
    config
}

/// A TLS listener on 127.0.0.1 and its port.
fn tls_listener(lp: &mut StreamLoop<u32>, config: &TlsConfig) -> (u64, u16) {
    let listener = lp.listen(&localhost(0), 64, false, 1).unwrap();
    lp.set_listener_tls(listener, Some(config.server_config().unwrap()))
        .unwrap();
    (listener, lp.listener_port(listener).unwrap())
}

fn connect(lp: &mut StreamLoop<u32>, port: u16, config: &TlsConfig, name: &str) -> StreamId {
    lp.tls_connect(&localhost(port), config.role(Some(name)).unwrap(), 2)
        .unwrap()
}

fn accepted(seen: &[Seen]) -> Vec<StreamId> {
    seen.iter()
        .filter(|s| s.kind == Kind::Accepted)
        .map(|s| s.stream)
        .collect()
}

/// Reads what a raw peer got (an alert, say); whether the server has
/// closed the connection.
fn peer_ended(peer: &mut std::net::TcpStream) -> bool {
    let mut buf = [0u8; 256];
    match peer.read(&mut buf) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
    }
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

#[test]
fn echo_both_ways_alpn_sni_version_certificate_then_half_close() {
    let mut lp = StreamLoop::new().unwrap();
    let (_, port) = tls_listener(
        &mut lp,
        &server_config(&certs().server, &["h2", "http/1.1"]),
    );
    let client = connect(
        &mut lp,
        port,
        &client_config(&["http/1.1", "h2"]),
        "localhost",
    );
    // Written before the handshake: sent once it is done.
    let first = pattern(300_000, 1);
    lp.write(client, &first).unwrap();
    assert!(lp.queued(client).unwrap() >= first.len());
    assert_eq!(lp.tls_handshaking(client), Ok(true));
    assert_eq!(lp.tls_version(client), Ok(0));

    let seen = run_until(&mut lp, |s| {
        !accepted(s).is_empty()
            && has(Kind::Connected, client)(s)
            && bytes_of(s, accepted(s)[0]).len() == first.len()
    });
    let server = accepted(&seen)[0];
    let connected = seen.iter().find(|s| s.kind == Kind::Connected).unwrap();
    assert_eq!(connected.error, 0);
    let at = |kind| seen.iter().position(|s| s.kind == kind).unwrap();
    assert!(at(Kind::Accepted) < seen.iter().position(|s| s.kind == Kind::Data).unwrap());
    assert!(
        bytes_of(&seen, server) == first,
        "the server got other bytes"
    );

    for stream in [client, server] {
        assert_eq!(lp.tls_handshaking(stream), Ok(false));
        assert_eq!(lp.tls_version(stream), Ok(0x0304));
        assert_ne!(lp.tls_cipher_suite(stream), Ok(0));
        // The server's order of preference decides.
        assert_eq!(lp.tls_alpn(stream), Ok(Some(&b"h2"[..])));
        assert_eq!(lp.tls_server_name(stream), Ok(Some("localhost")));
    }
    assert_eq!(
        lp.tls_peer_certificate(client, 0),
        Ok(Some(&certs().server.der[..]))
    );
    assert_eq!(lp.tls_peer_certificate(client, 1), Ok(None));
    assert_eq!(
        lp.tls_peer_certificate(server, 0),
        Ok(None),
        "no client certificate"
    );

    // Echo at many sizes, both ways.
    let mut expect_client = Vec::new();
    for (i, len) in [1usize, 64, 1000, 16_384, 16_385, 65_536, 200_000]
        .iter()
        .enumerate()
    {
        let bytes = pattern(*len, i as u8);
        lp.write(server, &bytes).unwrap();
        expect_client.extend_from_slice(&bytes);
    }
    let seen = run_until(&mut lp, |s| {
        bytes_of(s, client).len() == expect_client.len()
    });
    assert!(bytes_of(&seen, client) == expect_client);

    // Half-close: close_notify is EOF; the other side still writes.
    lp.shutdown(client).unwrap();
    assert_eq!(lp.write(client, b"late"), Err(libc::EPIPE));
    let seen = run_until(&mut lp, has(Kind::Eof, server));
    assert!(!has(Kind::Closed, server)(&seen));
    lp.write(server, b"after your EOF").unwrap();
    lp.shutdown(server).unwrap();
    let seen = run_until(&mut lp, |s| {
        has(Kind::Closed, server)(s) && has(Kind::Closed, client)(s)
    });
    assert_eq!(bytes_of(&seen, client), b"after your EOF");
    assert!(has(Kind::Eof, client)(&seen));
    for s in seen.iter().filter(|s| s.kind == Kind::Closed) {
        assert_eq!(s.error, 0, "{s:?}");
    }
}

#[test]
fn certificate_errors_and_handshake_failures_end_one_stream_with_their_code() {
    let mut lp = StreamLoop::new().unwrap();
    let good = server_config(&certs().server, &["h2"]);
    let (_, port) = tls_listener(&mut lp, &good);
    let (_, expired_port) = tls_listener(&mut lp, &server_config(&certs().expired, &[]));
    let (_, self_port) = tls_listener(&mut lp, &server_config(&certs().self_signed, &[]));
    let client = client_config(&[]);
    let cases = [
        (port, "example.com", ETLS_CERT, "wrong name"),
        (expired_port, "localhost", ETLS_CERT, "expired"),
        (self_port, "localhost", ETLS_CERT, "self-signed"),
    ];
    for (port, name, code, what) in cases {
        let id = connect(&mut lp, port, &client, name);
        let seen = run_until(&mut lp, has(Kind::Closed, id));
        let mine: Vec<_> = seen.iter().filter(|s| s.stream == id).collect();
        assert_eq!(mine.len(), 2, "{what}: CONNECTED then CLOSED: {mine:?}");
        assert_eq!(
            (mine[0].kind, mine[0].error),
            (Kind::Connected, code),
            "{what}"
        );
        assert_eq!(
            (mine[1].kind, mine[1].error),
            (Kind::Closed, code),
            "{what}"
        );
        assert!(
            accepted(&seen).is_empty(),
            "{what}: the server never announces it"
        );
        let reason = lp.tls_error_reason(id).unwrap_or_default().to_lowercase();
        assert!(reason.contains("certificate"), "{what}: {reason}");
    }
    // No ALPN protocol in common: the server refuses the handshake.
    let h3 = client_config(&["h3"]);
    let id = connect(&mut lp, port, &h3, "localhost");
    let seen = run_until(&mut lp, has(Kind::Closed, id));
    let closed = seen.iter().find(|s| s.kind == Kind::Closed).unwrap();
    assert_eq!(closed.error, ETLS_HANDSHAKE);
    // Chain-only verification accepts the wrong name; none accepts anything.
    for (verify, name, port) in [
        (Verify::ChainOnly, "example.com", port),
        (Verify::NoneInsecure, "localhost", self_port),
    ] {
        let config = client_config(&[]);
        config.set_verify(verify).unwrap();
        let id = connect(&mut lp, port, &config, name);
        let seen = run_until(&mut lp, has(Kind::Connected, id));
        assert_eq!(
            seen.iter().find(|s| s.stream == id).unwrap().error,
            0,
            "{verify:?}"
        );
    }
    // The listener still serves.
    let id = connect(&mut lp, port, &client_config(&["h2"]), "localhost");
    lp.write(id, b"still here").unwrap();
    let seen = run_until(&mut lp, |s| s.iter().any(|e| e.bytes == b"still here"));
    let server = seen
        .iter()
        .find(|e| e.bytes == b"still here")
        .unwrap()
        .stream;
    assert!(accepted(&seen).contains(&server));
}

#[test]
fn garbage_and_stalled_handshakes_never_reach_the_application() {
    let mut lp = StreamLoop::new().unwrap();
    let config = server_config(&certs().server, &[]);
    let (listener, port) = tls_listener(&mut lp, &config);
    lp.set_idle_timeout(listener, 300).unwrap();
    let mut garbage = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    garbage
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut stalled = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    // A ClientHello cut short: the server waits for the rest.
    stalled
        .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01])
        .unwrap();
    let started = Instant::now();
    for peer in [&mut garbage, &mut stalled] {
        peer.set_read_timeout(Some(Duration::from_millis(10)))
            .unwrap();
    }
    let mut ended = [false, false];
    while !ended.iter().all(|e| *e) {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "peers not dropped"
        );
        let seen = iteration(&mut lp, 20);
        assert!(seen.is_empty(), "the application saw {seen:?}");
        for (k, peer) in [&mut garbage, &mut stalled].into_iter().enumerate() {
            ended[k] |= peer_ended(peer);
        }
    }
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "idle timeout early"
    );
    let id = connect(&mut lp, port, &client_config(&[]), "localhost");
    lp.write(id, b"ok").unwrap();
    let seen = run_until(&mut lp, |s| {
        !accepted(s).is_empty() && !bytes_of(s, accepted(s)[0]).is_empty()
    });
    assert_eq!(bytes_of(&seen, accepted(&seen)[0]), b"ok");
}

#[test]
fn pause_holds_data_across_the_handshake_and_resume_delivers_it() {
    let mut lp = StreamLoop::new().unwrap();
    let (_, port) = tls_listener(&mut lp, &server_config(&certs().server, &[]));
    let client = connect(&mut lp, port, &client_config(&[]), "localhost");
    let payload = pattern(150_000, 9);
    lp.write(client, &payload).unwrap();
    // The server pauses each stream as it is announced: nothing may come
    // after, though the client's records arrive with its last handshake flight.
    let seen = run_until_with(
        &mut lp,
        |lp, s| {
            if s.kind == Kind::Accepted {
                lp.pause(s.stream).unwrap();
            }
        },
        |s| !accepted(s).is_empty() && has(Kind::Connected, client)(s),
    );
    let server = accepted(&seen)[0];
    let mut got = bytes_of(&seen, server);
    let until = Instant::now() + Duration::from_millis(300);
    while Instant::now() < until {
        let more = iteration(&mut lp, 20);
        assert!(bytes_of(&more, server).is_empty(), "DATA while paused");
    }
    lp.resume(server).unwrap();
    let seen = run_until(&mut lp, |s| {
        got.len() + bytes_of(s, server).len() == payload.len()
    });
    got.extend(bytes_of(&seen, server));
    assert!(got == payload);
}

#[test]
fn starttls_on_plain_streams_and_tls12() {
    let mut lp = StreamLoop::new().unwrap();
    let listener = lp.listen(&localhost(0), 16, false, 1).unwrap();
    let port = lp.listener_port(listener).unwrap();
    let client = lp.connect(&localhost(port), 2).unwrap();
    lp.write(client, b"STARTTLS\n").unwrap();
    let seen = run_until(&mut lp, |s| {
        !accepted(s).is_empty() && !bytes_of(s, accepted(s)[0]).is_empty()
    });
    let server = accepted(&seen)[0];
    assert_eq!(bytes_of(&seen, server), b"STARTTLS\n");
    // The answer goes out in the clear, then TLS begins on both ends.
    lp.write(server, b"GO\n").unwrap();
    let server_tls = server_config(&certs().server, &[]);
    lp.tls_start(server, server_tls.role(None).unwrap())
        .unwrap();
    assert_eq!(
        lp.tls_start(server, server_tls.role(None).unwrap()),
        Err(libc::EALREADY)
    );
    let seen = run_until(&mut lp, |s| !bytes_of(s, client).is_empty());
    assert_eq!(bytes_of(&seen, client), b"GO\n");
    let tls12 = client_config(&[]);
    tls12.set_versions(0x0303, 0x0303).unwrap();
    lp.tls_start(client, tls12.role(Some("127.0.0.1")).unwrap())
        .unwrap();
    lp.write(client, b"secret").unwrap();
    let seen = run_until(&mut lp, |s| {
        has(Kind::Connected, client)(s)
            && has(Kind::Connected, server)(s)
            && !bytes_of(s, server).is_empty()
    });
    assert_eq!(bytes_of(&seen, server), b"secret");
    assert_eq!(lp.tls_version(client), Ok(0x0303));
    assert_eq!(lp.tls_version(server), Ok(0x0303));
    // A client that asked for an IP address sends no SNI.
    assert_eq!(lp.tls_server_name(server), Ok(None));
    lp.close(client).unwrap();
    let seen = run_until(&mut lp, has(Kind::Eof, server));
    assert!(!has(Kind::Closed, server)(&seen));
    lp.close(server).unwrap();
    run_until(&mut lp, has(Kind::Closed, server));
}

#[test]
fn config_errors_say_why() {
    let config = TlsConfig::new(true);
    assert!(config.set_certificate_pem(b"nothing", b"nothing").is_err());
    assert!(
        config.last_error().contains("CERTIFICATE"),
        "{}",
        config.last_error()
    );
    assert_eq!(config.server_config().err(), Some(evloop::tls::ETLS_CONFIG));
    assert!(config.last_error().contains("certificate"));
    let pair = &certs().server;
    let wrong_key = &certs().expired.key;
    config
        .set_certificate_pem(pair.chain.as_bytes(), wrong_key.as_bytes())
        .unwrap();
    assert!(config.server_config().is_err(), "a key that does not match");
    let config = TlsConfig::new(true);
    config
        .set_certificate_pem(pair.chain.as_bytes(), pair.key.as_bytes())
        .unwrap();
    config.server_config().unwrap();
    assert_eq!(
        config.set_alpn(vec![b"h2".to_vec()]),
        Err(libc::EBUSY),
        "frozen once used"
    );
    let client = TlsConfig::new(false);
    assert_eq!(client.set_versions(0x0304, 0x0303), Err(libc::EINVAL));
    assert_eq!(client.set_alpn(vec![vec![]]), Err(libc::EINVAL));
    assert_eq!(
        client.add_ca_file(std::path::Path::new("/nonexistent/ca.pem")),
        Err(libc::ENOENT)
    );
    assert!(client.role(None).is_err(), "a client needs a name");
    assert!(client.role(Some("not a name!")).is_err());
}
