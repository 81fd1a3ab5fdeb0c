//! Harness for the protocol suite: one suite, any runtime.
//!
//! With `WHARF_TEST_URL` set, the suite runs against that registry (credentials from
//! `WHARF_TEST_USER`/`WHARF_TEST_PASSWORD`, if it has auth on). Otherwise it starts the
//! local `wharf serve` (`WHARF_BIN`, default the newer of `target/release/wharf` and
//! `target/debug/wharf`) on a port picked at run time, with auth on, and stops it by PID when done.
//!
//! Against another runtime: `WHARF_TEST_SKIP_SHA512=<why>` skips the sha512 uploads (a store
//! that cannot hold their keys), `WHARF_TEST_NO_CONTINUE=<why>` stops waiting for `100
//! Continue` on held-back PATCHes (a front that ignores `Expect`, like workerd), and
//! `WHARF_TEST_LAMBDA_INVOKE=<Invoke API URL>` names the function behind a Lambda target,
//! for requests the function-URL emulator would not hand on as AWS does ([`invoke`]).
//!
//! A server outlives nothing: besides `Drop`, a watchdog (`sh`, reading a pipe the
//! test process holds) stops it when the test process exits, since the shared target
//! lives in a `static`, which Rust never drops. Data directories live under
//! `target/protocol-tests/` and are removed when their server stops, unless a test
//! panicked; the server logs (`*.log` beside them) are kept.

use base64::Engine as _;
use sha2::{Digest as _, Sha256};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

/// A registry under test.
pub struct Target {
    /// `http://127.0.0.1:PORT`
    pub base: String,
    /// `127.0.0.1:PORT`
    pub authority: String,
    /// Basic credentials for the token endpoint, if auth is on.
    pub creds: Option<(String, String)>,
    /// The local server, if this suite started it.
    pub server: Option<Server>,
}

/// A `wharf serve` process started by the suite.
pub struct Server {
    child: Child,
    /// `sh` reading a pipe we hold: stops the server if the test process dies first.
    watchdog: Option<(Child, ChildStdin)>,
    /// Its data directory.
    pub data_dir: PathBuf,
    /// Its port.
    pub port: u16,
    /// Admin password.
    pub password: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.disarm();
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.data_dir);
        }
    }
}

/// Random lowercase hex.
pub fn random_hex(n: usize) -> String {
    let mut b = vec![0u8; n.div_ceil(2)];
    getrandom::fill(&mut b).expect("random");
    let s: String = b.iter().map(|x| format!("{x:02x}")).collect();
    s[..n].to_owned()
}

/// Random bytes.
pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut b = vec![0u8; n];
    getrandom::fill(&mut b).expect("random");
    b
}

/// `sha256:<hex>` of data.
pub fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(data)))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The wharf binary to test: `WHARF_BIN`, else the newer of `target/release/wharf` and
/// `target/debug/wharf` (an old release build must not shadow a fresh debug one).
pub fn wharf_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Ok(b) = std::env::var("WHARF_BIN") {
            return PathBuf::from(b);
        }
        let newest = ["release", "debug"]
            .iter()
            .map(|p| workspace_root().join("target").join(p).join("wharf"))
            .filter_map(|p| Some((std::fs::metadata(&p).ok()?.modified().ok()?, p)))
            .max();
        match newest {
            Some((_, p)) => {
                eprintln!("protocol suite: testing {}", p.display());
                p
            }
            None => panic!(
                "no wharf binary: build it with `cargo build -p wharf` (or --release), \
                 or set WHARF_BIN, or point WHARF_TEST_URL at a running registry"
            ),
        }
    })
    .clone()
}

/// Whether the suite targets the local server it starts itself.
pub fn is_local() -> bool {
    std::env::var("WHARF_TEST_URL").is_err()
}

impl Server {
    /// Starts `wharf serve` on a free port over `data_dir` (reused across restarts) and
    /// waits (at most 10 s) until `GET /v2/` answers.
    pub fn start(data_dir: PathBuf, password: &str) -> Server {
        Self::start_with_env(data_dir, password, &[])
    }

