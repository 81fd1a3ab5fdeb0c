//! Auth, end to end through the core's request handler (real ES256 tokens, real argon2
//! hashes, in-memory stores): every role × every action, token attacks, throttling,
//! refresh tokens, robots, key rotation.

mod support;

use base64::Engine as _;
use bytes::Bytes;
use futures_executor::block_on;
use http::{Method, Request, StatusCode};
use http_body_util::Full;
use std::sync::atomic::Ordering;
use support::*;
use wharf_core::auth::{Access, Claims, Keys, TokenService, TokenSettings};
use wharf_core::http::ClientAddr;
use wharf_core::testing::{MemoryMetadata, TestEnv};
use wharf_core::{Config, Registry};

fn setup() -> Reg {
    let reg = registry();
    bootstrap_admin(&reg);
    for u in ["alice", "mona", "dave", "gus", "lim", "otto", "extra"] {
        admin(
            &reg,
            Method::POST,
            "/api/v1/users",
            serde_json::json!({"username": u, "password": format!("{u}-password")}),
        );
    }
    admin(
        &reg,
        Method::POST,
        "/api/v1/projects",
        serde_json::json!({"name": "team"}),
    );
    admin(
        &reg,
        Method::POST,
        "/api/v1/projects",
        serde_json::json!({"name": "pub", "public": true}),
    );
    for (u, role) in [
        ("alice", "projectAdmin"),
        ("mona", "maintainer"),
        ("dave", "developer"),
        ("gus", "guest"),
        ("lim", "limitedGuest"),
    ] {
        admin(
            &reg,
            Method::POST,
            "/api/v1/projects/team/members",
            serde_json::json!({"username": u, "role": role}),
        );
    }
    push_image(&reg, "team/app", "v1");
    push_image(&reg, "pub/app", "v1");
    reg
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Outcome {
    Allowed,
    Unauthorized,
    Denied,
}

/// Performs `action` on project `team` as `who` and classifies the answer.
fn attempt(reg: &Reg, who: Option<(&str, &str)>, action: &str) -> Outcome {
    let creds = who.map(|(u, p)| basic(u, p));
    let r = match action {
        "pull" | "push" | "delete" => {
            let scope = "repository:team/app:pull,push,delete";
            let t = token(reg, who, scope);
            let a = bearer(&t);
            match action {
                "pull" => call(reg, Method::GET, "/v2/team/app/manifests/v1", Some(&a), b""),
                "push" => call(
                    reg,
                    Method::POST,
                    "/v2/team/app/blobs/uploads/",
                    Some(&a),
                    b"",
                ),
                _ => {
                    push_image(reg, "team/app", "doomed");
                    call(
                        reg,
                        Method::DELETE,
                        "/v2/team/app/manifests/doomed",
                        Some(&a),
                        b"",
                    )
                }
            }
        }
        "members" => call(
            reg,
            Method::POST,
            "/api/v1/projects/team/members",
            creds.as_deref(),
            br#"{"username":"extra","role":"guest"}"#,
        ),
        "audit" => call(
            reg,
            Method::GET,
            "/api/v1/audit?project=team",
            creds.as_deref(),
            b"",
        ),
        // Garbage collection is registry-wide: system admins only, project admins too refused.
        "gc" => call(
            reg,
            Method::POST,
            "/api/v1/gc",
            creds.as_deref(),
            br#"{"dry_run":true}"#,
        ),
        "gc history" => call(reg, Method::GET, "/api/v1/gc", creds.as_deref(), b""),
        "read policy" => call(
            reg,
            Method::GET,
            "/api/v1/projects/team/retention",
            creds.as_deref(),
            b"",
        ),
        "set retention" => call(
            reg,
            Method::PUT,
            "/api/v1/projects/team/retention",
            creds.as_deref(),
            br#"{"rules":[{"keep":"always"}]}"#,
        ),
        "set immutability" => call(
            reg,
            Method::PUT,
            "/api/v1/projects/team/immutability",
            creds.as_deref(),
            br#"{"rules":[{"tags":{"matches":"never-*"}}]}"#,
        ),
        "retention run" => call(
            reg,
            Method::POST,
            "/api/v1/projects/team/retention/run",
            creds.as_deref(),
            br#"{"dry_run":true}"#,
        ),
        "read quota" => call(
            reg,
            Method::GET,
            "/api/v1/projects/team/quota",
            creds.as_deref(),
            b"",
        ),
        // Quotas are the operator's: system admins only, as in Harbor.
        "set quota" => call(
            reg,
            Method::PUT,
            "/api/v1/projects/team/quota",
            creds.as_deref(),
            br#"{"limit_bytes":1000000000}"#,
        ),
        // Replication reads and writes any project: system admins only, as in Harbor.
        "read replication" => call(
            reg,
            Method::GET,
            "/api/v1/replication/rules",
            creds.as_deref(),
            b"",
        ),
        "set remote" => call(
            reg,
            Method::PUT,
            "/api/v1/replication/registries/hub",
            creds.as_deref(),
            br#"{"url":"http://127.0.0.1:9"}"#,
        ),
        "run replication" => call(
            reg,
            Method::POST,
            "/api/v1/replication/rules/mirror/executions",
            creds.as_deref(),
            b"{}",
        ),
        _ => unreachable!(),
    };
    match r.status {
        s if s.is_success() => Outcome::Allowed,
        StatusCode::UNAUTHORIZED => {
            assert_eq!(code(&r), "UNAUTHORIZED", "{action}: {}", r.body);
            Outcome::Unauthorized
        }
        StatusCode::FORBIDDEN => {
            assert_eq!(code(&r), "DENIED", "{action}: {}", r.body);
            Outcome::Denied
        }
        s => panic!("{who:?} {action}: unexpected {s} {}", r.body),
    }
}

#[test]
fn every_role_and_action() {
    use Outcome::*;
    let reg = setup();
    let robot = admin(
        &reg,
        Method::POST,
        "/api/v1/robots",
        serde_json::json!({"name": "ci", "permissions": [{"project": "team", "actions": ["pull", "push"]}], "expires_in_days": 30}),
    );
    let robot_name = robot.body["name"].as_str().expect("name").to_owned();
    assert_eq!(robot_name, "robot$team+ci");
    let robot_secret = robot.body["secret"].as_str().expect("secret").to_owned();
    let actions = [
        "pull",
        "push",
        "delete",
        "members",
        "audit",
        "gc",
        "gc history",
        "read policy",
        "set retention",
        "set immutability",
        "retention run",
        "read quota",
        "set quota",
        "read replication",
        "set remote",
        "run replication",
    ];
    // A remote and a rule to write and run.
    admin(
        &reg,
        Method::POST,
        "/api/v1/replication/registries",
        serde_json::json!({"name": "hub", "url": "http://127.0.0.1:9"}),
    );
    admin(
        &reg,
        Method::POST,
        "/api/v1/replication/rules",
        serde_json::json!({"name": "mirror", "direction": "push", "remote": "hub"}),
    );
    // Retention runs need a policy to run.
    admin(
        &reg,
        Method::PUT,
        "/api/v1/projects/team/retention",
        serde_json::json!({"rules": [{"keep": "always"}]}),
    );
    type Row<'a> = (&'a str, Option<(&'a str, &'a str)>, [Outcome; 16]);
    let table: Vec<Row> = vec![
        (
            "system admin",
            Some(("admin", "admin-pass-1")),
            [Allowed; 16],
        ),
        (
            "project admin",
            Some(("alice", "alice-password")),
            [
                Allowed, Allowed, Allowed, Allowed, Allowed, Denied, Denied, Allowed, Allowed,
                Allowed, Allowed, Allowed, Denied, Denied, Denied, Denied,
            ],
        ),
        (
            "maintainer",
            Some(("mona", "mona-password")),
            [
                Allowed, Allowed, Allowed, Denied, Allowed, Denied, Denied, Allowed, Denied,
                Denied, Denied, Allowed, Denied, Denied, Denied, Denied,
            ],
        ),
        (
            "developer",
            Some(("dave", "dave-password")),
            [
                Allowed, Allowed, Denied, Denied, Allowed, Denied, Denied, Allowed, Denied, Denied,
                Denied, Allowed, Denied, Denied, Denied, Denied,
            ],
        ),
        (
            "guest",
            Some(("gus", "gus-password")),
            [
                Allowed, Denied, Denied, Denied, Allowed, Denied, Denied, Allowed, Denied, Denied,
                Denied, Allowed, Denied, Denied, Denied, Denied,
            ],
        ),
        (
            "limited guest",
            Some(("lim", "lim-password")),
            [
                Allowed, Denied, Denied, Denied, Denied, Denied, Denied, Allowed, Denied, Denied,
                Denied, Allowed, Denied, Denied, Denied, Denied,
            ],
        ),
        ("non-member", Some(("otto", "otto-password")), [Denied; 16]),
        (
            "robot pull+push",
            Some((robot_name.as_str(), robot_secret.as_str())),
            [
                Allowed, Allowed, Denied, Denied, Denied, Denied, Denied, Allowed, Denied, Denied,
                Denied, Allowed, Denied, Denied, Denied, Denied,
            ],
        ),
        // Anonymous callers could be given more by logging in: 401, so clients ask again.
        ("anonymous", None, [Unauthorized; 16]),
    ];
    for (who, creds, want) in table {
        for (action, want) in actions.iter().zip(want) {
            let got = attempt(&reg, creds, action);
            assert_eq!(got, want, "{who} / {action}");
        }
    }
    // No token at all on the registry API: 401 with a challenge naming the scope.
    let r = call(&reg, Method::GET, "/v2/team/app/manifests/v1", None, b"");
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let challenge = r.headers["www-authenticate"].to_str().expect("challenge");
    assert_eq!(
        challenge,
        "Bearer realm=\"http://reg.test/token\",service=\"wharf\",scope=\"repository:team/app:pull\""
    );
    // Public project: anonymous pull is allowed, push is not.
    let t = token(&reg, None, "repository:pub/app:pull,push");
    assert_eq!(
        call(
            &reg,
            Method::GET,
            "/v2/pub/app/manifests/v1",
            Some(&bearer(&t)),
            b""
        )
        .status,
        StatusCode::OK
    );
    let r = call(
        &reg,
        Method::POST,
        "/v2/pub/app/blobs/uploads/",
        Some(&bearer(&t)),
        b"",
    );
    assert_eq!(
        (r.status, code(&r)),
        (StatusCode::UNAUTHORIZED, "UNAUTHORIZED")
    );
    // Audit: pushes, pulls, deletes and logins are recorded with who and from where.
    let a = admin(
        &reg,
        Method::GET,
        "/api/v1/audit?project=team&limit=1000",
        serde_json::Value::Null,
    );
    let events = a.body.as_array().expect("events");
    for (actor, action) in [
        ("admin", "push"),
        ("admin", "blob_push"),
        ("admin", "tag"),
        ("alice", "pull"),
        ("mona", "delete"),
        ("robot$team+ci", "pull"),
    ] {
        assert!(
            events
                .iter()
                .any(|e| e["actor"] == actor && e["action"] == action && e["client"] == "10.0.0.7"),
            "audit lacks {actor} {action}"
        );
    }
    let logins = admin(
        &reg,
        Method::GET,
        "/api/v1/audit?action=login&actor=gus",
        serde_json::Value::Null,
    );
    assert!(!logins.body.as_array().expect("events").is_empty());
}

