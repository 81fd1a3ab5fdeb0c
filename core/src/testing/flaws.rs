//! Testing a conformance suite itself: every flaw planted in a store must make it fail, or
//! the suite would let a backend with that flaw pass.

use std::fmt::Debug;
use std::panic::{AssertUnwindSafe, catch_unwind};

/// What `run` panicked with, if it did.
pub fn failure_of(run: impl FnOnce()) -> Option<String> {
    let panic = catch_unwind(AssertUnwindSafe(run)).err()?;
    Some(match panic.downcast::<String>() {
        Ok(m) => *m,
        Err(p) => p.downcast_ref::<&str>().map_or("?", |m| m).to_owned(),
    })
}

/// Runs `suite` on a store with each of `flaws` (it panics when it catches one), with the
/// expected panics kept out of the output; prints what caught each flaw, and fails naming
/// those nothing caught.
pub fn assert_every_flaw_caught<F: Copy + Debug>(flaws: &[F], suite: impl Fn(F)) {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let found: Vec<(F, Option<String>)> = flaws
        .iter()
        .map(|&f| (f, failure_of(|| suite(f))))
        .collect();
    std::panic::set_hook(hook);
    for (flaw, why) in &found {
        eprintln!("{flaw:?}: {}", why.as_deref().unwrap_or("NOT CAUGHT"));
    }
    let missed: Vec<F> = found
        .iter()
        .filter(|(_, why)| why.is_none())
        .map(|(f, _)| *f)
        .collect();
    assert!(
        missed.is_empty(),
        "the suite passed flawed stores: {missed:?}"
    );
}