    /// [`Server::start`] with extra environment variables (`WHARF_DISABLE_DELETE`, …).
    pub fn start_with_env(data_dir: PathBuf, password: &str, envs: &[(&str, &str)]) -> Server {
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr").port()
        };
        let log_path = data_dir.with_extension("log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .expect("log file");
        let child = Command::new(wharf_bin())
            .args([
                "serve",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--data-dir",
            ])
            .arg(&data_dir)
            .env("WHARF_ADMIN_PASSWORD", password)
            .env("WHARF_AUTH", "on")
            .env("RUST_LOG", "info")
            .envs(envs.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", wharf_bin().display()));
        let mut server = Server {
            watchdog: watchdog(child.id(), &data_dir),
            child,
            data_dir,
            port,
            password: password.to_owned(),
        };
        let url = format!("http://127.0.0.1:{port}/v2/");
        let probe = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(2)))
            .build();
        let probe: ureq::Agent = probe.into();
        for _ in 0..200 {
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!(
                    "wharf exited ({status}) before serving; its log, {}:\n{}",
                    log_path.display(),
                    std::fs::read_to_string(&log_path).unwrap_or_default()
                );
            }
            // 200 with auth off, 401 with auth on: either way the API is up.
            if let Ok(r) = probe.get(&url).call()
                && matches!(r.status().as_u16(), 200 | 401)
            {
                return server;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "wharf did not answer GET {url} within 10 s; see {}",
            log_path.display()
        );
    }

    /// Stops the watchdog (the process is being stopped, or restarted on the same data).
    fn disarm(&mut self) {
        if let Some((mut w, pipe)) = self.watchdog.take() {
            let _ = w.kill();
            let _ = w.wait();
            drop(pipe);
        }
    }

    /// Sends a signal (`TERM`, `KILL`, …) without waiting.
    pub fn signal(&mut self, sig: &str) {
        let _ = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status();
    }

    /// Waits up to `tenths` tenths of a second for the process to exit.
    pub fn wait_exit(&mut self, tenths: u32) -> bool {
        for _ in 0..tenths {
            if let Ok(Some(_)) = self.child.try_wait() {
                // Reaped: its PID may be reused, so the watchdog must not signal it.
                self.disarm();
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }

    /// Kills the process with SIGKILL (a crash), keeping the data directory.
    pub fn crash(mut self) -> PathBuf {
        self.disarm();
        let _ = Command::new("kill")
            .args(["-9", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
        std::mem::take(&mut self.data_dir)
    }

    /// Stops the process with SIGTERM (graceful), keeping the data directory.
    pub fn stop(mut self) -> PathBuf {
        self.disarm();
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        for _ in 0..200 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return std::mem::take(&mut self.data_dir);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::mem::take(&mut self.data_dir)
    }
}

/// A `sh` that waits for end-of-file on its stdin, a pipe only this process holds, then
/// stops `pid` and removes its data directory: it fires when the test process exits
/// without dropping the server (the shared one is in a `static`) or is killed.
fn watchdog(pid: u32, data_dir: &std::path::Path) -> Option<(Child, ChildStdin)> {
    let script = r#"read _ ; kill -TERM "$1" 2>/dev/null
i=0; while kill -0 "$1" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
kill -KILL "$1" 2>/dev/null; rm -rf "$2""#;
    let mut w = Command::new("sh")
        .args(["-c", script, "wharf-watchdog", &pid.to_string()])
        .arg(data_dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let pipe = w.stdin.take()?;
    Some((w, pipe))
}

/// A fresh temporary directory under the target dir (kept for post-mortems).
pub fn temp_dir(tag: &str) -> PathBuf {
    let d = workspace_root()
        .join("target")
        .join("protocol-tests")
        .join(format!("{tag}-{}", random_hex(8)));
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

impl Target {
    /// A target with its own server (local) or the external one.
    pub fn fresh() -> Target {
        match std::env::var("WHARF_TEST_URL") {
            Ok(url) => {
                let base = url.trim_end_matches('/').to_owned();
                let authority = base.split("://").nth(1).unwrap_or(&base).to_owned();
                let creds = match (
                    std::env::var("WHARF_TEST_USER"),
                    std::env::var("WHARF_TEST_PASSWORD"),
                ) {
                    (Ok(u), Ok(p)) => Some((u, p)),
                    _ => None,
                };
                Target {
                    base,
                    authority,
                    creds,
                    server: None,
                }
            }
            Err(_) => Target::local(Server::start(
                temp_dir("srv").join("data"),
                &format!("pw-{}", random_hex(12)),
            )),
        }
    }

    /// A target over a local server.
    pub fn local(server: Server) -> Target {
        Target {
            base: format!("http://127.0.0.1:{}", server.port),
            authority: format!("127.0.0.1:{}", server.port),
            creds: Some(("admin".into(), server.password.clone())),
            server: Some(server),
        }
    }

    /// The target shared by tests that need no server of their own.
    pub fn shared() -> &'static Target {
        static T: OnceLock<Target> = OnceLock::new();
        T.get_or_init(Target::fresh)
    }

    /// A client for a new, unique repository.
    pub fn repo(&self, prefix: &str) -> Client<'_> {
        let repo = format!("proto/{prefix}-{}", random_hex(10));
        self.client(&repo)
    }

    /// A client for `repo`, holding a token for it (pull, push, delete) if auth is on.
    pub fn client(&self, repo: &str) -> Client<'_> {
        let token = self.token(&format!("repository:{repo}:pull,push,delete"));
        Client {
            t: self,
            repo: repo.to_owned(),
            token,
        }
    }

    /// A token for `scope` from the token endpoint (None with auth off).
    pub fn token(&self, scope: &str) -> Option<String> {
        let (u, p) = self.creds.as_ref()?;
        let agent = agent();
        let mut resp = agent
            .get(&format!("{}/token?service=wharf&scope={scope}", self.base))
            .header("Authorization", &basic(u, p))
            .call()
            .expect("token request");
        if resp.status() != 200 {
            let hint = match &self.server {
                Some(_) => format!(" (is {} an old build?)", wharf_bin().display()),
                None => String::new(),
            };
            panic!(
                "token endpoint refused the test credentials: {}{hint}",
                resp.status()
            );
        }
        let v: serde_json::Value = resp.body_mut().read_json().expect("token json");
        v["token"].as_str().map(str::to_owned)
    }
}

/// Basic credentials header.
pub fn basic(u: &str, p: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
    )
}

/// An HTTP agent that returns error statuses as responses and never follows redirects.
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_global(Some(Duration::from_secs(120)))
        .build()
        .into()
}