/// Signs arbitrary claims with a key, as an attacker holding that key would.
fn forge(keys: &[&[u8]], claims: &Claims) -> String {
    tokens(keys).sign(claims).expect("sign")
}

fn claims(sub: &str, repo: &str, actions: &[&str], now_s: u64) -> Claims {
    Claims {
        iss: "wharf".into(),
        sub: sub.into(),
        aud: "wharf".into(),
        exp: now_s + 300,
        nbf: now_s,
        iat: now_s,
        jti: "x".into(),
        access: vec![Access {
            kind: "repository".into(),
            name: repo.into(),
            actions: actions.iter().map(|s| s.to_string()).collect(),
        }],
        kind: "user".into(),
        inc: None,
        cgen: None,
    }
}

fn b64(v: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v)
}

#[test]
fn token_attacks_are_refused() {
    let reg = setup();
    let now = T0 / 1000;
    let get = |t: &str| {
        call(
            &reg,
            Method::GET,
            "/v2/team/app/manifests/v1",
            Some(&bearer(t)),
            b"",
        )
    };
    let good = forge(&[KEY1], &claims("alice", "team/app", &["pull"], now));
    assert_eq!(get(&good).status, StatusCode::OK, "the control token works");
    let parts: Vec<&str> = good.split('.').collect();
    let kid = tokens(&[KEY1]).jwks().keys[0]
        .common
        .key_id
        .clone()
        .expect("kid");

    let mut attacks: Vec<(&str, String)> = Vec::new();
    let none_header = b64(format!(r#"{{"alg":"none","typ":"JWT","kid":"{kid}"}}"#).as_bytes());
    attacks.push(("alg none", format!("{none_header}.{}.", parts[1])));
    // HS256 with the public key as the HMAC secret (the classic algorithm confusion).
    let jwks = serde_json::to_vec(&tokens(&[KEY1]).jwks()).expect("jwks");
    let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    h.kid = Some(kid.clone());
    let hs = jsonwebtoken::encode(
        &h,
        &claims("alice", "team/app", &["pull"], now),
        &jsonwebtoken::EncodingKey::from_secret(&jwks),
    )
    .expect("hs256");
    attacks.push(("HS256 with the public key", hs));
    attacks.push((
        "unknown kid (another key)",
        forge(&[KEY2], &claims("alice", "team/app", &["pull"], now)),
    ));
    // Claims signed with the registry's own key, each wrong in one way.
    let signed = |change: &dyn Fn(&mut Claims)| {
        let mut c = claims("alice", "team/app", &["pull"], now);
        change(&mut c);
        forge(&[KEY1], &c)
    };
    attacks.push(("expired", signed(&|c| c.exp = now - 60)));
    attacks.push(("not yet valid", signed(&|c| c.nbf = now + 600)));
    attacks.push(("wrong aud", signed(&|c| c.aud = "other-registry".into())));
    attacks.push(("wrong iss", signed(&|c| c.iss = "evil".into())));
    attacks.push((
        "refresh token as access token",
        signed(&|c| c.aud = "wharf/refresh".into()),
    ));
    // Tampered payload: grant push and re-encode, keeping the signature.
    let payload = String::from_utf8(
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(parts[1])
            .expect("b64"),
    )
    .expect("utf8")
    .replace("\"pull\"", "\"pull\",\"push\"");
    attacks.push((
        "tampered payload",
        format!("{}.{}.{}", parts[0], b64(payload.as_bytes()), parts[2]),
    ));
    attacks.push(("garbage", "not.a.token".into()));
    for (name, t) in &attacks {
        let r = get(t);
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{name}: {}", r.body);
        assert_eq!(code(&r), "UNAUTHORIZED", "{name}");
        let ch = r.headers["www-authenticate"].to_str().expect("challenge");
        assert!(ch.contains("error=\"invalid_token\""), "{name}: {ch}");
    }
    // Valid tokens used beyond their grant, by a caller who could be granted it: 401 with
    // an insufficient_scope challenge, because clients (containerd, Go clients of the token
    // spec) ask for a wider token only on a 401. This reverses what this test asserted
    // before (403 DENIED, per RFC 6750 §3.1): with a 403, a client that holds a pull token
    // and then pushes fails instead of asking again.
    let for_a = forge(
        &[KEY1],
        &claims("alice", "team/other", &["pull", "push"], now),
    );
    let r = get(&for_a);
    assert_eq!(
        (r.status, code(&r)),
        (StatusCode::UNAUTHORIZED, "UNAUTHORIZED"),
        "token for repo A on repo B, whose project alice administers"
    );
    let r = call(
        &reg,
        Method::POST,
        "/v2/team/app/blobs/uploads/",
        Some(&bearer(&good)),
        b"",
    );
    assert_eq!(
        (r.status, code(&r)),
        (StatusCode::UNAUTHORIZED, "UNAUTHORIZED"),
        "pull token used to push"
    );
    assert_eq!(
        r.headers["www-authenticate"],
        "Bearer realm=\"http://reg.test/token\",service=\"wharf\",scope=\"repository:team/app:pull,push\",error=\"insufficient_scope\"",
        "the 401 names the scope to ask for"
    );
    // A caller who can never be granted the scope (a guest pushing): 403 DENIED.
    let gus = forge(&[KEY1], &claims("gus", "team/app", &["pull"], now));
    let r = call(
        &reg,
        Method::POST,
        "/v2/team/app/blobs/uploads/",
        Some(&bearer(&gus)),
        b"",
    );
    assert_eq!(
        (r.status, code(&r)),
        (StatusCode::FORBIDDEN, "DENIED"),
        "guest pushing"
    );
}

#[test]
fn robots_expire_and_deleted_users_lose_access() {
    let reg = setup();
    let robot = admin(
        &reg,
        Method::POST,
        "/api/v1/robots",
        serde_json::json!({"name": "short", "permissions": [{"project": "team", "actions": ["pull"]}], "expires_in_days": 1}),
    );
    let (name, secret) = (
        robot.body["name"].as_str().expect("n").to_owned(),
        robot.body["secret"].as_str().expect("s").to_owned(),
    );
    let t = token(&reg, Some((&name, &secret)), "repository:team/app:pull");
    assert_eq!(
        call(
            &reg,
            Method::GET,
            "/v2/team/app/manifests/v1",
            Some(&bearer(&t)),
            b""
        )
        .status,
        StatusCode::OK
    );
    // Past the robot's expiry: no new token, and the old one is dead too.
    reg.env.now.store(T0 + 2 * 86_400_000, Ordering::SeqCst);
    let r = call(
        &reg,
        Method::GET,
        "/token?scope=repository:team/app:pull",
        Some(&basic(&name, &secret)),
        b"",
    );
    assert_eq!(
        (r.status, code(&r)),
        (StatusCode::UNAUTHORIZED, "UNAUTHORIZED")
    );
    assert_eq!(
        call(
            &reg,
            Method::GET,
            "/v2/team/app/manifests/v1",
            Some(&bearer(&t)),
            b""
        )
        .status,
        StatusCode::UNAUTHORIZED
    );

    // A deleted user: no new tokens and no refresh at once; an access token already issued
    // lives out its lifetime (300 s, the documented window), then is refused.
    let r = call(&reg, Method::POST, "/token", None, b"grant_type=password&username=dave&password=dave-password&service=wharf&access_type=offline&scope=repository:team/app:pull");
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let access = r.body["access_token"].as_str().expect("access").to_owned();
    let refresh = r.body["refresh_token"]
        .as_str()
        .expect("refresh")
        .to_owned();
    let r = call(&reg, Method::POST, "/token", None, format!("grant_type=refresh_token&refresh_token={refresh}&service=wharf&scope=repository:team/app:pull").as_bytes());
    assert_eq!(
        r.status,
        StatusCode::OK,
        "refresh works while the user exists"
    );
    admin(
        &reg,
        Method::DELETE,
        "/api/v1/users/dave",
        serde_json::Value::Null,
    );
    let r = call(
        &reg,
        Method::POST,
        "/token",
        None,
        format!("grant_type=refresh_token&refresh_token={refresh}&service=wharf").as_bytes(),
    );
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "refresh after deletion");
    let r = call(
        &reg,
        Method::GET,
        "/token?scope=repository:team/app:pull",
        Some(&basic("dave", "dave-password")),
        b"",
    );
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "login after deletion");
    assert_eq!(
        call(
            &reg,
            Method::GET,
            "/v2/team/app/manifests/v1",
            Some(&bearer(&access)),
            b""
        )
        .status,
        StatusCode::OK
    );
    reg.env.now.fetch_add(301_000 + 5_000, Ordering::SeqCst);
    assert_eq!(
        call(
            &reg,
            Method::GET,
            "/v2/team/app/manifests/v1",
            Some(&bearer(&access)),
            b""
        )
        .status,
        StatusCode::UNAUTHORIZED
    );
}

