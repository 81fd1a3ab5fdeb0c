//! The management API's client for the CLI: where and as whom to connect, one call, and
//! waiting for a queued run. Both command modules use it; neither uses the other's.

use clap::Args;
use serde_json::Value;

/// Where and as whom to connect.
#[derive(Args, Debug, Clone)]
pub struct Conn {
    /// Registry URL.
    #[arg(
        long,
        global = true,
        env = "WHARF_URL",
        default_value = "http://127.0.0.1:5000"
    )]
    pub url: String,
    /// User (or robot) to authenticate as.
    #[arg(long, global = true, env = "WHARF_USERNAME", default_value = "admin")]
    pub username: String,
    /// Password; prefer the environment variable to a flag (flags show in process lists).
    #[arg(long, global = true, env = "WHARF_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
}

/// A duration as `90`, `90s`, `15m`, `2h` or `7d`, in seconds.
pub fn parse_duration(s: &str) -> Result<u64, String> {
    let (n, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = n
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 90s, 15m, 2h"))?;
    let mul = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("{s:?}: the unit is one of s, m, h, d")),
    };
    n.checked_mul(mul)
        .ok_or_else(|| format!("{s:?} is too long"))
}

/// Queues a run with a `POST` to `path` and polls `path/<id>` until it has finished (or
/// `wait_secs` pass); the run's record. `what` names it in messages.
pub fn queue_and_wait(
    conn: &Conn,
    path: &str,
    body: Value,
    wait_secs: u64,
    what: &str,
) -> Result<Value, String> {
    let run = call(conn, "POST", path, Some(body))?;
    let id = run["id"]
        .as_str()
        .ok_or("the server answered without a run id")?
        .to_owned();
    eprintln!("{what} {id} queued");
    let start = std::time::Instant::now();
    loop {
        let run = call(conn, "GET", &format!("{path}/{}", enc(&id)), None)?;
        if run["finished_ms"].is_u64() {
            return Ok(run);
        }
        if start.elapsed().as_secs() > wait_secs {
            return Err(format!(
                "{what} {id} has not finished after {wait_secs} s (status {}); it goes on in the server",
                run["status"]
            ));
        }
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
}

pub fn call(conn: &Conn, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
    let password = conn
        .password
        .clone()
        .ok_or("set WHARF_PASSWORD (or --password) to authenticate")?;
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let url = format!("{}/api/v1/{path}", conn.url.trim_end_matches('/'));
    let auth = format!(
        "Basic {}",
        base64_encode(format!("{}:{password}", conn.username).as_bytes())
    );
    let resp = match (method, body) {
        ("GET", _) => agent.get(&url).header("Authorization", &auth).call(),
        ("DELETE", _) => agent.delete(&url).header("Authorization", &auth).call(),
        ("POST", Some(b)) => agent.post(&url).header("Authorization", &auth).send_json(b),
        ("PUT", Some(b)) => agent.put(&url).header("Authorization", &auth).send_json(b),
        _ => return Err(format!("bad call {method} {path}")),
    };
    let mut resp = resp.map_err(|e| format!("{url}: {e}"))?;
    let status = resp.status();
    let text = resp
        .body_mut()
        .read_to_string()
        .map_err(|e| e.to_string())?;
    let v: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    if status.is_success() {
        Ok(v)
    } else {
        let msg = v["errors"][0]["message"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| v.to_string());
        Err(format!("{status}: {msg}"))
    }
}

fn base64_encode(b: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(b)
}

pub fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn durations() {
        use super::parse_duration as p;
        assert_eq!(p("0s"), Ok(0));
        assert_eq!(p("90"), Ok(90));
        assert_eq!(p("15m"), Ok(900));
        assert_eq!(p("2h"), Ok(7200));
        assert_eq!(p("7d"), Ok(604_800));
        assert!(p("1w").is_err() && p("h").is_err() && p("").is_err());
        assert!(p("99999999999999999999d").is_err());
    }

    #[test]
    fn base64() {
        assert_eq!(super::base64_encode(b"admin:pw"), "YWRtaW46cHc=");
        assert_eq!(super::base64_encode(b"ab"), "YWI=");
        assert_eq!(super::base64_encode(b"abc"), "YWJj");
    }
}