/// A response, read whole.
#[derive(Debug)]
pub struct Resp {
    /// Status.
    pub status: u16,
    /// Headers.
    pub headers: ureq::http::HeaderMap,
    /// Body.
    pub body: Vec<u8>,
    /// Whether a 307 was followed to get it (blob GETs on AWS).
    pub redirected: bool,
}

impl Resp {
    /// A header as text ("" if absent).
    pub fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    }
    /// The body as JSON (Null if not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
    /// The first OCI error code in the body.
    pub fn code(&self) -> String {
        self.json()["errors"][0]["code"]
            .as_str()
            .unwrap_or("")
            .to_owned()
    }
    /// Asserts status and (for errors) the OCI error code.
    #[track_caller]
    pub fn expect(&self, status: u16, code: Option<&str>) -> &Self {
        assert_eq!(
            self.status,
            status,
            "body: {}",
            String::from_utf8_lossy(&self.body)
        );
        if let Some(c) = code {
            assert_eq!(
                self.code(),
                c,
                "body: {}",
                String::from_utf8_lossy(&self.body)
            );
            let msg = self.json()["errors"][0]["message"]
                .as_str()
                .unwrap_or("")
                .to_owned();
            assert!(!msg.is_empty(), "an error carries a message");
        }
        self
    }
}

/// A client bound to one repository.
pub struct Client<'a> {
    /// The registry.
    pub t: &'a Target,
    /// The repository.
    pub repo: String,
    token: Option<String>,
}

