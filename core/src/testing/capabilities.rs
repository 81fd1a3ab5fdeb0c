//! The conformance suites of the metadata stores' optional abilities. Each takes a store
//! that may already hold other suites' content (each uses repositories of its own), and
//! [`all_capabilities_conformance`] runs them all.

use super::conformance::{link, test_manifest};
use crate::error::StoreError;
use crate::model::Digest;
use crate::ports::*;

const T0: u64 = 1_750_000_000_000;

fn d(tag: &str, n: u8) -> Digest {
    Digest::sha256_of(format!("{tag}-{n}").as_bytes())
}

async fn all_entries<M: Outbox>(m: &M) -> Vec<OutboxEntry> {
    let mut out: Vec<OutboxEntry> = Vec::new();
    loop {
        let after = out.last().map(|e| e.seq.clone());
        let page = m.outbox_after(after.as_deref(), 100).await.expect("outbox");
        if page.is_empty() {
            return out;
        }
        out.extend(page);
    }
}

/// The manifest index: listings with push, pull and link times, and `repositories_with`.
pub async fn index_conformance<M: MetadataStore + BlobRecords + ManifestIndex + PullTimes>(m: &M) {
    let (a, b) = (d("ix", 1), d("ix", 2));
    link(m, "ix/one", &a, 10, T0).await.expect("link");
    link(m, "ix/one", &b, 20, T0 + 1).await.expect("link");
    link(m, "ix/two", &a, 10, T0 + 2).await.expect("link");
    let img = test_manifest(&[a.clone(), b.clone()], None, None);
    m.put_manifest("ix/one", &img, &["v1", "latest"], T0 + 10)
        .await
        .expect("put");
    let sig = test_manifest(
        std::slice::from_ref(&a),
        Some(&img.info.digest),
        Some("application/x-sig"),
    );
    m.put_manifest("ix/one", &sig, &[], T0 + 20)
        .await
        .expect("put");

    let ms = m.list_manifests("ix/one", None, 10).await.expect("list");
    assert_eq!(ms.len(), 2, "{ms:?}");
    let mut want = [img.info.digest.to_string(), sig.info.digest.to_string()];
    want.sort();
    let got: Vec<String> = ms.iter().map(|e| e.digest.to_string()).collect();
    assert_eq!(got, want, "manifests in digest order");
    let e = ms
        .iter()
        .find(|e| e.digest == img.info.digest)
        .expect("img");
    assert_eq!((e.pushed_ms, e.pulled_ms), (Some(T0 + 10), None));
    assert_eq!((e.size, e.subject.as_ref()), (img.info.size, None));
    assert_eq!(e.media_type, img.info.media_type);
    let s = ms
        .iter()
        .find(|e| e.digest == sig.info.digest)
        .expect("sig");
    assert_eq!(s.subject.as_ref(), Some(&img.info.digest));
    let page = m
        .list_manifests("ix/one", Some(&ms[0].digest), 10)
        .await
        .expect("list");
    assert_eq!(page.len(), 1, "after the first");
    assert!(
        m.list_manifests("ix/on", None, 10)
            .await
            .expect("list")
            .is_empty()
    );

    let tags = m.list_tag_entries("ix/one", None, 10).await.expect("tags");
    let names: Vec<&str> = tags.iter().map(|t| t.tag.as_str()).collect();
    assert_eq!(names, ["latest", "v1"]);
    assert!(
        tags.iter()
            .all(|t| t.digest == img.info.digest && t.pushed_ms == Some(T0 + 10))
    );
    let after = m
        .list_tag_entries("ix/one", Some("latest"), 10)
        .await
        .expect("tags");
    assert_eq!(after.len(), 1);

    let links = m.list_links("ix/one", None, 10).await.expect("links");
    assert_eq!(links.len(), 2);
    let la = links.iter().find(|l| l.digest == a).expect("a");
    assert_eq!(
        (la.size, la.linked_ms, la.refs),
        (10, Some(T0), 2),
        "a: by img and sig"
    );
    let lb = links.iter().find(|l| l.digest == b).expect("b");
    assert_eq!((lb.size, lb.linked_ms, lb.refs), (20, Some(T0 + 1), 1));
    // Re-linking updates the link time, never the count of references.
    link(m, "ix/one", &b, 20, T0 + 30).await.expect("link");
    let lb = m.list_links("ix/one", None, 10).await.expect("links");
    let lb = lb.iter().find(|l| l.digest == b).expect("b");
    assert_eq!((lb.linked_ms, lb.refs), (Some(T0 + 30), 1));

    let with = m.repositories_with(&a, None, 10).await.expect("with");
    assert_eq!(with, ["ix/one", "ix/two"]);
    assert_eq!(
        m.repositories_with(&a, Some("ix/one"), 10)
            .await
            .expect("with"),
        ["ix/two"]
    );
    assert_eq!(
        m.repositories_with(&img.info.digest, None, 10)
            .await
            .expect("with"),
        ["ix/one"],
        "a manifest is held by its repository"
    );

    // Pulls: recorded, never moved back, nothing for an unknown manifest.
    m.note_pull("ix/one", &img.info.digest, T0 + 3_600_000, None)
        .await
        .expect("pull");
    m.note_pull("ix/one", &img.info.digest, T0, None)
        .await
        .expect("pull");
    m.note_pull("ix/one", &d("ix", 9), T0, None)
        .await
        .expect("pull of nothing");
    let ms = m.list_manifests("ix/one", None, 10).await.expect("list");
    let e = ms
        .iter()
        .find(|e| e.digest == img.info.digest)
        .expect("img");
    assert_eq!(e.pulled_ms, Some(T0 + 3_600_000));

    // Deletes take their entries with them.
    assert!(
        m.delete_tag("ix/one", "latest", T0 + 40)
            .await
            .expect("delete tag")
    );
    let names: Vec<String> = m
        .list_tag_entries("ix/one", None, 10)
        .await
        .expect("tags")
        .into_iter()
        .map(|t| t.tag)
        .collect();
    assert_eq!(names, ["v1"]);
    assert!(
        m.delete_manifest("ix/one", &img.info.digest, T0 + 50)
            .await
            .expect("delete")
    );
    assert!(
        m.list_tag_entries("ix/one", None, 10)
            .await
            .expect("tags")
            .is_empty()
    );
    let ms = m.list_manifests("ix/one", None, 10).await.expect("list");
    assert_eq!(ms.len(), 1);
    let links = m.list_links("ix/one", None, 10).await.expect("links");
    let refs: Vec<(bool, u64)> = links.iter().map(|l| (l.digest == a, l.refs)).collect();
    assert!(
        refs.contains(&(true, 1)) && refs.contains(&(false, 0)),
        "{refs:?}"
    );
    assert!(
        m.repositories_with(&img.info.digest, None, 10)
            .await
            .expect("with")
            .is_empty()
    );
    assert!(m.unlink_blob("ix/two", &a, T0 + 60).await.expect("unlink"));
    assert_eq!(
        m.repositories_with(&a, None, 10).await.expect("with"),
        ["ix/one"]
    );
}

