//! Blobs on a local file system: `blobs/<alg>/<2 hex>/<hex>` for committed content,
//! `uploads/<id>` for uploads in progress.
//!
//! A blob appears under its digest only by an atomic `rename` of a fully written and
//! fsync'd upload file, after the core verified its digest; so a crash at any point
//! leaves either no blob or a whole one. Bytes appended past an upload's recorded
//! offset (a request that failed or a crash mid-request) are cut off when the next
//! writer opens the file.
#![deny(missing_docs)]

use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use std::io::{self, SeekFrom};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tokio_util::io::ReaderStream;
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

    fn upload_path(&self, id: &str) -> Result<PathBuf, StoreError> {
        if id.is_empty()
            || id.len() > 128
            || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(StoreError::Other(format!("invalid upload id {id:?}")));
        }
        Ok(self.root.join("uploads").join(id))
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
        let path = self.upload_path(&upload.id)?;
        let mut file = tokio::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(false)
            .open(&path)
            .await
            .map_err(io_err)?;
        // Forget whatever an earlier, unrecorded request left past the offset.
        file.set_len(upload.offset).await.map_err(io_err)?;
        file.seek(SeekFrom::Start(upload.offset))
            .await
            .map_err(io_err)?;
        Ok(FsWriter {
            file,
            buf: BytesMut::with_capacity(WRITE_BATCH),
        })
    }

    async fn commit(&self, upload: &UploadRecord, digest: &Digest) -> Result<(), StoreError> {
        let from = self.upload_path(&upload.id)?;
        let to = self.blob_path(digest);
        if upload.offset == 0 {
            // An empty blob: no PATCH created the file.
            create_if_missing(&from).await?;
        }
        let parent = to.parent().map(Path::to_path_buf);
        if let Some(p) = &parent {
            tokio::fs::create_dir_all(p).await.map_err(io_err)?;
        }
        // The file may hold bytes past the recorded offset from a failed final request.
        let f = tokio::fs::OpenOptions::new()
            .write(true)
            .open(&from)
            .await
            .map_err(io_err)?;
        if f.metadata().await.map_err(io_err)?.len() != upload.offset {
            f.set_len(upload.offset).await.map_err(io_err)?;
            f.sync_all().await.map_err(io_err)?;
        }
        drop(f);
        tokio::fs::rename(&from, &to).await.map_err(io_err)?;
        if let Some(p) = parent {
            sync_dir(p).await?;
        }
        Ok(())
    }

    async fn abort(&self, upload: &UploadRecord) -> Result<(), StoreError> {
        match tokio::fs::remove_file(self.upload_path(&upload.id)?).await {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err(e)),
            _ => Ok(()),
        }
    }
}

async fn create_if_missing(p: &Path) -> Result<(), StoreError> {
    tokio::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(false)
        .open(p)
        .await
        .map(drop)
        .map_err(io_err)
}

/// Makes a rename durable: fsync the directory that holds the new name.
async fn sync_dir(dir: PathBuf) -> Result<(), StoreError> {
    tokio::task::spawn_blocking(move || std::fs::File::open(&dir)?.sync_all())
        .await
        .map_err(|e| StoreError::Other(e.to_string()))?
        .map_err(io_err)
}

/// Appends one request's bytes to an upload file, in batches of [`WRITE_BATCH`].
pub struct FsWriter {
    file: tokio::fs::File,
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

    async fn finish(mut self) -> Result<String, StoreError> {
        if !self.buf.is_empty() {
            self.file.write_all(&self.buf).await.map_err(io_err)?;
        }
        self.file.flush().await.map_err(io_err)?;
        self.file.sync_data().await.map_err(io_err)?;
        Ok(String::new())
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

    #[tokio::test]
    async fn unrecorded_bytes_are_cut_and_commit_is_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = FsBlobStore::open(dir.path()).expect("open");
        let mut w = s.writer(&upload("u1", 0)).await.expect("writer");
        w.write(Bytes::from_static(b"hello ")).await.expect("write");
        w.finish().await.expect("finish");
        // A request that wrote but was never recorded (offset stays 6).
        let mut w = s.writer(&upload("u1", 6)).await.expect("writer");
        w.write(Bytes::from_static(b"GARBAGE"))
            .await
            .expect("write");
        drop(w);
        let mut w = s.writer(&upload("u1", 6)).await.expect("writer");
        w.write(Bytes::from(vec![b'w'; WRITE_BATCH + 5]))
            .await
            .expect("write");
        w.finish().await.expect("finish");
        let total = 6 + WRITE_BATCH as u64 + 5;
        let d = Digest::sha256_of(b"x");
        assert_eq!(s.stat(&d).await.expect("stat"), None);
        s.commit(&upload("u1", total), &d).await.expect("commit");
        assert_eq!(s.stat(&d).await.expect("stat"), Some(total));
        let all = read_all(&s, &d, None).await;
        assert_eq!(&all[..6], b"hello ");
        assert!(all[6..].iter().all(|b| *b == b'w'));
        let part = read_all(&s, &d, Some(ByteRange { start: 2, end: 7 })).await;
        assert_eq!(part, b"llo ww");
        assert!(!dir.path().join("uploads/u1").exists());
        s.delete(&d).await.expect("delete");
        assert_eq!(s.stat(&d).await.expect("stat"), None);
        assert!(matches!(
            s.writer(&upload("../x", 0)).await,
            Err(StoreError::Other(_))
        ));
    }
}
