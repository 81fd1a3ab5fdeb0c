//! Login throttling, and the dummy password check that keeps unknown names as slow as known
//! ones.
//!
//! Failed logins are counted twice: per (user, client address), which throttles quickly
//! ([`USER_ADDR_LIMIT`]), and per client address across all users, which throttles only a
//! flood ([`ADDR_LIMIT`]), so that neither a guesser elsewhere can lock a user out of an
//! address that did not fail, nor one user's typos lock out everyone behind the same proxy.
//!
//! A counter is a set of slot documents (kind `throttle`) in the [`DocumentStore`]: before a
//! password is evaluated, the attempt **claims a slot** by creating `<counter>/<window>/<n>`
//! for the first free `n` in `1..=limit` with a create-only write (`put_doc(…, if_absent)`).
//! A write that finds the slot taken (`Precondition`) tries the next one; with every slot
//! taken the login is refused with 429 and `Retry-After` before any password is looked at.
//! Each slot can be created once, so racing attempts never get more than `limit`
//! evaluations per window: no read-modify-write, and no port method beyond the document
//! store's. A successful login releases its own slots and the (user, address) counter's
//! others (the user proved to know the password from there), so only failures stay counted.
//!
//! A slot is *pending* while its login is being evaluated and *failed* once the password was
//! wrong ([`record_failure`] marks it; a pending slot older than [`PENDING_MAX_MS`] counts as
//! failed too, so a crash mid-login cannot free it). When every slot is taken but some are
//! pending, the attempt waits for them ([`Env::sleep_ms`], bounded) instead of being refused:
//! twenty CI jobs logging in with one robot from behind one NAT all get in, one after the
//! other, while twenty concurrent guesses still get five evaluations.
//!
//! Windows are fixed (`now / WINDOW_MS`). Across a window boundary a counter can see up to
//! twice its limit within one window's span (the end of one window and the start of the
//! next); that is the design, not a race. Slots of a window are deleted, best effort, by
//! the claims that list them once the window after theirs has ended too (the one just past
//! stays, so a server whose clock lags a little still counts it); counters that are never
//! claimed again keep their last slots until a store-wide sweep removes `throttle` docs
//! older than two windows (left to the GC job).

use crate::auth::verify_password_off_thread;
use crate::error::{ErrorCode, RegistryError, StoreError};
use crate::ports::{DocumentStore, Env};
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;

/// Failed logins allowed per (user, client address) and window.
pub const USER_ADDR_LIMIT: u32 = 5;
/// Failed logins allowed per client address and window, over all users: high enough for a
/// building behind one proxy, low enough to stop a spray of guesses over many names. Logins
/// in flight count too, until they succeed.
pub const ADDR_LIMIT: u32 = 100;
/// The throttle window (fixed windows: `now_ms / WINDOW_MS`).
pub const WINDOW_MS: u64 = 15 * 60 * 1000;

/// A pending slot older than this counts as a failure (its login never finished).
pub const PENDING_MAX_MS: u64 = 60_000;
/// How long an attempt waits, at most, for pending slots to be decided.
const WAIT_MS: u64 = 5_000;
/// The pause between two looks at a full counter.
const WAIT_STEP_MS: u64 = 50;

/// The document kind of throttle slots.
const KIND: &str = "throttle";
/// Slots listed per `list_docs` call (a counter holds at most two windows' slots).
const PAGE: usize = 256;

/// An Argon2id hash (of a password no account has) with the parameters of
/// [`crate::auth::hash_password`], checked when the user does not exist so the answer takes as
/// long as for one that does. Whatever it matches, such a login fails.
pub const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$d2hhcmYtbm8tc3VjaC11cw$lWvM0vEatcQRSPi4Y5ZtqRuBK9dRTazjrQfqujCmGUQ";

/// Checks `password` against `hash`, or, without one (no such user or robot), against
/// [`DUMMY_HASH`], and then fails: the same Argon2 work either way, off the request threads.
pub async fn check_password(env: &impl Env, password: &str, hash: Option<&str>) -> bool {
    match hash {
        Some(h) => verify_password_off_thread(env, password, h).await,
        None => {
            let _ = verify_password_off_thread(env, password, DUMMY_HASH).await;
            false
        }
    }
}

/// The slots an attempt holds: kept if the login fails (they are the failure count),
/// released by [`release`] if it succeeds, handed back by [`give_back`] if it was never
/// decided.
#[derive(Debug)]
pub struct Claim {
    /// The (user, address) slot this attempt created.
    user_addr: String,
    /// That counter's other slots of the window, as listed while claiming.
    seen: Vec<String>,
    /// The per-address slot this attempt created.
    addr: String,
}