/// Blob records: counters kept by links and manifests, and the mark/delete protocol.
pub async fn records_conformance<M: MetadataStore + BlobRecords>(m: &M) {
    let (a, b, c) = (d("rec", 1), d("rec", 2), d("rec", 3));
    assert_eq!(m.blob_record(&a).await.expect("record"), None);
    // Bytes committed, not linked yet: a record with no links, on the work list.
    m.touch_blob(&a, 5, T0).await.expect("touch");
    let r = m.blob_record(&a).await.expect("record").expect("made");
    assert_eq!(
        (r.size, r.links, r.refs, r.touched_ms, r.state),
        (5, 0, 0, T0, BlobState::Live)
    );
    let unlinked = |v: Vec<BlobRecord>| v.into_iter().map(|r| r.digest).collect::<Vec<_>>();
    assert!(unlinked(m.unlinked_blobs(None, 1000).await.expect("list")).contains(&a));
    link(m, "rec/one", &a, 5, T0 + 1).await.expect("link");
    link(m, "rec/two", &a, 5, T0 + 2).await.expect("link");
    link(m, "rec/one", &a, 5, T0 + 3).await.expect("link again");
    let r = m.blob_record(&a).await.expect("record").expect("there");
    assert_eq!((r.links, r.touched_ms), (2, T0 + 3), "two repositories");
    assert!(!unlinked(m.unlinked_blobs(None, 1000).await.expect("list")).contains(&a));
    link(m, "rec/one", &b, 7, T0 + 4).await.expect("link");
    let img = test_manifest(&[a.clone(), b.clone(), a.clone()], None, None);
    m.put_manifest("rec/one", &img, &["v1"], T0 + 5)
        .await
        .expect("put");
    m.put_manifest("rec/one", &img, &["v2"], T0 + 6)
        .await
        .expect("put again");
    let ra = m.blob_record(&a).await.expect("record").expect("a");
    assert_eq!(
        ra.refs, 1,
        "a manifest counts once, however often it lists a blob or is put"
    );

    // Mark: only unlinked, untouched since the cutoff.
    assert!(
        !m.mark_blob(&a, T0 + 100, T0 + 200).await.expect("mark"),
        "linked"
    );
    assert!(m.unlink_blob("rec/two", &a, T0 + 7).await.expect("unlink"));
    assert!(
        m.delete_manifest("rec/one", &img.info.digest, T0 + 8)
            .await
            .expect("delete")
    );
    assert!(m.unlink_blob("rec/one", &a, T0 + 9).await.expect("unlink"));
    let ra = m.blob_record(&a).await.expect("record").expect("a");
    assert_eq!((ra.links, ra.refs), (0, 0));
    assert!(unlinked(m.unlinked_blobs(None, 1000).await.expect("list")).contains(&a));
    assert!(
        !m.mark_blob(&a, T0 + 2, T0 + 200).await.expect("mark"),
        "touched after the cutoff"
    );
    assert!(m.mark_blob(&a, T0 + 100, T0 + 200).await.expect("mark"));
    assert!(
        !m.mark_blob(&a, T0 + 100, T0 + 201).await.expect("mark"),
        "already marked"
    );
    // A HEAD clears the mark; a delete that began from the old mark then fails.
    assert_eq!(
        m.clear_blob_mark(&a, T0 + 300).await.expect("clear"),
        Cleared::Live
    );
    let ra = m.blob_record(&a).await.expect("record").expect("a");
    assert_eq!((ra.state, ra.touched_ms), (BlobState::Live, T0 + 300));
    assert!(
        !m.begin_blob_delete(&a, T0 + 200, T0 + 400)
            .await
            .expect("begin")
    );
    assert_eq!(
        m.clear_blob_mark(&a, T0 + 301).await.expect("clear"),
        Cleared::Live
    );
    let ra = m.blob_record(&a).await.expect("record").expect("a");
    assert_eq!(
        ra.touched_ms,
        T0 + 300,
        "clearing a live record writes nothing"
    );
    // A link of a marked blob makes it live.
    assert!(m.mark_blob(&a, T0 + 1000, T0 + 1001).await.expect("mark"));
    link(m, "rec/three", &a, 5, T0 + 1002)
        .await
        .expect("link a marked blob");
    let ra = m.blob_record(&a).await.expect("record").expect("a");
    assert_eq!((ra.state, ra.links), (BlobState::Live, 1));
    assert!(
        !m.begin_blob_delete(&a, T0 + 1001, T0 + 1003)
            .await
            .expect("begin")
    );
    assert!(
        m.unlink_blob("rec/three", &a, T0 + 1004)
            .await
            .expect("unlink")
    );
    // The whole way: mark, begin, then every use is refused, then forget.
    assert!(m.mark_blob(&a, T0 + 2000, T0 + 2001).await.expect("mark"));
    assert!(
        !m.forget_blob(&a).await.expect("forget"),
        "only a deleting record"
    );
    assert!(
        m.begin_blob_delete(&a, T0 + 2001, T0 + 2002)
            .await
            .expect("begin")
    );
    let ra = m.blob_record(&a).await.expect("record").expect("a");
    assert_eq!(
        ra.state,
        BlobState::Deleting {
            since_ms: T0 + 2002
        }
    );
    assert_eq!(
        m.clear_blob_mark(&a, T0 + 2003).await.expect("clear"),
        Cleared::Gone
    );
    let refused = link(m, "rec/one", &a, 5, T0 + 2004).await;
    assert!(
        matches!(refused, Err(StoreError::Precondition(_))),
        "{refused:?}"
    );
    assert_eq!(
        m.blob_link("rec/one", &a).await.expect("link"),
        None,
        "nothing written"
    );
    let refused = m.touch_blob(&a, 5, T0 + 2005).await;
    assert!(
        matches!(refused, Err(StoreError::Precondition(_))),
        "{refused:?}"
    );
    link(m, "rec/one", &c, 1, T0 + 2006).await.expect("link");
    let uses_a = test_manifest(&[c.clone(), a.clone()], None, None);
    let refused = m.put_manifest("rec/one", &uses_a, &["x"], T0 + 2007).await;
    assert!(
        matches!(refused, Err(StoreError::Precondition(_))),
        "{refused:?}"
    );
    assert!(
        m.manifest(
            "rec/one",
            &crate::model::Reference::parse("x").expect("a tag")
        )
        .await
        .expect("get")
        .is_none(),
        "a manifest over a blob being deleted is not stored"
    );
    assert!(m.forget_blob(&a).await.expect("forget"));
    assert_eq!(m.blob_record(&a).await.expect("record"), None);
    assert!(!unlinked(m.unlinked_blobs(None, 1000).await.expect("list")).contains(&a));
    // Once forgotten, the digest is new again.
    link(m, "rec/one", &a, 5, T0 + 3000)
        .await
        .expect("link after forget");
    assert_eq!(
        m.blob_record(&a).await.expect("record").map(|r| r.links),
        Some(1)
    );

    // Mark and begin in one write: the same conditions, straight to Deleting.
    let e = d("rec", 5);
    link(m, "rec/one", &e, 9, T0 + 4000).await.expect("link");
    assert!(
        !m.begin_unused_blob_delete(&e, T0 + 5000, T0 + 5001)
            .await
            .expect("begin"),
        "linked"
    );
    assert!(
        m.unlink_blob("rec/one", &e, T0 + 4001)
            .await
            .expect("unlink")
    );
    assert!(
        !m.begin_unused_blob_delete(&e, T0 + 3999, T0 + 5001)
            .await
            .expect("begin"),
        "touched after the cutoff"
    );
    assert!(
        m.begin_unused_blob_delete(&e, T0 + 5000, T0 + 5001)
            .await
            .expect("begin")
    );
    let re = m.blob_record(&e).await.expect("record").expect("e");
    assert_eq!(
        re.state,
        BlobState::Deleting {
            since_ms: T0 + 5001
        }
    );
    assert!(
        !m.begin_unused_blob_delete(&e, T0 + 5000, T0 + 5002)
            .await
            .expect("begin"),
        "already being deleted"
    );
    let refused = link(m, "rec/one", &e, 9, T0 + 5003).await;
    assert!(
        matches!(refused, Err(StoreError::Precondition(_))),
        "{refused:?}"
    );
    assert!(m.forget_blob(&e).await.expect("forget"));
    assert!(
        !m.begin_unused_blob_delete(&e, T0 + 6000, T0 + 6001)
            .await
            .expect("begin"),
        "no record"
    );
}

