//! The upload front: an API (think Lambda, 6 MB per request) that sends upload bytes to a
//! front (think `wharf serve`) on the same stores, with a signed capability in the URL.
//! Two `Registry` values over shared in-memory stores play the two deployments.

use base64::Engine as _;
use bytes::Bytes;
use futures_executor::block_on;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use std::sync::atomic::Ordering;
use wharf_core::auth::{Keys, TokenService, TokenSettings};
use wharf_core::testing::{MemoryBlobs, MemoryMetadata, TestEnv};
use wharf_core::{Config, Digest, Registry};

type Reg = Registry<MemoryBlobs, MemoryMetadata, TestEnv>;

const KEY1: &[u8] = include_bytes!("fixtures/key1.pem");
const T0: u64 = 1_800_000_000_000;
const SECRET: &[u8] = b"shared-upload-secret-0123456789ab";
const FRONT: &str = "https://upload.example";

struct Pair {
    api: Reg,
    front: Reg,
}

fn reg(blobs: &MemoryBlobs, meta: &MemoryMetadata, config: Config) -> Reg {
    let env = TestEnv::default();
    env.now.store(T0, Ordering::SeqCst);
    let keys = Keys::from_pems(&[KEY1.to_vec()]).expect("keys");
    Registry::new(blobs.clone(), meta.clone(), env, config)
        .with_auth(TokenService::new(keys, TokenSettings::default()))
}

fn pair(max_body: Option<u64>) -> Pair {
    let blobs = MemoryBlobs::default();
    let meta = MemoryMetadata::default();
    let api = reg(
        &blobs,
        &meta,
        Config {
            max_request_body: max_body,
            upload_front: Some(format!("{FRONT}/")),
            upload_secret: Some(SECRET.to_vec()),
            ..Config::default()
        },
    );
    let front = reg(
        &blobs,
        &meta,
        Config {
            upload_secret: Some(SECRET.to_vec()),
            ..Config::default()
        },
    );
    let admin = wharf_core::auth::User {
        username: "admin".into(),
        password_hash: wharf_core::auth::hash_password(&api.env, "pw-admin-1").expect("hash"),
        email: None,
        admin: true,
        created_ms: T0,
        incarnation: 1,
        generation: 0,
    };
    block_on(wharf_core::auth::Directory(&api.meta).put("user", "admin", &admin, true))
        .expect("admin");
    Pair { api, front }
}

struct Resp {
    status: StatusCode,
    headers: http::HeaderMap,
    body: serde_json::Value,
}

