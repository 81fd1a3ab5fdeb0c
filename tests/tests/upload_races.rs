//! Uploads under racing and impatient clients, over real HTTP, against any runtime (see
//! `wharf_tests`): concurrent closing PUTs of one chunked upload, and a client that sends a
//! whole body without waiting for `100 Continue` to a request the registry refuses.

use std::sync::atomic::{AtomicBool, Ordering};
use wharf_tests::*;

/// Chunk size of the multi-chunk upload: at least S3's 5 MiB part minimum, and under the
/// Lambda's 6 MB request limit.
const CHUNK: usize = 5 << 20;

/// Pushes `data` in `CHUNK`-sized PATCHes with Content-Range; returns the last Location.
fn chunked(c: &Client<'_>, data: &[u8]) -> String {
    let mut loc = c.start_upload();
    for (i, chunk) in data.chunks(CHUNK).enumerate() {
        let start = i * CHUNK;
        let cr = format!("{start}-{}", start + chunk.len() - 1);
        let r = c.req("PATCH", &loc, &[("Content-Range", &cr)], Some(chunk));
        r.expect(202, None);
        loc = r.header("location");
    }
    loc
}

#[test]
fn concurrent_closing_puts_commit_one_whole_blob() {
    // Several closing PUTs of one upload at once (a client retrying on a timeout, or two
    // pushers sharing a session): none may see a 5xx, exactly one commits (201), the others
    // are told the upload is gone (404 BLOB_UPLOAD_UNKNOWN), and a reader never sees
    // anything but the whole blob.
    let t = Target::shared();
    for round in 0..3 {
        let c = t.repo("close-race");
        let data = random_bytes(6 * CHUNK);
        let d = sha256(&data);
        let loc = chunked(&c, &data);
        let put = format!("{loc}?digest={d}");
        let blob = c.path(&format!("blobs/{d}"));
        let done = AtomicBool::new(false);
        let (answers, reads) = std::thread::scope(|s| {
            let reader = s.spawn(|| {
                let mut seen = Vec::new();
                for _ in 0..200 {
                    let g = c.req("GET", &blob, &[], None);
                    seen.push((g.status, g.body.len(), sha256(&g.body) == d, g.code()));
                    if done.load(Ordering::Relaxed) {
                        break;
                    }
                }
                seen
            });
            let puts: Vec<_> = (0..8)
                .map(|_| s.spawn(|| c.req("PUT", &put, &[("Content-Length", "0")], None)))
                .collect();
            let answers: Vec<Resp> = puts
                .into_iter()
                .map(|p| p.join().expect("PUT thread"))
                .collect();
            done.store(true, Ordering::Relaxed);
            (answers, reader.join().expect("reader thread"))
        });
        let summary: Vec<String> = answers
            .iter()
            .map(|r| format!("{} {}", r.status, String::from_utf8_lossy(&r.body)))
            .collect();
        let created = answers.iter().filter(|r| r.status == 201).count();
        assert_eq!(
            created, 1,
            "round {round}: exactly one closing PUT may commit: {summary:#?}"
        );
        for r in &answers {
            match r.status {
                201 => assert_eq!(r.header("docker-content-digest"), d, "{summary:#?}"),
                404 => assert_eq!(r.code(), "BLOB_UPLOAD_UNKNOWN", "{summary:#?}"),
                _ => panic!("round {round}: a closing PUT that lost the race got {summary:#?}"),
            }
        }
        for (status, len, whole, code) in &reads {
            assert!(
                (*status == 200 && *whole) || (*status == 404 && code == "BLOB_UNKNOWN"),
                "round {round}: a GET during the race saw {status} {code} with {len} bytes \
                 (whole and correct: {whole}), expected 404 or all {} bytes",
                data.len()
            );
        }
        let g = c.req("GET", &blob, &[], None);
        g.expect(200, None);
        assert!(
            g.body.len() == data.len() && sha256(&g.body) == d,
            "round {round}: blob {d} served {} bytes with sha256 {}",
            g.body.len(),
            sha256(&g.body)
        );
        // The upload is closed: a late PUT finds it gone.
        c.req("PUT", &put, &[("Content-Length", "0")], None)
            .expect(404, Some("BLOB_UPLOAD_UNKNOWN"));
    }
}

#[test]
fn refused_patch_answers_a_client_that_sent_its_whole_body() {
    // A client that ignores `Expect: 100-continue` has its whole body on the wire before
    // it reads anything; refusing without reading the body must still reach it as the
    // spec's error, not as a connection reset mid-send.
    let c = Target::shared().repo("eager");
    let mut loc = c.start_upload();
    let r = c.req(
        "PATCH",
        &loc,
        &[("Content-Range", "0-99")],
        Some(&[7u8; 100]),
    );
    r.expect(202, None);
    loc = r.header("location");
    // More than socket buffers hold, so the server must read it; a few MiB elsewhere
    // (the Lambda takes 6 MB a request).
    let body = random_bytes(if is_local() { 32 << 20 } else { 4 << 20 });
    let far = 10 << 20;
    let cr = format!("{far}-{}", far + body.len() - 1);
    let n = body.len().to_string();
    let mut conn = c.raw_conn();
    conn.head(
        "PATCH",
        &loc,
        &[
            ("Content-Range", &cr),
            ("Content-Length", &n),
            ("Content-Type", "application/octet-stream"),
        ],
    );
    let sent = conn.send(&body);
    let r = conn.response();
    // A client library stops at a failed write (a broken pipe, a reset) and never reads
    // the answer: the whole body must go through.
    assert!(
        sent.is_ok(),
        "sending the {} body bytes of a refused PATCH failed: {sent:?} (answer: {:?})",
        body.len(),
        r.as_ref()
            .map(|r| r.head.lines().next().unwrap_or_default().to_owned())
    );
    let r = r.unwrap_or_else(|| {
        panic!(
            "no response to an out-of-order PATCH whose {} body bytes were sent at once \
             (send: {sent:?}): the connection was closed under the client",
            body.len()
        )
    });
    assert_eq!(r.status, 416, "{}", r.head);
    let code = serde_json::from_slice::<serde_json::Value>(&r.body)
        .ok()
        .and_then(|v| v["errors"][0]["code"].as_str().map(str::to_owned))
        .unwrap_or_default();
    assert_eq!(
        code,
        "BLOB_UPLOAD_INVALID",
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(r.header("range"), "0-99", "{}", r.head);
}
