//! Local AWS stand-ins for tests, each started on a port picked at run time and killed
//! (by its PID) when the handle drops.
//!
//! - [`moto`]: DynamoDB (and a lenient S3) from `moto_server` (`pip install 'moto[server]'`).
//! - [`s3s_fs`]: a strict S3 from `s3s-fs` (`cargo install s3s-fs@0.14.1 --features binary`),
//!   which checks SigV4 signatures, presigned URLs and their expiry.
//!
//! A missing tool is installed once with its ordinary client; if that fails the starter
//! returns `None` after printing why, and the caller skips its test with that message.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Access key the stand-ins accept.
pub const ACCESS_KEY: &str = "wharftestkey";
/// Secret key the stand-ins accept.
pub const SECRET_KEY: &str = "wharftestsecret";
/// Region the tests use.
pub const REGION: &str = "us-east-1";

/// A local server process, killed by its PID when dropped.
pub struct LocalServer {
    child: Child,
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
    /// Data directory, removed on drop.
    dir: Option<PathBuf>,
}

impl LocalServer {
    /// The PID of the server process.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
    /// The server's data directory, if it has one.
    pub fn dir(&self) -> Option<&std::path::Path> {
        self.dir.as_deref()
    }
    /// A config for this server with the test credentials.
    pub fn sdk_config(&self) -> aws_types::SdkConfig {
        crate::static_config(Some(&self.endpoint), REGION, ACCESS_KEY, SECRET_KEY)
    }
    /// A signing client for `service` on this server with the test credentials, over
    /// [`HttpTransport`]: the SDK-free path the Worker takes, over a plain HTTP client.
    pub fn rest_client(&self, service: &'static str) -> wharf_sigv4::AwsClient<HttpTransport> {
        let creds =
            aws_credential_types::Credentials::new(ACCESS_KEY, SECRET_KEY, None, None, "test");
        wharf_sigv4::AwsClient::new(HttpTransport::default(), creds, service, REGION)
    }
}

/// A reqwest client for tests. The workspace's reqwest has rustls without a crypto provider
/// (no aws-lc-rs C build; wharf-v2-client configures ring itself), so a client built any
/// other way would panic: this one installs ring as the process default first.
pub fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

/// reqwest as a [`wharf_sigv4::Transport`] with the system clock: stands in for the
/// Worker's `fetch` in host tests of the SDK-free clients.
#[derive(Clone)]
pub struct HttpTransport(reqwest::Client);

impl Default for HttpTransport {
    fn default() -> Self {
        Self(http_client())
    }
}

impl wharf_sigv4::Transport for HttpTransport {
    async fn send(
        &self,
        req: http::Request<bytes::Bytes>,
    ) -> Result<http::Response<bytes::Bytes>, String> {
        let req = reqwest::Request::try_from(req).map_err(|e| e.to_string())?;
        let resp = self.0.execute(req).await.map_err(|e| e.to_string())?;
        let mut out = http::Response::builder().status(resp.status());
        for (k, v) in resp.headers() {
            out = out.header(k, v);
        }
        let body = resp.bytes().await.map_err(|e| e.to_string())?;
        out.body(body).map_err(|e| e.to_string())
    }
    fn now(&self) -> std::time::SystemTime {
        std::time::SystemTime::now()
    }
}

impl Drop for LocalServer {
    fn drop(&mut self) {
        // Child::kill sends SIGKILL to this PID only.
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(d) = &self.dir {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

fn which(name: &str) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(PathBuf::from(home).join(".cargo/bin"));
    }
    if let Some(ch) = std::env::var_os("CARGO_HOME") {
        dirs.push(PathBuf::from(ch).join("bin"));
    }
    dirs.into_iter().map(|d| d.join(name)).find(|p| p.is_file())
}

/// Finds `name`, or runs `install` once (per process) and looks again.
fn tool(name: &str, install: &[&str]) -> Option<PathBuf> {
    static INSTALLS: OnceLock<Mutex<()>> = OnceLock::new();
    if let Some(p) = which(name) {
        return Some(p);
    }
    let _guard = INSTALLS
        .get_or_init(|| Mutex::new(()))
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if let Some(p) = which(name) {
        return Some(p);
    }
    eprintln!(
        "{name} not found; installing it with: {}",
        install.join(" ")
    );
    let ok = Command::new(install[0])
        .args(&install[1..])
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        skip(&format!("could not install {name} ({})", install.join(" ")));
        return None;
    }
    which(name)
}

