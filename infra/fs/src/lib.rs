//! Blobs on a local file system: `blobs/<alg>/<2 hex>/<hex>` for committed content,
//! `uploads/<id>/` for uploads in progress.
//!
//! Every request writes a chunk file of its own (`uploads/<id>/<offset>-<n>`); the upload's
//! `store_state` lists the chunk files the metadata store has recorded, in order. A chunk
//! file is never opened for writing again once its request ended, so a request that lost a
//! race, failed, or is still sending can only ever touch a file nobody else uses: it cannot
//! change recorded bytes, let alone a committed blob. A blob appears under its digest only
//! by an atomic `hard_link` of one fully written, fsync'd file (the single recorded chunk, or
//! the chunks joined into a file of the committing request's own under `tmp/`), after the
//! core verified its digest; so a crash at any point leaves either no blob or a whole one,
//! and concurrent commits of one upload never write into the same file: the first link wins.
#![deny(missing_docs)]

mod inventory;

use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use std::io::{self, SeekFrom};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tokio_util::io::ReaderStream;
use wharf_core::model::upload::valid_upload_id;
use wharf_core::ports::{BlobStore, BlobWriter, ByteRange, UploadRecord};
use wharf_core::{Digest, StoreError};

/// Bytes collected before one write to the file: fewer, larger writes.
const WRITE_BATCH: usize = 1 << 20;
/// Read buffer when streaming a blob out.
const READ_CHUNK: usize = 256 * 1024;

/// The file-system blob store.
#[derive(Clone, Debug)]
pub struct FsBlobStore {
    root: PathBuf,
}

fn io_err(e: io::Error) -> StoreError {
    match e.kind() {
        io::ErrorKind::NotFound => StoreError::NotFound,
        _ => StoreError::Other(e.to_string()),
    }
}

impl FsBlobStore {
    /// Opens (creating) a store under `root`.
    pub fn open(root: impl Into<PathBuf>) -> io::Result<Self> {
        let root = root.into();
        std::fs::create_dir_all(root.join("blobs"))?;
        std::fs::create_dir_all(root.join("uploads"))?;
        // Joins of commits a crash interrupted; no commit runs before the store is open.
        let _ = std::fs::remove_dir_all(root.join("tmp"));
        std::fs::create_dir_all(root.join("tmp"))?;
        Ok(Self { root })
    }

    fn blob_path(&self, d: &Digest) -> PathBuf {
        // The digest was validated (algorithm name and lowercase hex only): safe as a path.
        self.root
            .join("blobs")
            .join(d.algorithm().as_str())
            .join(&d.hex()[..2])
            .join(d.hex())
    }

    fn upload_dir(&self, id: &str) -> Result<PathBuf, StoreError> {
        if !valid_upload_id(id) {
            return Err(StoreError::Other(format!("invalid upload id {id:?}")));
        }
        Ok(self.root.join("uploads").join(id))
    }

    /// A fresh name under `tmp/` for one commit's joined file.
    fn tmp_file(&self) -> PathBuf {
        let n = CHUNK_SEQ.fetch_add(1, Ordering::Relaxed);
        self.root
            .join("tmp")
            .join(format!("join-{}-{n}", std::process::id()))
    }

    /// Gives the fsync'd file `from` (of exactly `len` bytes) the blob's name `to`, without
    /// ever replacing an existing name: `hard_link` fails if `to` exists. Where a file
    /// system has no hard links, `rename` (which replaces, but only with verified bytes).
    async fn place(&self, from: &Path, to: &Path, len: u64) -> Result<(), StoreError> {
        let have = tokio::fs::metadata(from).await.map_err(io_err)?.len();
        if have != len {
            return Err(StoreError::Other(format!(
                "{} holds {have} bytes, {len} recorded",
                from.display()
            )));
        }
        match tokio::fs::hard_link(from, to).await {
            Ok(()) => Ok(()),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::AlreadyExists | io::ErrorKind::NotFound
                ) =>
            {
                Err(io_err(e))
            }
            Err(_) => tokio::fs::rename(from, to).await.map_err(io_err),
        }
    }

    /// Removes a committed upload's files. Best effort: the blob is in place already, and
    /// a request still writing a chunk into the directory may make one attempt fail.
    async fn cleanup(&self, upload: &UploadRecord) {
        for _ in 0..3 {
            match self.abort(upload).await {
                Ok(()) => return,
                Err(e) => tracing::debug!(upload = %upload.id, error = %e, "upload cleanup retry"),
            }
        }
        tracing::warn!(upload = %upload.id, "could not remove a committed upload's files");
    }
}

