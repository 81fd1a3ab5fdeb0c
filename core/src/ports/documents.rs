//! The document store port: small JSON documents by kind and id.

use crate::error::StoreError;

/// Small JSON documents by kind and id: users, robots, projects, members, audit events,
/// login throttles. Separate from [`MetadataStore`] because it is a different capability
/// (the registry API works without it when auth is off).
#[allow(async_fn_in_trait)]
pub trait DocumentStore {
    /// Reads a document.
    async fn get_doc(&self, kind: &str, id: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// Writes a document; with `if_absent`, fails with `Precondition` if it exists.
    async fn put_doc(
        &self,
        kind: &str,
        id: &str,
        value: &[u8],
        if_absent: bool,
    ) -> Result<(), StoreError>;
    /// Deletes a document; false if there was none.
    async fn delete_doc(&self, kind: &str, id: &str) -> Result<bool, StoreError>;
    /// Documents of `kind` whose id starts with `prefix`, after `after`, in id order.
    async fn list_docs(
        &self,
        kind: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError>;
    /// Appends an audit event. Stores may make these durable lazily (they are written on
    /// every pull, so an fsync each would cost more than the pull).
    async fn append_event(&self, id: &str, value: &[u8]) -> Result<(), StoreError> {
        self.put_doc("audit", id, value, false).await
    }
    /// Makes every event appended so far visible to `list_docs` (stores that batch events
    /// wait for the batch here; the audit API calls it before reading).
    async fn flush_events(&self) -> Result<(), StoreError> {
        Ok(())
    }
}