/// Reports why a test cannot run. With `WHARF_REQUIRE_TOOLS=1` (the test runner sets it)
/// a missing tool is a failure, not a skip: a skipped test proves nothing.
fn skip(why: &str) {
    if std::env::var("WHARF_REQUIRE_TOOLS").is_ok_and(|v| v == "1") {
        panic!("required test tool unavailable: {why}");
    }
    eprintln!("SKIP: {why}");
}

fn wait_listening(child: &mut Child, port: u16, timeout: Duration) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let start = Instant::now();
    while start.elapsed() < timeout {
        if let Ok(Some(_)) = child.try_wait() {
            return false; // exited: the port was taken, or a bad argument
        }
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

fn start(
    name: &str,
    bin: &PathBuf,
    args: impl Fn(u16) -> Vec<String>,
    dir: Option<PathBuf>,
) -> Option<LocalServer> {
    // One start at a time in this process: `free_port` may hand two parallel tests the same
    // port, and the loser's server, failing to bind, would find the winner's answering.
    static STARTS: OnceLock<Mutex<()>> = OnceLock::new();
    let _one = STARTS
        .get_or_init(|| Mutex::new(()))
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    for _ in 0..3 {
        let port = free_port();
        let mut child = match Command::new(bin)
            .args(args(port))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
        {
            Ok(c) => c,
            Err(e) => {
                skip(&format!("cannot start {name}: {e}"));
                return None;
            }
        };
        if wait_listening(&mut child, port, Duration::from_secs(30)) {
            return Some(LocalServer {
                child,
                port,
                endpoint: format!("http://127.0.0.1:{port}"),
                dir,
            });
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    skip(&format!("{name} did not start listening"));
    None
}

/// Starts moto (DynamoDB, S3, … on one port) serving one request at a time, so that a
/// conditional write is atomic as on DynamoDB (`moto_serial.py` says why); `None` (after
/// saying why) if it cannot be installed or started.
pub fn moto() -> Option<LocalServer> {
    let bin = tool("moto_server", &["pip", "install", "-q", "moto[server]"])?;
    // The interpreter moto is installed for: the console script's shebang, unless that is a
    // wrapper (pyenv's shims are bash), then `python3`.
    let python = std::fs::read_to_string(&bin)
        .ok()
        .and_then(|s| Some(s.lines().next()?.strip_prefix("#!")?.trim().to_owned()))
        .filter(|p| p.contains("python") && !p.contains(' '))
        .unwrap_or_else(|| "python3".to_owned());
    start(
        "moto (one request at a time)",
        &PathBuf::from(python),
        |p| {
            vec![
                "-c".into(),
                include_str!("moto_serial.py").into(),
                "127.0.0.1".into(),
                p.to_string(),
            ]
        },
        None,
    )
}

/// Starts `s3s-fs` over a fresh temporary directory, accepting [`ACCESS_KEY`]/[`SECRET_KEY`];
/// `None` (after saying why) if it cannot be installed or started.
pub fn s3s_fs() -> Option<LocalServer> {
    let bin = tool(
        "s3s-fs",
        &[
            "cargo",
            "install",
            "--locked",
            "s3s-fs@0.14.1",
            "--features",
            "binary",
        ],
    )?;
    let dir =
        std::env::temp_dir().join(format!("wharf-s3s-{}-{}", std::process::id(), free_port()));
    std::fs::create_dir_all(&dir).ok()?;
    let d = dir.clone();
    start(
        "s3s-fs",
        &bin,
        move |p| {
            vec![
                "--host".into(),
                "127.0.0.1".into(),
                "--port".into(),
                p.to_string(),
                "--access-key".into(),
                ACCESS_KEY.into(),
                "--secret-key".into(),
                SECRET_KEY.into(),
                d.display().to_string(),
            ]
        },
        Some(dir),
    )
}
