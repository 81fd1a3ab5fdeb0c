//! The object-per-request upload layout that wharf-s3 and wharf-r2 share: key names, the
//! upload's recorded state, where a request's object starts, how its bytes are cut into
//! parts, and the one writer that does all of it ([`UploadWriter`]) over a store's few
//! bucket calls ([`PartSink`]). No I/O here, so the two stores differ only in how they talk
//! to their bucket, and all of this is unit-tested on the host.
//!
//! # Layout
//!
//! Under an optional prefix: `blobs/<alg>/<hex>` committed blobs, written only at commit;
//! `uploads/<id>/<start>-<nonce>` the object one request of upload `<id>` wrote, from
//! upload offset `<start>` (the random nonce makes it that request's own).
//!
//! # The invariant
//!
//! The upload's `store_state` ([`State`]) lists the recorded objects (key, ETag, size) in
//! order; every object but the last is at least [`MIN_PART`] bytes, so commit may use each
//! as a multipart part. A smaller last object is read back by the next request and replaced
//! by that request's object ([`Begin::tail`]). No request writes into another's object, so
//! the bytes of a failed, racing or still-streaming request are in nothing the record lists.
//! An upload whose digest was declared (`POST ?digest=`) writes one multipart upload at the
//! blob's own key instead ([`State::direct`]); a last part shorter than a full part seals
//! it.
#![deny(missing_docs)]

mod writer;

pub use writer::{PartSink, ReadBack, UploadWriter};

use bytes::{Buf, Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use wharf_core::model::upload::valid_upload_id;
use wharf_core::ports::UploadRecord;
use wharf_core::{Digest, StoreError};

/// The smallest multipart part (but the last) on S3 and R2, and so the smallest object a
/// request may leave as any but the last of an upload.
pub const MIN_PART: u64 = 5 * 1024 * 1024;
/// The largest part number on S3 and R2.
pub const MAX_PARTS: u16 = 10_000;

fn other(e: impl std::fmt::Display) -> StoreError {
    StoreError::Other(e.to_string())
}

/// Key names under a store's prefix.
#[derive(Clone, Debug, Default)]
pub struct Layout {
    prefix: String,
}

impl Layout {
    /// Every key under `prefix` (e.g. `"wharf/"`, or empty).
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }

    /// The prefix every key starts with.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Key of a committed blob.
    pub fn blob_key(&self, d: &Digest) -> String {
        format!(
            "{}blobs/{}/{}",
            self.prefix,
            d.algorithm().as_str(),
            d.hex()
        )
    }

    /// `blobs/`: the prefix of every committed blob's key (listing it lists the blobs, in
    /// the order of their digests: algorithm, then hex).
    pub fn blobs_prefix(&self) -> String {
        format!("{}blobs/", self.prefix)
    }

    /// The digest a committed blob's key names (the inverse of [`Layout::blob_key`]), or
    /// `None` for a key that is not one (another prefix, an unknown algorithm, bad hex).
    pub fn blob_digest(&self, key: &str) -> Option<Digest> {
        let rest = key.strip_prefix(&self.prefix)?.strip_prefix("blobs/")?;
        let (alg, hex) = rest.split_once('/')?;
        format!("{alg}:{hex}").parse().ok()
    }

    /// `uploads/<id>/`, after checking that the id cannot reach outside it.
    pub fn upload_prefix(&self, id: &str) -> Result<String, StoreError> {
        if !valid_upload_id(id) {
            return Err(other(format!("invalid upload id {id:?}")));
        }
        Ok(format!("{}uploads/{id}/", self.prefix))
    }

    /// The upload's recorded state (keys absolute); an empty one is a new upload, direct at
    /// the blob's key if its digest was declared.
    pub fn state(&self, upload: &UploadRecord) -> Result<State, StoreError> {
        State::parse(
            &upload.store_state,
            &self.upload_prefix(&upload.id)?,
            upload.offset,
            upload.digest.as_ref().map(|d| self.blob_key(d)),
        )
    }

    /// Where the next request of `upload` writes, or why it may not: the upload is sealed,
    /// or already has `max_objects` objects (commit reads each once).
    pub fn begin(&self, upload: &UploadRecord, max_objects: usize) -> Result<Begin, StoreError> {
        let prefix = self.upload_prefix(&upload.id)?;
        let state = self.state(upload)?;
        if state.sealed {
            return Err(other(
                "this upload was closed by a request that declared its digest",
            ));
        }
        if state.objects.len() >= max_objects {
            return Err(other(format!(
                "upload {} has {max_objects} chunks already; send larger chunks",
                upload.id
            )));
        }
        let multi = state.direct.clone();
        // A small last object is read back and replaced by this request's object.
        let tail = match &multi {
            Some(_) => None,
            None => state.objects.last().filter(|o| o.size < MIN_PART).cloned(),
        };
        let start = match &multi {
            Some(m) => m.parts.iter().map(|p| p.size).sum(),
            None => state.len() - tail.as_ref().map_or(0, |t| t.size),
        };
        Ok(Begin {
            key: format!("{prefix}{start}-{:016x}", nonce()?),
            prefix,
            state,
            tail,
            multi,
        })
    }

    /// The direct multipart upload to complete at commit, after checking that it was
    /// started for this digest; `None` for an upload of request objects.
    pub fn direct<'s>(
        &self,
        state: &'s State,
        upload: &UploadRecord,
        digest: &Digest,
    ) -> Result<Option<&'s Multi>, StoreError> {
        match &state.direct {
            Some(d) if d.key != self.blob_key(digest) => Err(other(format!(
                "upload {} was started for another digest; refusing to commit it as {digest}",
                upload.id
            ))),
            d => Ok(d.as_ref()),
        }
    }
}