/// A blob's bytes, read from its file.
pub type FsReader = Pin<Box<dyn Stream<Item = Result<Bytes, StoreError>> + Send>>;

impl BlobStore for FsBlobStore {
    type Reader = FsReader;
    type Writer = FsWriter;

    async fn stat(&self, digest: &Digest) -> Result<Option<u64>, StoreError> {
        match tokio::fs::metadata(self.blob_path(digest)).await {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(e)),
        }
    }

    async fn get(&self, digest: &Digest, range: Option<ByteRange>) -> Result<FsReader, StoreError> {
        let mut f = tokio::fs::File::open(self.blob_path(digest))
            .await
            .map_err(io_err)?;
        let reader = match range {
            Some(r) => {
                f.seek(SeekFrom::Start(r.start)).await.map_err(io_err)?;
                ReaderStream::with_capacity(f.take(r.len()), READ_CHUNK).boxed()
            }
            None => ReaderStream::with_capacity(f, READ_CHUNK).boxed(),
        };
        Ok(Box::pin(reader.map(|r| r.map_err(io_err))))
    }

    async fn delete(&self, digest: &Digest) -> Result<(), StoreError> {
        match tokio::fs::remove_file(self.blob_path(digest)).await {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err(e)),
            _ => Ok(()),
        }
    }

    async fn writer(&self, upload: &UploadRecord) -> Result<FsWriter, StoreError> {
        let dir = self.upload_dir(&upload.id)?;
        tokio::fs::create_dir_all(&dir).await.map_err(io_err)?;
        // A fresh file per request: never one another request has written or will write.
        let (name, file) = loop {
            let n = CHUNK_SEQ.fetch_add(1, Ordering::Relaxed);
            let name = format!("{:020}-{}-{n}", upload.offset, std::process::id());
            match tokio::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(dir.join(&name))
                .await
            {
                Ok(f) => break (name, f),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(io_err(e)),
            }
        };
        Ok(FsWriter {
            file,
            dir,
            name,
            recorded: upload.store_state.clone(),
            buf: BytesMut::with_capacity(WRITE_BATCH),
        })
    }

    /// Safe under concurrent commits of one upload (racing closing PUTs): each joins into a
    /// file of its own under `tmp/`, and the blob appears by `hard_link`, which never
    /// replaces a name, so the first to link wins and the others find the blob there. A
    /// commit that finds the chunks gone (another one finished and removed the upload) while
    /// the blob exists has nothing left to do.
    async fn commit(&self, upload: &UploadRecord, digest: &Digest) -> Result<(), StoreError> {
        let dir = self.upload_dir(&upload.id)?;
        let to = self.blob_path(digest);
        let parent = to.parent().map(Path::to_path_buf);
        if let Some(p) = &parent {
            tokio::fs::create_dir_all(p).await.map_err(io_err)?;
        }
        if tokio::fs::metadata(&to).await.is_ok() {
            // Content-addressed and verified: the existing blob is these very bytes.
            self.cleanup(upload).await;
            return Ok(());
        }
        let chunks = recorded_chunks(&upload.store_state)?;
        let placed = match chunks.as_slice() {
            // docker's one-PATCH push: the chunk itself becomes the blob, nothing is copied.
            [one] => self.place(&dir.join(one), &to, upload.offset).await,
            _ => {
                // No chunk (an empty blob) or several: join them into a new file of this
                // request's own, never one another commit is writing.
                let joined = self.tmp_file();
                let sources: Vec<PathBuf> = chunks.iter().map(|c| dir.join(c)).collect();
                let target = joined.clone();
                // std::io::copy between files uses copy_file_range: the kernel moves the
                // bytes, with no user-space buffer (a chunked 1 GiB push joins 64 files).
                let written = tokio::task::spawn_blocking(move || -> io::Result<()> {
                    let mut out = std::fs::OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .open(&target)?;
                    for src in sources {
                        std::io::copy(&mut std::fs::File::open(src)?, &mut out)?;
                    }
                    out.sync_all()
                })
                .await
                .map_err(|e| StoreError::Other(e.to_string()))?
                .map_err(io_err);
                let placed = match written {
                    Ok(()) => self.place(&joined, &to, upload.offset).await,
                    Err(e) => Err(e),
                };
                // Linked into place or not, the join's own name goes.
                let _ = tokio::fs::remove_file(&joined).await;
                placed
            }
        };
        match placed {
            Ok(()) => {}
            // Another commit of these bytes won the race: its blob is this one.
            Err(_) if tokio::fs::metadata(&to).await.is_ok() => {}
            Err(e) => return Err(e),
        }
        if let Some(p) = parent {
            sync_dir(p).await?;
        }
        self.cleanup(upload).await;
        Ok(())
    }

    async fn abort(&self, upload: &UploadRecord) -> Result<(), StoreError> {
        match tokio::fs::remove_dir_all(self.upload_dir(&upload.id)?).await {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err(e)),
            _ => Ok(()),
        }
    }

    /// Reads the recorded chunk files in order, at most `upload.offset` bytes in all.
    async fn read_staged(
        &self,
        upload: &UploadRecord,
        sink: &mut (dyn FnMut(&[u8]) + Send),
    ) -> Result<(), StoreError> {
        let dir = self.upload_dir(&upload.id)?;
        let mut left = upload.offset;
        let mut buf = vec![0u8; READ_CHUNK];
        for name in recorded_chunks(&upload.store_state)? {
            let mut f = tokio::fs::File::open(dir.join(name))
                .await
                .map_err(io_err)?;
            while left > 0 {
                let want = usize::try_from(left).map_or(buf.len(), |l| l.min(buf.len()));
                let n = f.read(&mut buf[..want]).await.map_err(io_err)?;
                if n == 0 {
                    break;
                }
                sink(&buf[..n]);
                left -= n as u64;
            }
        }
        Ok(())
    }
}

