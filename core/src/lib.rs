//! wharf's core: the OCI Distribution API, independent of any runtime.
//!
//! Architecture invariant: this crate does no I/O and knows nothing of tokio, AWS or
//! Workers. Requests come in as `http::Request`, responses leave as `http::Response`,
//! and storage, time and randomness come through the traits in [`ports`].
#![deny(missing_docs)]

pub mod api;
pub mod auth;
pub mod body;
pub mod capability;
pub mod digest;
pub mod error;
pub mod gate;
pub mod manifest;
pub mod name;
pub mod ports;
pub mod registry;
pub mod route;
pub mod testing;
pub mod throttle;

pub use body::Body;
pub use digest::{Algorithm, Digest, Hasher};
pub use error::{ErrorCode, RegistryError, StoreError};
pub use ports::{
    BlobStore, BlobWriter, Env, MetadataStore, Reference, StoredManifest, UploadRecord,
};
pub use registry::{Config, Registry};
