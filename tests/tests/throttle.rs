//! Login throttling over real HTTP, from several client addresses. A server counts
//! failures by the client's address, which each runtime learns its own way, so a test picks
//! random addresses and hands them over the way that runtime takes them:
//! - `wharf serve` (the default; its own server per test): the TCP peer, so the test binds
//!   its socket to a loopback address (127.x.y.z) before it connects;
//! - the Worker (`WHARF_TEST_CLIENT_ADDR_HEADER=CF-Connecting-IP`, with `WHARF_TEST_URL`):
//!   the header Cloudflare's edge sets;
//! - the Lambda (`WHARF_TEST_LAMBDA_INVOKE=<the Invoke API URL of the function>`): the
//!   request context's `sourceIp`, so the test invokes the function with the API Gateway
//!   (v2) event AWS would deliver; the function-URL emulator would say 127.0.0.1 for all.
//!
//! Against any other `WHARF_TEST_URL` the tests skip: a remote registry sees one address,
//! and a shared one would be left throttled.
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
const TEST_SPAN: Duration = Duration::from_secs(90);

/// How a login reaches the server from a chosen client address.
enum Via {
    /// A socket bound to the address (`wharf serve`: the TCP peer).
    Bind,
    /// A header naming the address (the Worker: `CF-Connecting-IP`).
    Header(String),
    /// An Invoke API call with the address as the event's `sourceIp` (the Lambda).
    Invoke(String),
}

/// The registry under test and how to reach it from other addresses.
struct Throttled {
    t: Target,
    via: Via,
}

/// A server of the test's own (or the configured runtime), or `None` (with a message).
///
/// Counters start over when a fixed window ends (`now / WINDOW`, on the server's clock,
/// which is this machine's), so a test that ran across the boundary would see its failures
/// forgotten: one that would start within [`TEST_SPAN`] of it waits for the next window.
fn target(test: &str) -> Option<Throttled> {
    let via = if is_local() {
        Via::Bind
    } else if let Some(url) = lambda_invoke() {
        Via::Invoke(url)
    } else if let Ok(h) = std::env::var("WHARF_TEST_CLIENT_ADDR_HEADER") {
        Via::Header(h)
    } else {
        eprintln!(
            "{test}: skipped: WHARF_TEST_URL is set without a way to send from other \
             addresses (WHARF_TEST_CLIENT_ADDR_HEADER or WHARF_TEST_LAMBDA_INVOKE)"
        );
        return None;
    };
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock");
    let left =
        WINDOW - Duration::from_millis((since_epoch.as_millis() % WINDOW.as_millis()) as u64);
    if left < TEST_SPAN {
        eprintln!("{test}: waiting {left:?} for the next throttle window");
        std::thread::sleep(left + Duration::from_millis(500));
    }
    Some(Throttled {
        t: Target::fresh(),
        via,
    })
}

/// A loopback address no other test uses (127.x.y.z, never 127.0.0.1), so tests that share
/// a registry do not share counters.
fn addr() -> String {
    let b = random_bytes(3);
    format!("127.{}.{}.{}", b[0].max(1), b[1], b[2].clamp(2, 254))
}

/// A user name no other test uses.
fn name(prefix: &str) -> String {
    format!("{prefix}-{}", random_hex(6))
}

/// `GET /token` with Basic credentials from client address `from`: status and `Retry-After`.
fn login(t: &Throttled, from: &str, user: &str, pass: &str) -> (u16, String) {
    let path = "/token";
    let query = "service=wharf&scope=repository:x/y:pull";
    match &t.via {
        Via::Invoke(url) => {
            let headers = [
                ("Host", t.t.authority.clone()),
                ("Authorization", basic(user, pass)),
                // The function must not believe it (no trusted proxy is configured).
                ("X-Forwarded-For", "203.0.113.9".to_owned()),
            ];
            let r = invoke(url, "GET", &format!("{path}?{query}"), &headers, None, from);
            (r.status, r.header("retry-after"))
        }
        Via::Bind => raw_login(
            &t.t,
            Some(from),
            None,
            &format!("{path}?{query}"),
            user,
            pass,
        ),
        Via::Header(h) => raw_login(
            &t.t,
            None,
            Some((h, from)),
            &format!("{path}?{query}"),
            user,
            pass,
        ),
    }
}