#[test]
fn brute_force_is_throttled() {
    use wharf_core::auth::throttle::{ADDR_LIMIT, USER_ADDR_LIMIT};
    /// `GET /token` as `user` from client address `addr`.
    fn login(reg: &Reg, addr: &str, user: &str, pass: &str) -> (StatusCode, http::HeaderMap) {
        let mut req = Request::builder()
            .uri("/token?service=wharf&scope=repository:team/app:pull")
            .header("host", "reg.test")
            .header("authorization", basic(user, pass))
            .body(Full::new(Bytes::new()))
            .expect("request");
        req.extensions_mut().insert(ClientAddr(addr.into()));
        let resp = block_on(reg.handle(req));
        (resp.status(), resp.headers().clone())
    }
    let retry_after = |h: &http::HeaderMap| -> u64 {
        h["retry-after"]
            .to_str()
            .expect("retry")
            .parse()
            .expect("secs")
    };
    let reg = setup();
    for i in 0..USER_ADDR_LIMIT {
        let (s, _) = login(&reg, "10.0.0.7", "gus", "wrong");
        assert_eq!(s, StatusCode::UNAUTHORIZED, "attempt {i}");
    }
    let r = call(
        &reg,
        Method::GET,
        "/token",
        Some(&basic("gus", "gus-password")),
        b"",
    );
    assert_eq!(
        (r.status, code(&r)),
        (StatusCode::TOO_MANY_REQUESTS, "TOOMANYREQUESTS")
    );
    let retry = retry_after(&r.headers);
    assert!(retry > 0 && retry <= 900, "{retry}");
    // Not locked out from an address that did not fail, and the address is not locked for
    // other users.
    assert_eq!(
        login(&reg, "10.0.0.8", "gus", "gus-password").0,
        StatusCode::OK
    );
    assert_eq!(
        login(&reg, "10.0.0.7", "alice", "alice-password").0,
        StatusCode::OK
    );
    // A success from an address starts its (user, address) count over.
    for _ in 0..USER_ADDR_LIMIT - 1 {
        login(&reg, "10.0.0.9", "alice", "wrong");
    }
    assert_eq!(
        login(&reg, "10.0.0.9", "alice", "alice-password").0,
        StatusCode::OK
    );
    assert_eq!(
        login(&reg, "10.0.0.9", "alice", "wrong").0,
        StatusCode::UNAUTHORIZED
    );
    // Names are escaped in the counters' keys: `a/b` from `c` is not `a` from `b/c`.
    for _ in 0..USER_ADDR_LIMIT {
        login(&reg, "c", "a/b", "wrong");
    }
    assert_eq!(
        login(&reg, "c", "a/b", "wrong").0,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(login(&reg, "b/c", "a", "wrong").0, StatusCode::UNAUTHORIZED);
    // The address counter: failures over many (unknown) names from one address throttle the
    // address only at ADDR_LIMIT, for every user, and only there.
    for i in 0..ADDR_LIMIT {
        let (s, _) = login(&reg, "10.0.1.1", &format!("nobody{i}"), "guess");
        assert_eq!(s, StatusCode::UNAUTHORIZED, "spray {i}");
    }
    let (s, h) = login(&reg, "10.0.1.1", "alice", "alice-password");
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);
    assert!(retry_after(&h) <= 900);
    assert_eq!(
        login(&reg, "10.0.1.2", "alice", "alice-password").0,
        StatusCode::OK
    );
    // The window ends: gus can log in from the address that failed.
    reg.env.now.fetch_add(retry * 1000, Ordering::SeqCst);
    let r = call(
        &reg,
        Method::GET,
        "/token",
        Some(&basic("gus", "gus-password")),
        b"",
    );
    assert_eq!(r.status, StatusCode::OK, "after the window");
}

