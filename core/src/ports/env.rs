//! The environment port: time, randomness, heavy work, waiting.

/// Time, randomness and a place for CPU-heavy work, which the core may not take from the
/// OS itself (`SystemTime::now()` panics on `wasm32-unknown-unknown`).
#[allow(async_fn_in_trait)]
pub trait Env {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;
    /// Fills `buf` with cryptographically secure random bytes.
    fn fill_random(&self, buf: &mut [u8]);
    /// Runs CPU-heavy work (an Argon2 hash takes tens of milliseconds) where it does not
    /// stall the threads that serve other requests. The default runs it inline, which is
    /// right for a runtime with one request per isolate (Workers) and for tests; a
    /// multi-threaded server hands it to a bounded blocking pool.
    async fn run_heavy<T, F>(&self, work: F) -> T
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        work()
    }
    /// Waits about `ms` milliseconds (a login waiting for a concurrent one to finish). The
    /// default returns at once: callers bound their retries by count as well as by time.
    async fn sleep_ms(&self, ms: u64) {
        let _ = ms;
    }
}

/// A shared environment is one (several registries over one clock, in tests and jobs).
impl<T: Env> Env for std::sync::Arc<T> {
    fn now_ms(&self) -> u64 {
        (**self).now_ms()
    }
    fn fill_random(&self, buf: &mut [u8]) {
        (**self).fill_random(buf)
    }
    async fn run_heavy<R, F>(&self, work: F) -> R
    where
        R: Send + 'static,
        F: FnOnce() -> R + Send + 'static,
    {
        (**self).run_heavy(work).await
    }
    async fn sleep_ms(&self, ms: u64) {
        (**self).sleep_ms(ms).await
    }
}
