//! The conformance suites every metadata and document store backend must pass.

use crate::error::StoreError;
use crate::model::Reference;
use crate::model::digest::Digest;
use crate::model::manifest::{self};
use crate::ports::*;
use bytes::Bytes;

/// The time the suites write at.
const AT: u64 = 1_700_000_000_000;

/// The conformance suite for a [`DocumentStore`].
pub async fn document_conformance<D: DocumentStore>(d: &D) {
    assert_eq!(d.get_doc("user", "alice").await.expect("get"), None);
    d.put_doc("user", "alice", b"1", true)
        .await
        .expect("create");
    let again = d.put_doc("user", "alice", b"2", true).await;
    assert!(
        matches!(again, Err(StoreError::Precondition(_))),
        "{again:?}"
    );
    d.put_doc("user", "alice", b"3", false)
        .await
        .expect("overwrite");
    assert_eq!(
        d.get_doc("user", "alice").await.expect("get"),
        Some(b"3".to_vec())
    );
    assert_eq!(
        d.get_doc("robot", "alice").await.expect("get"),
        None,
        "kinds are separate"
    );
    for id in ["p/a", "p/b", "p/c", "q/a", "pp/a"] {
        d.put_doc("member", id, id.as_bytes(), false)
            .await
            .expect("put");
    }
    let ids = |v: Vec<(String, Vec<u8>)>| v.into_iter().map(|(k, _)| k).collect::<Vec<_>>();
    assert_eq!(
        ids(d.list_docs("member", "p/", None, 10).await.expect("list")),
        ["p/a", "p/b", "p/c"]
    );
    assert_eq!(
        ids(d
            .list_docs("member", "p/", Some("p/a"), 1)
            .await
            .expect("list")),
        ["p/b"]
    );
    assert_eq!(
        ids(d.list_docs("member", "", None, 10).await.expect("list")).len(),
        5
    );
    assert!(d.delete_doc("member", "p/b").await.expect("delete"));
    assert!(!d.delete_doc("member", "p/b").await.expect("delete"));
    d.append_event("0000000000001-a", b"{}")
        .await
        .expect("event");
    d.flush_events().await.expect("flush");
    assert_eq!(
        ids(d.list_docs("audit", "", None, 10).await.expect("list")),
        ["0000000000001-a"]
    );
}

/// Links `d` into `repo` as the core does: the blob's record first (`touch_blob`, which the
/// bytes' commit or a mount makes), then the link.
pub async fn link<M: MetadataStore + BlobRecords>(
    m: &M,
    repo: &str,
    d: &Digest,
    size: u64,
    at_ms: u64,
) -> Result<(), StoreError> {
    m.touch_blob(d, size, at_ms).await?;
    m.link_blob(repo, d, size, at_ms).await
}

/// A stored manifest for tests: an OCI image manifest over `blobs`, with an optional subject.
pub fn test_manifest(
    blobs: &[Digest],
    subject: Option<&Digest>,
    artifact_type: Option<&str>,
) -> StoredManifest {
    let desc = |d: &Digest| serde_json::json!({"mediaType": "application/octet-stream", "digest": d, "size": 1});
    let mut doc = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": manifest::OCI_MANIFEST,
        "config": desc(&blobs[0]),
        "layers": blobs[1..].iter().map(desc).collect::<Vec<_>>(),
    });
    if let Some(s) = subject {
        doc["subject"] = desc(s);
    }
    if let Some(a) = artifact_type {
        doc["artifactType"] = serde_json::json!(a);
    }
    let bytes = Bytes::from(doc.to_string());
    let digest = Digest::sha256_of(&bytes);
    let info = manifest::parse(&bytes, None, digest).expect("test manifest is valid");
    StoredManifest { info, bytes }
}

