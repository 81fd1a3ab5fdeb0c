//! Which pulls this process already noted this hour, so that a manifest pulled again and
//! again writes its pull time once an hour per process, not once per pull. On DynamoDB a
//! pull whose time is noted costs a 3-item transaction (6 WCU); one already noted here
//! costs only its audit record (1 WCU), and a `HEAD` nothing.

use crate::model::Digest;
use std::collections::HashSet;
use std::sync::{Mutex, PoisonError};

/// How many pulls are remembered within an hour; past it, pulls are noted as if new (a
/// write more, never a pull time lost).
const REMEMBERED: usize = 4096;

/// The pulls noted in the current hour.
#[derive(Debug, Default)]
pub struct PullMemo(Mutex<(u64, HashSet<(String, Digest)>)>);

impl PullMemo {
    /// Whether `digest` of `repo` was noted at `hour` by this process.
    pub fn noted(&self, repo: &str, digest: &Digest, hour: u64) -> bool {
        let m = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        m.0 == hour && m.1.contains(&(repo.to_owned(), digest.clone()))
    }

    /// Remembers that the pull time of `digest` of `repo` is at `hour` in the store.
    pub fn remember(&self, repo: &str, digest: &Digest, hour: u64) {
        let mut m = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if m.0 != hour {
            *m = (hour, HashSet::new());
        }
        if m.1.len() < REMEMBERED {
            m.1.insert((repo.to_owned(), digest.clone()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_within_the_hour_only() {
        let memo = PullMemo::default();
        let d = Digest::sha256_of(b"m");
        assert!(!memo.noted("r", &d, 7));
        memo.remember("r", &d, 7);
        assert!(memo.noted("r", &d, 7));
        assert!(!memo.noted("other", &d, 7), "per repository");
        assert!(!memo.noted("r", &d, 8), "a new hour is noted again");
        memo.remember("r", &d, 8);
        assert!(!memo.noted("r", &d, 7), "the old hour is forgotten");
        for i in 0..REMEMBERED + 10 {
            memo.remember("r", &Digest::sha256_of(&i.to_be_bytes()), 8);
        }
        assert!(!memo.noted("r", &Digest::sha256_of(&(REMEMBERED + 5).to_be_bytes()), 8));
    }
}
