//! The SDK-free DynamoDB client ([`DynamoRest`], the Worker upload front's) against moto,
//! on the table wharf-dynamodb created: what one writes, the other reads.

use wharf_aws::testing;
use wharf_aws::testing::HttpTransport;
use wharf_core::model::manifest::Descriptor;
use wharf_core::ports::{
    BlobRecord, BlobRecords, Change, Cleared, DocumentStore, LinkCollection, LinkCursor,
    ManifestIndex, MetadataStore, Outbox, Page, StoredManifest, UnreferencedLink, UploadRecord,
    Usage, UsageCounters,
};
use wharf_core::testing::{links_conformance, records_conformance};
use wharf_core::{Digest, Reference, StoreError};
use wharf_dynamodb::{DynamoMetadata, DynamoOptions};
use wharf_dynamodb_items::DynamoRest;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_client_and_sdk_store_share_upload_link_and_doc_items() {
    let Some(srv) = testing::moto() else {
        eprintln!("SKIP: moto_server is not available; the DynamoDB REST test did not run");
        return;
    };
    let sdk = DynamoMetadata::new(&srv.sdk_config(), DynamoOptions::new("wharf"));
    sdk.create_table().await.expect("create table");
    let rest = DynamoRest::new(srv.rest_client("dynamodb"), Some(&srv.endpoint), "wharf");

    // The API (SDK) creates an upload; the front (REST) reads and advances it.
    let mut up = UploadRecord {
        id: "u1".into(),
        repo: "team/app".into(),
        offset: 0,
        hash_state: vec![0, 1, 2, 255],
        store_state: "{\"objects\":[]}".into(),
        digest: None,
        created_ms: 1_000,
        updated_ms: 1_000,
    };
    sdk.create_upload(&up).await.expect("create");
    assert_eq!(rest.upload("u1").await.expect("read"), Some(up.clone()));
    assert_eq!(rest.upload("nope").await.expect("read"), None);
    up.offset = 42;
    up.updated_ms = 2_000;
    rest.update_upload(&up, 0).await.expect("advance");
    assert_eq!(sdk.upload("u1").await.expect("read"), Some(up.clone()));
    // A stale compare-and-set loses, and says where the upload is.
    let e = rest.update_upload(&up, 0).await;
    assert!(
        matches!(&e, Err(StoreError::Precondition(m)) if m.contains("at 42")),
        "{e:?}"
    );
    assert!(matches!(
        rest.create_upload(&up).await,
        Err(StoreError::Precondition(_))
    ));

    // Finishing: the link and catalog entry the API then serves, and the upload is gone. A
    // link needs the blob's record (the commit touches it first).
    let d = Digest::sha256_of(b"layer");
    assert!(matches!(
        rest.link_blob("team/app", &d, 5, 0).await,
        Err(StoreError::Precondition(_))
    ));
    rest.touch_blob(&d, 5, 0).await.expect("touch");
    rest.link_blob("team/app", &d, 5, 0).await.expect("link");
    assert_eq!(sdk.blob_link("team/app", &d).await.expect("link"), Some(5));
    assert_eq!(rest.blob_link("team/app", &d).await.expect("link"), Some(5));
    let repos = sdk.list_repositories(None, 10).await.expect("catalog");
    assert!(
        repos.items.iter().any(|r| r == "team/app"),
        "{:?}",
        repos.items
    );
    // The same records as the SDK store's link: blob record, reverse index, project count
    // and usage, link time, outbox entry; a second link (from either) counts nothing again.
    let rec = sdk.blob_record(&d).await.expect("record").expect("made");
    assert_eq!(
        (rec.size, rec.links, rec.refs, rec.touched_ms),
        (5, 1, 0, 0)
    );
    rest.link_blob("team/app", &d, 5, 10).await.expect("relink");
    sdk.link_blob("team/other", &d, 5, 11)
        .await
        .expect("sdk link");
    sdk.link_blob("team/app", &d, 5, 12)
        .await
        .expect("sdk relink");
    let rec = sdk.blob_record(&d).await.expect("record").expect("there");
    assert_eq!((rec.links, rec.touched_ms), (2, 12));
    assert_eq!(
        sdk.repositories_with(&d, None, 10).await.expect("with"),
        ["team/app", "team/other"]
    );
    assert_eq!(
        sdk.project_usage("team").await.expect("usage"),
        Usage { bytes: 5, blobs: 1 }
    );
    // What the front's quota check reads, the same from both.
    assert_eq!(
        rest.project_usage("team").await.expect("usage"),
        Usage { bytes: 5, blobs: 1 }
    );
    assert_eq!(
        rest.project_usage("nobody").await.expect("usage"),
        Usage::default()
    );
    for (project, holds) in [("team", true), ("tea", false), ("other", false)] {
        assert_eq!(
            rest.counts_blob(project, &d).await.expect("counts"),
            holds,
            "{project}"
        );
        assert_eq!(
            sdk.counts_blob(project, &d).await.expect("counts"),
            holds,
            "{project}"
        );
    }
    let links = sdk.list_links("team/app", None, 10).await.expect("links");
    assert_eq!(links[0].linked_ms, Some(12));
    let linked: Vec<(String, u64)> = sdk
        .outbox_after(None, 100)
        .await
        .expect("outbox")
        .into_iter()
        .filter_map(|e| match e.change {
            Change::BlobLinked { repository, .. } => Some((repository, e.at_ms)),
            _ => None,
        })
        .collect();
    assert_eq!(
        linked,
        [
            ("team/app".to_owned(), 0),
            ("team/app".to_owned(), 10),
            ("team/other".to_owned(), 11),
            ("team/app".to_owned(), 12)
        ]
    );
    // Both refuse a blob being deleted, and write nothing.
    let gone = Digest::sha256_of(b"gone");
    sdk.touch_blob(&gone, 1, 0).await.expect("touch");
    assert!(sdk.mark_blob(&gone, 0, 1).await.expect("mark"));
    assert!(sdk.begin_blob_delete(&gone, 1, 2).await.expect("begin"));
    assert!(matches!(
        rest.link_blob("team/app", &gone, 1, 3).await,
        Err(StoreError::Precondition(_))
    ));
    assert_eq!(sdk.blob_link("team/app", &gone).await.expect("link"), None);

    // Claimed at a moved offset: refused, and the upload stays; at its offset: gone.
    let e = rest.claim_upload("u1", 7).await;
    assert!(
        matches!(&e, Err(StoreError::Precondition(m)) if m.contains("at 42")),
        "{e:?}"
    );
    assert_eq!(sdk.upload("u1").await.expect("read"), Some(up.clone()));
    rest.claim_upload("u1", 42).await.expect("claim");
    assert_eq!(sdk.upload("u1").await.expect("read"), None);
    assert!(matches!(
        rest.claim_upload("u1", 42).await,
        Err(StoreError::NotFound)
    ));
    sdk.create_upload(&up).await.expect("create again");
    rest.delete_upload("u1").await.expect("delete");
    assert_eq!(sdk.upload("u1").await.expect("read"), None);
    // Advancing a closed upload: NotFound (the core answers BLOB_UPLOAD_UNKNOWN).
    assert!(matches!(
        rest.update_upload(&up, 42).await,
        Err(StoreError::NotFound)
    ));

    // Documents (audit events).
    rest.append_event("e1", b"{\"a\":1}").await.expect("event");
    assert_eq!(
        sdk.get_doc("audit", "e1").await.expect("doc"),
        Some(b"{\"a\":1}".to_vec())
    );
    assert!(matches!(
        rest.put_doc("audit", "e1", b"x", true).await,
        Err(StoreError::Precondition(_))
    ));
    assert!(rest.delete_doc("audit", "e1").await.expect("delete"));
    assert!(!rest.delete_doc("audit", "e1").await.expect("delete"));

    // What a front never serves says so.
    assert!(matches!(
        rest.list_repositories(None, 1).await,
        Err(StoreError::NotSupported(_))
    ));
    // A table that does not exist is a deployment fault, not a missing record.
    let lost = DynamoRest::new(srv.rest_client("dynamodb"), Some(&srv.endpoint), "missing");
    assert!(matches!(lost.upload("u1").await, Err(StoreError::Other(_))));
}

