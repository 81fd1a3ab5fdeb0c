//! Reading `[vars]` and secrets, through the core's settings loader. A secret and a plain
//! variable look alike to the code: wrangler gives both as string bindings.

use wharf_core::settings::Vars;
use worker::Env;

/// Largest request body on Cloudflare's Free and Pro plans (Business 200 MB, Enterprise
/// 500 MB): above it Cloudflare answers 413 itself, so the Worker refuses first with an
/// OCI error that names the way around (chunked uploads).
pub const FREE_PLAN_BODY: u64 = 100 * 1024 * 1024;

/// The Worker's settings: a secret of the name, else a variable.
pub fn vars(env: &Env) -> Vars<impl Fn(&str) -> Option<String> + '_> {
    Vars::new(move |name: &str| {
        env.secret(name)
            .map(|s| s.to_string())
            .or_else(|_| env.var(name).map(|v| v.to_string()))
            .ok()
    })
}
