//! Reading `[vars]` and secrets. A secret and a plain variable look alike to the code:
//! wrangler gives both as string bindings.

use worker::Env;

/// Largest request body on Cloudflare's Free and Pro plans (Business 200 MB, Enterprise
/// 500 MB): above it Cloudflare answers 413 itself, so the Worker refuses first with an
/// OCI error that names the way around (chunked uploads).
pub const FREE_PLAN_BODY: u64 = 100 * 1024 * 1024;

/// The Worker's variables.
pub struct Vars<'a>(pub &'a Env);

impl Vars<'_> {
    /// A variable or secret, trimmed; `None` when unset or blank.
    pub fn get(&self, name: &str) -> Option<String> {
        let v = self
            .0
            .secret(name)
            .map(|s| s.to_string())
            .or_else(|_| self.0.var(name).map(|v| v.to_string()))
            .ok()?;
        let v = v.trim();
        (!v.is_empty()).then(|| v.to_owned())
    }

    /// A number, or `default` when unset.
    pub fn number(&self, name: &str, default: u64) -> Result<u64, String> {
        self.get(name).map_or(Ok(default), |v| {
            v.parse()
                .map_err(|_| format!("{name} must be a number, not {v:?}"))
        })
    }

    /// An on/off switch, or `default` when unset.
    pub fn switch(&self, name: &str, default: bool) -> Result<bool, String> {
        match self.get(name).as_deref() {
            None => Ok(default),
            Some("on" | "true" | "1") => Ok(true),
            Some("off" | "false" | "0") => Ok(false),
            Some(v) => Err(format!("{name} must be on or off, not {v:?}")),
        }
    }
}