/// The conformance suite for a [`MetadataStore`]: every backend must pass it, starting empty.
pub async fn metadata_conformance<M: MetadataStore + BlobRecords>(m: &M) {
    let d = |n: u8| Digest::sha256_of(&[n]);
    // Repositories and blob links.
    assert!(!m.repository_exists("c/one").await.expect("exists"));
    assert_eq!(m.blob_link("c/one", &d(1)).await.expect("link"), None);
    link(m, "c/one", &d(1), 11, AT).await.expect("link");
    link(m, "c/one", &d(2), 22, AT).await.expect("link");
    assert!(m.repository_exists("c/one").await.expect("exists"));
    assert_eq!(m.blob_link("c/one", &d(1)).await.expect("link"), Some(11));
    assert_eq!(
        m.blob_link("c/two", &d(1)).await.expect("link"),
        None,
        "links are per repository"
    );
    assert_eq!(
        m.missing_blobs("c/one", &[d(1), d(3), d(2)])
            .await
            .expect("missing"),
        vec![d(3)]
    );
    assert!(m.unlink_blob("c/one", &d(2), AT).await.expect("unlink"));
    assert!(!m.unlink_blob("c/one", &d(2), AT).await.expect("unlink"));
    link(m, "c/one", &d(2), 22, AT).await.expect("link");

    // Manifests, tags, referrers.
    let base = test_manifest(&[d(1), d(2)], None, None);
    m.put_manifest("c/one", &base, &["v1"], AT)
        .await
        .expect("put");
    m.put_manifest("c/one", &base, &["latest"], AT)
        .await
        .expect("put");
    let by_tag = m
        .manifest("c/one", &Reference::parse("v1").expect("a tag"))
        .await
        .expect("get")
        .expect("found");
    assert_eq!(by_tag.bytes, base.bytes);
    assert_eq!(by_tag.info, base.info);
    let by_digest = m
        .manifest("c/one", &Reference::Digest(base.info.digest.clone()))
        .await
        .expect("get")
        .expect("found");
    assert_eq!(by_digest.bytes, base.bytes);
    assert!(
        m.manifest("c/two", &Reference::parse("v1").expect("a tag"))
            .await
            .expect("get")
            .is_none()
    );
    assert_eq!(
        m.missing_manifests("c/one", &[base.info.digest.clone(), d(9)])
            .await
            .expect("missing"),
        vec![d(9)]
    );
    let sig = test_manifest(
        &[d(1)],
        Some(&base.info.digest),
        Some("application/vnd.example.sig"),
    );
    let sbom = test_manifest(
        &[d(2)],
        Some(&base.info.digest),
        Some("application/vnd.example.sbom"),
    );
    m.put_manifest("c/one", &sig, &[], AT).await.expect("put");
    m.put_manifest("c/one", &sbom, &[], AT).await.expect("put");
    let mut refs = m
        .referrers("c/one", &base.info.digest)
        .await
        .expect("referrers");
    refs.sort_by(|a, b| a.digest.cmp(&b.digest));
    let mut want = vec![
        sig.info.referrer_descriptor(),
        sbom.info.referrer_descriptor(),
    ];
    want.sort_by(|a, b| a.digest.cmp(&b.digest));
    assert_eq!(refs, want);
    assert!(
        m.referrers("c/two", &base.info.digest)
            .await
            .expect("referrers")
            .is_empty()
    );

    // Tag pages.
    for t in ["a", "b", "c", "d"] {
        m.put_manifest("c/one", &base, &[t], AT).await.expect("put");
    }
    let p = m
        .list_tags("c/one", None, 3)
        .await
        .expect("tags")
        .expect("repo");
    assert_eq!(
        p,
        Page {
            items: vec!["a".into(), "b".into(), "c".into()],
            more: true
        }
    );
    let p = m
        .list_tags("c/one", Some("c"), 10)
        .await
        .expect("tags")
        .expect("repo");
    assert_eq!(
        p,
        Page {
            items: vec!["d".into(), "latest".into(), "v1".into()],
            more: false
        }
    );
    assert_eq!(
        m.list_tags("c/one", Some("v1"), 10)
            .await
            .expect("tags")
            .expect("repo")
            .items
            .len(),
        0
    );
    assert!(
        m.list_tags("c/none", None, 10)
            .await
            .expect("tags")
            .is_none()
    );

    // Deletes: a tag alone; a manifest with its tags and referrer entry.
    assert!(m.delete_tag("c/one", "a", AT).await.expect("delete"));
    assert!(!m.delete_tag("c/one", "a", AT).await.expect("delete"));
    assert!(
        m.manifest("c/one", &Reference::parse("b").expect("a tag"))
            .await
            .expect("get")
            .is_some()
    );
    assert!(
        m.delete_manifest("c/one", &sig.info.digest, AT)
            .await
            .expect("delete")
    );
    assert_eq!(
        m.referrers("c/one", &base.info.digest)
            .await
            .expect("referrers")
            .len(),
        1
    );
    assert!(
        m.delete_manifest("c/one", &base.info.digest, AT)
            .await
            .expect("delete")
    );
    assert!(
        !m.delete_manifest("c/one", &base.info.digest, AT)
            .await
            .expect("delete")
    );
    assert!(
        m.manifest("c/one", &Reference::parse("b").expect("a tag"))
            .await
            .expect("get")
            .is_none()
    );
    let p = m
        .list_tags("c/one", None, 100)
        .await
        .expect("tags")
        .expect("repo still known");
    assert!(
        p.items.is_empty(),
        "tags of a deleted manifest are gone: {p:?}"
    );

    // Catalog.
    link(m, "c/two", &d(1), 11, AT).await.expect("link");
    link(m, "a/zero", &d(1), 11, AT).await.expect("link");
    let p = m.list_repositories(None, 2).await.expect("catalog");
    assert_eq!(
        p,
        Page {
            items: vec!["a/zero".into(), "c/one".into()],
            more: true
        }
    );
    let p = m
        .list_repositories(Some("c/one"), 2)
        .await
        .expect("catalog");
    assert_eq!(
        p,
        Page {
            items: vec!["c/two".into()],
            more: false
        }
    );

    // Uploads: conditional update on the offset.
    let up = UploadRecord {
        id: "u1".into(),
        repo: "c/one".into(),
        offset: 0,
        hash_state: vec![1, 2, 3],
        store_state: "s".into(),
        digest: None,
        created_ms: 1000,
        updated_ms: 1000,
    };
    m.create_upload(&up).await.expect("create");
    assert_eq!(m.upload("u1").await.expect("get"), Some(up.clone()));
    assert!(m.upload("u2").await.expect("get").is_none());
    let next = UploadRecord {
        offset: 5,
        updated_ms: 2000,
        store_state: "t".into(),
        ..up.clone()
    };
    m.update_upload(&next, 0).await.expect("update");
    let lost = m
        .update_upload(
            &UploadRecord {
                offset: 9,
                ..up.clone()
            },
            0,
        )
        .await;
    assert!(matches!(lost, Err(StoreError::Precondition(_))), "{lost:?}");
    assert_eq!(m.upload("u1").await.expect("get"), Some(next.clone()));
    let stale = m.stale_uploads(1500, 10).await.expect("stale");
    assert!(stale.is_empty(), "{stale:?}");
    let stale = m.stale_uploads(2500, 10).await.expect("stale");
    assert_eq!(stale, vec![next.clone()]);
    let dup = m.create_upload(&up).await;
    assert!(matches!(dup, Err(StoreError::Precondition(_))), "{dup:?}");
    m.delete_upload("u1").await.expect("delete");
    assert!(m.upload("u1").await.expect("get").is_none());
    let gone = m.update_upload(&next, 5).await;
    assert!(matches!(gone, Err(StoreError::NotFound)), "{gone:?}");

    // Claiming an upload (the closing PUT): only at its offset, and only once.
    m.create_upload(&next).await.expect("create");
    let moved = m.claim_upload("u1", 4).await;
    assert!(
        matches!(moved, Err(StoreError::Precondition(_))),
        "{moved:?}"
    );
    assert_eq!(m.upload("u1").await.expect("get"), Some(next.clone()));
    m.claim_upload("u1", 5).await.expect("claim");
    assert!(m.upload("u1").await.expect("get").is_none());
    let again = m.claim_upload("u1", 5).await;
    assert!(matches!(again, Err(StoreError::NotFound)), "{again:?}");

    // Several tags in one write (a repeated one counts once: one DynamoDB transaction may
    // not touch an item twice); a later write moves some of them and leaves the others.
    let other = test_manifest(&[d(2), d(1)], None, None);
    let tagged = |t: &'static str| async move {
        m.manifest("z/multi", &Reference::parse(t).expect("a tag"))
            .await
            .expect("get")
            .map(|s| s.info.digest)
    };
    for repo in ["z/multi", "z/many"] {
        for (n, size) in [(1, 11), (2, 22)] {
            link(m, repo, &d(n), size, AT).await.expect("link");
        }
    }
    m.put_manifest("z/multi", &base, &["x", "y", "z", "y"], AT)
        .await
        .expect("put with tags");
    for t in ["x", "y", "z"] {
        assert_eq!(tagged(t).await, Some(base.info.digest.clone()), "{t}");
    }
    m.put_manifest("z/multi", &other, &["y", "w"], AT)
        .await
        .expect("put moving tags");
    for (t, want) in [("w", &other), ("x", &base), ("y", &other), ("z", &base)] {
        assert_eq!(tagged(t).await, Some(want.info.digest.clone()), "{t}");
    }
    assert_eq!(
        m.list_tags("z/multi", None, 10)
            .await
            .expect("tags")
            .expect("repo")
            .items,
        ["w", "x", "y", "z"]
    );
    let many: Vec<String> = (0..MAX_TAGS_PER_PUT).map(|i| format!("t{i:03}")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    m.put_manifest("z/many", &base, &many, AT)
        .await
        .expect("put with the most tags one PUT may set");
    assert_eq!(
        m.list_tags("z/many", None, 1000)
            .await
            .expect("tags")
            .expect("repo")
            .items
            .len(),
        MAX_TAGS_PER_PUT
    );

    // A second create of one upload id is refused and changes nothing; an update after the
    // delete (a PATCH that finished after a cancel) is NotFound and creates nothing, as is
    // one of an id never created; deleting a missing upload is fine (cancel and cleanup race).
    let first = UploadRecord {
        id: "u-dup".into(),
        ..up.clone()
    };
    m.create_upload(&first).await.expect("create");
    let dup = m
        .create_upload(&UploadRecord {
            offset: 7,
            store_state: "other".into(),
            ..first.clone()
        })
        .await;
    assert!(matches!(dup, Err(StoreError::Precondition(_))), "{dup:?}");
    assert_eq!(m.upload("u-dup").await.expect("get"), Some(first.clone()));
    m.delete_upload("u-dup").await.expect("delete");
    let after = UploadRecord {
        offset: 3,
        ..first.clone()
    };
    let gone = m.update_upload(&after, 0).await;
    assert!(matches!(gone, Err(StoreError::NotFound)), "{gone:?}");
    assert!(m.upload("u-dup").await.expect("get").is_none());
    let never = UploadRecord {
        id: "u-never".into(),
        ..after
    };
    let gone = m.update_upload(&never, 0).await;
    assert!(matches!(gone, Err(StoreError::NotFound)), "{gone:?}");
    assert!(m.upload("u-never").await.expect("get").is_none());
    m.delete_upload("u-never")
        .await
        .expect("deleting a missing upload");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{MemoryDocs, MemoryMetadata};

    #[test]
    fn memory_metadata_conforms() {
        futures_executor::block_on(metadata_conformance(&MemoryMetadata::default()));
        futures_executor::block_on(document_conformance(&MemoryDocs::default()));
    }

    #[test]
    fn manifest_records_round_trip_and_refuse_garbage() {
        let m = test_manifest(&[Digest::sha256_of(b"a")], None, None);
        let raw = m.to_record().expect("encode");
        let back = StoredManifest::from_record(&raw).expect("decode");
        assert_eq!((back.info, back.bytes), (m.info, m.bytes));
        for bad in [
            &b""[..],
            &[0, 0],
            &[0, 0, 0, 9, b'{'],
            &[255, 255, 255, 255],
        ] {
            assert!(StoredManifest::from_record(bad).is_err(), "{bad:?}");
        }
        let mut cut = raw.clone();
        cut[3] = cut[3].wrapping_add(1);
        assert!(
            StoredManifest::from_record(&cut).is_err(),
            "info length off by one"
        );
    }
}
