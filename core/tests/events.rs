//! Events: every change a request makes is recorded (blob pushes, mounts, tag moves,
//! manifest pushes, pulls, deletes), by who and from where, with auth off as with it on —
//! read back from the store the audit trail writes to.

use bytes::Bytes;
use futures_executor::block_on;
use http::{Method, Request, StatusCode};
use http_body_util::Full;
use std::sync::atomic::Ordering;
use wharf_core::Digest;
use wharf_core::events::audit::{AUDIT_KIND, AuditEvent};
use wharf_core::http::ClientAddr;
use wharf_core::ports::{DocumentStore, ManifestIndex};
use wharf_core::testing::{MemoryBlobs, MemoryMetadata, TestEnv};
use wharf_core::{Config, Registry};

type Reg = Registry<MemoryBlobs, MemoryMetadata, TestEnv>;

fn call(reg: &Reg, method: Method, uri: &str, body: &[u8]) -> (StatusCode, http::HeaderMap) {
    let mut req = Request::builder()
        .method(method)
        .uri(uri)
        .header("host", "reg.test")
        .header("content-type", "application/vnd.oci.image.manifest.v1+json")
        .body(Full::new(Bytes::copy_from_slice(body)))
        .expect("request");
    req.extensions_mut().insert(ClientAddr("10.0.0.9".into()));
    let resp = block_on(reg.handle(req));
    (resp.status(), resp.headers().clone())
}

fn recorded(reg: &Reg) -> Vec<AuditEvent> {
    block_on(reg.meta.flush_events()).expect("flush");
    block_on(reg.meta.list_docs(AUDIT_KIND, "", None, 1000))
        .expect("list")
        .into_iter()
        .map(|(_, raw)| serde_json::from_slice(&raw).expect("an audit record"))
        .collect()
}

fn count(events: &[AuditEvent], action: &str, resource: &str, reference: &str) -> usize {
    events
        .iter()
        .filter(|e| {
            e.action == action
                && e.resource == resource
                && e.reference.as_deref() == Some(reference)
                && e.actor == "anonymous"
                && e.client == "10.0.0.9"
        })
        .count()
}