impl Resp {
    fn location(&self) -> &str {
        self.headers
            .get("location")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
    fn code(&self) -> &str {
        self.body["errors"][0]["code"].as_str().unwrap_or("")
    }
}

fn call(reg: &Reg, method: Method, uri: &str, auth: Option<&str>, body: &[u8]) -> Resp {
    let mut b = Request::builder()
        .method(method)
        .uri(uri)
        .header("host", "api.example")
        .header("content-length", body.len());
    if let Some(a) = auth {
        b = b.header("authorization", a);
    }
    let req = b
        .body(Full::new(Bytes::copy_from_slice(body)))
        .expect("request");
    let resp = block_on(reg.handle(req));
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = block_on(resp.into_body().collect())
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    Resp {
        status,
        headers,
        body: serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
    }
}

fn push_token(reg: &Reg, repo: &str) -> String {
    let basic = base64::engine::general_purpose::STANDARD.encode("admin:pw-admin-1");
    let r = call(
        reg,
        Method::GET,
        &format!("/token?service=wharf&scope=repository:{repo}:pull,push"),
        Some(&format!("Basic {basic}")),
        b"",
    );
    assert_eq!(r.status, StatusCode::OK);
    format!("Bearer {}", r.body["token"].as_str().expect("token"))
}

/// Starts an upload of `team/app` at the API; its `Location`.
fn start_upload(api: &Reg, token: &str) -> String {
    let r = call(
        api,
        Method::POST,
        "/v2/team/app/blobs/uploads/",
        Some(token),
        b"",
    );
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    r.location().to_owned()
}

/// The path and query of an absolute Location on the front.
fn on_front(loc: &str) -> &str {
    loc.strip_prefix(FRONT)
        .unwrap_or_else(|| panic!("{loc} is not on the front"))
}

#[test]
fn a_layer_too_big_for_the_api_goes_through_the_front() {
    let p = pair(Some(1024));
    let t = push_token(&p.api, "team/app");
    let layer = vec![7u8; 5000];

    // Straight to the API, the body is refused with 413 and a message naming the way out.
    let loc = start_upload(&p.api, &t);
    assert!(
        loc.starts_with(&format!("{FRONT}/v2/team/app/blobs/uploads/")),
        "{loc}"
    );
    assert!(loc.contains("?cap="), "{loc}");
    let path_only = on_front(&loc).split('?').next().unwrap_or("").to_owned();
    let r = call(&p.api, Method::PATCH, &path_only, Some(&t), &layer);
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(r.code(), "SIZE_INVALID");
    let msg = r.body["errors"][0]["message"].as_str().unwrap_or("");
    assert!(
        msg.contains("1024") && msg.contains("WHARF_UPLOAD_URL"),
        "{msg}"
    );

    // Through the front with the capability and no token; the API sees the blob at once.
    push_through_front(&p.front, &p.api, &loc, &t, &layer);
}

/// Sends `layer` to the upload the API answered with `loc`, through `front` with the
/// capability and no token (PATCH, status, then PUT where told), and checks that `api`
/// (same stores) then serves the blob with its size.
fn push_through_front(front: &Reg, api: &Reg, loc: &str, token: &str, layer: &[u8]) {
    let d = Digest::sha256_of(layer);
    let r = call(front, Method::PATCH, on_front(loc), None, layer);
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    let next = r.location().to_owned();
    assert!(
        next.starts_with("/v2/team/app/blobs/uploads/") && next.contains("?cap="),
        "{next}"
    );
    let r = call(front, Method::GET, &next, None, b"");
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(r.headers["range"], format!("0-{}", layer.len() - 1));
    let r = call(front, Method::PUT, &format!("{next}&digest={d}"), None, b"");
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let r = call(
        api,
        Method::HEAD,
        &format!("/v2/team/app/blobs/{d}"),
        Some(token),
        b"",
    );
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.headers["content-length"],
        layer.len().to_string().as_str()
    );
}