/// The outbox: one entry per change, in the change's write, in order.
pub async fn outbox_conformance<M: MetadataStore + BlobRecords + Outbox>(m: &M) {
    let before = all_entries(m).await;
    let a = d("ob", 1);
    link(m, "ob/one", &a, 3, T0).await.expect("link");
    let img = test_manifest(std::slice::from_ref(&a), None, None);
    m.put_manifest("ob/one", &img, &["v1"], T0 + 1)
        .await
        .expect("put");
    assert!(
        m.delete_tag("ob/one", "v1", T0 + 2)
            .await
            .expect("delete tag")
    );
    assert!(!m.delete_tag("ob/one", "v1", T0 + 3).await.expect("no tag"));
    assert!(
        m.delete_manifest("ob/one", &img.info.digest, T0 + 4)
            .await
            .expect("delete")
    );
    assert!(m.unlink_blob("ob/one", &a, T0 + 5).await.expect("unlink"));
    let all = all_entries(m).await;
    let new: Vec<&OutboxEntry> = all
        .iter()
        .filter(|e| !before.iter().any(|b| b.seq == e.seq))
        .collect();
    let repo = |c: &Change| match c {
        Change::ManifestPut { repository, .. }
        | Change::ManifestDeleted { repository, .. }
        | Change::TagDeleted { repository, .. }
        | Change::BlobLinked { repository, .. }
        | Change::BlobUnlinked { repository, .. } => repository.clone(),
    };
    let mine: Vec<Change> = new
        .iter()
        .filter(|e| repo(&e.change) == "ob/one")
        .map(|e| e.change.clone())
        .collect();
    let r = || "ob/one".to_owned();
    assert_eq!(
        mine,
        [
            Change::BlobLinked {
                repository: r(),
                digest: a.clone(),
                size: 3
            },
            Change::ManifestPut {
                repository: r(),
                digest: img.info.digest.clone(),
                tags: vec!["v1".into()]
            },
            Change::TagDeleted {
                repository: r(),
                tag: "v1".into()
            },
            Change::ManifestDeleted {
                repository: r(),
                digest: img.info.digest.clone()
            },
            Change::BlobUnlinked {
                repository: r(),
                digest: a.clone()
            },
        ],
        "one entry per change that changed something, in order"
    );
    let seqs: Vec<&str> = all.iter().map(|e| e.seq.as_str()).collect();
    let mut sorted = seqs.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(seqs, sorted, "entries come in seq order, each once");
    assert!(!new.is_empty());
    let last = all.last().expect("entries").seq.clone();
    let trimmed = m.outbox_trim(&last, 10_000).await.expect("trim");
    assert_eq!(
        trimmed,
        all.len(),
        "trims everything up to and including `upto`"
    );
    assert!(m.outbox_after(None, 10).await.expect("outbox").is_empty());
}

