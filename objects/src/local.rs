//! The local content-addressed store (the embedded default), under `<state_dir>/objects`:
//!
//! - `blobs/<aa>/<sha256>`: each distinct content once;
//! - `refs/<key>`: a hard link to the blob holding the key's content, so a read opens one file and
//!   the blob's link count is its reference count;
//! - `tmp/`: bodies being written. A put streams into a temporary file while hashing, then links
//!   it into place and renames the new ref over the old one: a reader sees the old object or the
//!   new one, never a partial one, and a failed put (client gone, too large, disk full) leaves
//!   only its temporary file, which it removes.
//!
//! Blobs no ref links to any more (link count 1) are removed after deletes and replacements, under
//! a write lock that puts hold for reading while they link, so a put never links a blob that is
//! being collected. One process owns a store directory.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use gofer_core::objects::{BodyLength, BoxFuture, ByteStream, Fetched, ObjectStore, ObjectStoreError, Stored};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Chunk size of reads.
const READ_CHUNK: usize = 64 * 1024;

/// A content-addressed store in a local directory.
#[derive(Debug, Clone)]
pub struct LocalStore {
    root: PathBuf,
    collecting: Arc<tokio::sync::RwLock<()>>,
}

impl LocalStore {
    /// A store rooted at `root` (created on first write).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into(), collecting: Arc::default() }
    }

    fn ref_path(&self, key: &str) -> Result<PathBuf, ObjectStoreError> {
        let relative = key.trim_end_matches('/');
        if relative.is_empty() || relative.split('/').any(|s| s.is_empty() || s == "." || s == "..") {
            return Err(ObjectStoreError::Backend(format!("refusing the store key {key:?}")));
        }
        Ok(self.root.join("refs").join(relative))
    }

    fn blob_path(&self, sha256: &str) -> PathBuf {
        self.root.join("blobs").join(&sha256[..2]).join(sha256)
    }

    fn tmp_path(&self) -> PathBuf {
        self.root.join("tmp").join(uuid::Uuid::new_v4().simple().to_string())
    }

    async fn put_inner(&self, key: &str, body: ByteStream, length: BodyLength) -> Result<Stored, ObjectStoreError> {
        let ref_path = self.ref_path(key)?;
        let tmp = self.tmp_path();
        let result = async {
            let stored = write_hashing(&tmp, body, length).await?;
            self.link_into_place(&tmp, &stored.sha256, &ref_path).await?;
            Ok(stored)
        }
        .await;
        let _ = tokio::fs::remove_file(&tmp).await;
        result
    }

    async fn link_into_place(&self, tmp: &Path, sha256: &str, ref_path: &Path) -> Result<(), ObjectStoreError> {
        let replaced_last_link = {
            let _linking = self.collecting.read().await;
            let blob = self.blob_path(sha256);
            create_parent(&blob).await?;
            match tokio::fs::hard_link(tmp, &blob).await {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io_error(e)),
            }
            create_parent(ref_path).await?;
            let ref_tmp = self.tmp_path();
            tokio::fs::hard_link(&blob, &ref_tmp).await.map_err(io_error)?;
            let old = links(ref_path).await?;
            let new = links(&blob).await?;
            let renamed = tokio::fs::rename(&ref_tmp, ref_path).await;
            if renamed.is_err() {
                let _ = tokio::fs::remove_file(&ref_tmp).await;
            }
            renamed.map_err(io_error)?;
            // The replaced ref was the last link to another blob besides the blob's own name.
            matches!((old, new), (Some((old_ino, 2)), Some((new_ino, _))) if old_ino != new_ino)
        };
        if replaced_last_link {
            self.collect().await?;
        }
        Ok(())
    }

    async fn get_inner(&self, key: &str) -> Result<Option<Fetched>, ObjectStoreError> {
        let file = match tokio::fs::File::open(self.ref_path(key)?).await {
            Ok(file) => file,
            Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory) => return Ok(None),
            Err(e) => return Err(io_error(e)),
        };
        let size = file.metadata().await.map_err(io_error)?.len();
        Ok(Some(Fetched { size, body: read_stream(file) }))
    }

    async fn delete_inner(&self, key: &str) -> Result<(), ObjectStoreError> {
        let path = self.ref_path(key)?;
        let links = link_count(&path).await?;
        match tokio::fs::remove_file(&path).await {
            Ok(()) => {}
            Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory) => return Ok(()),
            Err(e) => return Err(io_error(e)),
        }
        if links == Some(2) {
            self.collect().await?;
        }
        Ok(())
    }

    async fn delete_prefix_inner(&self, prefix: &str) -> Result<u64, ObjectStoreError> {
        let dir = self.ref_path(prefix)?;
        let count = count_files(&dir).await?;
        match tokio::fs::remove_dir_all(&dir).await {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(io_error(e)),
        }
        self.collect().await?;
        Ok(count)
    }

    /// Removes every blob no ref links to any more.
    pub async fn collect(&self) -> Result<u64, ObjectStoreError> {
        let _exclusive = self.collecting.write().await;
        let mut removed = 0;
        let mut shards = match tokio::fs::read_dir(self.root.join("blobs")).await {
            Ok(dir) => dir,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(io_error(e)),
        };
        while let Some(shard) = shards.next_entry().await.map_err(io_error)? {
            let mut blobs = tokio::fs::read_dir(shard.path()).await.map_err(io_error)?;
            while let Some(blob) = blobs.next_entry().await.map_err(io_error)? {
                if link_count(&blob.path()).await? == Some(1) {
                    tokio::fs::remove_file(blob.path()).await.map_err(io_error)?;
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }
}

impl ObjectStore for LocalStore {
    fn name(&self) -> &'static str {
        "local"
    }

    fn put<'a>(
        &'a self,
        key: &'a str,
        body: ByteStream,
        length: Option<u64>,
        max_bytes: u64,
    ) -> BoxFuture<'a, Result<Stored, ObjectStoreError>> {
        Box::pin(async move { self.put_inner(key, body, BodyLength::new(length, max_bytes)?).await })
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Fetched>, ObjectStoreError>> {
        Box::pin(self.get_inner(key))
    }

    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), ObjectStoreError>> {
        Box::pin(self.delete_inner(key))
    }

    fn delete_prefix<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<u64, ObjectStoreError>> {
        Box::pin(self.delete_prefix_inner(prefix))
    }
}

