//! The one upload writer S3 and R2 share, over the few bucket calls it needs ([`PartSink`]).
//!
//! A request's bytes go into an object of its own: one put if they fit in one part, else a
//! multipart upload of its own completed by [`BlobWriter::finish`]; a declared-digest
//! upload's bytes go into the multipart upload at the blob's key instead. A recorded small
//! last object is read back before the first new byte and replaced. Rules the two stores'
//! copies of this once disagreed on:
//!
//! - **Sealed** means the direct upload's last part is shorter than a full part. R2 wants
//!   every part but the last the same size, so any short part must be the last; S3 would
//!   take more after one of 5 MiB or more, but loses nothing by the same rule, since a
//!   declared-digest upload is a single request (a monolithic `POST`).
//! - **No empty part** is ever uploaded: a request whose parts took all its bytes completes
//!   with them. [`PartBuffer`] always keeps a byte back, so only a failed write empties it.
//! - **Parts add up**: before anything is completed or recorded, the bytes the sink took
//!   must be exactly the bytes the writer was given (and read back). A part lost to a
//!   failed call fails the request instead of leaving an object shorter than its record:
//!   the core verified the digest of the bytes it hashed, not of those in the bucket.
//! - **A read-back tail counts once read**: a failed read is tried again, never skipped.

use crate::{Begin, Full, Multi, Obj, Part, PartBuffer, State, other};
use bytes::Bytes;
use wharf_core::StoreError;
use wharf_core::ports::BlobWriter;

/// The bucket calls an [`UploadWriter`] makes. Keys are absolute; ETags are as the store
/// returns them. Methods are `async fn` without `Send` bounds (R2's binding is
/// single-threaded wasm); with a `Send` sink the writer's futures are `Send` by inference.
#[allow(async_fn_in_trait)]
pub trait PartSink {
    /// Bytes read back from a recorded object.
    type Read: ReadBack;
    /// Bytes in part `parts_done + 1` of a multipart upload (and so the most a request
    /// puts as a single object); at least [`crate::MIN_PART`].
    fn part_size(&self, parts_done: usize) -> usize;
    /// A recorded object, whole, only if its ETag is still `obj.etag` (else `NotFound` or
    /// `Precondition`).
    async fn read(&self, obj: &Obj) -> Result<Self::Read, StoreError>;
    /// Puts an object; returns its ETag.
    async fn put(&self, key: &str, body: Bytes) -> Result<String, StoreError>;
    /// Starts a multipart upload at `key`; returns its id.
    async fn create_multipart(&self, key: &str) -> Result<String, StoreError>;
    /// Uploads part `n` of multipart upload `id`; returns the part's ETag.
    async fn upload_part(
        &self,
        key: &str,
        id: &str,
        n: u16,
        body: Bytes,
    ) -> Result<String, StoreError>;
    /// Completes multipart upload `id` from `parts`; returns the object's ETag.
    async fn complete(&self, key: &str, id: &str, parts: &[Part]) -> Result<String, StoreError>;
}

/// Bytes a [`PartSink`] read back, copied once into the writer's buffer (R2's are a JS
/// array, copied straight in rather than through a Rust copy first).
pub trait ReadBack {
    /// Bytes held.
    fn len(&self) -> usize;
    /// Holds none.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Copies them into `dst`, which is exactly [`Self::len`] bytes.
    fn copy_to(&self, dst: &mut [u8]);
}

impl ReadBack for Vec<Bytes> {
    fn len(&self) -> usize {
        self.iter().map(Bytes::len).sum()
    }

    fn copy_to(&self, dst: &mut [u8]) {
        let mut at = 0;
        for c in self {
            if let Some(d) = dst.get_mut(at..at + c.len()) {
                d.copy_from_slice(c);
            }
            at += c.len();
        }
    }
}

/// Appends one request's bytes to an upload (see the module docs), holding at most about
/// one part in memory. Built from [`crate::Layout::begin`].
pub struct UploadWriter<S> {
    sink: S,
    /// This request's object.
    key: String,
    /// `uploads/<id>/`.
    prefix: String,
    /// The recorded state.
    state: State,
    /// The recorded small last object, read into `buf` before the first new byte.
    tail: Option<Obj>,
    tail_loaded: bool,
    /// The multipart upload being written: the direct one, or this request's own.
    multi: Option<Multi>,
    buf: PartBuffer,
    /// Bytes of this request's object so far: the read-back tail (once loaded) and the new
    /// bytes.
    size: u64,
}

