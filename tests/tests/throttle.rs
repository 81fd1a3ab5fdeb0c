//! Login throttling over real HTTP, from several client addresses: each test starts its own
//! local `wharf serve` and reaches it from other loopback addresses (127.0.0.2, …; a socket
//! bound before it connects), since the server counts failures by the TCP peer's address.
//! Skipped against `WHARF_TEST_URL`: a remote registry sees one address, and a shared one
//! would be left throttled.
//!
//! The limits are wharf-core's `throttle::USER_ADDR_LIMIT` and `throttle::ADDR_LIMIT`.

use socket2::{Domain, Socket, Type};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;
use wharf_tests::*;

/// Failed logins per (user, address) and window.
const USER_ADDR_LIMIT: usize = 5;
/// Failed logins per address and window, over all users.
const ADDR_LIMIT: usize = 100;

/// The server's fixed throttle window (`throttle::WINDOW_MS`).
const WINDOW: Duration = Duration::from_secs(15 * 60);
/// More than a test takes.
const TEST_SPAN: Duration = Duration::from_secs(60);

/// A server of the test's own, or `None` (with a message) against `WHARF_TEST_URL`.
///
/// Counters start over when a fixed window ends (`now / WINDOW`, on the server's clock,
/// which is this machine's), so a test that ran across the boundary would see its failures
/// forgotten: one that would start within [`TEST_SPAN`] of it waits for the next window.
fn local_target(test: &str) -> Option<Target> {
    if !is_local() {
        eprintln!(
            "{test}: skipped: WHARF_TEST_URL is set, and this test needs a local server it can \
             reach from several loopback addresses"
        );
        return None;
    }
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock");
    let left =
        WINDOW - Duration::from_millis((since_epoch.as_millis() % WINDOW.as_millis()) as u64);
    if left < TEST_SPAN {
        eprintln!("{test}: waiting {left:?} for the next throttle window");
        std::thread::sleep(left + Duration::from_millis(500));
    }
    Some(Target::fresh())
}

/// `GET /token` with Basic credentials from client address `from`: status and `Retry-After`.
fn login(t: &Target, from: &str, user: &str, pass: &str) -> (u16, String) {
    let sock = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    let src: SocketAddr = format!("{from}:0").parse().expect("source address");
    sock.bind(&src.into())
        .unwrap_or_else(|e| panic!("bind {from}: {e}"));
    let dst: SocketAddr = t.authority.parse().expect("server address");
    sock.connect(&dst.into()).expect("connect");
    let mut s: TcpStream = sock.into();
    s.set_read_timeout(Some(Duration::from_secs(120)))
        .expect("timeout");
    let head = format!(
        "GET /token?service=wharf&scope=repository:x/y:pull HTTP/1.1\r\nHost: {}\r\n\
         Authorization: {}\r\nConnection: close\r\n\r\n",
        t.authority,
        basic(user, pass)
    );
    s.write_all(head.as_bytes()).expect("send");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("response");
    let text = String::from_utf8_lossy(&raw);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let retry = text
        .split("\r\n\r\n")
        .next()
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("retry-after"))
        .map(|(_, v)| v.trim().to_owned())
        .unwrap_or_default();
    (status, retry)
}

fn admin_basic(t: &Target) -> String {
    let (u, p) = t.creds.as_ref().expect("admin credentials");
    basic(u, p)
}

/// Creates a user (as the admin, from 127.0.0.1).
fn add_user(t: &Target, name: &str, password: &str) {
    let body = serde_json::json!({"username": name, "password": password}).to_string();
    let r = agent()
        .post(&format!("{}/api/v1/users", t.base))
        .header("Authorization", &admin_basic(t))
        .header("Content-Type", "application/json")
        .send(body.as_bytes())
        .expect("create user");
    assert!(r.status().is_success(), "create {name}: {}", r.status());
}

/// The `login_failed` events of `user` from `from` in the audit log: how many passwords
/// the server evaluated and rejected.
fn evaluated_failures(t: &Target, user: &str, from: &str) -> usize {
    let mut r = agent()
        .get(&format!(
            "{}/api/v1/audit?action=login_failed&actor={user}&limit=1000",
            t.base
        ))
        .header("Authorization", &admin_basic(t))
        .call()
        .expect("audit");
    assert_eq!(r.status(), 200, "audit");
    let v: serde_json::Value = r.body_mut().read_json().expect("audit json");
    v.as_array()
        .expect("audit array")
        .iter()
        .filter(|e| e["client"] == from)
        .count()
}

#[test]
fn failures_lock_the_user_out_of_that_address_only() {
    let Some(t) = local_target("failures_lock_the_user_out_of_that_address_only") else {
        return;
    };
    add_user(&t, "alice", "alice-password");
    add_user(&t, "bob", "bob-password");
    for i in 0..USER_ADDR_LIMIT {
        let (s, _) = login(&t, "127.0.0.2", "alice", "wrong");
        assert_eq!(s, 401, "bad password {i} for alice from 127.0.0.2");
    }
    let (s, retry) = login(&t, "127.0.0.2", "alice", "alice-password");
    assert_eq!(
        s, 429,
        "alice from 127.0.0.2 after {USER_ADDR_LIMIT} failures"
    );
    let secs: u64 = retry.parse().expect("Retry-After seconds");
    assert!(secs > 0 && secs <= 900, "Retry-After {secs}");
    let (s, _) = login(&t, "127.0.0.3", "alice", "alice-password");
    assert_eq!(s, 200, "alice from 127.0.0.3, an address that did not fail");
    let (s, _) = login(&t, "127.0.0.2", "bob", "bob-password");
    assert_eq!(s, 200, "bob from 127.0.0.2, where only alice failed");
}