#[test]
fn forged_expired_and_misused_capabilities_are_refused() {
    let p = pair(None);
    let t = push_token(&p.api, "team/app");
    let r = call(
        &p.api,
        Method::POST,
        "/v2/team/app/blobs/uploads/",
        Some(&t),
        b"",
    );
    let loc = on_front(r.location()).to_owned();
    let (path, query) = loc.split_once('?').expect("query");
    let cap = query.strip_prefix("cap=").expect("cap");
    let id = path.rsplit('/').next().expect("id");
    let (exp, mac) = cap.split_once('.').expect("cap form");

    let refused = |uri: &str, method: Method| {
        let r = call(&p.front, method, uri, None, b"x");
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{uri}: {}", r.body);
        assert_eq!(r.code(), "UNAUTHORIZED");
        r.body["errors"][0]["message"]
            .as_str()
            .unwrap_or("")
            .to_owned()
    };
    // Tampered MAC, moved expiry, another upload id, another repository.
    let mut bad = mac.to_owned().into_bytes();
    bad[0] = if bad[0] == b'A' { b'B' } else { b'A' };
    let bad = String::from_utf8(bad).expect("ascii");
    refused(&format!("{path}?cap={exp}.{bad}"), Method::PATCH);
    let later = exp.parse::<u64>().expect("exp") + 3600;
    refused(&format!("{path}?cap={later}.{mac}"), Method::PATCH);
    let other = p
        .api
        .config
        .upload_secret
        .as_deref()
        .map(|s| wharf_core::auth::capability::mint(s, "team/app", "0000", later));
    refused(
        &format!(
            "/v2/team/app/blobs/uploads/{id}?cap={}",
            other.unwrap_or_default()
        ),
        Method::PATCH,
    );
    refused(
        &format!("/v2/team/other/blobs/uploads/{id}?cap={cap}"),
        Method::PATCH,
    );
    // A capability grants nothing but its upload: not a new session, not a read.
    refused(
        &format!("/v2/team/app/blobs/uploads/?cap={cap}"),
        Method::POST,
    );
    refused(&format!("/v2/team/app/tags/list?cap={cap}"), Method::GET);
    // Garbage.
    refused(&format!("{path}?cap=garbage"), Method::PATCH);

    // Expired: an hour and a second later (the default lifetime is an hour).
    p.front.env.now.fetch_add(3_601_000, Ordering::SeqCst);
    let msg = refused(&loc, Method::PATCH);
    assert!(msg.contains("expired"), "{msg}");
    p.front.env.now.fetch_sub(3_601_000, Ordering::SeqCst);

    // Nothing above touched the upload: the genuine capability still works from byte 0.
    let r = call(&p.front, Method::PATCH, &loc, None, b"abc");
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    assert_eq!(r.headers["range"], "0-2");

    // A registry without the secret refuses capabilities instead of ignoring them.
    let plain = reg(&MemoryBlobs::default(), &p.api.meta, Config::default());
    let r = call(&plain, Method::PATCH, &loc, None, b"abc");
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[test]
fn without_a_front_sessions_stay_on_the_api() {
    let blobs = MemoryBlobs::default();
    let meta = MemoryMetadata::default();
    let api = reg(&blobs, &meta, Config::default());
    let admin = wharf_core::auth::User {
        username: "admin".into(),
        password_hash: wharf_core::auth::hash_password(&api.env, "pw-admin-1").expect("hash"),
        email: None,
        admin: true,
        created_ms: T0,
        incarnation: 1,
        generation: 0,
    };
    block_on(wharf_core::auth::Directory(&api.meta).put("user", "admin", &admin, true))
        .expect("admin");
    let t = push_token(&api, "team/app");
    let r = call(
        &api,
        Method::POST,
        "/v2/team/app/blobs/uploads/",
        Some(&t),
        b"",
    );
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert!(r.location().starts_with("/v2/team/app/blobs/uploads/"));
    assert!(!r.location().contains("cap="));
}

/// A front with no token service of its own (the Worker in front of a Lambda deployment):
/// with `capability_only` it takes an upload's bytes and refuses everything else, where it
/// would otherwise serve anonymous requests.
#[test]
fn a_capability_only_front_without_tokens_takes_uploads_and_nothing_else() {
    let p = pair(Some(1024));
    let env = TestEnv::default();
    env.now.store(T0, Ordering::SeqCst);
    let front: Reg = Registry::new(
        p.front.blobs.clone(),
        p.front.meta.clone(),
        env,
        Config {
            upload_secret: Some(SECRET.to_vec()),
            capability_only: true,
            ..Config::default()
        },
    );
    let t = push_token(&p.api, "team/app");
    let layer = vec![9u8; 3000];
    let d = Digest::sha256_of(&layer);
    let loc = start_upload(&p.api, &t);

    // Without a capability, nothing: not the base, not a blob, not an upload's own URL.
    let bare = on_front(&loc).split('?').next().unwrap_or("").to_owned();
    for (m, uri) in [
        (Method::GET, "/v2/".to_owned()),
        (Method::GET, "/v2/_catalog".to_owned()),
        (Method::POST, "/v2/team/app/blobs/uploads/".to_owned()),
        (Method::GET, format!("/v2/team/app/blobs/{d}")),
        (Method::PATCH, bare.clone()),
    ] {
        let r = call(&front, m.clone(), &uri, None, &layer);
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{m} {uri}");
        assert_eq!(r.code(), "UNAUTHORIZED", "{m} {uri}");
    }
    let r = call(&front, Method::GET, &bare, Some(&t), b"");
    assert_eq!(
        r.status,
        StatusCode::UNAUTHORIZED,
        "a token is no way in either"
    );

    // With it, the upload goes through, and the API serves the blob.
    push_through_front(&front, &p.api, &loc, &t, &layer);
}
