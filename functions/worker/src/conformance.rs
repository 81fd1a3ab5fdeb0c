//! POST /__conformance (feature `conformance`, tests only): the core's conformance suites on
//! this Worker's D1 (the metadata port and every optional ability) and R2.
//!
//! The metadata and document suites expect an empty database (they use fixed names), so run
//! them once per fresh D1 state; the blob and inventory suites clean up after themselves. A
//! failed assertion panics, which aborts the wasm instance: the request fails with a 500 and
//! the panic message is in the Worker's log.

/// Runs the metadata, abilities and document suites against `meta`, the blob and inventory
/// suites against `blobs`. R2 stamps `uploaded` with its own clock; the Worker's
/// `Date.now()` only moves with I/O, so the inventory suite allows a few seconds either way.
pub async fn run(meta: &wharf_d1::D1Meta, blobs: &wharf_r2::R2Blobs) {
    wharf_core::testing::metadata_conformance(meta).await;
    wharf_core::testing::all_capabilities_conformance(meta).await;
    wharf_core::testing::document_conformance(meta).await;
    wharf_core::testing::blob_conformance(blobs).await;
    let now = || js_sys::Date::now() as u64;
    wharf_core::testing::inventory_conformance(blobs, &now, 5000).await;
}