/// Chunk file names of an upload, in order, from its `store_state` (`name,name,…`).
fn recorded_chunks(state: &str) -> Result<Vec<&str>, StoreError> {
    let names: Vec<&str> = state.split(',').filter(|n| !n.is_empty()).collect();
    for n in &names {
        if !n.bytes().all(|b| b.is_ascii_digit() || b == b'-') {
            return Err(StoreError::Other(format!("corrupt upload state {state:?}")));
        }
    }
    Ok(names)
}

/// Distinguishes the chunk files of one process.
static CHUNK_SEQ: AtomicU64 = AtomicU64::new(0);

/// Makes a rename durable: fsync the directory that holds the new name.
async fn sync_dir(dir: PathBuf) -> Result<(), StoreError> {
    tokio::task::spawn_blocking(move || std::fs::File::open(&dir)?.sync_all())
        .await
        .map_err(|e| StoreError::Other(e.to_string()))?
        .map_err(io_err)
}

/// Writes one request's bytes to a chunk file of its own, in batches of [`WRITE_BATCH`].
pub struct FsWriter {
    file: tokio::fs::File,
    dir: PathBuf,
    name: String,
    recorded: String,
    buf: BytesMut,
}

impl BlobWriter for FsWriter {
    async fn write(&mut self, chunk: Bytes) -> Result<(), StoreError> {
        if self.buf.is_empty() && chunk.len() >= WRITE_BATCH {
            return self.file.write_all(&chunk).await.map_err(io_err);
        }
        self.buf.extend_from_slice(&chunk);
        if self.buf.len() >= WRITE_BATCH {
            self.file.write_all(&self.buf).await.map_err(io_err)?;
            self.buf.clear();
        }
        Ok(())
    }

