//! POST /__conformance (feature `conformance`, tests only): the core's conformance suites on this Worker's D1.
//!
//! The suites expect an empty database (they use fixed names), so run them once per fresh
//! D1 state. A failed assertion panics, which aborts the wasm instance: the request fails
//! with a 500 and the panic message is in the Worker's log.

/// Runs the metadata and document suites against `meta`.
pub async fn run(meta: &wharf_d1::D1Meta) {
    wharf_core::testing::metadata_conformance(meta).await;
    wharf_core::testing::document_conformance(meta).await;
}
