//! Helpers shared by the S3 store's tests.

use wharf_core::Digest;
use wharf_core::ports::UploadRecord;

/// Deterministic pseudo-random bytes.
pub fn data(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A new upload record of repository `r`.
pub fn record(id: &str, digest: Option<Digest>) -> UploadRecord {
    UploadRecord {
        id: id.into(),
        repo: "r".into(),
        offset: 0,
        hash_state: Vec::new(),
        store_state: String::new(),
        digest,
        created_ms: 0,
        updated_ms: 0,
    }
}