/// Where one request of an upload writes ([`Layout::begin`]).
#[derive(Clone, Debug)]
pub struct Begin {
    /// This request's own object.
    pub key: String,
    /// `uploads/<id>/`.
    pub prefix: String,
    /// The recorded state.
    pub state: State,
    /// The recorded small last object, to be read back before the request's first byte.
    pub tail: Option<Obj>,
    /// The direct multipart upload, if the digest was declared.
    pub multi: Option<Multi>,
}

/// A fresh random nonce: a request's object key must be its own.
fn nonce() -> Result<u64, StoreError> {
    let mut b = [0u8; 8];
    getrandom02::getrandom(&mut b).map_err(|e| other(format!("no randomness: {e}")))?;
    Ok(u64::from_le_bytes(b))
}

/// One uploaded part.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Part {
    /// Part number.
    pub n: u16,
    /// ETag the store returned for it.
    #[serde(rename = "e")]
    pub etag: String,
    /// Bytes.
    #[serde(rename = "s")]
    pub size: u64,
}

/// An object one request of an upload wrote.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Obj {
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
pub struct Multi {
    /// Key it completes to.
    pub key: String,
    /// Its id, once created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mpu: Option<String>,
    /// Parts, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<Part>,
}

impl Multi {
    /// The next part's number, if the upload may have another.
    pub fn next_part(&self) -> Result<u16, StoreError> {
        match self.parts.last() {
            None => Ok(1),
            Some(p) if p.n < MAX_PARTS => Ok(p.n + 1),
            Some(_) => Err(other("upload has too many parts")),
        }
    }

    /// Bytes in its parts.
    pub fn len(&self) -> u64 {
        self.parts.iter().map(|p| p.size).sum()
    }

    /// No parts yet.
    pub fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }
}

/// The `store_state` of an upload.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct State {
    /// The objects the recorded requests wrote, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub objects: Vec<Obj>,
    /// A declared-digest upload: its multipart upload at the blob's own key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direct: Option<Multi>,
    /// The direct upload's last part is shorter than a full part: nothing may follow it
    /// (R2 wants all parts but the last the same size).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sealed: bool,
}

impl State {
    /// Bytes the state covers.
    pub fn len(&self) -> u64 {
        self.objects.iter().map(|o| o.size).sum::<u64>()
            + self.direct.as_ref().map_or(0, Multi::len)
    }