#[test]
fn keys_rotate_and_are_published() {
    let reg = setup();
    let old = token(
        &reg,
        Some(("alice", "alice-password")),
        "repository:team/app:pull",
    );
    // Rotation: the new key signs, the old one still verifies.
    let env = TestEnv::default();
    env.now.store(T0, Ordering::SeqCst);
    let rotated = Registry::new(
        reg.blobs.clone(),
        MemoryMetadata::default(),
        env,
        Config::default(),
    )
    .with_auth(tokens(&[KEY2, KEY1]));
    let jwks = call(&rotated, Method::GET, "/.well-known/jwks.json", None, b"");
    let keys = jwks.body["keys"].as_array().expect("keys");
    assert_eq!(keys.len(), 2);
    assert!(
        keys.iter()
            .all(|k| k["kty"] == "EC" && k["kid"].is_string() && k.get("d").is_none()),
        "public parts only: {keys:?}"
    );
    assert_eq!(
        call(&rotated, Method::GET, "/v2/", Some(&bearer(&old)), b"").status,
        StatusCode::OK
    );
    let unrotated = Registry::new(
        reg.blobs.clone(),
        MemoryMetadata::default(),
        TestEnv::default(),
        Config::default(),
    )
    .with_auth(tokens(&[KEY2]));
    assert_eq!(
        call(&unrotated, Method::GET, "/v2/", Some(&bearer(&old)), b"").status,
        StatusCode::UNAUTHORIZED
    );
}

