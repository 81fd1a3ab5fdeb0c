//! `login-burst`: manifest GET latency while other clients log in, for `bench/login_burst.sh`.
//!
//! Two loops against one registry, for a fixed time, each on its own OS thread (so that
//! neither stalls the other's clock on the client side):
//!
//! * **logins**: `--logins` keep-alive connections, each sending `GET /token` with Basic
//!   credentials as soon as the previous answer was read (closed loop): every request is one
//!   Argon2 verification on the server. `--logins 0` runs none (the baseline).
//! * **manifest GETs**: `--get-conns` keep-alive connections, each sending one `GET` of
//!   `--get-path` with a bearer token every `--get-interval-ms` (paced, so the probe itself
//!   does not take a core from the server), timing each request from send to the last body
//!   byte. A request that takes longer than the interval delays the next (no catching up).
//!
//! Prints one JSON object: latency percentiles of the GETs, logins answered per second and
//! their latency, and every non-2xx or socket error. A measurement, not a test.

use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Empty};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Manifest GET latency during a burst of logins.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Registry, `HOST:PORT` (plain HTTP).
    #[arg(long)]
    addr: String,
    /// Path of the manifest GET, e.g. `/v2/bench/app/manifests/v1`.
    #[arg(long)]
    get_path: String,
    /// Bearer token for the GETs.
    #[arg(long)]
    token: String,
    /// `Accept` of the GETs.
    #[arg(long, default_value = "application/vnd.oci.image.manifest.v1+json")]
    accept: String,
    /// Path and query of the login, e.g. `/token?service=wharf&scope=repository:bench/app:pull`.
    #[arg(long, default_value = "/token?service=wharf")]
    login_path: String,
    /// `user:password` for the logins' Basic auth (repeatable: login connection `i` uses
    /// the `i mod n`-th, so that concurrent logins can be of different users).
    #[arg(long = "basic")]
    basic: Vec<String>,
    /// Concurrent login connections (0: no logins, the baseline).
    #[arg(long, default_value_t = 20)]
    logins: usize,
    /// Connections sending manifest GETs.
    #[arg(long, default_value_t = 2)]
    get_conns: usize,
    /// Pause between one connection's GETs, in milliseconds.
    #[arg(long, default_value_t = 2.0)]
    get_interval_ms: f64,
    /// Seconds of measurement.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds the logins run before the GETs start being counted (the pool fills up).
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
}

/// What a set of connections saw.
#[derive(Default)]
struct Tally {
    latencies_us: Vec<u64>,
    non_2xx: u64,
    errors: u64,
}

impl Tally {
    fn merge(&mut self, o: Tally) {
        self.latencies_us.extend(o.latencies_us);
        self.non_2xx += o.non_2xx;
        self.errors += o.errors;
    }

    fn summary(mut self, secs: f64) -> serde_json::Value {
        self.latencies_us.sort_unstable();
        let lat = &self.latencies_us;
        let pct = |p: f64| -> f64 {
            if lat.is_empty() {
                return 0.0;
            }
            let i = ((p / 100.0) * (lat.len() - 1) as f64).round() as usize;
            lat[i.min(lat.len() - 1)] as f64 / 1000.0
        };
        let mean = if lat.is_empty() {
            0.0
        } else {
            lat.iter().sum::<u64>() as f64 / lat.len() as f64 / 1000.0
        };
        serde_json::json!({
            "requests": lat.len(),
            "per_s": lat.len() as f64 / secs,
            "non_2xx": self.non_2xx,
            "errors": self.errors,
            "latency_ms": {
                "mean": mean, "p50": pct(50.0), "p90": pct(90.0), "p99": pct(99.0),
                "p999": pct(99.9), "max": pct(100.0),
            },
        })
    }
}

