//! Tests of the remote source: a real copy between in-process registries, and a fake
//! transport for redirects, digests and errors.
use super::*;
use crate::Registry;
use crate::http::Body;
use crate::jobs::replicate::copy::copy_artifact;
use crate::jobs::replicate::v2::NoBody;
use crate::jobs::replicate::{Target, retryable};
use crate::model::manifest::OCI_MANIFEST;
use crate::testing::{MemoryBlobs, MemoryMetadata, TestEnv};
use futures_executor::block_on;
use futures_util::StreamExt as _;
use std::cell::RefCell;

type Reg = Registry<MemoryBlobs, MemoryMetadata, TestEnv>;

fn registry() -> Reg {
    Registry::new(
        MemoryBlobs::default(),
        MemoryMetadata::default(),
        TestEnv::default(),
        Default::default(),
    )
}

fn v2<T>(transport: T) -> V2Target<T> {
    V2Target {
        transport,
        base: String::new(),
    }
}

fn blob(t: &V2Target<&Reg>, repo: &str, data: &'static [u8]) -> Digest {
    let d = Digest::sha256_of(data);
    let body = futures_util::stream::iter([Ok(Bytes::from_static(data))]);
    block_on(t.put_blob(repo, &d, data.len() as u64, body)).expect("blob");
    d
}

fn put(t: &V2Target<&Reg>, repo: &str, reference: &str, m: serde_json::Value) -> Digest {
    let bytes = Bytes::from(m.to_string());
    let d = Digest::sha256_of(&bytes);
    let info = manifest::parse(&bytes, None, d.clone()).expect("parse");
    block_on(t.put_manifest(repo, reference, &StoredManifest { info, bytes })).expect("put");
    d
}

/// An image of one layer, tagged `tag`. Returns its digest and the layer's.
fn image(t: &V2Target<&Reg>, repo: &str, tag: &str, layer: &'static [u8]) -> (Digest, Digest) {
    let c = blob(t, repo, b"{}");
    let l = blob(t, repo, layer);
    let m = serde_json::json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": c, "size": 2},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": l, "size": layer.len()}]});
    (put(t, repo, tag, m), l)
}

async fn collect<S: Stream<Item = std::result::Result<Bytes, StoreError>> + Unpin>(
    mut s: S,
) -> std::result::Result<Vec<u8>, StoreError> {
    let mut out = Vec::new();
    while let Some(c) = s.next().await {
        out.extend_from_slice(&c?);
    }
    Ok(out)
}

#[test]
fn an_image_with_a_referrer_copies_from_one_registry_to_another_over_the_api() {
    let (a, b) = (registry(), registry());
    let (src, dst) = (v2(&a), v2(&b));
    let (img, layer) = image(&src, "p/app", "v1", b"layer one");
    let e = blob(&src, "p/app", b"{}");
    let sig = put(
        &src,
        "p/app",
        "sig",
        serde_json::json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "artifactType": "application/vnd.example.signature",
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": e, "size": 2},
            "layers": [],
            "subject": {"mediaType": OCI_MANIFEST, "digest": img, "size": 1}}),
    );

    assert_eq!(
        block_on(src.tag("p/app", "v1")).expect("tag"),
        Some(img.clone())
    );
    assert_eq!(block_on(src.tag("p/app", "nope")).expect("tag"), None);
    assert_eq!(block_on(src.tag("p/app", "../x")).expect("tag"), None);
    assert_eq!(
        block_on(src.referrers("p/app", &img)).expect("referrers"),
        vec![sig.clone()]
    );
    let missing = Digest::sha256_of(b"nothing");
    assert!(
        block_on(src.manifest("p/app", &missing))
            .expect("manifest")
            .is_none()
    );
    assert!(
        block_on(src.referrers("p/app", &missing))
            .expect("referrers")
            .is_empty()
    );
    let e = block_on(src.blob("p/app", &missing))
        .err()
        .expect("no blob");
    assert_eq!(e.code, ErrorCode::BlobUnknown);

    let report = block_on(copy_artifact(&src, &dst, "p/app", "mirror/app", &img)).expect("copy");
    assert_eq!(report.manifests_copied, 2, "{report:?}");
    assert_eq!(report.blobs_copied, 2, "{report:?}");

    // B serves what A has, byte for byte.
    let ma = block_on(src.manifest("p/app", &img))
        .expect("a")
        .expect("a has it");
    let mb = block_on(dst.manifest("mirror/app", &img))
        .expect("b")
        .expect("b has it");
    assert_eq!(ma.bytes, mb.bytes);
    assert_eq!(ma.info, mb.info);
    let (size, body) = block_on(dst.blob("mirror/app", &layer)).expect("blob");
    assert_eq!(size, 9);
    assert_eq!(block_on(collect(body)).expect("read"), b"layer one");
    assert_eq!(
        block_on(dst.referrers("mirror/app", &img)).expect("referrers"),
        vec![sig]
    );
    // Again: everything is there.
    let again = block_on(copy_artifact(&src, &dst, "p/app", "mirror/app", &img)).expect("copy");
    assert_eq!(again.manifests_copied, 0, "{again:?}");
}