#[test]
fn a_stateless_deployment_generates_one_key_and_shares_it() {
    let meta = MemoryMetadata::default();
    let env = TestEnv::default();
    let first = block_on(wharf_core::auth::stored_keys(&meta, &env)).expect("generated");
    // Another instance on the same table gets the same key, not a new one.
    let second = block_on(wharf_core::auth::stored_keys(&meta.clone(), &env)).expect("read");
    assert_eq!(first.signing_kid(), second.signing_kid());
    let a = TokenService::new(first, TokenSettings::default());
    let b = TokenService::new(second, TokenSettings::default());
    let claims = Claims {
        iss: a.settings.issuer.clone(),
        sub: "x".into(),
        aud: a.settings.service.clone(),
        exp: T0 / 1000 + 60,
        nbf: T0 / 1000 - 1,
        iat: T0 / 1000,
        jti: "j".into(),
        access: vec![],
        kind: "user".into(),
        inc: None,
        cgen: None,
    };
    let t = a.sign(&claims).expect("sign");
    assert!(b.verify(&t, T0).is_ok());
    // Several PEM blocks in one text (a secret holding the new and the old key).
    let both = format!(
        "{}\n{}",
        String::from_utf8_lossy(KEY1),
        String::from_utf8_lossy(KEY2)
    );
    let pems = wharf_core::auth::split_pems(&both);
    assert_eq!(pems.len(), 2);
    let keys = Keys::from_pems(&pems).expect("two keys");
    assert_eq!(keys.jwks().keys.len(), 2);
}

#[test]
fn the_first_admin_is_created_once() {
    let meta = MemoryMetadata::default();
    let env = TestEnv::default();
    let generated = block_on(wharf_core::auth::ensure_admin(&meta, &env, None)).expect("create");
    let password = generated.expect("a generated password is returned to be shown once");
    assert!(password.len() >= 24);
    let again = block_on(wharf_core::auth::ensure_admin(
        &meta,
        &env,
        Some("other-password"),
    ))
    .expect("again");
    assert_eq!(again, None, "an existing admin is left alone");
    let user = block_on(wharf_core::auth::Directory(&meta).user("admin"))
        .expect("read")
        .expect("admin exists");
    assert!(user.admin);
    assert!(wharf_core::auth::verify_password(
        &password,
        &user.password_hash
    ));
    assert!(!wharf_core::auth::verify_password(
        "other-password",
        &user.password_hash
    ));
    let given = MemoryMetadata::default();
    let none = block_on(wharf_core::auth::ensure_admin(
        &given,
        &env,
        Some("given-pass-1"),
    ))
    .expect("create");
    assert_eq!(none, None, "a given password is not echoed back");
}
