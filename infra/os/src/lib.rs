//! The core's [`Env`] on an operating system: the wall clock, the OS random source, and
//! tokio's blocking pool for CPU-heavy work (Argon2), bounded so it cannot take every core.
//! Shared by every native entry point (`wharf serve`, the Lambda functions); the Worker
//! has its own, on the JavaScript clock and `crypto.getRandomValues`.
#![deny(missing_docs)]

use std::sync::{Arc, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::Semaphore;
use wharf_core::Env;

/// Time and randomness from the operating system; heavy work on tokio's blocking pool.
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
    /// On tokio's blocking pool, at most [`heavy_limit`] at once (process-wide); inline
    /// when called outside a tokio runtime.
    async fn run_heavy<T, F>(&self, work: F) -> T
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        run_bounded(heavy_permits(), work).await
    }
    /// tokio's timer; outside a runtime (no timer) it returns at once, like the default.
    async fn sleep_ms(&self, ms: u64) {
        if tokio::runtime::Handle::try_current().is_ok() {
            tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
        }
    }
}

/// How many heavy jobs may run at once: one core fewer than the machine has, at least one.
///
/// The blocking pool alone is not a bound (it grows to 512 threads): 20 concurrent logins
/// on 2 cores would take both, and the async workers that answer every other request would
/// wait for the scheduler. With one core left to them, a burst of logins queues here
/// instead, and only logins wait for logins.
pub fn heavy_limit() -> usize {
    limit_for(std::thread::available_parallelism().map_or(1, |n| n.get()))
}

fn limit_for(cores: usize) -> usize {
    cores.saturating_sub(1).max(1)
}

/// The process-wide permits, one per [`heavy_limit`] (a tokio semaphore is not tied to a
/// runtime, so tests with several runtimes share it safely).
fn heavy_permits() -> Arc<Semaphore> {
    static PERMITS: OnceLock<Arc<Semaphore>> = OnceLock::new();
    PERMITS
        .get_or_init(|| Arc::new(Semaphore::new(heavy_limit())))
        .clone()
}

