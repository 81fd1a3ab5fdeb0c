//! The conformance suite of [`LinkCollection`], and of the rules that make it safe: a link
//! needs the blob's record, and a manifest `PUT` fails in its own write when what it
//! references is no longer in the repository.

use super::conformance::{link, test_manifest};
use crate::error::StoreError;
use crate::model::Digest;
use crate::model::manifest;
use crate::ports::*;
use bytes::Bytes;

const T0: u64 = 1_760_000_000_000;
const MIN: u64 = 60_000;

fn d(n: u8) -> Digest {
    Digest::sha256_of(format!("links-{n}").as_bytes())
}

/// An OCI index over `children`.
pub fn test_index(children: &[Digest]) -> StoredManifest {
    let doc = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": manifest::OCI_INDEX,
        "manifests": children.iter().map(|c| serde_json::json!({
            "mediaType": manifest::OCI_MANIFEST, "digest": c, "size": 1
        })).collect::<Vec<_>>(),
    });
    let bytes = Bytes::from(doc.to_string());
    let digest = Digest::sha256_of(&bytes);
    let info = manifest::parse(&bytes, None, digest).expect("test index is valid");
    StoredManifest { info, bytes }
}

/// Every link on the work list, read `page` at a time from the cursor of the last.
pub async fn all_unreferenced_links<M: LinkCollection>(
    m: &M,
    page: usize,
) -> Vec<UnreferencedLink> {
    let mut out: Vec<UnreferencedLink> = Vec::new();
    loop {
        let after = out.last().map(|l| LinkCursor {
            repo: l.repo.clone(),
            digest: l.digest.clone(),
        });
        let next = m
            .unreferenced_links(after.as_ref(), page)
            .await
            .expect("unreferenced links");
        if next.is_empty() {
            return out;
        }
        out.extend(next);
    }
}

async fn ours<M: LinkCollection>(m: &M) -> Vec<(String, Digest, u64, Option<u64>)> {
    all_unreferenced_links(m, 2)
        .await
        .into_iter()
        .filter(|l| l.repo.starts_with("lc/"))
        .map(|l| (l.repo, l.digest, l.size, l.linked_ms))
        .collect()
}

fn sorted(
    mut v: Vec<(String, Digest, u64, Option<u64>)>,
) -> Vec<(String, Digest, u64, Option<u64>)> {
    v.sort_by(|x, y| (&x.0, x.1.to_string()).cmp(&(&y.0, y.1.to_string())));
    v
}

fn precondition<T: std::fmt::Debug>(r: Result<T, StoreError>, what: &str) {
    assert!(
        matches!(r, Err(StoreError::Precondition(_))),
        "{what}: want Precondition, got {r:?}"
    );
}