impl Client<'_> {
    /// Uses `token` instead of the repository's own (wider scopes, catalog).
    pub fn with_token(mut self, token: Option<String>) -> Self {
        self.token = token;
        self
    }

    /// `METHOD base+path` with headers and an optional body.
    pub fn req(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Resp {
        let url = if path.starts_with("http") {
            path.to_owned()
        } else {
            format!("{}{path}", self.t.base)
        };
        let mut b = ureq::http::Request::builder().method(method).uri(&url);
        if let Some(t) = &self.token {
            b = b.header("Authorization", format!("Bearer {t}"));
        }
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        // Blob bytes go as application/octet-stream, as docker, skopeo and oras send them
        // (Lambda's function URLs, and so `cargo lambda watch`, need a type for binary).
        if body.is_some()
            && !headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        {
            b = b.header("Content-Type", "application/octet-stream");
        }
        let agent = agent();
        let resp = match body {
            Some(data) => agent.run(b.body(data.to_vec()).expect("request")),
            None => agent.run(b.body(()).expect("request")),
        };
        let mut resp = resp.unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        // A blob GET may be redirected to object storage (AWS: a presigned S3 URL). Follow
        // it as clients do: once, without the registry's Authorization, other headers kept.
        let redirected = resp.status().as_u16() == 307 && method == "GET";
        if redirected {
            let to = resp
                .headers()
                .get("location")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            assert!(
                to.starts_with("http"),
                "307 without an absolute Location: {to:?}"
            );
            let mut b = ureq::http::Request::builder().method("GET").uri(&to);
            for (k, v) in headers {
                b = b.header(*k, *v);
            }
            resp = agent
                .run(b.body(()).expect("request"))
                .unwrap_or_else(|e| panic!("GET {to} (redirected from {url}): {e}"));
        }
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp
            .body_mut()
            .with_config()
            .limit(64 << 20)
            .read_to_vec()
            .unwrap_or_default();
        Resp {
            status,
            headers,
            body,
            redirected,
        }
    }

    /// Path of this repository's API: `/v2/<repo>/<rest>`.
    pub fn path(&self, rest: &str) -> String {
        format!("/v2/{}/{rest}", self.repo)
    }

    /// Uploads a blob monolithically; returns its digest.
    pub fn push_blob(&self, data: &[u8]) -> String {
        let d = sha256(data);
        self.req(
            "POST",
            &self.path(&format!("blobs/uploads/?digest={d}")),
            &[],
            Some(data),
        )
        .expect(201, None);
        d
    }

    /// Starts an upload session; returns its Location.
    pub fn start_upload(&self) -> String {
        let r = self.req("POST", &self.path("blobs/uploads/"), &[], None);
        r.expect(202, None);
        assert!(!r.header("docker-upload-uuid").is_empty());
        r.header("location")
    }

    /// An OCI image manifest over a config and layers already pushed.
    pub fn image_manifest(&self, config: &[u8], layers: &[&[u8]]) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(config), "size": config.len()},
            "layers": layers.iter().map(|l| serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": sha256(l), "size": l.len()})).collect::<Vec<_>>(),
        }))
        .expect("json")
    }

    /// Pushes a small image (config + one layer) under `tag`; returns the manifest digest.
    pub fn push_image(&self, tag: &str) -> (String, Vec<u8>) {
        let config = format!(
            "{{\"architecture\":\"amd64\",\"os\":\"linux\",\"n\":\"{}\"}}",
            random_hex(8)
        )
        .into_bytes();
        let layer = random_bytes(2048);
        self.push_blob(&config);
        self.push_blob(&layer);
        let m = self.image_manifest(&config, &[&layer]);
        self.put_manifest(tag, "application/vnd.oci.image.manifest.v1+json", &m)
            .expect(201, None);
        (sha256(&m), m)
    }

    /// PUT a manifest.
    pub fn put_manifest(&self, reference: &str, media_type: &str, body: &[u8]) -> Resp {
        self.req(
            "PUT",
            &self.path(&format!("manifests/{reference}")),
            &[("Content-Type", media_type)],
            Some(body),
        )
    }

    /// Sends raw bytes on a new TCP connection: `head` (a request line and headers, to
    /// which Host and Authorization are added) and `body_part`, which may be shorter than
    /// the declared length. With `read`, returns the response (status line, headers and
    /// body) as text; without, hangs up at once.
    pub fn raw(&self, head: &str, body_part: &[u8], read: bool) -> String {
        let mut conn = self.raw_conn();
        let head = head.replacen("\r\n", &format!("\r\n{}", conn.extra_headers()), 1);
        let _ = conn.send(head.as_bytes());
        let _ = conn.send(body_part);
        if !read {
            conn.close();
            return String::new();
        }
        match conn.response() {
            Some(r) => format!("{}{}", r.head, String::from_utf8_lossy(&r.body)),
            None => String::new(),
        }
    }

    /// A hand-driven HTTP/1.1 connection carrying this client's credentials.
    pub fn raw_conn(&self) -> RawConn {
        RawConn::open(&self.t.authority, self.token.as_deref())
    }
}

