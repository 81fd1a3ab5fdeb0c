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
use wharf_core::ports::DocumentStore;
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