#[test]
fn the_catalog_lists_repositories_and_tags_in_order_after_and_up_to_a_limit() {
    let a = registry();
    let src = v2(&a);
    for repo in ["p/c", "p/a", "p/b"] {
        image(&src, repo, "v1", b"layer");
    }
    for tag in ["v3", "v2"] {
        image(&src, "p/a", tag, b"layer");
    }
    let repos = |after, limit| block_on(src.repositories(after, limit)).expect("catalog");
    assert_eq!(repos(None, 10), ["p/a", "p/b", "p/c"]);
    assert_eq!(repos(None, 2), ["p/a", "p/b"]);
    assert_eq!(repos(Some("p/a"), 1), ["p/b"]);
    assert_eq!(repos(Some("p/c"), 10), Vec::<String>::new());
    assert!(repos(None, 0).is_empty());
    let tags = |repo, after, limit| block_on(src.tags(repo, after, limit)).expect("tags");
    assert_eq!(tags("p/a", None, 10), ["v1", "v2", "v3"]);
    assert_eq!(tags("p/a", Some("v1"), 1), ["v2"]);
    assert_eq!(tags("p/a", Some("v3"), 10), Vec::<String>::new());
    assert!(tags("p/none", None, 10).is_empty());
}

#[test]
fn a_listing_is_sorted_and_held_to_after_and_limit_whatever_the_remote_sends() {
    let names = ["b", "a", "c", "a", "d"].map(String::from).to_vec();
    assert_eq!(page(names.clone(), Some("a"), 2), ["b", "c"]);
    assert_eq!(page(names, None, 10), ["a", "b", "c", "d"]);
}

