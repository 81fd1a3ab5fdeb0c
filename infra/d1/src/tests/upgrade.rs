//! Upgrade: a D1 database written by the store of 727e058 (`tests/fixtures/upgrade/`, made
//! by its `make.sh` from a checkout of that commit, on SQLite as D1 runs it) gets today's
//! migration; today's registry pulls every image from it before and after the backfill,
//! and once backfilled it holds the same blob records, links, references and usage as
//! today's memory store that took the same pushes live. Then a push on top works.

#[macro_use]
#[path = "../../../../tests/fixtures/upgrade/images.rs"]
mod images;
#[path = "../../../../tests/fixtures/upgrade/check.rs"]
mod check;

use super::*;

#[test]
fn a_database_written_by_727e058_serves_every_image_and_is_backfilled() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/upgrade/d1-727e058.sqlite");
    let db = Lite::copy_of(&path);
    // What `wrangler d1 migrations apply` does on deploy: the migrations after the first.
    db.migrate(1);
    let meta = D1Meta::on(db);
    block_on(check::upgraded_store_serves_and_backfills(meta));
}