/// Conditional tag writes.
pub async fn tags_conformance<M: MetadataStore + BlobRecords + ConditionalTags>(m: &M) {
    let a = d("ct", 1);
    link(m, "ct/one", &a, 1, T0).await.expect("link");
    let one = test_manifest(std::slice::from_ref(&a), None, None);
    let two = test_manifest(std::slice::from_ref(&a), None, Some("application/x-two"));
    m.put_manifest_expecting("ct/one", &one, &[("v1", TagExpect::Absent)], T0 + 1)
        .await
        .expect("absent tag set");
    let refused = m
        .put_manifest_expecting(
            "ct/one",
            &two,
            &[("v2", TagExpect::Absent), ("v1", TagExpect::Absent)],
            T0 + 2,
        )
        .await;
    assert!(
        matches!(refused, Err(StoreError::Precondition(_))),
        "{refused:?}"
    );
    let tag = |t: &str| crate::model::Reference::parse(t).expect("a tag");
    assert!(
        m.manifest("ct/one", &tag("v2"))
            .await
            .expect("get")
            .is_none(),
        "nothing written"
    );
    assert!(
        m.manifest(
            "ct/one",
            &crate::model::Reference::Digest(two.info.digest.clone())
        )
        .await
        .expect("get")
        .is_none(),
        "not even the manifest"
    );
    let wrong = m
        .put_manifest_expecting(
            "ct/one",
            &two,
            &[("v1", TagExpect::At(two.info.digest.clone()))],
            T0 + 3,
        )
        .await;
    assert!(
        matches!(wrong, Err(StoreError::Precondition(_))),
        "{wrong:?}"
    );
    m.put_manifest_expecting(
        "ct/one",
        &two,
        &[
            ("v1", TagExpect::At(one.info.digest.clone())),
            ("v2", TagExpect::Any),
        ],
        T0 + 4,
    )
    .await
    .expect("moved from the expected digest");
    let now = m
        .manifest("ct/one", &tag("v1"))
        .await
        .expect("get")
        .expect("v1");
    assert_eq!(now.info.digest, two.info.digest);
    let wrong = m
        .delete_tag_expecting("ct/one", "v1", &one.info.digest, T0 + 5)
        .await;
    assert!(
        matches!(wrong, Err(StoreError::Precondition(_))),
        "{wrong:?}"
    );
    assert!(
        m.manifest("ct/one", &tag("v1"))
            .await
            .expect("get")
            .is_some(),
        "kept"
    );
    assert!(
        m.delete_tag_expecting("ct/one", "v1", &two.info.digest, T0 + 6)
            .await
            .expect("delete")
    );
    assert!(
        !m.delete_tag_expecting("ct/one", "v1", &two.info.digest, T0 + 7)
            .await
            .expect("gone")
    );
    assert!(
        m.manifest("ct/one", &tag("v1"))
            .await
            .expect("get")
            .is_none()
    );
}

