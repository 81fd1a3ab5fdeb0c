//! What the core's integration tests share: a registry on the memory adapters with auth
//! on, requests through its handler, the first admin, tokens and pushes.
#![allow(dead_code)]

use base64::Engine as _;
use bytes::Bytes;
use futures_executor::block_on;
use http::{Method, Request, StatusCode};
use http_body_util::Full;
use std::sync::atomic::Ordering;
use wharf_core::auth::{Keys, TokenService, TokenSettings};
use wharf_core::http::ClientAddr;
use wharf_core::testing::{MemoryBlobs, MemoryMetadata, TestEnv};
use wharf_core::{Config, Registry};

pub type Reg = Registry<MemoryBlobs, MemoryMetadata, TestEnv>;

pub const KEY1: &[u8] = include_bytes!("../fixtures/key1.pem");
pub const KEY2: &[u8] = include_bytes!("../fixtures/key2.pem");
pub const T0: u64 = 1_800_000_000_000;

pub fn tokens(keys: &[&[u8]]) -> TokenService {
    let keys = Keys::from_pems(&keys.iter().map(|k| k.to_vec()).collect::<Vec<_>>()).expect("keys");
    TokenService::new(keys, TokenSettings::default())
}

pub fn registry() -> Reg {
    registry_with(Config::default())
}

/// A registry with auth on and `config`, at time `T0`.
pub fn registry_with(config: Config) -> Reg {
    let env = TestEnv::default();
    env.now.store(T0, Ordering::SeqCst);
    Registry::new(
        MemoryBlobs::default(),
        MemoryMetadata::default(),
        env,
        config,
    )
    .with_auth(tokens(&[KEY1]))
}

pub struct Resp {
    pub status: StatusCode,
    pub headers: http::HeaderMap,
    pub body: serde_json::Value,
}

pub fn call(reg: &Reg, method: Method, uri: &str, auth: Option<&str>, body: &[u8]) -> Resp {
    let auth: Vec<(&str, &str)> = auth.map(|a| ("authorization", a)).into_iter().collect();
    call_with(reg, method, uri, &auth, body)
}

/// [`call`] with headers of its own.
pub fn call_with(
    reg: &Reg,
    method: Method,
    uri: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Resp {
    let mut b = Request::builder()
        .method(method)
        .uri(uri)
        .header("host", "reg.test");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    if uri.starts_with("/api/v1") && !body.is_empty() {
        b = b.header("content-type", "application/json");
    }
    let mut req = b
        .body(Full::new(Bytes::copy_from_slice(body)))
        .expect("request");
    req.extensions_mut().insert(ClientAddr("10.0.0.7".into()));
    let resp = block_on(reg.handle(req));
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = block_on(async {
        use http_body_util::BodyExt;
        resp.into_body()
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default()
    });
    let body = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    Resp {
        status,
        headers,
        body,
    }
}

pub fn basic(user: &str, pass: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
    )
}

pub fn bearer(t: &str) -> String {
    format!("Bearer {t}")
}

pub fn code(r: &Resp) -> &str {
    r.body["errors"][0]["code"].as_str().unwrap_or("")
}

/// Creates the first admin directly in the store (as `wharf serve` does on first start).
pub fn bootstrap_admin(reg: &Reg) {
    let u = wharf_core::auth::User {
        username: "admin".into(),
        password_hash: wharf_core::auth::hash_password(&reg.env, "admin-pass-1").expect("hash"),
        email: None,
        admin: true,
        created_ms: T0,
        incarnation: 1,
        generation: 0,
    };
    block_on(wharf_core::auth::Directory(&reg.meta).put("user", "admin", &u, true)).expect("admin");
}

pub fn admin(reg: &Reg, method: Method, path: &str, body: serde_json::Value) -> Resp {
    let r = call(
        reg,
        method,
        path,
        Some(&basic("admin", "admin-pass-1")),
        body.to_string().as_bytes(),
    );
    assert!(r.status.is_success(), "{path}: {} {}", r.status, r.body);
    r
}

pub fn token(reg: &Reg, who: Option<(&str, &str)>, scope: &str) -> String {
    let creds = who.map(|(u, p)| basic(u, p));
    let r = call(
        reg,
        Method::GET,
        &format!("/token?service=wharf&scope={scope}"),
        creds.as_deref(),
        b"",
    );
    assert_eq!(r.status, StatusCode::OK, "token for {who:?}: {}", r.body);
    r.body["token"].as_str().expect("token").to_owned()
}

/// Pushes a tiny image to `repo:tag` as admin.
pub fn push_image(reg: &Reg, repo: &str, tag: &str) {
    push_as(reg, ("admin", "admin-pass-1"), repo, tag, &[]).expect("push");
}

/// Pushes an image of `layers` (and an empty config) to `repo:tag` as `who`: the manifest's
/// digest, or the refused request's status and error code.
pub fn push_as(
    reg: &Reg,
    who: (&str, &str),
    repo: &str,
    tag: &str,
    layers: &[&[u8]],
) -> Result<wharf_core::Digest, (StatusCode, String, String)> {
    let t = token(reg, Some(who), &format!("repository:{repo}:pull,push"));
    let refused = |r: &Resp| {
        (
            r.status,
            code(r).to_owned(),
            r.body["errors"][0]["message"]
                .as_str()
                .unwrap_or("")
                .to_owned(),
        )
    };
    let blob = b"{}";
    let d = wharf_core::Digest::sha256_of(blob);
    let mut descs = Vec::new();
    for (i, l) in std::iter::once(&&blob[..]).chain(layers).enumerate() {
        let ld = wharf_core::Digest::sha256_of(l);
        let r = call(
            reg,
            Method::POST,
            &format!("/v2/{repo}/blobs/uploads/?digest={ld}"),
            Some(&bearer(&t)),
            l,
        );
        if r.status != StatusCode::CREATED {
            return Err(refused(&r));
        }
        if i > 0 {
            descs.push(serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": ld, "size": l.len()}));
        }
    }
    let m = serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": d, "size": 2}, "layers": descs});
    let body = m.to_string();
    let r = call(
        reg,
        Method::PUT,
        &format!("/v2/{repo}/manifests/{tag}"),
        Some(&bearer(&t)),
        body.as_bytes(),
    );
    if r.status != StatusCode::CREATED {
        return Err(refused(&r));
    }
    Ok(wharf_core::Digest::sha256_of(body.as_bytes()))
}