impl<S: PartSink> UploadWriter<S> {
    /// The writer of the request `begin` describes, writing through `sink`.
    pub fn new(sink: S, begin: Begin) -> Self {
        Self {
            sink,
            key: begin.key,
            prefix: begin.prefix,
            state: begin.state,
            tail: begin.tail,
            tail_loaded: false,
            multi: begin.multi,
            buf: PartBuffer::new(),
            size: 0,
        }
    }

    fn part_size(&self) -> usize {
        self.sink
            .part_size(self.multi.as_ref().map_or(0, |m| m.parts.len()))
    }

    /// Reads the recorded small last object into the buffer, once; marked done only when
    /// it succeeded, so a failed read is never skipped.
    async fn load_tail(&mut self) -> Result<(), StoreError> {
        if self.tail_loaded {
            return Ok(());
        }
        if let Some(t) = &self.tail {
            let bytes = self.sink.read(t).await.map_err(|e| match e {
                StoreError::NotFound | StoreError::Precondition(_) => {
                    other("the upload's recorded last object is missing or changed")
                }
                e => e,
            })?;
            if bytes.len() as u64 != t.size {
                return Err(other(
                    "the upload's recorded last object has the wrong size",
                ));
            }
            self.buf
                .preload_with(bytes.len(), self.sink.part_size(0), |dst| {
                    bytes.copy_to(dst)
                });
            self.size += t.size;
        }
        self.tail_loaded = true;
        Ok(())
    }

    /// Uploads the next part, starting the multipart upload on first use.
    async fn upload_part(&mut self, data: Bytes) -> Result<(), StoreError> {
        let m = self.multi.get_or_insert_with(|| Multi {
            key: self.key.clone(),
            ..Multi::default()
        });
        let id = match &m.mpu {
            Some(id) => id.clone(),
            None => {
                let id = self.sink.create_multipart(&m.key).await?;
                m.mpu = Some(id.clone());
                id
            }
        };
        let n = m.next_part()?;
        let size = data.len() as u64;
        let etag = self.sink.upload_part(&m.key, &id, n, data).await?;
        m.parts.push(Part { n, etag, size });
        Ok(())
    }
}

/// Fails unless the sink took exactly the bytes the writer was given.
fn adds_up(taken: u64, given: u64) -> Result<(), StoreError> {
    if taken != given {
        return Err(other(format!(
            "the request's parts hold {taken} bytes, not its {given}: a write failed"
        )));
    }
    Ok(())
}

impl<S: PartSink> BlobWriter for UploadWriter<S> {
    async fn write(&mut self, mut chunk: Bytes) -> Result<(), StoreError> {
        if chunk.is_empty() {
            return Ok(());
        }
        self.load_tail().await?;
        self.size += chunk.len() as u64;
        while !chunk.is_empty() {
            let part = self.part_size();
            match self.buf.feed(&mut chunk, part) {
                Some(Full::Slice(p)) => self.upload_part(p).await?,
                Some(Full::Buffered) => {
                    let p = self.buf.take_head();
                    self.upload_part(p).await?;
                }
                None => {}
            }
        }
        Ok(())
    }