#[test]
fn every_change_is_recorded_with_auth_off() {
    let env = TestEnv::default();
    env.now.store(1_800_000_000_000, Ordering::SeqCst);
    let reg = Registry::new(
        MemoryBlobs::default(),
        MemoryMetadata::default(),
        env,
        Config::default(),
    );
    assert!(reg.auth.is_none());

    // A monolithic push, a chunked push, a mount.
    let config = b"{}";
    let cd = Digest::sha256_of(config);
    let (s, _) = call(
        &reg,
        Method::POST,
        &format!("/v2/a/app/blobs/uploads/?digest={cd}"),
        config,
    );
    assert_eq!(s, StatusCode::CREATED);
    let layer = b"layer bytes";
    let ld = Digest::sha256_of(layer);
    let (s, h) = call(&reg, Method::POST, "/v2/a/app/blobs/uploads/", b"");
    assert_eq!(s, StatusCode::ACCEPTED);
    let loc = h["location"].to_str().expect("location").to_owned();
    let (s, h) = call(&reg, Method::PATCH, &loc, layer);
    assert_eq!(s, StatusCode::ACCEPTED);
    let loc = h["location"].to_str().expect("location").to_owned();
    let sep = if loc.contains('?') { '&' } else { '?' };
    let (s, _) = call(&reg, Method::PUT, &format!("{loc}{sep}digest={ld}"), b"");
    assert_eq!(s, StatusCode::CREATED);
    let (s, _) = call(
        &reg,
        Method::POST,
        &format!("/v2/b/copy/blobs/uploads/?mount={ld}&from=a/app"),
        b"",
    );
    assert_eq!(s, StatusCode::CREATED);

    // A manifest pushed by tag with a second tag, pulled by GET (counted) and HEAD (not).
    let m = serde_json::json!({"schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": 2},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": ld, "size": layer.len()}]})
    .to_string();
    let md = Digest::sha256_of(m.as_bytes());
    let (s, _) = call(
        &reg,
        Method::PUT,
        "/v2/a/app/manifests/v1?tag=latest",
        m.as_bytes(),
    );
    assert_eq!(s, StatusCode::CREATED);
    let (s, _) = call(&reg, Method::GET, "/v2/a/app/manifests/v1", b"");
    assert_eq!(s, StatusCode::OK);
    let (s, _) = call(&reg, Method::HEAD, "/v2/a/app/manifests/latest", b"");
    assert_eq!(s, StatusCode::OK);

    // Deletes: a tag, the manifest, a blob link; and a refused request records nothing.
    let (s, _) = call(&reg, Method::DELETE, "/v2/a/app/manifests/latest", b"");
    assert_eq!(s, StatusCode::ACCEPTED);
    let (s, _) = call(
        &reg,
        Method::DELETE,
        &format!("/v2/a/app/manifests/{md}"),
        b"",
    );
    assert_eq!(s, StatusCode::ACCEPTED);
    let (s, _) = call(&reg, Method::DELETE, &format!("/v2/b/copy/blobs/{ld}"), b"");
    assert_eq!(s, StatusCode::ACCEPTED);
    let (s, _) = call(&reg, Method::DELETE, &format!("/v2/b/copy/blobs/{ld}"), b"");
    assert_eq!(s, StatusCode::NOT_FOUND);

    let events = recorded(&reg);
    let (cd, ld, md) = (cd.to_string(), ld.to_string(), md.to_string());
    for (action, resource, reference) in [
        ("blob_push", "a/app", cd.as_str()),
        ("blob_push", "a/app", ld.as_str()),
        ("blob_mount", "b/copy", ld.as_str()),
        ("push", "a/app", "v1"),
        ("tag", "a/app", &format!("v1={md}")),
        ("tag", "a/app", &format!("latest={md}")),
        ("pull", "a/app", "v1"),
        ("delete", "a/app", "latest"),
        ("delete", "a/app", md.as_str()),
        ("delete", "b/copy", ld.as_str()),
    ] {
        assert_eq!(
            count(&events, action, resource, reference),
            1,
            "one {action} of {resource} {reference} in {events:#?}"
        );
    }
    assert_eq!(events.len(), 10, "nothing else was recorded: {events:#?}");
    assert!(
        events
            .iter()
            .all(|e| e.project.as_deref() == Some(e.resource.split('/').next().unwrap_or("")))
    );
}

/// A manifest's last-pull time, as the index lists it.
fn pulled(reg: &Reg, repo: &str, digest: &Digest) -> Option<u64> {
    block_on(reg.meta.list_manifests(repo, None, 100))
        .expect("list")
        .into_iter()
        .find(|m| &m.digest == digest)
        .expect("the manifest is listed")
        .pulled_ms
}

/// Pull times: a GET or HEAD, by tag or digest, sets the manifest's last pull to the hour;
/// a pull within the hour recorded, or a late one, never moves it back; only GETs are in
/// the audit log, one record each.
#[test]
fn pulls_keep_the_hour_of_the_last_pull() {
    const HOUR: u64 = 3_600_000;
    let t0 = 1_800_000_000_000 - 1_800_000_000_000 % HOUR;
    let env = TestEnv::default();
    env.now.store(t0 + 10, Ordering::SeqCst);
    let reg = Registry::new(
        MemoryBlobs::default(),
        MemoryMetadata::default(),
        env,
        Config::default(),
    );
    let config = b"{}";
    let cd = Digest::sha256_of(config);
    let (s, _) = call(
        &reg,
        Method::POST,
        &format!("/v2/p/app/blobs/uploads/?digest={cd}"),
        config,
    );
    assert_eq!(s, StatusCode::CREATED);
    let m = serde_json::json!({"schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": 2},
        "layers": []})
    .to_string();
    let md = Digest::sha256_of(m.as_bytes());
    let (s, _) = call(&reg, Method::PUT, "/v2/p/app/manifests/v1", m.as_bytes());
    assert_eq!(s, StatusCode::CREATED);
    assert_eq!(pulled(&reg, "p/app", &md), None, "pushed, never pulled");

    let at = |ms: u64| reg.env.now.store(ms, Ordering::SeqCst);
    at(t0 + 20 * 60_000);
    assert_eq!(
        call(&reg, Method::GET, "/v2/p/app/manifests/v1", b"").0,
        StatusCode::OK
    );
    assert_eq!(
        pulled(&reg, "p/app", &md),
        Some(t0),
        "GET by tag, to the hour"
    );

    at(t0 + 2 * HOUR + 5);
    let by_digest = format!("/v2/p/app/manifests/{md}");
    assert_eq!(call(&reg, Method::HEAD, &by_digest, b"").0, StatusCode::OK);
    assert_eq!(
        pulled(&reg, "p/app", &md),
        Some(t0 + 2 * HOUR),
        "HEAD by digest"
    );

    at(t0 + HOUR);
    assert_eq!(call(&reg, Method::GET, &by_digest, b"").0, StatusCode::OK);
    assert_eq!(
        pulled(&reg, "p/app", &md),
        Some(t0 + 2 * HOUR),
        "a late pull never moves the time back"
    );
    at(t0 + 3 * HOUR);
    assert_eq!(
        call(&reg, Method::HEAD, "/v2/p/app/manifests/v1", b"").0,
        StatusCode::OK
    );
    assert_eq!(
        pulled(&reg, "p/app", &md),
        Some(t0 + 3 * HOUR),
        "HEAD by tag"
    );

    // A pull of what is not there records nothing.
    let (s, _) = call(&reg, Method::GET, "/v2/p/app/manifests/v2", b"");
    assert_eq!(s, StatusCode::NOT_FOUND);

    let pulls: Vec<_> = recorded(&reg)
        .into_iter()
        .filter(|e| e.action == "pull")
        .map(|e| e.reference.unwrap_or_default())
        .collect();
    assert_eq!(
        pulls,
        ["v1".to_owned(), md.to_string()],
        "the two GETs, in order"
    );
}
