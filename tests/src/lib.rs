//! Harness for the protocol suite: one suite, any runtime.
//!
//! With `WHARF_TEST_URL` set, the suite runs against that registry (credentials from
//! `WHARF_TEST_USER`/`WHARF_TEST_PASSWORD`, if it has auth on). Otherwise it starts the
//! local `wharf serve` (`WHARF_BIN`, default `target/release/wharf`, else `target/debug`)
//! on a port picked at run time, with auth on, and stops it by PID when done.

use base64::Engine as _;
use sha2::{Digest as _, Sha256};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
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
    /// Its data directory.
    pub data_dir: PathBuf,
    /// Its port.
    pub port: u16,
    /// Admin password.
    pub password: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
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

/// The wharf binary to test.
pub fn wharf_bin() -> PathBuf {
    if let Ok(b) = std::env::var("WHARF_BIN") {
        return PathBuf::from(b);
    }
    for profile in ["release", "debug"] {
        let p = workspace_root().join("target").join(profile).join("wharf");
        if p.exists() {
            return p;
        }
    }
    panic!("no wharf binary: build it with `cargo build --release -p wharf` or set WHARF_BIN");
}

/// Whether the suite targets the local server it starts itself.
pub fn is_local() -> bool {
    std::env::var("WHARF_TEST_URL").is_err()
}

impl Server {
    /// Starts `wharf serve` on a free port over `data_dir` (reused across restarts).
    pub fn start(data_dir: PathBuf, password: &str) -> Server {
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr").port()
        };
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(data_dir.with_extension("log"))
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
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start wharf");
        let server = Server {
            child,
            data_dir,
            port,
            password: password.to_owned(),
        };
        for _ in 0..200 {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return server;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("wharf did not start on port {port}");
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
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }

    /// Kills the process with SIGKILL (a crash), keeping the data directory.
    pub fn crash(mut self) -> PathBuf {
        let _ = Command::new("kill")
            .args(["-9", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
        self.data_dir.clone()
    }

    /// Stops the process with SIGTERM (graceful), keeping the data directory.
    pub fn stop(mut self) -> PathBuf {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        for _ in 0..200 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return self.data_dir.clone();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.data_dir.clone()
    }
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
        assert_eq!(
            resp.status(),
            200,
            "token endpoint refused the test credentials"
        );
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
        let agent = agent();
        let resp = match body {
            Some(data) => agent.run(b.body(data.to_vec()).expect("request")),
            None => agent.run(b.body(()).expect("request")),
        };
        let mut resp = resp.unwrap_or_else(|e| panic!("{method} {url}: {e}"));
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

    /// Sends raw bytes on a new TCP connection and reads the status line (the connection
    /// is closed after `body_part`, which may be shorter than its declared length).
    pub fn raw(&self, head: &str, body_part: &[u8], read: bool) -> String {
        let mut s = TcpStream::connect(&self.t.authority).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        let auth = self
            .token
            .as_ref()
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        let head = head.replacen(
            "\r\n",
            &format!("\r\nHost: {}\r\n{auth}", self.t.authority),
            1,
        );
        s.write_all(head.as_bytes()).expect("write head");
        let _ = s.write_all(body_part);
        let _ = s.flush();
        if !read {
            let _ = s.shutdown(std::net::Shutdown::Both);
            return String::new();
        }
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = s.read(&mut buf) {
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
            if out.windows(4).any(|w| w == b"\r\n\r\n") && out.len() > 12 {
                // Enough for status line, headers and a small error body.
                std::thread::sleep(Duration::from_millis(50));
                if let Ok(n) = s.read(&mut buf) {
                    out.extend_from_slice(&buf[..n]);
                }
                break;
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}