/// Link collection: the work list, `touch_link`, `collect_link` on condition, and the two
/// rules (a link needs a record; a manifest needs its links, checked in its write).
pub async fn links_conformance<M>(m: &M)
where
    M: MetadataStore + BlobRecords + LinkCollection,
{
    let (a, b) = (d(1), d(2));
    // A link needs the blob's record, which `touch_blob` makes.
    precondition(
        m.link_blob("lc/one", &a, 5, T0).await,
        "a link without a record",
    );
    assert_eq!(
        m.blob_link("lc/one", &a).await.expect("read"),
        None,
        "nothing written"
    );
    link(m, "lc/one", &a, 5, T0).await.expect("link");
    link(m, "lc/one", &b, 7, T0).await.expect("link");
    link(m, "lc/two", &a, 5, T0).await.expect("link");
    let all = |v: &[(&str, &Digest, u64)]| {
        sorted(
            v.iter()
                .map(|(r, d, s)| ((*r).to_owned(), (*d).clone(), *s, Some(T0)))
                .collect(),
        )
    };
    assert_eq!(
        ours(m).await,
        all(&[("lc/one", &a, 5), ("lc/one", &b, 7), ("lc/two", &a, 5)]),
        "every fresh link is unreferenced, listed in (repository, digest) order, page by page"
    );

    // Referenced by a manifest: off the list, and not collectable.
    let img = test_manifest(&[a.clone(), b.clone()], None, None);
    m.put_manifest("lc/one", &img, &["v1"], T0 + 1)
        .await
        .expect("put");
    assert_eq!(ours(m).await, all(&[("lc/two", &a, 5)]));
    // The blob DELETE API may not take a link a manifest references (pushed again, the link
    // would come back with no references counted).
    precondition(
        m.unlink_blob("lc/one", &a, T0 + 2).await,
        "unlinking a referenced blob",
    );
    assert_eq!(
        m.blob_link("lc/one", &a).await.expect("read"),
        Some(5),
        "kept"
    );
    assert!(
        !m.collect_link("lc/one", &a, T0 + 1000 * MIN, T0 + 1000 * MIN)
            .await
            .expect("collect"),
        "a referenced link stays"
    );

    // Touched after the cutoff: kept. A touch within the precision writes nothing.
    assert!(
        m.touch_link("lc/two", &a, T0 + 5 * MIN)
            .await
            .expect("touch")
    );
    assert!(
        m.touch_link("lc/two", &a, T0 + 5 * MIN + 10)
            .await
            .expect("touch")
    );
    assert_eq!(
        ours(m).await,
        vec![("lc/two".to_owned(), a.clone(), 5, Some(T0 + 5 * MIN))],
        "the touch moved the link's time; the one within a minute did not"
    );
    assert!(
        !m.touch_link("lc/none", &a, T0).await.expect("touch"),
        "no such link"
    );
    assert!(
        !m.collect_link("lc/two", &a, T0 + 5 * MIN - 1, T0 + 6 * MIN)
            .await
            .expect("collect"),
        "touched after the cutoff"
    );
    assert!(
        m.collect_link("lc/two", &a, T0 + 5 * MIN, T0 + 6 * MIN)
            .await
            .expect("collect"),
        "unreferenced and untouched since the cutoff"
    );
    assert_eq!(m.blob_link("lc/two", &a).await.expect("read"), None);
    assert_eq!(ours(m).await, vec![]);
    assert!(
        !m.collect_link("lc/two", &a, T0 + 9 * MIN, T0 + 9 * MIN)
            .await
            .expect("collect"),
        "already gone"
    );
    let r = m.blob_record(&a).await.expect("record").expect("kept");
    assert_eq!(r.links, 1, "the record counts the collection as an unlink");

    // A manifest DELETE puts its links back on the list.
    assert!(
        m.delete_manifest("lc/one", &img.info.digest, T0 + 10 * MIN)
            .await
            .expect("delete")
    );
    assert_eq!(ours(m).await, all(&[("lc/one", &a, 5), ("lc/one", &b, 7)]));

    // A manifest over a link collected after the core's check fails in its write.
    assert!(
        m.collect_link("lc/one", &b, T0 + 10 * MIN, T0 + 11 * MIN)
            .await
            .expect("collect")
    );
    let again = test_manifest(&[a.clone(), b.clone()], None, Some("application/x-again"));
    precondition(
        m.put_manifest("lc/one", &again, &["v2"], T0 + 12 * MIN)
            .await,
        "a manifest over a collected link",
    );
    let v2 = crate::model::Reference::parse("v2").expect("tag");
    assert!(m.manifest("lc/one", &v2).await.expect("read").is_none());
    assert!(
        m.missing_manifests("lc/one", std::slice::from_ref(&again.info.digest))
            .await
            .expect("read")
            .contains(&again.info.digest),
        "nothing of it written"
    );
    assert_eq!(
        ours(m).await,
        all(&[("lc/one", &a, 5)]),
        "no reference counted"
    );

    // An index over a child that is not there fails the same way.
    let child = test_manifest(std::slice::from_ref(&a), None, Some("application/x-child"));
    m.put_manifest("lc/one", &child, &[], T0 + 13 * MIN)
        .await
        .expect("child");
    let gone = test_manifest(std::slice::from_ref(&a), None, Some("application/x-gone"));
    precondition(
        m.put_manifest(
            "lc/one",
            &test_index(&[child.info.digest.clone(), gone.info.digest.clone()]),
            &["multi"],
            T0 + 14 * MIN,
        )
        .await,
        "an index over a missing child",
    );
    m.put_manifest(
        "lc/one",
        &test_index(std::slice::from_ref(&child.info.digest)),
        &["multi"],
        T0 + 14 * MIN,
    )
    .await
    .expect("an index over its child");

    // The last link of a blob collected: the blob is on the unlinked work list.
    assert!(
        m.delete_manifest("lc/one", &child.info.digest, T0 + 15 * MIN)
            .await
            .expect("delete")
    );
    assert!(
        m.collect_link("lc/one", &a, T0 + 15 * MIN, T0 + 16 * MIN)
            .await
            .expect("collect")
    );
    let unlinked: Vec<Digest> = m
        .unlinked_blobs(None, 10_000)
        .await
        .expect("unlinked")
        .into_iter()
        .map(|r| r.digest)
        .collect();
    assert!(
        unlinked.contains(&a) && unlinked.contains(&b),
        "{unlinked:?}"
    );
    assert_eq!(ours(m).await, vec![]);
}