    async fn finish(mut self) -> Result<String, StoreError> {
        if self.size == 0 {
            // Nothing new: the recorded state stands.
            return self.state.record(&self.prefix);
        }
        // Measured before the rest goes up: the size its part is cut against.
        let full = self.part_size();
        let rest = self.buf.take_rest();
        let short = !rest.is_empty() && rest.len() < full;
        if let Some(recorded) = self.state.direct.as_ref().map(Multi::len) {
            // The declared digest's request: its last part may be short, and then is last.
            if !rest.is_empty() {
                self.upload_part(rest).await?;
            }
            let m = self
                .multi
                .take()
                .ok_or_else(|| other("no direct multipart upload"))?;
            adds_up(m.len().saturating_sub(recorded), self.size)?;
            self.state.sealed = short;
            self.state.direct = Some(m);
            return self.state.record(&self.prefix);
        }
        let obj = if self.multi.is_some() {
            // A request of more than one part: its own multipart upload, completed now.
            if !rest.is_empty() {
                self.upload_part(rest).await?;
            }
            let m = self
                .multi
                .take()
                .ok_or_else(|| other("no multipart upload"))?;
            adds_up(m.len(), self.size)?;
            let id = m
                .mpu
                .as_deref()
                .ok_or_else(|| other("no multipart upload id"))?;
            Obj {
                etag: self.sink.complete(&m.key, id, &m.parts).await?,
                key: m.key,
                size: self.size,
            }
        } else {
            adds_up(rest.len() as u64, self.size)?;
            Obj {
                etag: self.sink.put(&self.key, rest).await?,
                key: self.key,
                size: self.size,
            }
        };
        self.state.push_object(obj, self.tail.is_some());
        self.state.record(&self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Layout, MIN_PART};
    use std::cell::RefCell;
    use std::collections::HashMap;
    use std::rc::Rc;
    use std::task::{Context, Poll, Waker};
    use wharf_core::Digest;
    use wharf_core::ports::UploadRecord;

    const MIB: usize = 1024 * 1024;

    /// Objects and parts by key or number: (ETag, bytes).
    type Stored<K> = HashMap<K, (String, Vec<u8>)>;

    /// An in-memory bucket with S3's part rules (and R2's equal parts if asked), a log of
    /// part sizes and completes, and failures to order.
    #[derive(Default)]
    struct Bucket {
        objects: Stored<String>,
        /// Multipart uploads by id: their key and parts.
        uploads: HashMap<String, (String, Stored<u16>)>,
        /// Sizes of the parts uploaded, in order.
        part_sizes: Vec<usize>,
        completes: usize,
        /// The upload_part call (1-based, counted over all) that fails.
        fail_part_call: Option<usize>,
        /// Reads that fail before one succeeds.
        fail_reads: usize,
        equal_parts: bool,
        next: u64,
    }

    #[derive(Clone)]
    struct Mem {
        b: Rc<RefCell<Bucket>>,
        part: usize,
    }

    impl Mem {
        fn new(part: usize, equal_parts: bool) -> Self {
            let b = Bucket {
                equal_parts,
                ..Bucket::default()
            };
            Self {
                b: Rc::new(RefCell::new(b)),
                part,
            }
        }

        fn etag(b: &mut Bucket) -> String {
            b.next += 1;
            format!("\"e{}\"", b.next)
        }

        /// The bytes the recorded state lists, read as commit would.
        fn staged(&self, state: &State) -> Vec<u8> {
            let b = self.b.borrow();
            let mut out = Vec::new();
            for o in &state.objects {
                let (etag, bytes) = b.objects.get(&o.key).expect("recorded object");
                assert_eq!(etag, &o.etag, "recorded ETag");
                assert_eq!(bytes.len() as u64, o.size, "recorded size");
                out.extend_from_slice(bytes);
            }
            out
        }
    }

    impl PartSink for Mem {
        type Read = Vec<Bytes>;

        fn part_size(&self, _parts_done: usize) -> usize {
            self.part
        }

        async fn read(&self, obj: &Obj) -> Result<Vec<Bytes>, StoreError> {
            let mut b = self.b.borrow_mut();
            if b.fail_reads > 0 {
                b.fail_reads -= 1;
                return Err(StoreError::Unavailable("read failed".into()));
            }
            match b.objects.get(&obj.key) {
                Some((etag, bytes)) if *etag == obj.etag => {
                    // In two pieces, as a body stream arrives.
                    let mut all = Bytes::from(bytes.clone());
                    let first = all.split_to(all.len() / 2);
                    Ok(vec![first, all])
                }
                Some(_) => Err(StoreError::Precondition("etag".into())),
                None => Err(StoreError::NotFound),
            }
        }

        async fn put(&self, key: &str, body: Bytes) -> Result<String, StoreError> {
            let mut b = self.b.borrow_mut();
            let etag = Self::etag(&mut b);
            b.objects.insert(key.into(), (etag.clone(), body.to_vec()));
            Ok(etag)
        }

        async fn create_multipart(&self, key: &str) -> Result<String, StoreError> {
            let mut b = self.b.borrow_mut();
            let id = format!("mpu{}", b.uploads.len());
            b.uploads.insert(id.clone(), (key.into(), HashMap::new()));
            Ok(id)
        }

        async fn upload_part(
            &self,
            key: &str,
            id: &str,
            n: u16,
            body: Bytes,
        ) -> Result<String, StoreError> {
            let mut b = self.b.borrow_mut();
            b.part_sizes.push(body.len());
            if b.fail_part_call == Some(b.part_sizes.len()) {
                return Err(StoreError::Unavailable("part failed".into()));
            }
            let etag = Self::etag(&mut b);
            match b.uploads.get_mut(id) {
                Some((k, parts)) if k == key => {
                    parts.insert(n, (etag.clone(), body.to_vec()));
                    Ok(etag)
                }
                _ => Err(StoreError::NotFound),
            }
        }

        async fn complete(
            &self,
            key: &str,
            id: &str,
            parts: &[Part],
        ) -> Result<String, StoreError> {
            let mut b = self.b.borrow_mut();
            b.completes += 1;
            let equal = b.equal_parts;
            let Some((k, stored)) = b.uploads.remove(id) else {
                return Err(StoreError::NotFound);
            };
            assert_eq!(k, key);
            let mut bytes = Vec::new();
            for (i, p) in parts.iter().enumerate() {
                let (etag, data) = stored.get(&p.n).ok_or(StoreError::NotFound)?;
                assert_eq!(etag, &p.etag);
                let last = i + 1 == parts.len();
                if !last && (data.len() as u64) < MIN_PART {
                    return Err(StoreError::Other("EntityTooSmall".into()));
                }
                if equal && !last && data.len() != stored[&parts[0].n].1.len() {
                    return Err(StoreError::Other("parts of unequal size".into()));
                }
                bytes.extend_from_slice(data);
            }
            let etag = Self::etag(&mut b);
            b.objects.insert(key.into(), (etag.clone(), bytes));
            Ok(etag)
        }
    }

    /// Runs a future of the fake sink, which never waits.
    fn run<F: Future>(f: F) -> F::Output {
        let mut f = std::pin::pin!(f);
        match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(v) => v,
            Poll::Pending => panic!("the in-memory sink never waits"),
        }
    }

