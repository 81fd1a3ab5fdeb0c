//! Upgrade: a D1 database written by the store of 727e058 (`tests/fixtures/upgrade/`, made
//! by its `make.sh` from a checkout of that commit, on SQLite as D1 runs it) gets today's
//! migration; today's registry pulls every image from it before and after the backfill,
//! and once backfilled it holds the same blob records, links, references and usage as
//! today's memory store that took the same pushes live. Then a push on top works.

#[macro_use]
#[path = "../../../../tests/fixtures/upgrade/images.rs"]
mod images;

use super::*;
use wharf_core::ports::{Backfill, BackfillProgress, SCHEMA_VERSION};
use wharf_core::testing::{MemoryBlobs, MemoryMetadata, TestEnv, ledger_facts};
use wharf_core::{Config, Registry};

fn env() -> TestEnv {
    let env = TestEnv::default();
    env.now
        .store(1_800_000_000_000, std::sync::atomic::Ordering::SeqCst);
    env
}

#[test]
fn a_database_written_by_727e058_serves_every_image_and_is_backfilled() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/upgrade/d1-727e058.sqlite");
    let db = Lite::copy_of(&path);
    // What `wrangler d1 migrations apply` does on deploy: the migrations after the first.
    db.migrate(1);
    let meta = D1Meta::on(db);
    block_on(async {
        assert_eq!(
            meta.schema_version().await.expect("version"),
            1,
            "an old database"
        );
        let blobs = MemoryBlobs::default();
        let reference = Registry::new(
            blobs.clone(),
            MemoryMetadata::default(),
            env(),
            Config::default(),
        );
        images::push(&mut registry_call!(&reference)).await;
        let upgraded = Registry::new(blobs, meta, env(), Config::default());

        images::pull_all(&mut registry_call!(&upgraded)).await;
        let mut steps = 0;
        while upgraded.meta.backfill_step(7).await.expect("backfill") != BackfillProgress::Done {
            steps += 1;
            assert!(steps < 200, "the backfill does not finish");
        }
        assert!(steps > 1, "resumed from its checkpoint ({steps} steps)");
        assert_eq!(
            upgraded.meta.schema_version().await.expect("version"),
            SCHEMA_VERSION
        );
        images::pull_all(&mut registry_call!(&upgraded)).await;

        let repos = ["team/app", "other/copy", "team/gone"];
        let mut digests: Vec<Digest> = images::blobs()
            .iter()
            .map(|b| Digest::sha256_of(b))
            .collect();
        digests.extend(
            images::manifests()
                .iter()
                .map(|(_, _, b)| Digest::sha256_of(b)),
        );
        assert_eq!(
            ledger_facts(&upgraded.meta, &repos, &digests).await,
            ledger_facts(&reference.meta, &repos, &digests).await
        );

        // A push on top: the same on both.
        let added = images::push_on_top(&mut registry_call!(&reference)).await;
        assert_eq!(
            images::push_on_top(&mut registry_call!(&upgraded)).await,
            added
        );
        digests.extend(added);
        assert_eq!(
            ledger_facts(&upgraded.meta, &repos, &digests).await,
            ledger_facts(&reference.meta, &repos, &digests).await,
            "live writes on top of the backfilled content"
        );
    });
}
