//! Upgrade: a table written by the store of 727e058 (`tests/fixtures/upgrade/`, made by its
//! `make.sh` from a checkout of that commit) is loaded into moto item by item. Today's
//! registry pulls every image from it before and after the backfill, and once backfilled
//! the table holds the same blob records, links, references and usage as today's memory
//! store that took the same pushes live. Then a push on top of the old content works.

#[macro_use]
#[path = "../../../tests/fixtures/upgrade/images.rs"]
mod images;
#[path = "../../../tests/fixtures/upgrade/check.rs"]
mod check;

use aws_sdk_dynamodb::types::AttributeValue;
use std::collections::HashMap;
use wharf_aws::testing;
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
    check::upgraded_store_serves_and_backfills(meta).await;
}
