//! Upgrade: a redb store written by 06c548e (`tests/fixtures/upgrade/redb-06c548e.redb`,
//! made by `make_redb.sh` from a checkout of that commit), at schema 2: its backfill was
//! done, but links had no work list of unreferenced links yet. Today's store runs the
//! backfill again; today's registry pulls every image before and after, and once
//! backfilled the store holds the same records (work list included) as today's memory
//! store that took the same pushes live. Then a push on top works.

#[macro_use]
#[path = "../../../tests/fixtures/upgrade/images.rs"]
mod images;
#[path = "../../../tests/fixtures/upgrade/check.rs"]
mod check;

use wharf_embedded::EmbeddedMetadata;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_written_by_06c548e_gets_its_work_list_of_links() {
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/upgrade/redb-06c548e.redb");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("meta.redb");
    std::fs::copy(&fixture, &path).expect("copy the fixture");
    let meta = EmbeddedMetadata::open(&path).expect("open");
    check::upgraded_store_serves_and_backfills_from(meta, 2).await;
}