#[derive(Serialize, Deserialize)]
struct Slot {
    at_ms: u64,
    /// The login that claimed it failed.
    #[serde(default)]
    failed: bool,
}

/// What a look at a counter found.
enum Taken {
    /// This attempt's slot, and the window's other slots.
    Claimed(String, Vec<String>),
    /// Every slot is taken; so many of them by logins still being evaluated.
    Full { pending: usize },
}

/// Percent-encodes everything but ASCII letters, digits, `-`, `.`, `_` and `~`, so a name
/// never contains the `/` that separates key parts (`a/b` + `c` ≠ `a` + `b/c`).
fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// The (user, address) counter's key prefix.
pub fn user_addr_prefix(user: &str, addr: &str) -> String {
    format!("u/{}/{}/", enc(user), enc(addr))
}

/// The per-address counter's key prefix.
pub fn addr_prefix(addr: &str) -> String {
    format!("a/{}/", enc(addr))
}

fn slot_key(prefix: &str, window: u64, n: u32) -> String {
    format!("{prefix}{window:012}/{n:04}")
}

fn too_many(now_ms: u64, window: u64) -> RegistryError {
    let retry = ((window + 1) * WINDOW_MS - now_ms).div_ceil(1000).max(1);
    RegistryError::new(
        ErrorCode::TooManyRequests,
        format!("too many failed logins; retry in {retry} seconds"),
    )
    .with_header(crate::http::headers::RETRY_AFTER, retry.to_string())
}

