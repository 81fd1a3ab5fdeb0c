//! The core's [`Env`] on an operating system: the wall clock and the OS random source.
//! Shared by every native entry point (`wharf serve`, the Lambda functions); the Worker
//! has its own, on the JavaScript clock and `crypto.getRandomValues`.
#![deny(missing_docs)]

use std::time::{SystemTime, UNIX_EPOCH};
use wharf_core::Env;

/// Time and randomness from the operating system.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemEnv;

impl Env for SystemEnv {
    fn now_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }
    fn fill_random(&self, buf: &mut [u8]) {
        if let Err(e) = getrandom::fill(buf) {
            // No entropy means no safe ids or keys: stop rather than hand out guessable ones.
            panic!("operating system random source failed: {e}");
        }
    }
}