/// Streams `body` into a new file at `path`, hashing it, refusing it when `length` does; the file
/// is synced before this returns.
async fn write_hashing(path: &Path, mut body: ByteStream, mut length: BodyLength) -> Result<Stored, ObjectStoreError> {
    create_parent(path).await?;
    let mut file = tokio::fs::File::create(path).await.map_err(io_error)?;
    let mut hasher = Sha256::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| ObjectStoreError::Body(e.to_string()))?;
        length.add(chunk.len())?;
        hasher.update(&chunk);
        file.write_all(&chunk).await.map_err(io_error)?;
    }
    file.flush().await.map_err(io_error)?;
    let size = length.end()?;
    file.sync_all().await.map_err(io_error)?;
    Ok(Stored { size, sha256: hex::encode(hasher.finalize()) })
}

/// A file's bytes as a stream of chunks.
pub(crate) fn read_stream(file: tokio::fs::File) -> ByteStream {
    Box::pin(futures_util::stream::unfold(Some(file), |file| async move {
        let mut file = file?;
        let mut buf = vec![0u8; READ_CHUNK];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(Bytes::from(buf)), Some(file)))
            }
            Err(e) => Some((Err(e), None)),
        }
    }))
}

async fn create_parent(path: &Path) -> Result<(), ObjectStoreError> {
    match path.parent() {
        Some(parent) => tokio::fs::create_dir_all(parent).await.map_err(io_error),
        None => Ok(()),
    }
}

async fn link_count(path: &Path) -> Result<Option<u64>, ObjectStoreError> {
    Ok(links(path).await?.map(|(_, n)| n))
}

/// A file's inode and link count.
async fn links(path: &Path) -> Result<Option<(u64, u64)>, ObjectStoreError> {
    use std::os::unix::fs::MetadataExt;
    match tokio::fs::metadata(path).await {
        Ok(meta) => Ok(Some((meta.ino(), meta.nlink()))),
        Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory) => Ok(None),
        Err(e) => Err(io_error(e)),
    }
}

async fn count_files(dir: &Path) -> Result<u64, ObjectStoreError> {
    let mut count = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let mut entries = match tokio::fs::read_dir(&dir).await {
            Ok(entries) => entries,
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(e) => return Err(io_error(e)),
        };
        while let Some(entry) = entries.next_entry().await.map_err(io_error)? {
            if entry.file_type().await.map_err(io_error)?.is_dir() {
                stack.push(entry.path());
            } else {
                count += 1;
            }
        }
    }
    Ok(count)
}

fn io_error(e: std::io::Error) -> ObjectStoreError {
    match e.kind() {
        ErrorKind::StorageFull | ErrorKind::QuotaExceeded => ObjectStoreError::StorageFull,
        _ => ObjectStoreError::Backend(e.to_string()),
    }
}