/// Claims a slot of the counter at `prefix` in `window`: [`Taken::Claimed`] with the slot
/// created and the window's slots listed, [`Taken::Full`] if all `limit` are taken. Deletes
/// the slots of windows before the last one it lists (best effort).
async fn claim_slot<D: DocumentStore>(
    docs: &D,
    prefix: &str,
    window: u64,
    limit: u32,
    now_ms: u64,
) -> Result<Taken, RegistryError> {
    let mut taken = vec![false; limit as usize + 1];
    let mut seen = Vec::new();
    let mut pending = 0;
    let mut after: Option<String> = None;
    loop {
        let page = docs.list_docs(KIND, prefix, after.as_deref(), PAGE).await?;
        for (id, raw) in &page {
            let Some((w, n)) = id
                .strip_prefix(prefix)
                .and_then(|rest| rest.split_once('/'))
                .and_then(|(w, n)| Some((w.parse::<u64>().ok()?, n.parse::<u32>().ok()?)))
            else {
                continue;
            };
            if w == window {
                if let Some(t) = taken.get_mut(n as usize) {
                    *t = true;
                }
                let slot = serde_json::from_slice::<Slot>(raw).ok();
                if slot.is_some_and(|s| !s.failed && s.at_ms + PENDING_MAX_MS > now_ms) {
                    pending += 1;
                }
                seen.push(id.clone());
            } else if w + 1 < window
                && let Err(e) = docs.delete_doc(KIND, id).await
            {
                tracing::debug!(slot = %id, error = %e, "deleting a stale throttle slot");
            }
        }
        match page.last() {
            Some((last, _)) if page.len() >= PAGE => after = Some(last.clone()),
            _ => break,
        }
    }
    let value = slot_value(now_ms, false)?;
    for n in 1..=limit {
        if taken[n as usize] {
            continue;
        }
        let key = slot_key(prefix, window, n);
        match docs.put_doc(KIND, &key, &value, true).await {
            Ok(()) => return Ok(Taken::Claimed(key, seen)),
            // Taken meanwhile by a login that is now being evaluated.
            Err(StoreError::Precondition(_)) => pending += 1,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Taken::Full { pending })
}

fn slot_value(at_ms: u64, failed: bool) -> Result<Vec<u8>, RegistryError> {
    serde_json::to_vec(&Slot { at_ms, failed })
        .map_err(|e| RegistryError::new(ErrorCode::Unknown, e.to_string()))
}

/// Claims a slot of one counter, waiting (bounded) while the counter is full of logins still
/// being evaluated; `None` when it is full of failures, or still full after the wait.
async fn claim_waiting<D: DocumentStore, E: Env>(
    docs: &D,
    env: &E,
    prefix: &str,
    limit: u32,
) -> Result<Option<(String, Vec<String>, u64)>, RegistryError> {
    let start = env.now_ms();
    for _ in 0..=WAIT_MS / WAIT_STEP_MS {
        let now = env.now_ms();
        let window = now / WINDOW_MS;
        match claim_slot(docs, prefix, window, limit, now).await? {
            Taken::Claimed(key, seen) => return Ok(Some((key, seen, window))),
            Taken::Full { pending: 0 } => return Ok(None),
            Taken::Full { .. } if now.saturating_sub(start) >= WAIT_MS => return Ok(None),
            Taken::Full { .. } => env.sleep_ms(WAIT_STEP_MS).await,
        }
    }
    Ok(None)
}

/// Claims a slot of both counters for a login of `user` from `addr`, before its password is
/// evaluated; refuses with 429 and `Retry-After` (the window's end) if either is full of
/// failures (or of logins that stay undecided for the whole wait). A failed login keeps its
/// slots, marked by [`record_failure`]: they are the failure count.
pub async fn claim<D: DocumentStore, E: Env>(
    docs: &D,
    env: &E,
    user: &str,
    addr: &str,
) -> Result<Claim, RegistryError> {
    let ua = user_addr_prefix(user, addr);
    let Some((user_addr, seen, _)) = claim_waiting(docs, env, &ua, USER_ADDR_LIMIT).await? else {
        let now = env.now_ms();
        return Err(too_many(now, now / WINDOW_MS));
    };
    let claimed = claim_waiting(docs, env, &addr_prefix(addr), ADDR_LIMIT).await;
    match claimed {
        Ok(Some((addr, _, _))) => Ok(Claim {
            user_addr,
            seen,
            addr,
        }),
        // This attempt will not be evaluated: it must not count against the user.
        Ok(None) => {
            delete_slot(docs, &user_addr).await;
            let now = env.now_ms();
            Err(too_many(now, now / WINDOW_MS))
        }
        Err(e) => {
            delete_slot(docs, &user_addr).await;
            Err(e)
        }
    }
}

/// Deletes a slot; a failure is logged and leaves the slot counted.
async fn delete_slot<D: DocumentStore>(docs: &D, key: &str) {
    if let Err(e) = docs.delete_doc(KIND, key).await {
        tracing::warn!(slot = %key, error = %e, "releasing a throttle slot");
    }
}

/// After a failed login: marks its slots failed, so attempts waiting for pending slots stop
/// waiting for these. Best effort: a slot left pending counts as failed after
/// [`PENDING_MAX_MS`] anyway.
pub async fn record_failure<D: DocumentStore>(docs: &D, claim: &Claim, now_ms: u64) {
    let Ok(value) = slot_value(now_ms, true) else {
        return;
    };
    for key in [&claim.user_addr, &claim.addr] {
        if let Err(e) = docs.put_doc(KIND, key, &value, false).await {
            tracing::warn!(slot = %key, error = %e, "marking a throttle slot failed");
        }
    }
}

/// After a successful login: frees this attempt's slots and the other (user, address) slots
/// it saw, so the user starts over from that address and the address's count holds failures
/// only. Best effort: a slot that cannot be deleted stays counted until its window ends.
pub async fn release<D: DocumentStore>(docs: &D, claim: Claim) {
    give_back(docs, &claim).await;
    for k in &claim.seen {
        delete_slot(docs, k).await;
    }
}

/// When an attempt was never decided (the store failed while looking the account up):
/// frees only this attempt's own slots, so the failures already counted stay.
pub async fn give_back<D: DocumentStore>(docs: &D, claim: &Claim) {
    delete_slot(docs, &claim.addr).await;
    delete_slot(docs, &claim.user_addr).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{MemoryMetadata, TestEnv};
    use futures_executor::block_on;
    use std::sync::atomic::{AtomicUsize, Ordering};

    const T0: u64 = 1_800_000_000_000;

    #[test]
    fn keys_cannot_collide() {
        assert_ne!(user_addr_prefix("a/b", "c"), user_addr_prefix("a", "b/c"));
        assert_ne!(user_addr_prefix("a%2Fb", "c"), user_addr_prefix("a/b", "c"));
        assert_eq!(
            user_addr_prefix("robot$p+ci", "::1"),
            "u/robot%24p%2Bci/%3A%3A1/"
        );
        assert_eq!(addr_prefix("10.0.0.7"), "a/10.0.0.7/");
    }

    #[test]
    fn dummy_hash_has_the_real_parameters() {
        let real = crate::auth::hash_password(&TestEnv::default(), "x").expect("hash");
        let params = |h: &str| h.rsplitn(3, '$').nth(2).expect("phc").to_owned();
        assert_eq!(params(DUMMY_HASH), params(&real));
        assert!(!crate::auth::verify_password("", DUMMY_HASH));
    }

    /// An [`Env`] that counts the heavy jobs it runs.
    #[derive(Default)]
    struct Counting(TestEnv, AtomicUsize);

    impl Env for Counting {
        fn now_ms(&self) -> u64 {
            self.0.now_ms()
        }
        fn fill_random(&self, buf: &mut [u8]) {
            self.0.fill_random(buf)
        }
        async fn run_heavy<T, F>(&self, work: F) -> T
        where
            T: Send + 'static,
            F: FnOnce() -> T + Send + 'static,
        {
            self.1.fetch_add(1, Ordering::SeqCst);
            work()
        }
    }

    #[test]
    fn unknown_users_cost_an_argon2_check_and_fail() {
        let env = Counting::default();
        let real = crate::auth::hash_password(&env, "pw").expect("hash");
        assert!(block_on(check_password(&env, "pw", Some(&real))));
        assert_eq!(env.1.load(Ordering::SeqCst), 1);
        assert!(!block_on(check_password(&env, "pw", None)));
        assert_eq!(
            env.1.load(Ordering::SeqCst),
            2,
            "the dummy hash was checked"
        );
    }

    fn env_at(ms: u64) -> TestEnv {
        let env = TestEnv::default();
        env.now.store(ms, Ordering::SeqCst);
        env
    }

    #[test]
    fn slots_count_failures_per_window_and_release_on_success() {
        let docs = MemoryMetadata::default();
        let env = env_at(T0);
        for _ in 0..USER_ADDR_LIMIT {
            let c = block_on(claim(&docs, &env, "alice", "10.0.0.1")).expect("claim");
            block_on(record_failure(&docs, &c, T0));
        }
        let e = block_on(claim(&docs, &env, "alice", "10.0.0.1")).expect_err("full");
        assert_eq!(e.code, ErrorCode::TooManyRequests);
        // Another address, another user: unaffected.
        let c = block_on(claim(&docs, &env, "alice", "10.0.0.2")).expect("other address");
        block_on(release(&docs, c));
        block_on(claim(&docs, &env, "bob", "10.0.0.1")).expect("other user");
        // The next window starts over; two windows on, the first one's slots are deleted.
        let next = (T0 / WINDOW_MS + 1) * WINDOW_MS;
        env.now.store(next, Ordering::SeqCst);
        let c = block_on(claim(&docs, &env, "alice", "10.0.0.1")).expect("next window");
        block_on(release(&docs, c));
        env.now.store(next + WINDOW_MS, Ordering::SeqCst);
        block_on(claim(&docs, &env, "alice", "10.0.0.1")).expect("later");
        let left =
            block_on(docs.list_docs(KIND, &user_addr_prefix("alice", "10.0.0.1"), None, 100))
                .expect("list");
        assert_eq!(left.len(), 1, "{left:?}");
    }

    #[test]
    fn a_full_counter_of_pending_logins_is_waited_for_then_refused() {
        let docs = MemoryMetadata::default();
        let env = env_at(T0);
        let claims: Vec<_> = (0..USER_ADDR_LIMIT)
            .map(|_| block_on(claim(&docs, &env, "ci", "10.0.0.1")).expect("claim"))
            .collect();
        // All pending: TestEnv's sleep does not wait and its clock stands still, so the wait
        // ends by its round count, and the attempt is refused.
        let e = block_on(claim(&docs, &env, "ci", "10.0.0.1")).expect_err("still pending");
        assert_eq!(e.code, ErrorCode::TooManyRequests);
        // One succeeds and frees its slot (and the others it saw): the next gets in.
        let mut it = claims.into_iter();
        block_on(release(&docs, it.next().expect("claim")));
        block_on(claim(&docs, &env, "ci", "10.0.0.1")).expect("a slot was freed");
        // A pending slot whose login never finished counts as a failure after a while.
        env.now.store(T0 + PENDING_MAX_MS + 1, Ordering::SeqCst);
        let started = env.now_ms();
        let e = block_on(claim(&docs, &env, "ci", "10.0.0.1")).expect_err("stale pending");
        assert_eq!(e.code, ErrorCode::TooManyRequests);
        assert_eq!(env.now_ms(), started);
    }
}