/// Usage: distinct blobs per project, in the link's write.
pub async fn usage_conformance<M: MetadataStore + BlobRecords + UsageCounters>(m: &M) {
    let (a, b) = (d("us", 1), d("us", 2));
    assert_eq!(
        m.project_usage("usp").await.expect("usage"),
        Usage::default()
    );
    link(m, "usp/one", &a, 100, T0).await.expect("link");
    link(m, "usp/two", &a, 100, T0).await.expect("link");
    link(m, "usp/one", &a, 100, T0).await.expect("again");
    link(m, "usp/one", &b, 50, T0).await.expect("link");
    link(m, "uspx/one", &b, 50, T0)
        .await
        .expect("another project");
    assert_eq!(
        m.project_usage("usp").await.expect("usage"),
        Usage {
            bytes: 150,
            blobs: 2
        }
    );
    assert_eq!(
        m.project_usage("uspx").await.expect("usage"),
        Usage {
            bytes: 50,
            blobs: 1
        }
    );
    let counts =
        |p: &'static str, x: Digest| async move { m.counts_blob(p, &x).await.expect("counts") };
    assert!(counts("usp", a.clone()).await && counts("usp", b.clone()).await);
    assert!(counts("uspx", b.clone()).await);
    assert!(!counts("uspx", a.clone()).await, "a is in usp only");
    assert!(
        !counts("us", a.clone()).await,
        "a project whose name is a prefix"
    );
    assert!(m.unlink_blob("usp/one", &a, T0).await.expect("unlink"));
    assert_eq!(
        m.project_usage("usp").await.expect("usage").bytes,
        150,
        "still in usp/two"
    );
    assert!(counts("usp", a.clone()).await, "still in usp/two");
    assert!(m.unlink_blob("usp/two", &a, T0).await.expect("unlink"));
    assert!(
        !counts("usp", a.clone()).await,
        "no repository of usp links it"
    );
    assert_eq!(
        m.project_usage("usp").await.expect("usage"),
        Usage {
            bytes: 50,
            blobs: 1
        }
    );
    assert!(
        !m.unlink_blob("usp/two", &a, T0)
            .await
            .expect("unlink nothing")
    );
    assert_eq!(
        m.project_usage("usp").await.expect("usage"),
        Usage {
            bytes: 50,
            blobs: 1
        }
    );
}

/// Every optional ability's suite, on one store.
pub async fn all_capabilities_conformance<M>(m: &M)
where
    M: MetadataStore
        + ManifestIndex
        + PullTimes
        + BlobRecords
        + LinkCollection
        + Outbox
        + ConditionalTags
        + UsageCounters,
{
    super::links_conformance(m).await;
    index_conformance(m).await;
    records_conformance(m).await;
    tags_conformance(m).await;
    usage_conformance(m).await;
    outbox_conformance(m).await;
}