    /// `len` bytes of the upload's content from byte `from`: each byte names its offset.
    fn data(from: usize, len: usize) -> Vec<u8> {
        let period: Vec<u8> = (0..=250).collect();
        let mut out = Vec::with_capacity(len + period.len());
        out.extend_from_slice(&period[from % 251..]);
        while out.len() < len + period.len() {
            out.extend_from_slice(&period);
        }
        out.truncate(len);
        out
    }

    fn upload(digest: Option<Digest>) -> UploadRecord {
        UploadRecord {
            id: "u1".into(),
            repo: "r".into(),
            offset: 0,
            store_state: String::new(),
            hash_state: Vec::new(),
            digest,
            created_ms: 0,
            updated_ms: 0,
        }
    }

    fn digest() -> Digest {
        format!("sha256:{}", "ab".repeat(32))
            .parse()
            .expect("digest")
    }

    /// One request of `chunks` bytes (the upload's next ones), recorded as the core would
    /// after `finish`.
    fn request(sink: &Mem, up: &mut UploadRecord, chunks: &[usize]) -> Result<(), StoreError> {
        let begin = Layout::default().begin(up, 100)?;
        let mut w = UploadWriter::new(sink.clone(), begin);
        let mut at = up.offset as usize;
        for &n in chunks {
            run(w.write(Bytes::from(data(at, n))))?;
            at += n;
        }
        up.store_state = run(w.finish())?;
        up.offset = at as u64;
        Ok(())
    }

    fn state(up: &UploadRecord) -> State {
        Layout::default().state(up).expect("state")
    }

    #[test]
    fn requests_join_up_across_read_back_tails_and_multipart_requests() {
        let sink = Mem::new(8 * MIB, true);
        let mut up = upload(None);
        request(&sink, &mut up, &[3 * MIB]).expect("small");
        request(&sink, &mut up, &[MIB]).expect("reads the tail back");
        assert_eq!(state(&up).objects.len(), 1, "the tail was replaced");
        request(&sink, &mut up, &[7 * MIB, 13 * MIB]).expect("multipart");
        let s = state(&up);
        assert_eq!(
            s.objects.iter().map(|o| o.size).collect::<Vec<_>>(),
            [24 * MIB as u64]
        );
        request(&sink, &mut up, &[2 * MIB]).expect("small again");
        let s = state(&up);
        assert_eq!(s.objects.len(), 2);
        assert_eq!(sink.staged(&s), data(0, 26 * MIB));
        assert_eq!(sink.b.borrow().part_sizes, [8 * MIB; 3], "equal parts");
        assert!(!up.store_state.contains("uploads/"), "keys are relative");
    }

