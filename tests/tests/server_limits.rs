//! What one client may hold of `wharf serve`: time to send headers, time between body
//! bytes, and connections. Local server only (each test starts one configured for it).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};
use wharf_tests::*;

/// A local server with `env`, or `None` (and a note) when the suite targets another runtime.
fn server(env: &[(&str, &str)]) -> Option<Target> {
    if !is_local() {
        eprintln!("skipped: WHARF_TEST_URL is set; these limits are wharf serve's own");
        return None;
    }
    Some(Target::local(Server::start_with_env(
        temp_dir("limits").join("data"),
        &format!("pw-{}", random_hex(12)),
        env,
    )))
}

/// Waits at most `within` for the server to close `s` (EOF or reset); what it read before.
fn closed_within(s: &mut TcpStream, within: Duration) -> Result<Vec<u8>, Vec<u8>> {
    let deadline = Instant::now() + within;
    let mut got = Vec::new();
    let mut b = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(got);
        }
        s.set_read_timeout(Some(left)).expect("timeout");
        match s.read(&mut b) {
            Ok(0) => return Ok(got),
            Ok(n) => got.extend_from_slice(&b[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err(got);
            }
            Err(_) => return Ok(got),
        }
    }
}

#[test]
fn unfinished_request_heads_are_closed_after_the_header_timeout() {
    let Some(t) = server(&[("WHARF_HEADER_TIMEOUT_SECS", "2")]) else {
        return;
    };
    // 50 connections: most send part of a request head and stop; some send nothing at all
    // (they never get past protocol detection).
    let mut conns: Vec<TcpStream> = (0..50)
        .map(|i| {
            let mut s = TcpStream::connect(&t.authority).expect("connect");
            if i % 5 != 0 {
                s.write_all(b"GET /v2/ HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                    .expect("send partial head");
            }
            s
        })
        .collect();
    let started = Instant::now();
    let still_open = conns
        .iter_mut()
        .map(|s| closed_within(s, Duration::from_secs(10).saturating_sub(started.elapsed())))
        .filter(Result::is_err)
        .count();
    assert_eq!(
        still_open, 0,
        "{still_open} of 50 connections with unfinished request heads were still open 10 s \
         after they stopped sending (header timeout 2 s)"
    );
    // The server still serves.
    t.repo("after")
        .req("GET", "/v2/", &[], None)
        .expect(200, None);
}

#[test]
fn stalled_patch_body_is_cut_off_and_leaves_the_upload_unchanged() {
    let Some(t) = server(&[("WHARF_BODY_IDLE_TIMEOUT_SECS", "2")]) else {
        return;
    };
    let c = t.repo("stall");
    let loc = c.start_upload();
    let r = c.req(
        "PATCH",
        &loc,
        &[("Content-Range", "0-999")],
        Some(&[1u8; 1000]),
    );
    r.expect(202, None);
    let loc = r.header("location");
    let mut conn = c.raw_conn();
    conn.head(
        "PATCH",
        &loc,
        &[
            ("Content-Range", "1000-100999"),
            ("Content-Length", "100000"),
            ("Content-Type", "application/octet-stream"),
        ],
    );
    conn.send(&[2u8; 5000]).expect("send part of the body");
    // Then nothing: the server must give up on the body, not hold the request forever.
    conn.set_read_timeout(Duration::from_secs(15));
    let started = Instant::now();
    let answer = conn.response();
    let waited = started.elapsed();
    assert!(
        waited < Duration::from_secs(12),
        "a PATCH whose body stalled was still open after {waited:?} (body idle timeout 2 s)"
    );
    if let Some(r) = &answer {
        assert!(
            (400..500).contains(&r.status),
            "a stalled body is the client's error: {}",
            r.head
        );
    }
    let s = c.req("GET", &loc, &[], None);
    s.expect(204, None);
    assert_eq!(
        s.header("range"),
        "0-999",
        "the stalled bytes must not count"
    );
    // The upload goes on from where it was.
    let r = c.req(
        "PATCH",
        &loc,
        &[("Content-Range", "1000-1999")],
        Some(&[3u8; 1000]),
    );
    r.expect(202, None);
    assert_eq!(r.header("range"), "0-1999");
}

#[test]
fn connections_beyond_the_limit_are_closed_until_one_frees() {
    let Some(t) = server(&[("WHARF_MAX_CONNECTIONS", "8")]) else {
        return;
    };
    let request = format!("GET /v2/ HTTP/1.1\r\nHost: {}\r\n\r\n", t.authority);
    let answered = |s: &mut TcpStream| -> bool {
        if s.write_all(request.as_bytes()).is_err() {
            return false;
        }
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let mut b = [0u8; 512];
        matches!(s.read(&mut b), Ok(n) if n > 0 && b.starts_with(b"HTTP/1.1 "))
    };
    // The probe that waited for the server may still hold a slot for a moment.
    std::thread::sleep(Duration::from_millis(300));
    let mut held: Vec<TcpStream> = (0..8)
        .map(|i| {
            let mut s = TcpStream::connect(&t.authority).expect("connect");
            assert!(
                answered(&mut s),
                "connection {i} of 8 (within the limit) was not served"
            );
            s
        })
        .collect();
    let mut ninth = TcpStream::connect(&t.authority).expect("connect");
    assert!(
        !answered(&mut ninth),
        "a 9th connection was served with 8 open and a limit of 8"
    );
    drop(held.pop());
    // The freed slot is taken by the next connection (bounded wait for the server to see
    // the close).
    let served = (0..20).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        let mut s = TcpStream::connect(&t.authority).expect("connect");
        answered(&mut s)
    });
    assert!(served, "no connection was served after one of the 8 closed");
}
