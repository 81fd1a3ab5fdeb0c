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
use serde::Serialize;
use std::fmt::Write as _;

/// Failed logins allowed per (user, client address) and window.
pub const USER_ADDR_LIMIT: u32 = 5;
/// Failed logins allowed per client address and window, over all users: high enough for a
/// building behind one proxy, low enough to stop a spray of guesses over many names. Logins
/// in flight count too, until they succeed.
pub const ADDR_LIMIT: u32 = 100;
/// The throttle window (fixed windows: `now_ms / WINDOW_MS`).
pub const WINDOW_MS: u64 = 15 * 60 * 1000;

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

#[derive(Serialize)]
struct Slot {
    at_ms: u64,
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
    .with_header(http::header::RETRY_AFTER, retry.to_string())
}

/// Claims a slot of the counter at `prefix` in `window`: `Ok(Some((own, seen)))` with the
/// slot created and the window's slots listed, `Ok(None)` if all `limit` are taken. Deletes
/// the slots of windows before the last one it lists (best effort).
async fn claim_slot<D: DocumentStore>(
    docs: &D,
    prefix: &str,
    window: u64,
    limit: u32,
    now_ms: u64,
) -> Result<Option<(String, Vec<String>)>, RegistryError> {
    let mut taken = vec![false; limit as usize + 1];
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = docs.list_docs(KIND, prefix, after.as_deref(), PAGE).await?;
        for (id, _) in &page {
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
    let value = serde_json::to_vec(&Slot { at_ms: now_ms })
        .map_err(|e| RegistryError::new(ErrorCode::Unknown, e.to_string()))?;
    for n in 1..=limit {
        if taken[n as usize] {
            continue;
        }
        let key = slot_key(prefix, window, n);
        match docs.put_doc(KIND, &key, &value, true).await {
            Ok(()) => return Ok(Some((key, seen))),
            Err(StoreError::Precondition(_)) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(None)
}

/// Claims a slot of both counters for a login of `user` from `addr`, before its password is
/// evaluated; refuses with 429 and `Retry-After` (the window's end) if either is full. A
/// failed login keeps its slots: they are the failure count.
pub async fn claim<D: DocumentStore>(
    docs: &D,
    user: &str,
    addr: &str,
    now_ms: u64,
) -> Result<Claim, RegistryError> {
    let window = now_ms / WINDOW_MS;
    let ua = user_addr_prefix(user, addr);
    let Some((user_addr, seen)) = claim_slot(docs, &ua, window, USER_ADDR_LIMIT, now_ms).await?
    else {
        return Err(too_many(now_ms, window));
    };
    let claimed = claim_slot(docs, &addr_prefix(addr), window, ADDR_LIMIT, now_ms).await;
    match claimed {
        Ok(Some((addr, _))) => Ok(Claim {
            user_addr,
            seen,
            addr,
        }),
        // This attempt will not be evaluated: it must not count against the user.
        Ok(None) => {
            delete_slot(docs, &user_addr).await;
            Err(too_many(now_ms, window))
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

    #[test]
    fn slots_count_failures_per_window_and_release_on_success() {
        let docs = MemoryMetadata::default();
        for _ in 0..USER_ADDR_LIMIT {
            block_on(claim(&docs, "alice", "10.0.0.1", T0)).expect("claim");
        }
        let e = block_on(claim(&docs, "alice", "10.0.0.1", T0)).expect_err("full");
        assert_eq!(e.code, ErrorCode::TooManyRequests);
        // Another address, another user: unaffected.
        let c = block_on(claim(&docs, "alice", "10.0.0.2", T0)).expect("other address");
        block_on(release(&docs, c));
        block_on(claim(&docs, "bob", "10.0.0.1", T0)).expect("other user");
        // The next window starts over; two windows on, the first one's slots are deleted.
        let next = (T0 / WINDOW_MS + 1) * WINDOW_MS;
        let c = block_on(claim(&docs, "alice", "10.0.0.1", next)).expect("next window");
        block_on(release(&docs, c));
        block_on(claim(&docs, "alice", "10.0.0.1", next + WINDOW_MS)).expect("later");
        let left =
            block_on(docs.list_docs(KIND, &user_addr_prefix("alice", "10.0.0.1"), None, 100))
                .expect("list");
        assert_eq!(left.len(), 1, "{left:?}");
    }
}
