//! What the operator allows, decided in one place for every API that could do it: today,
//! whether deletes are allowed (`--disable-delete`).
//!
//! May use: [`crate::error`] only (the decisions take plain settings). Both the `/v2`
//! handlers and the management API ask here.

use crate::error::{ErrorCode, RegistryError, Result};

/// Refuses a delete (of a manifest, a tag or a blob link) when deletes are disabled.
pub(crate) fn check_delete(delete_enabled: bool) -> Result<()> {
    if delete_enabled {
        Ok(())
    } else {
        Err(RegistryError::new(
            ErrorCode::Unsupported,
            "deletes are disabled on this registry",
        ))
    }
}