    /// The old S3 writer sealed only below 5 MiB: a 6 MiB last part left the upload open
    /// to 8 MiB parts after it, which R2 refuses to complete.
    #[test]
    fn a_direct_upload_is_sealed_by_any_part_shorter_than_a_full_one() {
        let sink = Mem::new(8 * MIB, true);
        let mut up = upload(Some(digest()));
        request(&sink, &mut up, &[14 * MIB]).expect("direct");
        let s = state(&up);
        let parts = s.direct.as_ref().map(|m| m.parts.len());
        assert_eq!(parts, Some(2), "8 MiB and 6 MiB");
        assert!(s.sealed, "a 6 MiB last part must stay last");
        assert!(request(&sink, &mut up, &[MIB]).is_err(), "nothing follows");

        // A request ending on a full part leaves it open; a short part then seals it.
        let sink = Mem::new(8 * MIB, true);
        let mut up = upload(Some(digest()));
        request(&sink, &mut up, &[16 * MIB]).expect("two full parts");
        assert!(!state(&up).sealed);
        request(&sink, &mut up, &[3 * MIB]).expect("a short part");
        let s = state(&up);
        assert!(s.sealed);
        let m = s.direct.expect("direct");
        let id = m.mpu.as_deref().expect("id");
        run(sink.complete(&m.key, id, &m.parts)).expect("R2's rules hold");
        let b = sink.b.borrow();
        assert_eq!(
            b.objects.get(&m.key).map(|o| &o.1),
            Some(&data(0, 19 * MIB))
        );
    }

    /// The old R2 writer uploaded its rest even when empty: after a failed part left the
    /// buffer empty, `finish` sent a part of 0 bytes.
    #[test]
    fn no_empty_part_is_ever_uploaded() {
        let sink = Mem::new(8 * MIB, true);
        sink.b.borrow_mut().fail_part_call = Some(1);
        let mut up = upload(None);
        let begin = Layout::default().begin(&up, 100).expect("begin");
        let mut w = UploadWriter::new(sink.clone(), begin);
        // More than a part in one chunk: the part goes straight from it, and fails.
        assert!(run(w.write(Bytes::from(data(0, 8 * MIB + 1)))).is_err());
        assert!(run(w.finish()).is_err());
        let b = sink.b.borrow();
        assert_eq!(b.part_sizes, [8 * MIB], "no part of 0 bytes followed");
        assert_eq!(b.completes, 0);
        drop(b);
        up.store_state.clear();
    }

    /// The old S3 writer completed whatever parts it had: after a lost part, `finish`
    /// recorded an object of 17 MiB that held 9 MiB.
    #[test]
    fn parts_that_do_not_add_up_fail_the_request() {
        let sink = Mem::new(8 * MIB, false);
        sink.b.borrow_mut().fail_part_call = Some(2);
        let up = upload(None);
        let begin = Layout::default().begin(&up, 100).expect("begin");
        let mut w = UploadWriter::new(sink.clone(), begin);
        let mut failed = false;
        for i in 0..17 {
            failed |= run(w.write(Bytes::from(data(i * MIB, MIB)))).is_err();
        }
        assert!(failed, "the second part was refused");
        let err = run(w.finish()).expect_err("bytes are missing");
        assert!(err.to_string().contains("parts hold"), "{err}");
        assert_eq!(sink.b.borrow().completes, 0, "nothing completed");

        // The same for a direct upload: nothing is recorded.
        let sink = Mem::new(8 * MIB, false);
        sink.b.borrow_mut().fail_part_call = Some(1);
        let up = upload(Some(digest()));
        let begin = Layout::default().begin(&up, 100).expect("begin");
        let mut w = UploadWriter::new(sink.clone(), begin);
        for i in 0..9 {
            let _ = run(w.write(Bytes::from(data(i * MIB, MIB))));
        }
        assert!(run(w.finish()).is_err());
    }

