//! The pure half of the store: key names, the upload state JSON, how bytes are cut into
//! parts and how recorded objects map onto the parts of an assembled blob, and what an R2
//! error means. No JavaScript here, so all of it is unit-tested on the host.

use serde::{Deserialize, Serialize};
use wharf_core::{Digest, StoreError};

/// R2's smallest part (but the last) and the smallest object a request may leave as any
/// but the last of an upload (a smaller one is read back and replaced by the next request).
pub const MIN_PART: u64 = 5 * 1024 * 1024;
/// The writer's part size. Fixed: R2 wants every part but the last the same size.
pub const PART: usize = 8 * 1024 * 1024;
/// The largest single put or part R2 accepts (5 GiB − 5 MiB).
pub const MAX_PUT: u64 = 5 * 1024 * 1024 * 1024 - 5 * 1024 * 1024;
/// R2's largest part number.
pub const MAX_PARTS: u16 = 10_000;
/// Request objects one upload may have: commit reads each of them once, and a Worker
/// invocation has about 1,000 subrequests.
pub const MAX_OBJECTS: usize = 400;
/// Smallest part of a blob assembled by multipart upload (only blobs above [`MAX_PUT`]).
const ASSEMBLY_MIN_PART: u64 = 64 * 1024 * 1024;
/// Parts of an assembled blob stay below this, well inside [`MAX_PARTS`].
const ASSEMBLY_MAX_PARTS: u64 = 9_000;

pub(crate) fn other(e: impl std::fmt::Display) -> StoreError {
    StoreError::Other(e.to_string())
}

/// Key of a committed blob.
pub(crate) fn blob_key(prefix: &str, d: &Digest) -> String {
    format!("{prefix}blobs/{}/{}", d.algorithm().as_str(), d.hex())
}

/// `uploads/<id>/`, after checking that the id cannot reach outside it.
pub(crate) fn upload_prefix(prefix: &str, id: &str) -> Result<String, StoreError> {
    if id.is_empty()
        || id.len() > 128
        || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return Err(other(format!("invalid upload id {id:?}")));
    }
    Ok(format!("{prefix}uploads/{id}/"))
}

/// One uploaded part.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub(crate) struct Part {
    /// Part number.
    pub n: u16,
    /// ETag R2 returned for it.
    #[serde(rename = "e")]
    pub etag: String,
    /// Bytes.
    #[serde(rename = "s")]
    pub size: u64,
}

/// An object one request of an upload wrote.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub(crate) struct Obj {
    /// Its key (relative to the upload's prefix in the record, absolute in memory).
    #[serde(rename = "k")]
    pub key: String,
    /// Its ETag: recorded objects are only read with it.
    #[serde(rename = "e")]
    pub etag: String,
    /// Bytes.
    #[serde(rename = "s")]
    pub size: u64,
}

/// A multipart upload in progress.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub(crate) struct Multi {
    /// Key it completes to.
    pub key: String,
    /// Its id, once created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mpu: Option<String>,
    /// Parts, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<Part>,
}

/// The `store_state` of an upload (the same JSON as wharf-s3's).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub(crate) struct State {
    /// The objects the recorded requests wrote, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub objects: Vec<Obj>,
    /// A declared-digest upload: its multipart upload at the blob's own key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direct: Option<Multi>,
    /// The direct upload's last part is short: nothing may follow it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sealed: bool,
}

impl State {
    /// Bytes the state covers.
    pub fn len(&self) -> u64 {
        self.objects.iter().map(|o| o.size).sum::<u64>()
            + self
                .direct
                .iter()
                .flat_map(|d| &d.parts)
                .map(|p| p.size)
                .sum::<u64>()
    }

    /// Parses a recorded state (keys made absolute under `upload_prefix`); an empty one is
    /// a new upload, direct at `direct_key` if its digest was declared.
    pub fn parse(
        recorded: &str,
        upload_prefix: &str,
        offset: u64,
        direct_key: Option<String>,
    ) -> Result<State, StoreError> {
        if recorded.is_empty() {
            return Ok(State {
                direct: direct_key.map(|key| Multi {
                    key,
                    ..Multi::default()
                }),
                ..State::default()
            });
        }
        let mut s: State = serde_json::from_str(recorded)
            .map_err(|e| other(format!("corrupt upload state: {e}")))?;
        for o in &mut s.objects {
            o.key.insert_str(0, upload_prefix);
        }
        if s.len() != offset {
            return Err(other(format!(
                "upload state covers {} bytes, the record says {offset}",
                s.len()
            )));
        }
        Ok(s)
    }

