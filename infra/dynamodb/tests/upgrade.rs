//! Upgrade: a table written by the store of 727e058 (`tests/fixtures/upgrade/`, made by its
//! `make.sh` from a checkout of that commit) is loaded into moto item by item. Today's
//! registry pulls every image from it before and after the backfill, and once backfilled
//! the table holds the same blob records, links, references and usage as today's memory
//! store that took the same pushes live. Then a push on top of the old content works.

#[macro_use]
#[path = "../../../tests/fixtures/upgrade/images.rs"]
mod images;

use aws_sdk_dynamodb::types::AttributeValue;
use std::collections::HashMap;
use wharf_aws::testing;
use wharf_core::Digest;
use wharf_core::ports::{Backfill, BackfillProgress, SCHEMA_VERSION};
use wharf_core::testing::{MemoryBlobs, MemoryMetadata, TestEnv, ledger_facts};
use wharf_core::{Config, Registry};
use wharf_dynamodb::{DynamoMetadata, DynamoOptions};

const FIXTURE: &str = include_str!("../../../tests/fixtures/upgrade/dynamodb-727e058.jsonl");

/// An item of the fixture, back in the SDK's form.
fn item(line: &str) -> HashMap<String, AttributeValue> {
    let v: serde_json::Value = serde_json::from_str(line).expect("a JSON item");
    let obj = v.as_object().expect("an object");
    obj.iter()
        .map(|(k, av)| {
            let (t, x) = av
                .as_object()
                .and_then(|o| o.iter().next())
                .expect("an attribute value");
            let x = x.as_str().expect("a string");
            let av = match t.as_str() {
                "S" => AttributeValue::S(x.to_owned()),
                "N" => AttributeValue::N(x.to_owned()),
                "B" => AttributeValue::B(aws_smithy_types::Blob::new(
                    aws_smithy_types::base64::decode(x).expect("base64"),
                )),
                other => panic!("attribute type {other}"),
            };
            (k.clone(), av)
        })
        .collect()
}

fn env() -> TestEnv {
    let env = TestEnv::default();
    env.now
        .store(1_800_000_000_000, std::sync::atomic::Ordering::SeqCst);
    env
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_written_by_727e058_serves_every_image_and_is_backfilled() {
    let Some(srv) = testing::moto() else {
        eprintln!("SKIP: moto_server is not available; the upgrade test did not run");
        return;
    };
    let meta = DynamoMetadata::new(&srv.sdk_config(), DynamoOptions::new("wharf"));
    meta.create_table().await.expect("create table");
    // The table of 727e058 had no markers: today's own ones go, then the old items come.
    for k in ["SCHEMA", "BACKFILL"] {
        let key = [("pk", "META"), ("sk", k)]
            .map(|(a, v)| (a.to_owned(), AttributeValue::S(v.to_owned())));
        meta.client()
            .delete_item()
            .table_name("wharf")
            .set_key(Some(key.into_iter().collect()))
            .send()
            .await
            .expect("forget the markers");
    }
    let mut n = 0;
    for line in FIXTURE.lines().filter(|l| !l.is_empty()) {
        meta.client()
            .put_item()
            .table_name("wharf")
            .set_item(Some(item(line)))
            .send()
            .await
            .expect("load an item");
        n += 1;
    }
    assert!(n > 20, "the fixture has the pushed content ({n} items)");
    assert_eq!(
        meta.schema_version().await.expect("version"),
        1,
        "an old table"
    );

    // The reference: the same pushes, live, on today's memory store. Its blob store is the
    // upgraded registry's too (object storage did not change).
    let blobs = MemoryBlobs::default();
    let reference = Registry::new(
        blobs.clone(),
        MemoryMetadata::default(),
        env(),
        Config::default(),
    );
    images::push(&mut registry_call!(&reference)).await;
    let upgraded = Registry::new(blobs, meta, env(), Config::default());

    // Serving does not wait for the backfill.
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
    let want = ledger_facts(&reference.meta, &repos, &digests).await;
    assert_eq!(ledger_facts(&upgraded.meta, &repos, &digests).await, want);

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
}