    /// Covers no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
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

    /// Records a request's finished object, in place of the small last one it read back.
    pub fn push_object(&mut self, obj: Obj, replaced_tail: bool) {
        if replaced_tail {
            self.objects.pop();
        }
        self.objects.push(obj);
    }
}

/// What [`PartBuffer::feed`] found ready to upload.
#[derive(Debug, PartialEq)]
pub enum Full {
    /// A whole part taken straight from the chunk (the buffer was empty).
    Slice(Bytes),
    /// The buffer holds more than a part: upload [`PartBuffer::head`] (or take it with
    /// [`PartBuffer::take_head`]), then [`PartBuffer::consume_head`].
    Buffered,
}

/// Cuts a request's bytes into parts. A part is released only once at least one more byte
/// follows it, so a request's last part is never empty and a request of at most one part
/// stays a single put. Holds at most a part and a byte.
#[derive(Debug, Default)]
pub struct PartBuffer {
    part: usize,
    buf: BytesMut,
}

impl PartBuffer {
    /// An empty buffer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes bytes from the front of `chunk` (not necessarily all) toward a part of `part`
    /// bytes; call again while `chunk` is not empty.
    pub fn feed(&mut self, chunk: &mut Bytes, part: usize) -> Option<Full> {
        self.part = part;
        if self.buf.is_empty() && chunk.len() > part {
            return Some(Full::Slice(chunk.split_to(part)));
        }
        if self.buf.capacity() < part + 1 {
            self.buf.reserve(part + 1 - self.buf.len());
        }
        let take = (part + 1 - self.buf.len().min(part + 1)).min(chunk.len());
        self.buf.extend_from_slice(&chunk.split_to(take));
        (self.buf.len() > part).then_some(Full::Buffered)
    }

    /// Puts `len` bytes read back from a recorded object before the request's own, written
    /// by `fill` straight into the buffer, which gets room for a part of `part` bytes too.
    pub fn preload_with(&mut self, len: usize, part: usize, fill: impl FnOnce(&mut [u8])) {
        self.buf.reserve((part + 1).max(len));
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
        self.buf.advance(self.part.min(self.buf.len()));
    }

    /// Takes the full part at the front without a copy.
    pub fn take_head(&mut self) -> Bytes {
        self.buf.split_to(self.part.min(self.buf.len())).freeze()
    }