/// Runs `work` on the blocking pool once a permit of `permits` is free.
///
/// The permit moves into the blocking task, so it is held for exactly as long as the work
/// runs, even when the caller stops waiting (a client that disconnects mid-login cannot let
/// more hashes run than the bound). A panic in `work` releases the permit (dropped during
/// unwinding; a semaphore has nothing to poison) and is resumed here, in the caller, as the
/// inline default would have raised it. Outside a tokio runtime `work` runs inline.
async fn run_bounded<T, F>(permits: Arc<Semaphore>, work: F) -> T
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let Ok(handle) = tokio::runtime::Handle::try_current() else {
        return work();
    };
    let permit = match permits.acquire_owned().await {
        Ok(p) => p,
        // Only a closed semaphore fails, and nothing closes it; run unbounded rather than fail.
        Err(_) => return work(),
    };
    let task = handle.spawn_blocking(move || {
        let _permit = permit;
        work()
    });
    match task.await {
        Ok(v) => v,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        // A blocking task is only cancelled by the runtime shutting down, which ends this
        // future too; there is no value to return.
        Err(e) => panic!("heavy work did not run: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::mpsc;
    use std::thread;
    use std::time::Duration;

    /// Counts jobs running at the same time and remembers the most seen.
    #[derive(Default)]
    struct Gauge {
        now: AtomicUsize,
        max: AtomicUsize,
        done: AtomicUsize,
    }

    impl Gauge {
        /// Enters, stays a while (so that jobs overlap wherever they may; how long does not
        /// decide the outcome: a bound that holds is never exceeded, however slow), leaves.
        fn job(&self, linger: Duration) {
            let n = self.now.fetch_add(1, Ordering::SeqCst) + 1;
            self.max.fetch_max(n, Ordering::SeqCst);
            thread::sleep(linger);
            self.now.fetch_sub(1, Ordering::SeqCst);
            self.done.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn limit_leaves_one_core_and_is_at_least_one() {
        assert_eq!(limit_for(0), 1);
        assert_eq!(limit_for(1), 1);
        assert_eq!(limit_for(2), 1);
        assert_eq!(limit_for(3), 2);
        assert_eq!(limit_for(64), 63);
        assert!(heavy_limit() >= 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrency_never_exceeds_the_permits() {
        for bound in [1, 2, 3] {
            let permits = Arc::new(Semaphore::new(bound));
            let gauge = Arc::new(Gauge::default());
            let jobs: Vec<_> = (0..12)
                .map(|_| {
                    let (permits, gauge) = (permits.clone(), gauge.clone());
                    tokio::spawn(async move {
                        run_bounded(permits, move || gauge.job(Duration::from_millis(20))).await
                    })
                })
                .collect();
            for j in jobs {
                j.await.expect("job");
            }
            assert_eq!(gauge.done.load(Ordering::SeqCst), 12);
            let max = gauge.max.load(Ordering::SeqCst);
            assert!(max <= bound, "bound {bound}, saw {max} at once");
            assert_eq!(permits.available_permits(), bound);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_bound_is_not_a_serialisation() {
        // `bound` jobs that can only finish together (a barrier of `bound`): they complete
        // only if that many run at once.
        for bound in [2, 3] {
            let permits = Arc::new(Semaphore::new(bound));
            let barrier = Arc::new(std::sync::Barrier::new(bound));
            let jobs: Vec<_> = (0..bound)
                .map(|_| {
                    let (permits, barrier) = (permits.clone(), barrier.clone());
                    tokio::spawn(run_bounded(permits, move || {
                        barrier.wait();
                    }))
                })
                .collect();
            for j in jobs {
                j.await.expect("job");
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn system_env_respects_the_process_limit() {
        let gauge = Arc::new(Gauge::default());
        let jobs: Vec<_> = (0..8)
            .map(|_| {
                let gauge = gauge.clone();
                tokio::spawn(async move {
                    SystemEnv
                        .run_heavy(move || gauge.job(Duration::from_millis(10)))
                        .await
                })
            })
            .collect();
        for j in jobs {
            j.await.expect("job");
        }
        assert_eq!(gauge.done.load(Ordering::SeqCst), 8);
        assert!(gauge.max.load(Ordering::SeqCst) <= heavy_limit());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn runs_off_the_calling_thread_and_the_runtime_keeps_serving() {
        let caller = thread::current().id();
        let permits = Arc::new(Semaphore::new(1));
        let (release, wait) = mpsc::channel::<()>();
        let heavy = tokio::spawn(run_bounded(permits, move || {
            // Holds its thread until the runtime's own thread has done other work, which on
            // a current-thread runtime it can only do if this is not that thread. (Run
            // inline, it would hold the runtime until the timeout, then report the
            // caller's thread: the assertion below fails instead of the test hanging.)
            let _ = wait.recv_timeout(Duration::from_secs(30));
            thread::current().id()
        }));
        // This task runs on the runtime's single thread while the heavy work blocks.
        tokio::task::yield_now().await;
        release.send(()).expect("send");
        let ran_on = heavy.await.expect("heavy");
        assert_ne!(ran_on, caller);
    }

    #[test]
    fn the_future_is_send_so_handlers_stay_spawnable_on_tokio() {
        fn assert_send<T: Send>(_: &T) {}
        let fut = SystemEnv.run_heavy(|| 1);
        assert_send(&fut);
    }

    #[test]
    fn outside_a_runtime_it_runs_inline() {
        let caller = thread::current().id();
        let ran_on = futures_executor_block_on(SystemEnv.run_heavy(|| thread::current().id()));
        assert_eq!(ran_on, caller);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panic_reaches_the_caller_and_frees_the_permit() {
        let permits = Arc::new(Semaphore::new(1));
        let p = permits.clone();
        let panicked =
            tokio::spawn(
                async move { run_bounded(p, || -> u32 { panic!("argon2 exploded") }).await },
            )
            .await;
        let err = panicked.expect_err("the panic is resumed in the caller");
        assert!(err.is_panic());
        let msg = err.into_panic();
        assert_eq!(msg.downcast_ref::<&str>(), Some(&"argon2 exploded"));
        // Nothing poisoned: the permit is back and the next job runs.
        assert_eq!(permits.available_permits(), 1);
        assert_eq!(run_bounded(permits, || 7).await, 7);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_caller_that_stops_waiting_keeps_the_permit_busy_until_the_work_ends() {
        let permits = Arc::new(Semaphore::new(1));
        let (started_tx, started) = mpsc::channel::<()>();
        let (release, wait) = mpsc::channel::<()>();
        let (finished_tx, finished) = mpsc::channel::<()>();
        let caller = tokio::spawn(run_bounded(permits.clone(), move || {
            started_tx.send(()).expect("started");
            wait.recv().expect("released");
            finished_tx.send(()).expect("finished");
        }));
        tokio::task::spawn_blocking(move || started.recv().expect("started"))
            .await
            .expect("join");
        caller.abort();
        let _ = caller.await;
        // The work still runs, so its permit is still taken.
        assert_eq!(permits.available_permits(), 0);
        release.send(()).expect("release");
        tokio::task::spawn_blocking(move || finished.recv().expect("finished"))
            .await
            .expect("join");
        // Released when the blocking task drops it, right after the work returned.
        let permit = permits.acquire().await.expect("permit comes back");
        drop(permit);
    }

    /// A minimal executor for a future that never waits (the inline path never does).
    fn futures_executor_block_on<T>(fut: impl std::future::Future<Output = T>) -> T {
        use std::task::{Context, Poll, Waker};
        let mut fut = std::pin::pin!(fut);
        let mut cx = Context::from_waker(Waker::noop());
        match fut.as_mut().poll(&mut cx) {
            Poll::Ready(v) => v,
            Poll::Pending => panic!("the inline path waited"),
        }
    }
}