/// One HTTP/1.1 connection driven by hand, for what a client library will not do: send
/// `..` segments as they are, cut a body short, or wait between the head and the body of
/// a request (`Expect: 100-continue` tells when the server has started reading it).
/// Reads are bounded by a 30 s socket timeout.
pub struct RawConn {
    s: TcpStream,
    buf: Vec<u8>,
    authority: String,
    token: Option<String>,
}

/// A response read from a [`RawConn`].
#[derive(Debug)]
pub struct RawResp {
    /// Status code (1xx for interim responses).
    pub status: u16,
    /// Status line and headers, as sent.
    pub head: String,
    /// Body (by Content-Length or chunked; empty for 1xx).
    pub body: Vec<u8>,
}

impl RawResp {
    /// A header's value ("" if absent).
    pub fn header(&self, name: &str) -> String {
        self.head
            .lines()
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_owned())
            .unwrap_or_default()
    }
}

impl RawConn {
    /// Connects to `authority`.
    pub fn open(authority: &str, token: Option<&str>) -> RawConn {
        let s = TcpStream::connect(authority).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        RawConn {
            s,
            buf: Vec::new(),
            authority: authority.to_owned(),
            token: token.map(str::to_owned),
        }
    }

    /// Changes how long a read waits (30 s from [`RawConn::open`]).
    pub fn set_read_timeout(&self, d: Duration) {
        self.s.set_read_timeout(Some(d)).expect("timeout");
    }

    /// `Host` and (with a token) `Authorization` header lines.
    pub fn extra_headers(&self) -> String {
        let auth = self
            .token
            .as_ref()
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        format!("Host: {}\r\n{auth}", self.authority)
    }

    /// Sends a request head: `METHOD target HTTP/1.1`, Host, Authorization, `headers`.
    pub fn head(&mut self, method: &str, target: &str, headers: &[(&str, &str)]) {
        let mut h = format!("{method} {target} HTTP/1.1\r\n{}", self.extra_headers());
        for (k, v) in headers {
            h.push_str(&format!("{k}: {v}\r\n"));
        }
        h.push_str("\r\n");
        self.send(h.as_bytes()).expect("send request head");
    }

    /// Sends bytes (the server may have closed the connection: the error is returned).
    pub fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.s.write_all(bytes)?;
        self.s.flush()
    }

    /// Hangs up.
    pub fn close(self) {
        let _ = self.s.shutdown(std::net::Shutdown::Both);
    }

    fn fill(&mut self) -> bool {
        let mut b = [0u8; 16 * 1024];
        match self.s.read(&mut b) {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&b[..n]);
                true
            }
        }
    }

    /// Reads the next response, interim (1xx) ones included; `None` if the connection
    /// closed (or the read timed out) before a whole response arrived.
    pub fn response(&mut self) -> Option<RawResp> {
        let end = loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            if !self.fill() {
                return None;
            }
        };
        let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
        self.buf.drain(..end);
        let status = head.split(' ').nth(1)?.parse().ok()?;
        let mut r = RawResp {
            status,
            head,
            body: Vec::new(),
        };
        if (100..200).contains(&status) {
            return Some(r);
        }
        if r.header("transfer-encoding")
            .eq_ignore_ascii_case("chunked")
        {
            loop {
                let line_end = loop {
                    if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                        break i;
                    }
                    if !self.fill() {
                        return None;
                    }
                };
                let size_text = String::from_utf8_lossy(&self.buf[..line_end]).into_owned();
                let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
                while self.buf.len() < line_end + 2 + size + 2 {
                    if !self.fill() {
                        return None;
                    }
                }
                r.body
                    .extend_from_slice(&self.buf[line_end + 2..line_end + 2 + size]);
                self.buf.drain(..line_end + 2 + size + 2);
                if size == 0 {
                    return Some(r);
                }
            }
        }
        let len: usize = r.header("content-length").parse().unwrap_or(0);
        while self.buf.len() < len {
            if !self.fill() {
                return None;
            }
        }
        r.body = self.buf.drain(..len).collect();
        Some(r)
    }
}

