//! wharf's core: the OCI Distribution API, independent of any runtime.
//!
//! Architecture invariant: this crate does no I/O and knows nothing of tokio, AWS or
//! Workers. Requests come in as `http::Request`, responses leave as `http::Response`,
//! and storage, time and randomness come through the traits in [`ports`].
//!
//! Modules depend one way, lowest first: [`error`] → [`model`] → [`ports`] → [`ledger`] →
//! [`testing`] → [`http`] → [`events`] → [`auth`] → [`policy`] → [`oci`], [`admin`],
//! [`jobs`] → [`settings`] → [`registry`]. A module uses only those before it
//! (`core/tests/boundaries.rs` checks it).
#![deny(missing_docs)]

pub mod admin;
pub mod auth;
pub mod error;
pub mod events;
pub mod http;
pub mod jobs;
pub mod ledger;
pub mod model;
pub mod oci;
pub mod policy;
pub mod ports;
pub mod registry;
pub mod runs;
pub mod settings;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use error::{ErrorCode, RegistryError, StoreError};
pub use http::Body;
pub use model::{Algorithm, Digest, Hasher, Reference};
pub use ports::{BlobStore, BlobWriter, Env, MetadataStore, StoredManifest, UploadRecord};
pub use registry::Registry;
pub use settings::Config;