    /// Takes what is left (the request's last part or whole object).
    pub fn take_rest(&mut self) -> Bytes {
        self.buf.split().freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upload(id: &str, state: &str, offset: u64, digest: Option<Digest>) -> UploadRecord {
        UploadRecord {
            id: id.into(),
            repo: "r".into(),
            offset,
            store_state: state.into(),
            hash_state: Vec::new(),
            digest,
            created_ms: 0,
            updated_ms: 0,
        }
    }

    #[test]
    fn keys() {
        let d: Digest = format!("sha256:{}", "ab".repeat(32))
            .parse()
            .expect("digest");
        assert_eq!(
            Layout::new("w/").blob_key(&d),
            format!("w/blobs/sha256/{}", "ab".repeat(32))
        );
        let w = Layout::new("w/");
        assert_eq!(w.blob_digest(&w.blob_key(&d)), Some(d.clone()));
        assert_eq!(w.blobs_prefix(), "w/blobs/");
        let hex = "ab".repeat(32);
        for bad in [
            format!("blobs/sha256/{hex}"),
            format!("w/blobs/sha256/{}", &hex[1..]),
            format!("w/blobs/sha256/{}", hex.to_uppercase()),
            format!("w/blobs/md5/{hex}"),
            format!("w/blobs/sha256/{hex}/x"),
            format!("w/blobs/sha256:{hex}"),
            format!("w/uploads/sha256/{hex}"),
        ] {
            assert_eq!(w.blob_digest(&bad), None, "{bad:?}");
        }
        let l = Layout::default();
        assert_eq!(l.blob_digest(&l.blob_key(&d)), Some(d));
        assert_eq!(l.upload_prefix("abc-1").expect("ok"), "uploads/abc-1/");
        for bad in ["", "../x", "a/b", "a.b", &"a".repeat(129)] {
            assert!(l.upload_prefix(bad).is_err(), "{bad:?}");
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
        assert!(fresh.is_empty());
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

    #[test]
    fn a_request_starts_after_the_last_big_object_and_replaces_a_small_one() {
        let l = Layout::new("p/");
        let big = MIN_PART;
        let rec = format!(
            r#"{{"objects":[{{"k":"0-a","e":"x","s":{big}}},{{"k":"{big}-b","e":"y","s":7}}]}}"#
        );
        let b = l
            .begin(&upload("u1", &rec, big + 7, None), 10)
            .expect("begin");
        assert_eq!(b.prefix, "p/uploads/u1/");
        assert!(
            b.key.starts_with(&format!("p/uploads/u1/{big}-")),
            "{}",
            b.key
        );
        assert_eq!(b.tail.as_ref().map(|t| t.size), Some(7));
        assert!(b.multi.is_none());
        let other = l
            .begin(&upload("u1", &rec, big + 7, None), 10)
            .expect("begin");
        assert_ne!(b.key, other.key, "each request gets its own object");
        // Limits: objects per upload, and a sealed direct upload.
        let err = l
            .begin(&upload("u1", &rec, big + 7, None), 2)
            .expect_err("full");
        assert!(err.to_string().contains("2 chunks"), "{err}");
        let d: Digest = format!("sha256:{}", "cd".repeat(32))
            .parse()
            .expect("digest");
        let sealed = format!(
            r#"{{"direct":{{"key":"{}","mpu":"m","parts":[{{"n":1,"e":"z","s":3}}]}},"sealed":true}}"#,
            l.blob_key(&d)
        );
        assert!(
            l.begin(&upload("u2", &sealed, 3, Some(d.clone())), 10)
                .is_err()
        );
        // A fresh declared-digest upload writes at the blob's key, from its parts' end.
        let b = l
            .begin(&upload("u2", "", 0, Some(d.clone())), 10)
            .expect("begin");
        assert_eq!(
            b.multi.as_ref().map(|m| m.key.clone()),
            Some(l.blob_key(&d))
        );
        // Commit refuses a direct upload for another digest.
        let s = l
            .state(&upload("u2", "", 0, Some(d.clone())))
            .expect("state");
        let e: Digest = format!("sha256:{}", "ef".repeat(32))
            .parse()
            .expect("digest");
        assert!(l.direct(&s, &upload("u2", "", 0, None), &e).is_err());
        assert!(
            l.direct(&s, &upload("u2", "", 0, None), &d)
                .expect("ok")
                .is_some()
        );
    }

    #[test]
    fn part_numbers_stop_at_the_limit() {
        let mut m = Multi::default();
        assert_eq!(m.next_part().expect("first"), 1);
        m.parts.push(Part {
            n: MAX_PARTS,
            etag: String::new(),
            size: 1,
        });
        assert!(m.next_part().is_err());
    }

    /// Feeds `chunks` through a buffer of parts of `part` bytes (after `preload`), as the
    /// writers do; returns the sizes of the parts released and of the rest.
    fn cut(part: usize, preload: usize, chunks: &[usize]) -> (Vec<usize>, usize) {
        let mut b = PartBuffer::new();
        b.preload_with(preload, part, |dst| dst.fill(7));
        let mut out = Vec::new();
        let mut all = vec![7u8; preload];
        let mut n = 0u8;
        let mut took = false;
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
                match b.feed(&mut chunk, part) {
                    Some(Full::Slice(p)) => out.push(p.to_vec()),
                    // Both ways of taking a buffered part.
                    Some(Full::Buffered) if took => out.push(b.take_head().to_vec()),
                    Some(Full::Buffered) => {
                        out.push(b.head().to_vec());
                        b.consume_head();
                    }
                    None => {}
                }
                took = !took;
                assert!(b.buf.len() <= part + 1, "holds at most a part and a byte");
            }
        }
        let rest = b.take_rest().to_vec();
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
}