fn chunks(
    parts: &[&'static [u8]],
) -> Body<impl Stream<Item = std::result::Result<Bytes, StoreError>> + Unpin> {
    let v: Vec<_> = parts.iter().map(|p| Ok(Bytes::from_static(p))).collect();
    Body::Stream(futures_util::stream::iter(v))
}

#[test]
fn a_blob_stream_passes_its_bytes_and_fails_at_the_end_on_another_digest_or_length() {
    let d = Digest::sha256_of(b"hello world");
    let ok = Verified::new(chunks(&[b"hello ", b"world"]), d.clone(), 11);
    assert_eq!(block_on(collect(ok)).expect("ok"), b"hello world");

    let mut wrong = Verified::new(chunks(&[b"hello ", b"World"]), d.clone(), 11);
    // The bytes pass as they come; the failure is the last item, before the end.
    assert_eq!(
        block_on(wrong.next()).expect("first").expect("ok"),
        "hello "
    );
    assert!(block_on(wrong.next()).expect("second").is_ok());
    let e = block_on(wrong.next())
        .expect("an error")
        .expect_err("digest");
    assert!(e.to_string().contains("has digest"), "{e}");
    assert!(block_on(wrong.next()).is_none());

    let short = Verified::new(chunks(&[b"hello"]), d.clone(), 11);
    let e = block_on(collect(short)).expect_err("short");
    assert!(e.to_string().contains("5 of the 11"), "{e}");

    let long = Verified::new(chunks(&[b"hello world", b"!"]), d.clone(), 11);
    let e = block_on(collect(long)).expect_err("long");
    assert!(e.to_string().contains("more than"), "{e}");

    let empty = Verified::new(Body::<NoBody>::Empty, Digest::sha256_of(b""), 0);
    assert!(block_on(collect(empty)).expect("empty").is_empty());
}

/// A remote scripted by a closure, which records what it was sent: the URI and whether
/// the request goes without credentials.
struct Scripted<F> {
    answer: F,
    seen: RefCell<Vec<(Method, String, bool)>>,
}

fn scripted<F: Fn(&Method, &str) -> Response<Body<NoBody>>>(answer: F) -> V2Target<Scripted<F>> {
    V2Target {
        transport: Scripted {
            answer,
            seen: RefCell::new(Vec::new()),
        },
        base: "http://reg.example".into(),
    }
}

impl<F: Fn(&Method, &str) -> Response<Body<NoBody>>> Transport for Scripted<F> {
    type Body = Body<NoBody>;
    async fn send<S>(&self, req: Request<Body<S>>) -> Result<Response<Self::Body>>
    where
        S: Stream<Item = std::result::Result<Bytes, StoreError>> + Unpin,
    {
        let anonymous = req.extensions().get::<NoCredentials>().is_some();
        let uri = req.uri().to_string();
        self.seen
            .borrow_mut()
            .push((req.method().clone(), uri.clone(), anonymous));
        Ok((self.answer)(req.method(), &uri))
    }
}

fn answer(status: u16, hs: &[(&str, &str)], body: &'static [u8]) -> Response<Body<NoBody>> {
    let mut b = Response::builder().status(status);
    for (k, v) in hs {
        b = b.header(*k, *v);
    }
    b.body(Body::full(Bytes::from_static(body)))
        .expect("response")
}

#[test]
fn a_blob_follows_redirects_and_goes_to_another_host_without_credentials() {
    let d = Digest::sha256_of(b"data");
    let first = format!("http://reg.example/v2/p/app/blobs/{d}");
    let t = scripted(|_, uri| match uri {
        u if u.contains("/v2/p/app/blobs/") => answer(307, &[("location", "/store/blob?x=1")], b""),
        "http://reg.example/store/blob?x=1" => answer(
            302,
            &[("location", "https://bucket.example/b/blob?sig=2")],
            b"",
        ),
        "https://bucket.example/b/blob?sig=2" => answer(302, &[("location", "again")], b""),
        "https://bucket.example/b/again" => answer(200, &[("content-length", "4")], b"data"),
        other => panic!("unexpected {other}"),
    });
    let (size, body) = block_on(t.blob("p/app", &d)).expect("blob");
    assert_eq!(size, 4);
    assert_eq!(block_on(collect(body)).expect("read"), b"data");
    let seen = t.transport.seen.borrow();
    let got: Vec<(&str, bool)> = seen.iter().map(|(_, u, a)| (u.as_str(), *a)).collect();
    assert_eq!(
        got,
        [
            (first.as_str(), false),
            ("http://reg.example/store/blob?x=1", false),
            ("https://bucket.example/b/blob?sig=2", true),
            ("https://bucket.example/b/again", true),
        ]
    );

    let endless = scripted(|_, _| answer(307, &[("location", "/loop")], b""));
    assert!(block_on(endless.blob("p/app", &d)).is_err());
    let nameless = scripted(|_, _| answer(200, &[], b"data"));
    let e = block_on(nameless.blob("p/app", &d))
        .err()
        .expect("no length");
    assert_eq!(e.code, ErrorCode::SizeInvalid);
}

#[test]
fn a_manifest_that_is_not_the_digest_asked_for_or_no_manifest_is_refused() {
    let m = serde_json::json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "x", "digest": Digest::sha256_of(b"{}"), "size": 2},
        "layers": []})
    .to_string();
    let body: &'static [u8] = Box::leak(m.into_bytes().into_boxed_slice());
    let good = Digest::sha256_of(body);
    let t = scripted(move |_, _| answer(200, &[("content-type", "application/json")], body));
    let got = block_on(t.manifest("p/app", &good))
        .expect("ok")
        .expect("some");
    assert_eq!(got.info.media_type, OCI_MANIFEST);
    assert_eq!(got.info.blobs, [Digest::sha256_of(b"{}")]);
    let other = Digest::sha256_of(b"other");
    let e = block_on(t.manifest("p/app", &other)).expect_err("mismatch");
    assert_eq!(e.code, ErrorCode::DigestInvalid);

    let junk = scripted(|_, _| answer(200, &[], b"{\"not\": \"a manifest\"}"));
    let d = Digest::sha256_of(b"{\"not\": \"a manifest\"}");
    let e = block_on(junk.manifest("p/app", &d)).expect_err("junk");
    assert_eq!(e.code, ErrorCode::ManifestInvalid);
}

#[test]
fn a_tag_without_docker_content_digest_is_the_digest_of_the_bytes() {
    let t = scripted(|m, _| match *m {
        Method::HEAD => answer(200, &[], b""),
        _ => answer(200, &[], b"manifest bytes"),
    });
    let d = block_on(t.tag("p/app", "v1")).expect("tag");
    assert_eq!(d, Some(Digest::sha256_of(b"manifest bytes")));
    let methods: Vec<Method> = t
        .transport
        .seen
        .borrow()
        .iter()
        .map(|s| s.0.clone())
        .collect();
    assert_eq!(methods, [Method::HEAD, Method::GET]);
}

#[test]
fn a_remote_that_is_down_is_retryable_and_one_that_denies_is_not() {
    let down = scripted(|_, _| answer(503, &[], b""));
    let e = block_on(down.repositories(None, 10)).expect_err("down");
    assert!(retryable(&e), "{e:?}");
    let e = block_on(down.manifest("p/app", &Digest::sha256_of(b"x"))).expect_err("down");
    assert!(retryable(&e), "{e:?}");
    let denied = scripted(|_, _| {
        answer(
            403,
            &[],
            br#"{"errors":[{"code":"DENIED","message":"no"}]}"#,
        )
    });
    let e = block_on(denied.tags("p/app", None, 10)).expect_err("denied");
    assert_eq!(e.code, ErrorCode::Denied);
    assert!(!retryable(&e), "{e:?}");
    let none = scripted(|_, _| answer(404, &[], b""));
    assert!(
        block_on(none.tags("p/app", None, 10))
            .expect("404")
            .is_empty()
    );
    assert!(
        block_on(none.referrers("p/app", &Digest::sha256_of(b"x")))
            .expect("404")
            .is_empty()
    );
}
