//! The registry's vocabulary as validated values: digests (and the resumable hasher),
//! repository names and tags, manifest references, upload ids, and manifest parsing.
//!
//! May use: [`crate::error`] only. Nothing here does I/O or knows HTTP handling, ports or
//! auth; everything above builds on it.

pub mod digest;
pub mod manifest;
pub mod name;
pub mod reference;
pub mod regions;
pub mod upload;

pub use digest::{Algorithm, Digest, Hasher, to_hex};
pub use reference::Reference;
