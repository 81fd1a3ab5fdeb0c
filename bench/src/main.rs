//! `wharf-bench`: a closed-loop HTTP/1.1 load generator for `bench/run.sh`.
//!
//! Like `wrk -t1 -cN -dT`: one thread, N keep-alive connections, each sending its next
//! request as soon as the previous response has been read in full. It exists because wrk
//! cannot measure `HEAD` (its parser waits for the body that `Content-Length` announces;
//! wg/wrk#198), and it prints JSON with exact latency percentiles for the report.
//!
//! ```text
//! wharf-bench --url http://127.0.0.1:5000/v2/app/manifests/v1 --method HEAD \
//!     --connections 32 --duration 10 --header 'Accept: application/vnd.oci.image.manifest.v1+json'
//! ```

use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Empty};
use hyper::{Method, Request, Uri};
use hyper_util::rt::TokioIo;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Closed-loop HTTP/1.1 load against one URL.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Target, `http://HOST:PORT/path?query` (plain HTTP only).
    #[arg(long)]
    url: String,
    /// Request method (HEAD, GET, …).
    #[arg(long, default_value = "GET")]
    method: String,
    /// Concurrent keep-alive connections.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Seconds to send requests for.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Extra request header, `Name: value` (repeatable).
    #[arg(long = "header")]
    headers: Vec<String>,
}

/// What one connection saw.
#[derive(Default)]
struct Tally {
    latencies_us: Vec<u32>,
    non_2xx: u64,
    errors: u64,
    body_bytes: u64,
}

fn main() -> Result<(), BoxError> {
    let args = Args::parse();
    let uri: Uri = args.url.parse()?;
    if uri.scheme_str() != Some("http") {
        return Err("only http:// URLs".into());
    }
    let authority = uri.authority().ok_or("URL without host")?.clone();
    let addr = format!(
        "{}:{}",
        authority.host(),
        authority.port_u16().unwrap_or(80)
    );
    let path = uri
        .path_and_query()
        .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned());
    let method = Method::from_bytes(args.method.as_bytes())?;
    let mut headers = Vec::new();
    for h in &args.headers {
        let (name, value) = h.split_once(':').ok_or("header must be 'Name: value'")?;
        headers.push((
            hyper::header::HeaderName::from_bytes(name.trim().as_bytes())?,
            hyper::header::HeaderValue::from_str(value.trim())?,
        ));
    }
    let duration = Duration::from_secs_f64(args.duration);

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (tallies, elapsed) = rt.block_on(async {
        let start = Instant::now();
        let deadline = start + duration;
        let mut tasks = Vec::with_capacity(args.connections);
        for _ in 0..args.connections {
            let job = Job {
                addr: addr.clone(),
                host: authority.as_str().to_owned(),
                path: path.clone(),
                method: method.clone(),
                headers: headers.clone(),
                deadline,
            };
            // Current-thread runtime: every connection runs on this one thread.
            tasks.push(tokio::spawn(job.run()));
        }
        let mut tallies = Vec::with_capacity(tasks.len());
        for t in tasks {
            tallies.push(t.await.unwrap_or_default());
        }
        (tallies, start.elapsed())
    });

    let mut lat: Vec<u32> = Vec::new();
    let (mut non_2xx, mut errors, mut body_bytes) = (0, 0, 0);
    for t in tallies {
        lat.extend_from_slice(&t.latencies_us);
        non_2xx += t.non_2xx;
        errors += t.errors;
        body_bytes += t.body_bytes;
    }
    lat.sort_unstable();
    let pct = |p: f64| -> f64 {
        if lat.is_empty() {
            return 0.0;
        }
        let i = ((p / 100.0) * (lat.len() - 1) as f64).round() as usize;
        f64::from(lat[i.min(lat.len() - 1)]) / 1000.0
    };
    let mean = if lat.is_empty() {
        0.0
    } else {
        lat.iter().map(|&v| f64::from(v)).sum::<f64>() / lat.len() as f64 / 1000.0
    };
    let secs = elapsed.as_secs_f64();
    let report = serde_json::json!({
        "url": args.url,
        "method": args.method,
        "connections": args.connections,
        "duration_s": secs,
        "requests": lat.len(),
        "non_2xx": non_2xx,
        "errors": errors,
        "body_bytes": body_bytes,
        "rps": lat.len() as f64 / secs,
        "latency_ms": {
            "mean": mean,
            "p50": pct(50.0),
            "p90": pct(90.0),
            "p99": pct(99.0),
            "max": pct(100.0),
        },
    });
    println!("{report}");
    Ok(())
}

/// One connection's loop.
#[derive(Clone)]
struct Job {
    addr: String,
    host: String,
    path: String,
    method: Method,
    headers: Vec<(hyper::header::HeaderName, hyper::header::HeaderValue)>,
    deadline: Instant,
}

impl Job {
    async fn run(self) -> Tally {
        let mut tally = Tally::default();
        while Instant::now() < self.deadline {
            // A failed connection counts one error, then reconnects (after a pause, so a
            // refusing server cannot turn the loop into a busy spin).
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
        let result = async {
            while Instant::now() < self.deadline {
                let mut req = Request::builder()
                    .method(self.method.clone())
                    .uri(self.path.as_str())
                    .header(hyper::header::HOST, self.host.as_str());
                for (k, v) in &self.headers {
                    req = req.header(k, v);
                }
                let req = req.body(Empty::<Bytes>::new())?;
                sender.ready().await?;
                let t0 = Instant::now();
                let resp = sender.send_request(req).await?;
                let status = resp.status();
                let mut body = resp.into_body();
                while let Some(frame) = body.frame().await {
                    if let Ok(data) = frame?.into_data() {
                        tally.body_bytes += data.len() as u64;
                    }
                }
                let us = t0.elapsed().as_micros();
                tally
                    .latencies_us
                    .push(u32::try_from(us).unwrap_or(u32::MAX));
                if !status.is_success() {
                    tally.non_2xx += 1;
                }
            }
            Ok::<(), BoxError>(())
        }
        .await;
        driver.abort();
        result
    }
}