#[test]
fn concurrent_guesses_get_no_more_evaluations_than_the_limit() {
    let Some(t) = local_target("concurrent_guesses_get_no_more_evaluations_than_the_limit") else {
        return;
    };
    add_user(&t, "alice", "alice-password");
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let guesses: Vec<_> = (0..40)
            .map(|i| {
                let t = &t;
                s.spawn(move || login(t, "127.0.0.4", "alice", &format!("guess-{i}")).0)
            })
            .collect();
        guesses
            .into_iter()
            .map(|g| g.join().expect("guess"))
            .collect()
    });
    let unauthorized = statuses.iter().filter(|&&s| s == 401).count();
    let throttled = statuses.iter().filter(|&&s| s == 429).count();
    // What the server says it evaluated: one login_failed event per rejected password.
    let evaluated = evaluated_failures(&t, "alice", "127.0.0.4");
    eprintln!(
        "40 concurrent guesses: {unauthorized} × 401, {throttled} × 429; \
         {evaluated} login_failed events"
    );
    assert!(
        evaluated <= USER_ADDR_LIMIT,
        "the audit log shows {evaluated} evaluated failures from 127.0.0.4, at most \
         {USER_ADDR_LIMIT} may be"
    );
    assert_eq!(
        unauthorized + throttled,
        40,
        "only 401 or 429: {statuses:?}"
    );
    assert!(
        (1..=USER_ADDR_LIMIT).contains(&unauthorized),
        "{unauthorized} guesses were evaluated (401), at most {USER_ADDR_LIMIT} may be"
    );
    assert_eq!(
        evaluated, unauthorized,
        "each 401 is one login_failed event"
    );
    // Throttled there, not elsewhere.
    assert_eq!(login(&t, "127.0.0.4", "alice", "alice-password").0, 429);
    assert_eq!(login(&t, "127.0.0.7", "alice", "alice-password").0, 200);
}

#[test]
fn an_address_is_throttled_across_users_only_at_its_own_limit() {
    let Some(t) = local_target("an_address_is_throttled_across_users_only_at_its_own_limit") else {
        return;
    };
    add_user(&t, "bob", "bob-password");
    // Successful logins from the address do not count against it.
    for _ in 0..3 {
        assert_eq!(login(&t, "127.0.0.5", "bob", "bob-password").0, 200);
    }
    // ADDR_LIMIT failures spread over names (4 each, under the per-user limit; unknown
    // names are evaluated against the dummy hash and fail like wrong passwords).
    let statuses: Vec<(usize, u16)> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..10)
            .map(|w| {
                let t = &t;
                s.spawn(move || {
                    (w * ADDR_LIMIT / 10..(w + 1) * ADDR_LIMIT / 10)
                        .map(|i| {
                            let user = format!("sprayed-{}", i / 4);
                            (i, login(t, "127.0.0.5", &user, "guess").0)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("worker"))
            .collect()
    });
    let refused: Vec<_> = statuses.iter().filter(|(_, s)| *s != 401).collect();
    assert!(
        refused.is_empty(),
        "{} of {ADDR_LIMIT} failures from one address over {} names were not a plain 401 \
         (attempt, status; the first 5): {:?}",
        refused.len(),
        ADDR_LIMIT / 4,
        &refused[..refused.len().min(5)]
    );
    // The address is full now, for every user; other addresses are not.
    let (s, retry) = login(&t, "127.0.0.5", "bob", "bob-password");
    assert_eq!(
        s, 429,
        "bob from 127.0.0.5 after {ADDR_LIMIT} failures from there"
    );
    assert!(!retry.is_empty(), "Retry-After");
    assert_eq!(login(&t, "127.0.0.5", "someone-new", "guess").0, 429);
    assert_eq!(login(&t, "127.0.0.6", "bob", "bob-password").0, 200);
}

/// The slots bound evaluations, not logins: concurrent logins with the right password (a CI
/// fleet with one robot behind one NAT, or skopeo sending Basic credentials on every pull)
/// wait for each other's pending slots instead of being refused.
#[test]
fn concurrent_logins_with_the_right_password_all_succeed() {
    let Some(t) = local_target("concurrent_logins_with_the_right_password_all_succeed") else {
        return;
    };
    add_user(&t, "fleet", "fleet-password");
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let logins: Vec<_> = (0..20)
            .map(|_| {
                let t = &t;
                s.spawn(move || login(t, "127.0.0.7", "fleet", "fleet-password").0)
            })
            .collect();
        logins
            .into_iter()
            .map(|l| l.join().expect("login"))
            .collect()
    });
    assert!(
        statuses.iter().all(|&s| s == 200),
        "20 concurrent good logins from one address: {statuses:?}"
    );
}
