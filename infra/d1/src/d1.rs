//! Statements on the Worker's D1 binding, and D1 errors by meaning.

use crate::{Db, Outcome, Param, Row, Stmt};
use std::rc::Rc;
use wasm_bindgen::JsValue;
use wharf_core::StoreError;
use worker::{D1Database, D1PreparedStatement, D1Result};

/// [`Db`] on a D1 binding. `D1Database` is not `Clone`, hence the `Rc` (a Worker isolate is
/// single-threaded).
#[derive(Clone)]
pub struct D1Sql(Rc<D1Database>);

impl D1Sql {
    /// Wraps the binding.
    pub fn new(db: D1Database) -> Self {
        Self(Rc::new(db))
    }

    fn prepare(&self, s: &Stmt) -> Result<D1PreparedStatement, StoreError> {
        let args: Vec<JsValue> = s
            .params
            .iter()
            .map(|p| match p {
                Param::Text(t) => JsValue::from_str(t),
                // Checked below 2^53 where it was made (sql::int), so exact as a JS number.
                Param::Int(n) => JsValue::from_f64(*n as f64),
                Param::Null => JsValue::null(),
            })
            .collect();
        self.0
            .prepare(s.sql.as_str())
            .bind(&args)
            .map_err(store_error)
    }
}

fn outcome(r: &D1Result) -> Result<Outcome, StoreError> {
    Ok(Outcome {
        rows: r.results::<Row>().map_err(store_error)?,
        changes: r
            .meta()
            .map_err(store_error)?
            .and_then(|m| m.changes)
            .unwrap_or(0) as u64,
    })
}

thread_local! {
    /// D1 calls made by this isolate (single-threaded): each is a subrequest.
    static SUBREQUESTS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// D1 calls (statements alone, or batches) this isolate has made: each counts as one of
/// an invocation's subrequests; the Worker reads it around a cron run to log its cost.
pub fn subrequests() -> u64 {
    SUBREQUESTS.with(|c| c.get())
}

impl Db for D1Sql {
    /// One statement runs alone (`all`); several as one `batch`, which D1 runs as one
    /// transaction.
    async fn run(&self, stmts: Vec<Stmt>) -> Result<Vec<Outcome>, StoreError> {
        if stmts.is_empty() {
            return Ok(Vec::new());
        }
        SUBREQUESTS.with(|c| c.set(c.get() + 1));
        let mut prepared = stmts
            .iter()
            .map(|s| self.prepare(s))
            .collect::<Result<Vec<_>, _>>()?;
        let results = if prepared.len() == 1 {
            match prepared.pop() {
                Some(p) => vec![p.all().await.map_err(store_error)?],
                None => Vec::new(),
            }
        } else {
            self.0.batch(prepared).await.map_err(store_error)?
        };
        results.iter().map(outcome).collect()
    }
}

/// A D1 (or binding) error as a `StoreError`, with D1's own message.
pub fn store_error(e: worker::Error) -> StoreError {
    let msg = match &e {
        worker::Error::D1(d) => {
            let top: String = AsRef::<js_sys::Error>::as_ref(d).message().into();
            format!("{top} ({})", d.cause())
        }
        e => e.to_string(),
    };
    classify(msg)
}

/// Errors that name a transient condition (Cloudflare's list of retryable D1 errors, plus
/// SQLite's busy and a timed-out call) are `Unavailable`; the rest `Other`.
pub fn classify(msg: String) -> StoreError {
    const TRANSIENT: &[&str] = &[
        "network connection lost",
        "object to be reset",
        "reset because its code was updated",
        "overloaded",
        "transient issue",
        "internal error",
        "sqlite_busy",
        "database is locked",
        "timed out",
        "timeout",
        "too many requests",
    ];
    let lower = msg.to_ascii_lowercase();
    if TRANSIENT.iter().any(|t| lower.contains(t)) {
        StoreError::Unavailable(msg)
    } else {
        StoreError::Other(msg)
    }
}