/// The registry on an upload front: what the front writes (links, unlinks, blob records,
/// link collection) over [`DynamoRest`], the rest (manifests, tags, listings) over the SDK
/// store on the same table, so the suites check that the two write the same items.
struct Front {
    rest: DynamoRest<HttpTransport>,
    sdk: DynamoMetadata,
}

impl MetadataStore for Front {
    async fn repository_exists(&self, repo: &str) -> Result<bool, StoreError> {
        self.sdk.repository_exists(repo).await
    }
    async fn blob_link(&self, repo: &str, d: &Digest) -> Result<Option<u64>, StoreError> {
        self.rest.blob_link(repo, d).await
    }
    async fn link_blob(
        &self,
        repo: &str,
        d: &Digest,
        size: u64,
        at: u64,
    ) -> Result<(), StoreError> {
        self.rest.link_blob(repo, d, size, at).await
    }
    async fn unlink_blob(&self, repo: &str, d: &Digest, at: u64) -> Result<bool, StoreError> {
        self.rest.unlink_blob(repo, d, at).await
    }
    async fn missing_blobs(&self, repo: &str, d: &[Digest]) -> Result<Vec<Digest>, StoreError> {
        self.sdk.missing_blobs(repo, d).await
    }
    async fn missing_manifests(&self, repo: &str, d: &[Digest]) -> Result<Vec<Digest>, StoreError> {
        self.sdk.missing_manifests(repo, d).await
    }
    async fn manifest(
        &self,
        repo: &str,
        r: &Reference,
    ) -> Result<Option<StoredManifest>, StoreError> {
        self.sdk.manifest(repo, r).await
    }
    async fn put_manifest(
        &self,
        repo: &str,
        m: &StoredManifest,
        tags: &[&str],
        at: u64,
    ) -> Result<(), StoreError> {
        self.sdk.put_manifest(repo, m, tags, at).await
    }
    async fn delete_manifest(&self, repo: &str, d: &Digest, at: u64) -> Result<bool, StoreError> {
        self.sdk.delete_manifest(repo, d, at).await
    }
    async fn delete_tag(&self, repo: &str, tag: &str, at: u64) -> Result<bool, StoreError> {
        self.sdk.delete_tag(repo, tag, at).await
    }
    async fn list_tags(
        &self,
        repo: &str,
        last: Option<&str>,
        n: usize,
    ) -> Result<Option<Page>, StoreError> {
        self.sdk.list_tags(repo, last, n).await
    }
    async fn list_repositories(&self, last: Option<&str>, n: usize) -> Result<Page, StoreError> {
        self.sdk.list_repositories(last, n).await
    }
    async fn referrers(&self, repo: &str, subject: &Digest) -> Result<Vec<Descriptor>, StoreError> {
        self.sdk.referrers(repo, subject).await
    }
    async fn create_upload(&self, u: &UploadRecord) -> Result<(), StoreError> {
        self.rest.create_upload(u).await
    }
    async fn upload(&self, id: &str) -> Result<Option<UploadRecord>, StoreError> {
        self.rest.upload(id).await
    }
    async fn update_upload(&self, u: &UploadRecord, expected: u64) -> Result<(), StoreError> {
        self.rest.update_upload(u, expected).await
    }
    async fn delete_upload(&self, id: &str) -> Result<(), StoreError> {
        self.rest.delete_upload(id).await
    }
    async fn claim_upload(&self, id: &str, expected: u64) -> Result<(), StoreError> {
        self.rest.claim_upload(id, expected).await
    }
    async fn stale_uploads(
        &self,
        before: u64,
        limit: usize,
    ) -> Result<Vec<UploadRecord>, StoreError> {
        self.sdk.stale_uploads(before, limit).await
    }
}