    /// The state as recorded: object keys relative to the upload's prefix (a smaller record).
    pub fn record(&self, upload_prefix: &str) -> Result<String, StoreError> {
        let mut s = self.clone();
        for o in &mut s.objects {
            if let Some(rel) = o.key.strip_prefix(upload_prefix) {
                o.key = rel.to_owned();
            }
        }
        serde_json::to_string(&s).map_err(other)
    }
}

/// What [`PartBuffer::feed`] found ready to upload.
#[derive(Debug, PartialEq)]
pub(crate) enum Full {
    /// A whole part taken straight from the chunk (the buffer was empty).
    Slice(bytes::Bytes),
    /// The buffer holds more than a part: upload [`PartBuffer::head`], then
    /// [`PartBuffer::consume_head`].
    Buffered,
}

/// Cuts a request's bytes into parts of exactly `part` bytes. A part is released only once
/// at least one more byte follows it, so a request's last part is never empty and a request
/// of at most one part stays a single put. Holds at most `part + 1` bytes.
#[derive(Debug)]
pub(crate) struct PartBuffer {
    part: usize,
    buf: Vec<u8>,
}

impl PartBuffer {
    pub fn new(part: usize) -> Self {
        Self {
            part,
            buf: Vec::new(),
        }
    }

    /// Takes bytes from the front of `chunk` (not necessarily all); call again while
    /// `chunk` is not empty.
    pub fn feed(&mut self, chunk: &mut bytes::Bytes) -> Option<Full> {
        if self.buf.is_empty() && chunk.len() > self.part {
            return Some(Full::Slice(chunk.split_to(self.part)));
        }
        if self.buf.capacity() < self.part + 1 {
            self.buf.reserve_exact(self.part + 1 - self.buf.len());
        }
        let take = (self.part + 1 - self.buf.len().min(self.part + 1)).min(chunk.len());
        self.buf.extend_from_slice(&chunk.split_to(take));
        (self.buf.len() > self.part).then_some(Full::Buffered)
    }

    /// Puts `len` bytes read back from a recorded object before the request's own, written
    /// by `fill` straight into the buffer (one copy out of JS memory).
    pub fn preload_with(&mut self, len: usize, fill: impl FnOnce(&mut [u8])) {
        self.buf.reserve_exact((self.part + 1).max(len));
        let start = self.buf.len();
        self.buf.resize(start + len, 0);
        fill(&mut self.buf[start..]);
    }

    /// The full part at the front of the buffer.
    pub fn head(&self) -> &[u8] {
        &self.buf[..self.part.min(self.buf.len())]
    }

    /// Drops the part [`Self::head`] returned.
    pub fn consume_head(&mut self) {
        self.buf.drain(..self.part.min(self.buf.len()));
    }

    /// Takes what is left (the request's last part or whole object), freeing the buffer.
    pub fn take_rest(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.buf)
    }
}

/// A byte range of one recorded object that goes into an assembled part.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Segment {
    /// Index of the object.
    pub obj: usize,
    /// First byte within it.
    pub offset: u64,
    /// Bytes.
    pub len: u64,
}

/// Part size for assembling a blob of `total` bytes by multipart upload: one size for all
/// parts (R2's rule), big enough to stay below [`ASSEMBLY_MAX_PARTS`] parts.
pub(crate) fn assembly_part_size(total: u64) -> u64 {
    ASSEMBLY_MIN_PART
        .max(total.div_ceil(ASSEMBLY_MAX_PARTS))
        .min(MAX_PUT)
}

/// Cuts the concatenation of objects of `sizes` into parts of `part` bytes (the last may be
/// shorter), each a list of segments of the objects it spans.
pub(crate) fn plan_parts(sizes: &[u64], part: u64) -> Vec<Vec<Segment>> {
    let mut parts = Vec::new();
    let mut current: Vec<Segment> = Vec::new();
    let mut room = part;
    for (obj, &size) in sizes.iter().enumerate() {
        let mut offset = 0;
        while offset < size {
            let len = room.min(size - offset);
            current.push(Segment { obj, offset, len });
            offset += len;
            room -= len;
            if room == 0 {
                parts.push(std::mem::take(&mut current));
                room = part;
            }
        }
    }
    if !current.is_empty() {
        parts.push(current);
    }
    parts
}

/// The R2 error code at the end of a binding error message (`"put: … (10058)"`).
fn r2_code(msg: &str) -> Option<u32> {
    let inner = msg.trim_end().strip_suffix(')')?;
    let open = inner.rfind('(')?;
    inner[open + 1..].parse().ok()
}