/// One HTTP/1.1 request over a socket of its own (bound to `bind`, if given).
fn raw_login(
    t: &Target,
    bind: Option<&str>,
    header: Option<(&str, &str)>,
    target: &str,
    user: &str,
    pass: &str,
) -> (u16, String) {
    let sock = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    if let Some(from) = bind {
        let src: SocketAddr = format!("{from}:0").parse().expect("source address");
        sock.bind(&src.into())
            .unwrap_or_else(|e| panic!("bind {from}: {e}"));
    }
    let dst: SocketAddr = t.authority.parse().expect("server address");
    sock.connect(&dst.into()).expect("connect");
    let mut s: TcpStream = sock.into();
    s.set_read_timeout(Some(Duration::from_secs(120)))
        .expect("timeout");
    let extra = header.map_or(String::new(), |(k, v)| format!("{k}: {v}\r\n"));
    let head = format!(
        "GET {target} HTTP/1.1\r\nHost: {}\r\nAuthorization: {}\r\n{extra}\
         Connection: close\r\n\r\n",
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

/// Creates a user named `prefix-<random>` (as the admin, from this machine's own address);
/// returns the name.
fn add_user(t: &Throttled, prefix: &str, password: &str) -> String {
    let name = name(prefix);
    let body = serde_json::json!({"username": name, "password": password}).to_string();
    let r = agent()
        .post(&format!("{}/api/v1/users", t.t.base))
        .header("Authorization", &admin_basic(&t.t))
        .header("Content-Type", "application/json")
        .send(body.as_bytes())
        .expect("create user");
    assert!(r.status().is_success(), "create {name}: {}", r.status());
    name
}

/// The `login_failed` events of `user` from `from` in the audit log: how many passwords
/// the server evaluated and rejected.
fn evaluated_failures(t: &Throttled, user: &str, from: &str) -> usize {
    let mut r = agent()
        .get(&format!(
            "{}/api/v1/audit?action=login_failed&actor={user}&limit=1000",
            t.t.base
        ))
        .header("Authorization", &admin_basic(&t.t))
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
    let Some(t) = target("failures_lock_the_user_out_of_that_address_only") else {
        return;
    };
    let alice = add_user(&t, "alice", "alice-password");
    let bob = add_user(&t, "bob", "bob-password");
    let (failed, other) = (addr(), addr());
    for i in 0..USER_ADDR_LIMIT {
        let (s, _) = login(&t, &failed, &alice, "wrong");
        assert_eq!(s, 401, "bad password {i} for {alice} from {failed}");
    }
    let (s, retry) = login(&t, &failed, &alice, "alice-password");
    assert_eq!(
        s, 429,
        "{alice} from {failed} after {USER_ADDR_LIMIT} failures"
    );
    let secs: u64 = retry.parse().expect("Retry-After seconds");
    assert!(secs > 0 && secs <= 900, "Retry-After {secs}");
    let (s, _) = login(&t, &other, &alice, "alice-password");
    assert_eq!(s, 200, "{alice} from {other}, an address that did not fail");
    let (s, _) = login(&t, &failed, &bob, "bob-password");
    assert_eq!(s, 200, "{bob} from {failed}, where only {alice} failed");
}

#[test]
fn concurrent_guesses_get_no_more_evaluations_than_the_limit() {
    let Some(t) = target("concurrent_guesses_get_no_more_evaluations_than_the_limit") else {
        return;
    };
    let alice = add_user(&t, "alice", "alice-password");
    let (from, other) = (addr(), addr());
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let guesses: Vec<_> = (0..40)
            .map(|i| {
                let (t, from, alice) = (&t, &from, &alice);
                s.spawn(move || login(t, from, alice, &format!("guess-{i}")).0)
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
    let evaluated = evaluated_failures(&t, &alice, &from);
    eprintln!(
        "40 concurrent guesses: {unauthorized} × 401, {throttled} × 429; \
         {evaluated} login_failed events"
    );
    assert!(
        evaluated <= USER_ADDR_LIMIT,
        "the audit log shows {evaluated} evaluated failures from {from}, at most \
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
    assert_eq!(login(&t, &from, &alice, "alice-password").0, 429);
    assert_eq!(login(&t, &other, &alice, "alice-password").0, 200);
}

#[test]
fn an_address_is_throttled_across_users_only_at_its_own_limit() {
    let Some(t) = target("an_address_is_throttled_across_users_only_at_its_own_limit") else {
        return;
    };
    let bob = add_user(&t, "bob", "bob-password");
    let (sprayed, other) = (addr(), addr());
    let prefix = name("sprayed");
    // Successful logins from the address do not count against it.
    for _ in 0..3 {
        assert_eq!(login(&t, &sprayed, &bob, "bob-password").0, 200);
    }
    // ADDR_LIMIT failures spread over names (4 each, under the per-user limit; unknown
    // names are evaluated against the dummy hash and fail like wrong passwords).
    let statuses: Vec<(usize, u16)> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..10)
            .map(|w| {
                let (t, sprayed, prefix) = (&t, &sprayed, &prefix);
                s.spawn(move || {
                    (w * ADDR_LIMIT / 10..(w + 1) * ADDR_LIMIT / 10)
                        .map(|i| {
                            let user = format!("{prefix}-{}", i / 4);
                            (i, login(t, sprayed, &user, "guess").0)
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
    let (s, retry) = login(&t, &sprayed, &bob, "bob-password");
    assert_eq!(
        s, 429,
        "{bob} from {sprayed} after {ADDR_LIMIT} failures from there"
    );
    assert!(!retry.is_empty(), "Retry-After");
    assert_eq!(login(&t, &sprayed, &name("someone-new"), "guess").0, 429);
    assert_eq!(login(&t, &other, &bob, "bob-password").0, 200);
}

/// The slots bound evaluations, not logins: concurrent logins with the right password (a CI
/// fleet with one robot behind one NAT, or skopeo sending Basic credentials on every pull)
/// wait for each other's pending slots instead of being refused.
#[test]
fn concurrent_logins_with_the_right_password_all_succeed() {
    let Some(t) = target("concurrent_logins_with_the_right_password_all_succeed") else {
        return;
    };
    let fleet = add_user(&t, "fleet", "fleet-password");
    let from = addr();
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let logins: Vec<_> = (0..20)
            .map(|_| {
                let (t, from, fleet) = (&t, &from, &fleet);
                s.spawn(move || login(t, from, fleet, "fleet-password").0)
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

/// Behind a trusted proxy the client is the right-most `X-Forwarded-For` address that is
/// not a trusted proxy; from anyone else the header is ignored, so a client cannot pick
/// the address its failures count against (and escape its own lockout).
#[test]
fn forwarded_addresses_count_only_from_a_trusted_proxy() {
    if !is_local() {
        eprintln!("skipped: starts a local server with a trusted proxy of its own");
        return;
    }
    let proxy = addr();
    let server = Server::start_with_env(
        temp_dir("proxied").join("data"),
        &format!("pw-{}", random_hex(12)),
        &[("WHARF_TRUSTED_PROXIES", proxy.as_str())],
    );
    let t = Throttled {
        t: Target::local(server),
        via: Via::Bind,
    };
    let alice = add_user(&t, "alice", "alice-password");
    let xff = |from: &str, client: &str, pass: &str| {
        raw_login(
            &t.t,
            Some(from),
            Some(("X-Forwarded-For", &format!("198.51.100.1, {client}"))),
            "/token?service=wharf",
            &alice,
            pass,
        )
        .0
    };

    // Through the proxy: counted against the forwarded client, not the proxy.
    let (behind, neighbour) = (addr(), addr());
    for i in 0..USER_ADDR_LIMIT {
        assert_eq!(
            xff(&proxy, &behind, "wrong"),
            401,
            "guess {i} via the proxy"
        );
    }
    assert_eq!(
        evaluated_failures(&t, &alice, &behind),
        USER_ADDR_LIMIT,
        "the audit log names the forwarded client"
    );
    assert_eq!(
        xff(&proxy, &behind, "alice-password"),
        429,
        "{behind} is locked out"
    );
    assert_eq!(
        xff(&proxy, &neighbour, "alice-password"),
        200,
        "{neighbour}, behind the same proxy, is not"
    );

    // Not a proxy: the header is ignored, so a fresh forwarded address does not help.
    let direct = addr();
    for i in 0..USER_ADDR_LIMIT {
        assert_eq!(xff(&direct, &addr(), "wrong"), 401, "spoofed guess {i}");
    }
    assert_eq!(
        evaluated_failures(&t, &alice, &direct),
        USER_ADDR_LIMIT,
        "the failures count against the TCP peer {direct}"
    );
    assert_eq!(
        xff(&direct, &addr(), "alice-password"),
        429,
        "{direct} stays locked out whatever it forwards"
    );
}
