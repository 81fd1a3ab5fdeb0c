//! What each pushed byte costs a Worker, without Cloudflare: the Worker hashes every byte of
//! an upload with wharf-core's [`Hasher`] after wasm-bindgen copies the chunk into wasm
//! memory. This crate exposes exactly that (a `&[u8]` argument, so the same copy-in glue)
//! for `bench/wasm_hash.js` to time under V8, the engine workerd runs, since local workerd
//! reports no per-request CPU. Built with the Worker's flags (functions/worker/wasm-env.sh).
#![deny(missing_docs)]

use wasm_bindgen::prelude::wasm_bindgen;
use wharf_core::{Algorithm, Hasher};

/// A SHA-256 in progress, as an upload keeps one.
#[wasm_bindgen]
pub struct Sha256(Hasher);

#[wasm_bindgen]
impl Sha256 {
    /// A fresh hash.
    #[wasm_bindgen(constructor)]
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        Self(Hasher::new(Algorithm::Sha256))
    }

    /// Hashes one chunk (wasm-bindgen copies it in first, as for a request body chunk).
    pub fn update(&mut self, chunk: &[u8]) {
        self.0.update(chunk);
    }

    /// The digest, `sha256:<hex>`.
    pub fn finish(self) -> String {
        self.0.finish().to_string()
    }
}