impl BlobRecords for Front {
    async fn blob_record(&self, d: &Digest) -> Result<Option<BlobRecord>, StoreError> {
        self.rest.blob_record(d).await
    }
    async fn unlinked_blobs(
        &self,
        after: Option<&Digest>,
        limit: usize,
    ) -> Result<Vec<BlobRecord>, StoreError> {
        self.rest.unlinked_blobs(after, limit).await
    }
    async fn touch_blob(&self, d: &Digest, size: u64, at: u64) -> Result<(), StoreError> {
        self.rest.touch_blob(d, size, at).await
    }
    async fn mark_blob(&self, d: &Digest, since: u64, at: u64) -> Result<bool, StoreError> {
        self.rest.mark_blob(d, since, at).await
    }
    async fn clear_blob_mark(&self, d: &Digest, at: u64) -> Result<Cleared, StoreError> {
        self.rest.clear_blob_mark(d, at).await
    }
    async fn begin_blob_delete(
        &self,
        d: &Digest,
        marked: u64,
        at: u64,
    ) -> Result<bool, StoreError> {
        self.rest.begin_blob_delete(d, marked, at).await
    }
    async fn forget_blob(&self, d: &Digest) -> Result<bool, StoreError> {
        self.rest.forget_blob(d).await
    }
}

impl LinkCollection for Front {
    async fn touch_link(&self, repo: &str, d: &Digest, at: u64) -> Result<bool, StoreError> {
        self.rest.touch_link(repo, d, at).await
    }
    async fn unreferenced_links(
        &self,
        after: Option<&LinkCursor>,
        limit: usize,
    ) -> Result<Vec<UnreferencedLink>, StoreError> {
        self.rest.unreferenced_links(after, limit).await
    }
    async fn collect_link(
        &self,
        repo: &str,
        d: &Digest,
        since: u64,
        at: u64,
    ) -> Result<bool, StoreError> {
        self.rest.collect_link(repo, d, since, at).await
    }
}

/// The blob-record and link-collection suites with the front's writes over [`DynamoRest`].
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_client_passes_the_records_and_links_suites() {
    let Some(srv) = testing::moto() else {
        eprintln!("SKIP: moto_server is not available; the DynamoDB REST test did not run");
        return;
    };
    let sdk = DynamoMetadata::new(&srv.sdk_config(), DynamoOptions::new("wharf"));
    sdk.create_table().await.expect("create table");
    let rest = DynamoRest::new(srv.rest_client("dynamodb"), Some(&srv.endpoint), "wharf");
    let front = Front { rest, sdk };
    links_conformance(&front).await;
    records_conformance(&front).await;
}