/// The Invoke API URL of the function under test (`WHARF_TEST_LAMBDA_INVOKE`), if the target
/// is a Lambda.
pub fn lambda_invoke() -> Option<String> {
    std::env::var("WHARF_TEST_LAMBDA_INVOKE").ok()
}

/// A request delivered to the Lambda as AWS delivers a function-URL request: an API Gateway
/// v2 event through the Invoke API, from client address `source_ip`. cargo-lambda's
/// emulator differs from AWS where some tests look: it says `sourceIp` 127.0.0.1 for every
/// client, answers CORS preflights itself (AWS passes them to the function unless the URL
/// has a CORS configuration, and wharf's has none), and fails a request whose `Host` it
/// cannot parse instead of handing it on. Headers are sent once each, lower-cased (repeated
/// ones joined with ", ", as AWS does).
pub fn invoke(
    url: &str,
    method: &str,
    target: &str,
    headers: &[(&str, String)],
    body: Option<&[u8]>,
    source_ip: &str,
) -> Resp {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut h = serde_json::Map::new();
    for (k, v) in headers {
        let k = k.to_ascii_lowercase();
        let joined = match h.get(&k).and_then(|o| o.as_str()) {
            Some(old) => format!("{old}, {v}"),
            None => v.clone(),
        };
        h.insert(k, joined.into());
    }
    let (body, b64) = match body {
        None => (serde_json::Value::Null, false),
        Some(b) => match std::str::from_utf8(b) {
            Ok(t) => (t.into(), false),
            Err(_) => (
                base64::engine::general_purpose::STANDARD.encode(b).into(),
                true,
            ),
        },
    };
    let event = serde_json::json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": query,
        "headers": h,
        "requestContext": {
            "stage": "$default",
            "routeKey": "$default",
            "requestId": random_hex(8),
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": source_ip,
                "userAgent": "wharf-tests",
            },
            "timeEpoch": 0,
        },
        "body": body,
        "isBase64Encoded": b64,
    });
    let mut r = agent()
        .post(url)
        .header("Content-Type", "application/json")
        .send(event.to_string().as_bytes())
        .unwrap_or_else(|e| panic!("invoke {url}: {e}"));
    if r.status() != 200 || r.headers().contains_key("x-amz-function-error") {
        // The function failed (cargo lambda answers 500; AWS, 200 with X-Amz-Function-Error):
        // a function URL answers that with 502.
        return Resp {
            status: 502,
            headers: ureq::http::HeaderMap::new(),
            body: r.body_mut().read_to_vec().unwrap_or_default(),
            redirected: false,
        };
    }
    let out: serde_json::Value = r.body_mut().read_json().expect("the function's answer");
    let status = out["statusCode"]
        .as_u64()
        .unwrap_or_else(|| panic!("no statusCode in {out}")) as u16;
    let mut headers = ureq::http::HeaderMap::new();
    let mut add = |k: &str, v: &str| {
        if let (Ok(k), Ok(v)) = (
            ureq::http::HeaderName::from_bytes(k.as_bytes()),
            ureq::http::HeaderValue::from_str(v),
        ) {
            headers.append(k, v);
        }
    };
    for (k, v) in out["headers"].as_object().into_iter().flatten() {
        add(k, v.as_str().unwrap_or_default());
    }
    for (k, vs) in out["multiValueHeaders"].as_object().into_iter().flatten() {
        for v in vs.as_array().into_iter().flatten() {
            add(k, v.as_str().unwrap_or_default());
        }
    }
    let text = out["body"].as_str().unwrap_or_default();
    let body = if out["isBase64Encoded"].as_bool() == Some(true) {
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .expect("a base64 body")
    } else {
        text.as_bytes().to_vec()
    };
    Resp {
        status,
        headers,
        body,
        redirected: false,
    }
}