/// One kind of request, sent over and over on one connection.
#[derive(Clone)]
struct Job {
    addr: String,
    path: String,
    headers: Vec<(&'static str, String)>,
    /// `None`: closed loop; `Some(d)`: one request per `d`.
    pace: Option<Duration>,
    /// Responses that end before this are not counted.
    count_from: Instant,
    deadline: Instant,
}

impl Job {
    async fn run(self) -> Tally {
        let mut tally = Tally::default();
        while Instant::now() < self.deadline {
            // A failed connection counts one error, then reconnects after a pause.
            if self.connection(&mut tally).await.is_err() {
                tally.errors += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        tally
    }

    async fn connection(&self, tally: &mut Tally) -> Result<(), BoxError> {
        let stream = TcpStream::connect(&self.addr).await?;
        stream.set_nodelay(true)?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        let driver = tokio::spawn(conn);
        let mut tick = self.pace.map(|d| {
            let mut t = tokio::time::interval(d);
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            t
        });
        let result = async {
            while Instant::now() < self.deadline {
                if let Some(t) = tick.as_mut() {
                    t.tick().await;
                }
                let mut req = Request::get(self.path.as_str()).header("host", self.addr.as_str());
                for (k, v) in &self.headers {
                    req = req.header(*k, v.as_str());
                }
                let req = req.body(Empty::<Bytes>::new())?;
                sender.ready().await?;
                let t0 = Instant::now();
                let resp = sender.send_request(req).await?;
                let status = resp.status();
                let mut body = resp.into_body();
                while let Some(frame) = body.frame().await {
                    frame?;
                }
                let end = Instant::now();
                if t0 >= self.count_from && end <= self.deadline {
                    let us = end.duration_since(t0).as_micros();
                    tally
                        .latencies_us
                        .push(u64::try_from(us).unwrap_or(u64::MAX));
                    if status != StatusCode::OK {
                        tally.non_2xx += 1;
                    }
                }
            }
            Ok::<(), BoxError>(())
        }
        .await;
        driver.abort();
        result
    }
}

/// Runs `jobs`, one connection each, on a current-thread runtime of a thread of its own.
fn spawn_loop(jobs: Vec<Job>) -> std::thread::JoinHandle<Tally> {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("client runtime");
        rt.block_on(async move {
            let tasks: Vec<_> = jobs.into_iter().map(|j| tokio::spawn(j.run())).collect();
            let mut all = Tally::default();
            for t in tasks {
                all.merge(t.await.unwrap_or_default());
            }
            all
        })
    })
}

fn basic_header(user_password: &str) -> String {
    const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes = user_password.as_bytes();
    let mut out = String::from("Basic ");
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn main() -> Result<(), BoxError> {
    let args = Args::parse();
    if args.logins > 0 && (args.basic.is_empty() || args.basic.iter().any(|b| !b.contains(':'))) {
        return Err("--basic user:password (at least one) when --logins > 0".into());
    }
    let start = Instant::now();
    let count_from = start + Duration::from_secs_f64(args.warmup);
    let deadline = count_from + Duration::from_secs_f64(args.duration);

    let logins = (args.logins > 0).then(|| {
        spawn_loop(
            (0..args.logins)
                .map(|i| Job {
                    addr: args.addr.clone(),
                    path: args.login_path.clone(),
                    headers: vec![(
                        "authorization",
                        basic_header(&args.basic[i % args.basic.len()]),
                    )],
                    pace: None,
                    count_from,
                    deadline,
                })
                .collect(),
        )
    });
    let get = Job {
        addr: args.addr.clone(),
        path: args.get_path.clone(),
        headers: vec![
            ("authorization", format!("Bearer {}", args.token)),
            ("accept", args.accept.clone()),
        ],
        pace: Some(Duration::from_secs_f64(args.get_interval_ms / 1000.0)),
        count_from,
        deadline,
    };
    let gets = spawn_loop(vec![get; args.get_conns]);
    let gets = gets.join().map_err(|_| "GET loop panicked")?;
    let logins = match logins {
        Some(h) => Some(h.join().map_err(|_| "login loop panicked")?),
        None => None,
    };
    let secs = args.duration;
    let report = serde_json::json!({
        "addr": args.addr,
        "duration_s": secs,
        "logins_conns": args.logins,
        "get_conns": args.get_conns,
        "get_interval_ms": args.get_interval_ms,
        "get": gets.summary(secs),
        "login": logins.map(|l| l.summary(secs)),
    });
    println!("{report}");
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn basic_header_is_base64() {
        assert_eq!(super::basic_header("admin:pw"), "Basic YWRtaW46cHc=");
        assert_eq!(super::basic_header("a:bc"), "Basic YTpiYw==");
        assert_eq!(super::basic_header("ab:c"), "Basic YWI6Yw==");
    }
}