    /// Makes the chunk durable (data and directory entry) and returns the recorded chunk
    /// list with this one appended.
    async fn finish(mut self) -> Result<String, StoreError> {
        if !self.buf.is_empty() {
            self.file.write_all(&self.buf).await.map_err(io_err)?;
        }
        self.file.flush().await.map_err(io_err)?;
        self.file.sync_data().await.map_err(io_err)?;
        sync_dir(self.dir).await?;
        Ok(if self.recorded.is_empty() {
            self.name
        } else {
            format!("{},{}", self.recorded, self.name)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wharf_core::Hasher;

    fn upload(id: &str, offset: u64) -> UploadRecord {
        UploadRecord {
            id: id.into(),
            repo: "r".into(),
            offset,
            hash_state: Hasher::new(wharf_core::Algorithm::Sha256).save(),
            store_state: String::new(),
            digest: None,
            created_ms: 0,
            updated_ms: 0,
        }
    }

    async fn read_all(s: &FsBlobStore, d: &Digest, r: Option<ByteRange>) -> Vec<u8> {
        let mut out = Vec::new();
        let mut st = s.get(d, r).await.expect("get");
        while let Some(c) = st.next().await {
            out.extend_from_slice(&c.expect("chunk"));
        }
        out
    }

    fn at(id: &str, offset: u64, state: &str) -> UploadRecord {
        UploadRecord {
            store_state: state.into(),
            ..upload(id, offset)
        }
    }

    #[tokio::test]
    async fn only_recorded_chunks_count_and_late_writers_cannot_touch_blobs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = FsBlobStore::open(dir.path()).expect("open");
        let mut w = s.writer(&upload("u1", 0)).await.expect("writer");
        w.write(Bytes::from_static(b"hello ")).await.expect("write");
        let s1 = w.finish().await.expect("finish");
        // A request that wrote but was never recorded (it failed, or lost a race).
        let mut lost = s.writer(&at("u1", 6, &s1)).await.expect("writer");
        lost.write(Bytes::from_static(b"GARBAGE"))
            .await
            .expect("write");
        let _ = lost.finish().await.expect("finish");
        // A request still sending while the upload is committed.
        let mut late = s.writer(&at("u1", 6, &s1)).await.expect("writer");
        let mut w = s.writer(&at("u1", 6, &s1)).await.expect("writer");
        w.write(Bytes::from(vec![b'w'; WRITE_BATCH + 5]))
            .await
            .expect("write");
        let s3 = w.finish().await.expect("finish");
        let total = 6 + WRITE_BATCH as u64 + 5;
        let d = Digest::sha256_of(b"x");
        assert_eq!(s.stat(&d).await.expect("stat"), None);
        s.commit(&at("u1", total, &s3), &d).await.expect("commit");
        late.write(Bytes::from(vec![b'Y'; WRITE_BATCH * 2]))
            .await
            .ok();
        let _ = late.finish().await;
        assert_eq!(s.stat(&d).await.expect("stat"), Some(total));
        let all = read_all(&s, &d, None).await;
        assert_eq!(&all[..6], b"hello ");
        assert!(
            all[6..].iter().all(|b| *b == b'w'),
            "only recorded bytes, untouched by late writers"
        );
        let part = read_all(&s, &d, Some(ByteRange { start: 2, end: 7 })).await;
        assert_eq!(part, b"llo ww");

        // One recorded chunk is linked, not copied; an empty blob needs no chunk.
        let mut w = s.writer(&upload("u2", 0)).await.expect("writer");
        w.write(Bytes::from_static(b"single")).await.expect("write");
        let st = w.finish().await.expect("finish");
        let d2 = Digest::sha256_of(b"single");
        s.commit(&at("u2", 6, &st), &d2).await.expect("commit");
        assert_eq!(read_all(&s, &d2, None).await, b"single");
        let empty = Digest::sha256_of(b"");
        s.commit(&upload("u3", 0), &empty)
            .await
            .expect("commit empty");
        assert_eq!(s.stat(&empty).await.expect("stat"), Some(0));
        // Committing a digest that exists leaves the blob as it is.
        let mut w = s.writer(&upload("u4", 0)).await.expect("writer");
        w.write(Bytes::from_static(b"single")).await.expect("write");
        let st = w.finish().await.expect("finish");
        s.commit(&at("u4", 6, &st), &d2)
            .await
            .expect("commit again");
        assert_eq!(read_all(&s, &d2, None).await, b"single");
        // A state that disagrees with the recorded length is refused, not committed.
        let mut w = s.writer(&upload("u5", 0)).await.expect("writer");
        w.write(Bytes::from_static(b"abc")).await.expect("write");
        let st = w.finish().await.expect("finish");
        let d5 = Digest::sha256_of(b"abcd");
        assert!(s.commit(&at("u5", 4, &st), &d5).await.is_err());
        assert_eq!(s.stat(&d5).await.expect("stat"), None);

        for id in ["u1", "u2", "u3", "u4"] {
            assert!(
                !dir.path().join("uploads").join(id).exists(),
                "{id} cleaned up"
            );
        }
        s.delete(&d).await.expect("delete");
        assert_eq!(s.stat(&d).await.expect("stat"), None);
        assert!(matches!(
            s.writer(&upload("../x", 0)).await,
            Err(StoreError::Other(_))
        ));
        assert!(matches!(
            s.commit(&at("u9", 0, "../../x"), &d).await,
            Err(StoreError::Other(_))
        ));
    }

    /// The blob store conformance suite, and nothing of it left on disk afterwards.
    #[tokio::test]
    async fn conforms() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = FsBlobStore::open(dir.path()).expect("open");
        wharf_core::testing::blob_conformance(&s).await;
        let uploads: Vec<_> = std::fs::read_dir(dir.path().join("uploads"))
            .expect("uploads")
            .collect();
        assert!(uploads.is_empty(), "upload files left: {uploads:?}");
        let tmp = std::fs::read_dir(dir.path().join("tmp"))
            .expect("tmp")
            .count();
        assert_eq!(tmp, 0, "no join file left behind");
    }

    /// The blob inventory suite, on a store that holds other blobs and stray files.
    #[tokio::test]
    async fn lists_its_blobs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = FsBlobStore::open(dir.path()).expect("open");
        let kept = Digest::sha256_of(b"kept");
        let mut w = s.writer(&upload("k1", 0)).await.expect("writer");
        w.write(Bytes::from_static(b"kept")).await.expect("write");
        let st = w.finish().await.expect("finish");
        s.commit(&at("k1", 4, &st), &kept).await.expect("commit");
        // What is not a blob file under blobs/ is not listed.
        let blobs = dir.path().join("blobs");
        let hex = kept.hex().to_owned();
        for (fan, name) in [
            ("00", "00notahexdigest".to_owned()),
            (&hex[..2], format!("{}x", &hex[..63])),
            ("ff", hex.clone()),
            ("abc", format!("abc{}", &hex[3..])),
        ] {
            std::fs::create_dir_all(blobs.join("sha256").join(fan)).expect("mkdir");
            std::fs::write(blobs.join("sha256").join(fan).join(name), b"x").expect("write");
        }
        std::fs::create_dir_all(blobs.join("md5").join("00")).expect("mkdir");
        std::fs::write(blobs.join("md5").join("00").join("00ab"), b"x").expect("write");
        std::fs::write(blobs.join("stray"), b"x").expect("write");
        let now = || {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64)
        };
        wharf_core::testing::inventory_conformance(&s, &now, 2000).await;
        use wharf_core::ports::BlobInventory;
        let left = s.list_blobs(None, 10).await.expect("list");
        assert_eq!(
            left.iter().map(|e| (&e.digest, e.size)).collect::<Vec<_>>(),
            [(&kept, 4)]
        );
    }

    /// Racing closing PUTs of one upload: every commit either places the whole blob or
    /// finds it placed; none writes into a file another one placed.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_commits_of_one_upload_place_one_whole_blob() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = FsBlobStore::open(dir.path()).expect("open");
        let mut state = String::new();
        let mut all = Vec::new();
        for i in 0..4u8 {
            let mut w = s
                .writer(&at("r1", all.len() as u64, &state))
                .await
                .expect("writer");
            let part = vec![i; 3 * WRITE_BATCH + 7];
            w.write(Bytes::from(part.clone())).await.expect("write");
            state = w.finish().await.expect("finish");
            all.extend_from_slice(&part);
        }
        let d = Digest::sha256_of(&all);
        let rec = at("r1", all.len() as u64, &state);
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let (s, rec, d) = (s.clone(), rec.clone(), d.clone());
                tokio::spawn(async move { s.commit(&rec, &d).await })
            })
            .collect();
        for t in tasks {
            t.await.expect("join").expect("commit");
        }
        assert_eq!(read_all(&s, &d, None).await, all);
        assert!(!dir.path().join("uploads").join("r1").exists());
        let left = std::fs::read_dir(dir.path().join("tmp"))
            .expect("tmp")
            .count();
        assert_eq!(left, 0, "no join file left behind");
    }
}