/// Maps an R2 binding error onto the core's meanings, by its code
/// (developers.cloudflare.com/r2/api/error-codes) or, for errors of the runtime around it
/// (a lost connection), by its words.
pub(crate) fn classify(op: &str, msg: &str) -> StoreError {
    let text = format!("R2 {op}: {msg}");
    match r2_code(msg) {
        // NoSuchKey, NoSuchUpload.
        Some(10007 | 10024) => StoreError::NotFound,
        Some(10031) => StoreError::Precondition(text),
        // InternalError, ServiceUnavailable, ClientDisconnect, TooManyRequests.
        Some(10001 | 10043 | 10054 | 10058) => StoreError::Unavailable(text),
        Some(_) => StoreError::Other(text),
        None => {
            let lower = msg.to_ascii_lowercase();
            let transient = [
                "network",
                "timed out",
                "timeout",
                "internal error",
                "overloaded",
                "too many",
                "unavailable",
                "disconnected",
            ];
            if transient.iter().any(|w| lower.contains(w)) {
                StoreError::Unavailable(text)
            } else {
                StoreError::Other(text)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn keys() {
        let d: Digest = format!("sha256:{}", "ab".repeat(32))
            .parse()
            .expect("digest");
        assert_eq!(
            blob_key("w/", &d),
            format!("w/blobs/sha256/{}", "ab".repeat(32))
        );
        assert_eq!(upload_prefix("", "abc-1").expect("ok"), "uploads/abc-1/");
        for bad in ["", "../x", "a/b", "a.b", &"a".repeat(129)] {
            assert!(upload_prefix("", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn state_is_compact_and_round_trips() {
        let s = State {
            objects: vec![
                Obj {
                    key: "p/uploads/u/0-ab".into(),
                    etag: "e1".into(),
                    size: 8,
                },
                Obj {
                    key: "p/uploads/u/8-cd".into(),
                    etag: "e2".into(),
                    size: 2,
                },
            ],
            direct: None,
            sealed: false,
        };
        let j = s.record("p/uploads/u/").expect("json");
        assert_eq!(
            j,
            r#"{"objects":[{"k":"0-ab","e":"e1","s":8},{"k":"8-cd","e":"e2","s":2}]}"#
        );
        assert_eq!(
            State::parse(&j, "p/uploads/u/", 10, None).expect("parse"),
            s
        );
        assert!(
            State::parse(&j, "p/uploads/u/", 11, None).is_err(),
            "size check"
        );
        assert!(State::parse("{", "p/uploads/u/", 0, None).is_err());
        let fresh = State::parse("", "u/", 0, Some("blobs/x".into())).expect("new");
        assert_eq!(
            fresh.direct.as_ref().map(|d| d.key.as_str()),
            Some("blobs/x")
        );
        assert_eq!(fresh.len(), 0);
        let direct = State {
            direct: Some(Multi {
                key: "blobs/x".into(),
                mpu: Some("id".into()),
                parts: vec![Part {
                    n: 1,
                    etag: "pe".into(),
                    size: 3,
                }],
            }),
            sealed: true,
            ..State::default()
        };
        let j = direct.record("u/").expect("json");
        assert_eq!(State::parse(&j, "u/", 3, None).expect("parse"), direct);
    }

    /// Feeds `chunks` through a buffer of parts of `part` bytes (after `preload`), as the
    /// writer does; returns the sizes of the parts released and of the rest.
    fn cut(part: usize, preload: usize, chunks: &[usize]) -> (Vec<usize>, usize) {
        let mut b = PartBuffer::new(part);
        b.preload_with(preload, |dst| dst.fill(7));
        let mut out = Vec::new();
        let mut all = vec![7u8; preload];
        let mut n = 0u8;
        for &len in chunks {
            let data: Vec<u8> = (0..len)
                .map(|_| {
                    n = n.wrapping_add(1);
                    n
                })
                .collect();
            all.extend_from_slice(&data);
            let mut chunk = Bytes::from(data);
            while !chunk.is_empty() {
                match b.feed(&mut chunk) {
                    Some(Full::Slice(p)) => out.push(p.to_vec()),
                    Some(Full::Buffered) => {
                        out.push(b.head().to_vec());
                        b.consume_head();
                    }
                    None => {}
                }
                assert!(b.buf.len() <= part + 1, "holds at most a part and a byte");
            }
        }
        let rest = b.take_rest();
        let sizes = out.iter().map(Vec::len).collect();
        out.push(rest.clone());
        assert_eq!(out.concat(), all, "bytes come out in order, unchanged");
        (sizes, rest.len())
    }

    #[test]
    fn parts_are_all_the_same_size_and_the_last_is_never_empty() {
        assert_eq!(cut(10, 0, &[10]), (vec![], 10));
        assert_eq!(cut(10, 0, &[11]), (vec![10], 1));
        assert_eq!(cut(10, 0, &[20]), (vec![10], 10));
        assert_eq!(cut(10, 0, &[3, 3, 3, 3, 3, 3, 3]), (vec![10, 10], 1));
        assert_eq!(cut(10, 4, &[6]), (vec![], 10));
        assert_eq!(cut(10, 4, &[25]), (vec![10, 10], 9));
        assert_eq!(cut(10, 0, &[35, 1]), (vec![10, 10, 10], 6));
        // Pseudo-random chunkings: parts exactly `part`, the rest 1..=part.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..200 {
            let chunks: Vec<usize> = (0..(x % 9 + 1))
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    (x % 40) as usize + 1
                })
                .collect();
            let pre = (x % 7) as usize;
            let (parts, rest) = cut(16, pre, &chunks);
            assert!(parts.iter().all(|&p| p == 16), "{parts:?}");
            assert!((1..=16).contains(&rest), "{rest}");
            assert_eq!(parts.len() * 16 + rest, pre + chunks.iter().sum::<usize>());
        }
    }

    #[test]
    fn assembly_plans_cover_every_byte_once_in_equal_parts() {
        assert_eq!(
            plan_parts(&[5, 3, 9], 6),
            vec![
                vec![
                    Segment {
                        obj: 0,
                        offset: 0,
                        len: 5
                    },
                    Segment {
                        obj: 1,
                        offset: 0,
                        len: 1
                    }
                ],
                vec![
                    Segment {
                        obj: 1,
                        offset: 1,
                        len: 2
                    },
                    Segment {
                        obj: 2,
                        offset: 0,
                        len: 4
                    }
                ],
                vec![Segment {
                    obj: 2,
                    offset: 4,
                    len: 5
                }],
            ]
        );
        assert_eq!(plan_parts(&[6, 6], 6).len(), 2);
        assert!(plan_parts(&[], 6).is_empty());
        let sizes = [13u64, 1, 40, 7, 7, 2, 31];
        for part in 1..50 {
            let plan = plan_parts(&sizes, part);
            let lens: Vec<u64> = plan.iter().map(|p| p.iter().map(|s| s.len).sum()).collect();
            let (last, rest) = lens.split_last().expect("parts");
            assert!(rest.iter().all(|&l| l == part) && *last <= part && *last > 0);
            let mut next = vec![0u64; sizes.len()];
            let mut prev = 0;
            for s in plan.iter().flatten() {
                assert!(s.obj >= prev && s.len > 0 && s.offset == next[s.obj]);
                next[s.obj] += s.len;
                prev = s.obj;
            }
            assert_eq!(next, sizes);
        }
        const G: u64 = 1024 * 1024 * 1024;
        assert_eq!(assembly_part_size(6 * G), ASSEMBLY_MIN_PART);
        let big = assembly_part_size(5 * 1024 * G);
        assert!(big > ASSEMBLY_MIN_PART && (5 * 1024 * G).div_ceil(big) <= ASSEMBLY_MAX_PARTS);
    }

    #[test]
    fn errors_by_meaning() {
        let m = |s: &str| classify("get", s);
        assert!(matches!(
            m("get: The specified key does not exist. (10007)"),
            StoreError::NotFound
        ));
        assert!(matches!(
            m("complete: no such upload (10024)"),
            StoreError::NotFound
        ));
        assert!(matches!(
            m("put: Precondition Failed (10031)"),
            StoreError::Precondition(_)
        ));
        assert!(matches!(
            m("put: too many requests (10058) "),
            StoreError::Unavailable(_)
        ));
        assert!(matches!(
            m("get: We encountered an internal error. (10001)"),
            StoreError::Unavailable(_)
        ));
        assert!(matches!(
            m("Network connection lost."),
            StoreError::Unavailable(_)
        ));
        assert!(matches!(
            m("uploadPart: InvalidPart (10048)"),
            StoreError::Other(_)
        ));
        assert!(matches!(
            m("TypeError: body used (x)"),
            StoreError::Other(_)
        ));
        assert!(matches!(
            m("Error: Provided readable stream must have a known length"),
            StoreError::Other(_)
        ));
    }
}