    /// The old R2 writer marked its tail read before reading it: a write after a failed
    /// read skipped the tail, and its bytes fell out of the upload.
    #[test]
    fn a_failed_read_back_is_retried_not_skipped() {
        let sink = Mem::new(8 * MIB, true);
        let mut up = upload(None);
        request(&sink, &mut up, &[MIB]).expect("small");
        sink.b.borrow_mut().fail_reads = 1;
        let begin = Layout::default().begin(&up, 100).expect("begin");
        let mut w = UploadWriter::new(sink.clone(), begin);
        assert!(run(w.write(Bytes::from(data(MIB, MIB)))).is_err());
        run(w.write(Bytes::from(data(MIB, MIB)))).expect("read again");
        up.store_state = run(w.finish()).expect("finish");
        up.offset = 2 * MIB as u64;
        assert_eq!(sink.staged(&state(&up)), data(0, 2 * MIB));
    }

    /// States recorded by the writers before they were one (from a run against s3s-fs)
    /// parse, record back byte for byte, and go on as before.
    #[test]
    fn states_recorded_by_the_old_writers_still_work() {
        let two = r#"{"objects":[{"k":"0-4b85906a91ddf70a","e":"\"547186cefd455b0a45a3b4fcc1a2257a-2\"","s":13299835},{"k":"13299835-b49f57d67c537d9f","e":"\"29ec657a0a96ce7cd121bc54ce7268cc-2\"","s":10829758}]}"#;
        let small = r#"{"objects":[{"k":"0-cc695e9941224d6d","e":"\"14c453897c14005e00f51754d76b922a\"","s":4911104}]}"#;
        let sealed = r#"{"direct":{"key":"blobs/sha256/06be492e29b8708b42dd093a14c512fbeead995027c39f3355e95c22ea240d90","mpu":"ca40d10e-cfcf-44b0-9d76-de0cdef713ae","parts":[{"n":1,"e":"\"ae08fab967dd1bfa02a16e2fb50cf13a\"","s":8388608},{"n":2,"e":"\"27310f2c4c3cf16ef63e182add61d388\"","s":8388608},{"n":3,"e":"\"147c74e43df841b2ff2e0887b6a91b6d\"","s":3145728}]},"sealed":true}"#;
        let l = Layout::default();
        let d: Digest = "sha256:06be492e29b8708b42dd093a14c512fbeead995027c39f3355e95c22ea240d90"
            .parse()
            .expect("digest");
        let rec = |s: &str, offset: u64, d: Option<Digest>| UploadRecord {
            store_state: s.into(),
            offset,
            ..upload(d)
        };
        for (s, offset, d) in [
            (two, 24129593, None),
            (small, 4911104, None),
            (sealed, 19922944, Some(d.clone())),
        ] {
            let st = l.state(&rec(s, offset, d)).expect("parses");
            assert_eq!(st.record("uploads/u1/").expect("record"), s, "same bytes");
        }
        // A request after two big objects starts a third; a sealed one is refused.
        let b = l.begin(&rec(two, 24129593, None), 100).expect("begin");
        assert!(b.key.starts_with("uploads/u1/24129593-") && b.tail.is_none());
        assert!(
            l.begin(&rec(sealed, 19922944, Some(d.clone())), 100)
                .is_err()
        );
        let st = l
            .state(&rec(sealed, 19922944, Some(d.clone())))
            .expect("state");
        let m = l.direct(&st, &rec(sealed, 19922944, None), &d).expect("ok");
        assert_eq!(m.map(|m| m.parts.len()), Some(3), "commit completes it");

        // A small recorded object is read back with its recorded ETag and replaced.
        let sink = Mem::new(8 * MIB, true);
        sink.b.borrow_mut().objects.insert(
            "uploads/u1/0-cc695e9941224d6d".into(),
            (
                "\"14c453897c14005e00f51754d76b922a\"".into(),
                data(0, 4911104),
            ),
        );
        let mut up = rec(small, 4911104, None);
        request(&sink, &mut up, &[MIB]).expect("continues");
        let st = state(&up);
        assert_eq!(st.objects.len(), 1);
        assert!(up.store_state.starts_with(r#"{"objects":[{"k":"0-"#));
        assert_eq!(sink.staged(&st), data(0, 4911104 + MIB));
    }
}
