//! The log store: task execution logs on the local filesystem, capped per attempt: the head
//! (first half of the cap) and the tail (last half) are kept, and reading puts a marker line saying
//! how many bytes were cut between them.
//!
//! On disk a log is two files: `<task>.log` holds the head and is only ever appended to until it is
//! full (so an uncapped log looks exactly as before the cap existed), and `<task>.log.tail` holds a
//! fixed header with the absolute position of its first byte, then the most recent bytes. The tail
//! file is appended to until it holds twice its half of the cap; then it is rewritten (to a
//! temporary file, renamed over it) keeping only the last half. Disk use is therefore at most
//! `1.5 × cap` plus a header, memory a copy buffer, and a reader that opens the tail file before a
//! rewrite keeps reading a consistent old version.
//!
//! Positions ("offsets") count bytes of the task's raw output, cut or not, so a follower resumes
//! where it stopped; bytes that were cut are replaced by the marker in what it receives.
//!
//! The scheduler's raw output and the stored log differ in length when masking replaced secrets;
//! `raw_offset.rs` keeps where the stored log stands in the raw output, for takeovers.
//!
//! One writer per log is assumed (the engine replica holding the task execution's lease).

use std::io::SeekFrom;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use gofer_core::objects::ObjectStore;
use gofer_core::{NamespaceId, PipelineId, TenantId};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

use super::raw_offset;

/// The default cap of one task execution's stored log: 10 MiB.
pub const DEFAULT_MAX_BYTES_PER_TASK: u64 = 10 * 1024 * 1024;

/// The tail file starts with this magic and the absolute position of its first byte, as 20
/// decimal digits and a newline: fixed width, readable with `head -c`.
const TAIL_MAGIC: &[u8] = b"GOFERTAIL ";
const TAIL_HEADER_LEN: u64 = 10 + 20 + 1;

/// The line put between the head and the tail when bytes were cut.
pub fn cut_marker(cut: u64) -> Vec<u8> {
    format!("\n[gofer: {cut} bytes cut]\n").into_bytes()
}

pub use gofer_core::keys::LogKey;

/// A piece of a log read from a position (see [`LogStore::read_from`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LogSlice {
    /// The bytes: raw output, or a cut marker followed by raw output.
    pub data: Vec<u8>,
    /// The position after them; pass it back to read on.
    pub next_offset: u64,
    /// Whether any log was written at all yet.
    pub exists: bool,
}

/// Stores logs as files under a root directory, each capped at `max_bytes_per_task`, and
/// finished ones in an object store when one is attached.
#[derive(Clone)]
pub struct LogStore {
    root: PathBuf,
    /// Bytes kept from the start of the output.
    head_cap: u64,
    /// Bytes kept from the end of the output.
    tail_cap: u64,
    /// Where finished logs move.
    archive: Option<Arc<dyn ObjectStore>>,
}

impl std::fmt::Debug for LogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogStore")
            .field("root", &self.root)
            .field("cap", &(self.head_cap + self.tail_cap))
            .field("archive", &self.archive.as_ref().map(|a| a.name()))
            .finish()
    }
}

/// What the tail file held when it was opened.
struct Tail {
    file: tokio::fs::File,
    /// Absolute position of its first data byte.
    start: u64,
    /// Data bytes (after the header).
    len: u64,
}

impl LogStore {
    /// A store rooted at `root` (created on first write) keeping at most `max_bytes_per_task`
    /// bytes of each task execution's output: the first half and the last half.
    pub fn new(root: impl Into<PathBuf>, max_bytes_per_task: u64) -> Self {
        let head_cap = max_bytes_per_task / 2;
        Self { root: root.into(), head_cap, tail_cap: max_bytes_per_task - head_cap, archive: None }
    }

    /// Moves finished logs to `store` (see [`super::archive_finished`]) and reads them from there.
    pub fn with_archive(mut self, store: Arc<dyn ObjectStore>) -> Self {
        self.archive = Some(store);
        self
    }

    /// The object store finished logs move to (also where env object references are read).
    pub fn archive(&self) -> Option<&Arc<dyn ObjectStore>> {
        self.archive.as_ref()
    }

    /// What a log holds now: raw bytes written, bytes of the head, and the raw position where the
    /// shown tail starts (the head's length when nothing was cut). `None`: nothing written.
    pub(super) async fn shape(&self, key: &LogKey) -> std::io::Result<Option<(u64, u64, u64)>> {
        let tail = open_tail(&self.tail_path(key)).await?;
        let head = file_len(&self.head_path(key)).await?;
        match (head, tail) {
            (None, None) => Ok(None),
            (head, None) => {
                let head = head.unwrap_or(0);
                Ok(Some((head, head, head)))
            }
            (head, Some(tail)) => {
                let head = head.unwrap_or(0);
                let end = tail.start + tail.len;
                Ok(Some((end, head, tail.start.max(end.saturating_sub(self.tail_cap)).max(head))))
            }
        }
    }

    pub(super) async fn remove_local(&self, key: &LogKey) -> std::io::Result<()> {
        for path in [self.raw_offset_path(key), self.tail_path(key), self.head_path(key)] {
            match tokio::fs::remove_file(&path).await {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }

    /// The cap of one task execution's stored log.
    pub fn max_bytes_per_task(&self) -> u64 {
        self.head_cap + self.tail_cap
    }

    fn head_path(&self, key: &LogKey) -> PathBuf {
        self.root.join(key.path())
    }

    fn tail_path(&self, key: &LogKey) -> PathBuf {
        self.root.join(key.path() + ".tail")
    }

    fn raw_offset_path(&self, key: &LogKey) -> PathBuf {
        self.root.join(key.path() + ".raw")
    }

    /// Appends `data`, the masked form of the scheduler's raw output from `raw_before` to
    /// `raw_after` (bytes the masker still holds back excluded). When the lengths differ — masking
    /// replaced something, now or earlier — the positions are recorded first, so that
    /// [`LogStore::resume_offset`] finds the exact raw offset after a takeover.
    pub async fn append_masked(
        &self,
        key: &LogKey,
        data: &[u8],
        raw_before: u64,
        raw_after: u64,
    ) -> std::io::Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        let stored_before = self.written_len(key).await?;
        let stored_after = stored_before + data.len() as u64;
        if raw_before != stored_before || raw_after != stored_after {
            let checkpoint = raw_offset::Checkpoint { stored_before, raw_before, stored_after, raw_after };
            if let Some(parent) = self.head_path(key).parent() {
                tokio::fs::create_dir_all(parent).await?;
            }
            raw_offset::write(&self.raw_offset_path(key), &checkpoint).await?;
        }
        self.append(key, data).await
    }

    /// Where a watcher that takes a task over resumes reading the scheduler's raw output: the raw
    /// offset matching what the log store holds (see `raw_offset.rs`), or the stored length when
    /// masking never changed lengths (or the record does not match, which an interrupted append
    /// of a pre-record version could cause; then a few bytes may repeat or be missed).
    pub async fn resume_offset(&self, key: &LogKey) -> std::io::Result<u64> {
        let stored = self.written_len(key).await?;
        match raw_offset::read(&self.raw_offset_path(key)).await? {
            None => Ok(stored),
            Some(checkpoint) => Ok(checkpoint.raw_for(stored).unwrap_or_else(|| {
                tracing::warn!(
                    stored,
                    ?checkpoint,
                    "the log's raw offset record does not match it; resuming at its length"
                );
                stored
            })),
        }
    }

    /// How many raw bytes were ever appended to a log, cut or not (where a re-attaching watcher
    /// resumes copying from the scheduler).
    pub async fn written_len(&self, key: &LogKey) -> std::io::Result<u64> {
        if let Some(tail) = open_tail(&self.tail_path(key)).await? {
            return Ok(tail.start + tail.len);
        }
        Ok(file_len(&self.head_path(key)).await?.unwrap_or(0))
    }

    /// Appends bytes to a log: into the head while it has room, then into the tail, which keeps
    /// only the most recent bytes.
    pub async fn append(&self, key: &LogKey, data: &[u8]) -> std::io::Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        let head_path = self.head_path(key);
        if let Some(parent) = head_path.parent() {
            tokio::fs::create_dir_all(parent).await?;
        }
        let head_len = file_len(&head_path).await?.unwrap_or(0);
        let mut rest = data;
        if head_len < self.head_cap {
            let room = usize::try_from(self.head_cap - head_len).unwrap_or(usize::MAX).min(rest.len());
            let (into_head, after) = rest.split_at(room);
            let mut file = tokio::fs::OpenOptions::new().create(true).append(true).open(&head_path).await?;
            file.write_all(into_head).await?;
            file.flush().await?;
            rest = after;
            if rest.is_empty() {
                return Ok(());
            }
        }
        let head_len = head_len.max(self.head_cap);
        self.append_tail(key, head_len, rest).await
    }

    /// Removes every log of a pipeline: the directory `tenants/<t>/namespaces/<ns>/pipelines/<p>/`.
    /// Removing logs that were never written is not an error.
    pub async fn remove_pipeline(
        &self,
        tenant: &TenantId,
        namespace: &NamespaceId,
        pipeline: &PipelineId,
    ) -> std::io::Result<()> {
        self.remove_dir(&format!("tenants/{tenant}/namespaces/{namespace}/pipelines/{pipeline}")).await
    }

    /// Removes every log of a namespace.
    pub async fn remove_namespace(&self, tenant: &TenantId, namespace: &NamespaceId) -> std::io::Result<()> {
        self.remove_dir(&format!("tenants/{tenant}/namespaces/{namespace}")).await
    }

    /// Removes every log of a tenant.
    pub async fn remove_tenant(&self, tenant: &TenantId) -> std::io::Result<()> {
        self.remove_dir(&format!("tenants/{tenant}")).await
    }

    async fn remove_dir(&self, relative: &str) -> std::io::Result<()> {
        // Every component was validated, so the path cannot escape the root.
        match tokio::fs::remove_dir_all(self.root.join(relative)).await {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }

    async fn append_tail(&self, key: &LogKey, head_len: u64, data: &[u8]) -> std::io::Result<()> {
        let path = self.tail_path(key);
        let tail = open_tail(&path).await?;
        let (start, len) = tail.as_ref().map_or((head_len, 0), |t| (t.start, t.len));
        let new_len = len + data.len() as u64;
        if tail.is_some() && new_len <= 2 * self.tail_cap {
            let mut file = tokio::fs::OpenOptions::new().append(true).open(&path).await?;
            file.write_all(data).await?;
            return file.flush().await;
        }
        // First tail bytes, or over twice the tail's half: write a new tail file holding the
        // last bytes only (at most one half when rewriting), then rename it into place.
        let keep = if tail.is_none() && new_len <= 2 * self.tail_cap { new_len } else { new_len.min(self.tail_cap) };
        let from_data = keep.min(data.len() as u64);
        let from_old = keep - from_data;
        let tmp = path.with_extension("tail.tmp");
        let mut out = tokio::fs::File::create(&tmp).await?;
        out.write_all(&tail_header(start + new_len - keep)).await?;
        if let Some(mut old) = tail.filter(|_| from_old > 0) {
            old.file.seek(SeekFrom::Start(TAIL_HEADER_LEN + old.len - from_old)).await?;
            let copied = tokio::io::copy(&mut (&mut old.file).take(from_old), &mut out).await?;
            if copied != from_old {
                return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "log tail shrank while rewriting"));
            }
        }
        out.write_all(&data[data.len() - usize::try_from(from_data).unwrap_or(data.len())..]).await?;
        out.flush().await?;
        drop(out);
        tokio::fs::rename(&tmp, &path).await
    }

    /// Reads a whole log as stored: the head, the cut marker when bytes were cut, the tail;
    /// `None` when nothing was written yet.
    pub async fn read(&self, key: &LogKey) -> std::io::Result<Option<Vec<u8>>> {
        let slice = self.read_all_from(key, 0).await?;
        Ok(slice.exists.then_some(slice.data))
    }

    /// Reads everything stored from raw position `offset` on, with the cut marker where bytes
    /// were cut, and the position after it.
    pub async fn read_all_from(&self, key: &LogKey, offset: u64) -> std::io::Result<LogSlice> {
        let mut all = LogSlice { data: Vec::new(), next_offset: offset, exists: false };
        // Head, then marker and tail: two pieces, more only if the writer appends meanwhile,
        // and a log being written must not keep a reader here forever.
        for _ in 0..8 {
            let slice = self.read_from(key, all.next_offset, usize::MAX).await?;
            all.exists |= slice.exists;
            all.next_offset = slice.next_offset;
            if slice.data.is_empty() {
                break;
            }
            all.data.extend_from_slice(&slice.data);
        }
        Ok(all)
    }

    /// Reads what is stored from raw position `offset` on, at most `max` bytes of output in one
    /// piece (a cut marker comes on top). When `offset` falls in a part that was cut, the piece
    /// starts with the marker counting the bytes cut from `offset` on. An empty piece means
    /// nothing more is stored yet.
    pub async fn read_from(&self, key: &LogKey, offset: u64, max: usize) -> std::io::Result<LogSlice> {
        // The tail first, then the head: the writer fills the head before it starts the tail, so
        // a tail seen here means the head read next is complete, and the two fit together.
        let tail = open_tail(&self.tail_path(key)).await?;
        let head = open(&self.head_path(key)).await?;
        if head.is_none() && tail.is_none() {
            return Ok(LogSlice { data: Vec::new(), next_offset: offset, exists: false });
        }
        let head_len = match &head {
            Some(file) => file.metadata().await?.len(),
            None => 0,
        };
        let max = max as u64;
        if let Some(mut head) = head.filter(|_| offset < head_len) {
            let n = (head_len - offset).min(max);
            head.seek(SeekFrom::Start(offset)).await?;
            let data = read_exact_len(&mut head, n).await?;
            return Ok(LogSlice { data, next_offset: offset + n, exists: true });
        }
        let Some(mut tail) = tail else {
            return Ok(LogSlice { data: Vec::new(), next_offset: offset.max(head_len), exists: true });
        };
        let end = tail.start + tail.len;
        // Only the last half of the cap is shown, even when the tail file holds more.
        let shown_from = tail.start.max(end.saturating_sub(self.tail_cap)).max(head_len);
        let (mut data, from) =
            if offset < shown_from { (cut_marker(shown_from - offset), shown_from) } else { (Vec::new(), offset) };
        if from < end {
            let n = (end - from).min(max);
            tail.file.seek(SeekFrom::Start(TAIL_HEADER_LEN + from - tail.start)).await?;
            data.extend(read_exact_len(&mut tail.file, n).await?);
            return Ok(LogSlice { data, next_offset: from + n, exists: true });
        }
        Ok(LogSlice { data, next_offset: from, exists: true })
    }
}

fn tail_header(start: u64) -> Vec<u8> {
    let mut header = TAIL_MAGIC.to_vec();
    header.extend(format!("{start:020}\n").into_bytes());
    header
}

async fn open(path: &Path) -> std::io::Result<Option<tokio::fs::File>> {
    match tokio::fs::File::open(path).await {
        Ok(file) => Ok(Some(file)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

async fn file_len(path: &Path) -> std::io::Result<Option<u64>> {
    match tokio::fs::metadata(path).await {
        Ok(meta) => Ok(Some(meta.len())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

async fn open_tail(path: &Path) -> std::io::Result<Option<Tail>> {
    let Some(mut file) = open(path).await? else {
        return Ok(None);
    };
    let size = file.metadata().await?.len();
    let corrupt =
        || std::io::Error::new(std::io::ErrorKind::InvalidData, format!("bad log tail header in {}", path.display()));
    if size < TAIL_HEADER_LEN {
        return Err(corrupt());
    }
    let header = read_exact_len(&mut file, TAIL_HEADER_LEN).await?;
    let start = header
        .strip_prefix(TAIL_MAGIC)
        .and_then(|rest| std::str::from_utf8(rest).ok())
        .and_then(|digits| digits.trim_end().parse::<u64>().ok())
        .ok_or_else(corrupt)?;
    Ok(Some(Tail { file, start, len: size - TAIL_HEADER_LEN }))
}

/// Reads exactly `n` bytes (fewer only if the file ends first, which a reader racing a writer never sees).
async fn read_exact_len(file: &mut tokio::fs::File, n: u64) -> std::io::Result<Vec<u8>> {
    let mut data = Vec::with_capacity(usize::try_from(n).unwrap_or(0).min(1 << 20));
    file.take(n).read_to_end(&mut data).await?;
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use gofer_core::{RunId, TaskId};

    fn key() -> LogKey {
        LogKey {
            tenant: TenantId::parse("acme").unwrap(),
            namespace: NamespaceId::parse("builds").unwrap(),
            pipeline: PipelineId::parse("hello").unwrap(),
            run: RunId::from_i64(1),
            task: TaskId::parse("build").unwrap(),
            attempt: 1,
        }
    }

    /// What a read must answer for `output` under `cap`.
    fn expected(output: &[u8], cap: u64) -> Vec<u8> {
        let head = (cap / 2) as usize;
        let tail = cap as usize - head;
        if output.len() <= cap as usize {
            return output.to_vec();
        }
        let mut out = output[..head].to_vec();
        out.extend(cut_marker((output.len() - head - tail) as u64));
        out.extend(&output[output.len() - tail..]);
        out
    }

    fn output(len: usize) -> Vec<u8> {
        (0..len).map(|i| b"abcdefghijklmnopqrstuvwxyz0123456789\n"[i % 37]).collect()
    }

    /// Bytes on disk for the test key's log (head, tail and any leftover temporary file).
    fn disk_usage(root: &Path) -> u64 {
        let head = root.join(key().path());
        [head.clone(), head.with_extension("log.tail"), head.with_extension("log.tail.tmp")]
            .iter()
            .map(|p| std::fs::metadata(p).map_or(0, |m| m.len()))
            .sum()
    }

    #[tokio::test]
    async fn a_log_under_the_cap_reads_back_whole_and_nothing_reads_as_none() {
        let dir = tempfile::tempdir().unwrap();
        let store = LogStore::new(dir.path(), 1024);
        assert_eq!(store.read(&key()).await.unwrap(), None);
        store.append(&key(), b"hello ").await.unwrap();
        store.append(&key(), b"").await.unwrap();
        store.append(&key(), b"world\n").await.unwrap();
        assert_eq!(store.read(&key()).await.unwrap().unwrap(), b"hello world\n");
        assert!(!dir.path().join(key().path() + ".tail").exists(), "no tail file under the cap");
    }

    #[tokio::test]
    async fn a_capped_log_keeps_head_and_tail_with_the_cut_count_whatever_the_chunking() {
        for cap in [1u64, 2, 7, 64, 100] {
            for total in [0usize, 1, 31, 32, 33, 64, 65, 100, 333, 1000] {
                for chunk in [1usize, 5, 32, 64, 1000] {
                    if total / chunk > 70 {
                        continue; // slow, and nothing that fewer, bigger pieces do not cover
                    }
                    let dir = tempfile::tempdir().unwrap();
                    let store = LogStore::new(dir.path(), cap);
                    let out = output(total);
                    for piece in out.chunks(chunk) {
                        store.append(&key(), piece).await.unwrap();
                        assert!(
                            disk_usage(dir.path()) <= cap / 2 + 2 * (cap - cap / 2) + TAIL_HEADER_LEN,
                            "disk stays bounded (cap {cap}, total {total}, chunk {chunk})"
                        );
                    }
                    let read = store.read(&key()).await.unwrap().unwrap_or_default();
                    assert_eq!(
                        String::from_utf8_lossy(&read),
                        String::from_utf8_lossy(&expected(&out, cap)),
                        "cap {cap}, total {total}, chunk {chunk}"
                    );
                }
            }
        }
    }

    #[tokio::test]
    async fn the_marker_names_the_bytes_cut() {
        let dir = tempfile::tempdir().unwrap();
        let store = LogStore::new(dir.path(), 20);
        for i in 0..100 {
            store.append(&key(), format!("line {i:03}\n").as_bytes()).await.unwrap();
        }
        let read = String::from_utf8(store.read(&key()).await.unwrap().unwrap()).unwrap();
        assert_eq!(read, "line 000\nl\n[gofer: 880 bytes cut]\n\nline 099\n", "900 bytes written, 20 kept");
    }

    #[tokio::test]
    async fn reading_from_a_position_resumes_and_marks_a_cut_it_skips() {
        let dir = tempfile::tempdir().unwrap();
        let store = LogStore::new(dir.path(), 20);
        let out = output(100);
        store.append(&key(), &out[..15]).await.unwrap();
        // A follower that keeps up (reads before half the cap is written again) sees every byte.
        let first = store.read_from(&key(), 0, usize::MAX).await.unwrap();
        assert_eq!((first.data.as_slice(), first.next_offset), (&out[..10], 10));
        let second = store.read_from(&key(), 10, usize::MAX).await.unwrap();
        assert_eq!((second.data.as_slice(), second.next_offset), (&out[10..15], 15));
        store.append(&key(), &out[15..22]).await.unwrap();
        let third = store.read_from(&key(), 15, 4).await.unwrap();
        assert_eq!((third.data.as_slice(), third.next_offset), (&out[15..19], 19), "max limits a piece");
        // One that falls behind gets a marker for what is gone, then the tail.
        store.append(&key(), &out[22..]).await.unwrap();
        let late = store.read_from(&key(), 19, usize::MAX).await.unwrap();
        let mut want = cut_marker(90 - 19);
        want.extend(&out[90..]);
        assert_eq!((late.data, late.next_offset), (want, 100));
        let done = store.read_from(&key(), 100, usize::MAX).await.unwrap();
        assert_eq!((done.data.len(), done.next_offset, done.exists), (0, 100, true));
        let beyond = store.read_from(&key(), 500, usize::MAX).await.unwrap();
        assert_eq!((beyond.data.len(), beyond.next_offset), (0, 500));
    }

    #[tokio::test]
    async fn a_log_written_before_the_cap_existed_still_reads_and_grows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(key().path());
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, b"0123456789abcdefghij").unwrap();
        let store = LogStore::new(dir.path(), 8);
        store.append(&key(), b"KLMNOPQRSTUVWXYZ").await.unwrap();
        let read = String::from_utf8(store.read(&key()).await.unwrap().unwrap()).unwrap();
        assert_eq!(read, "0123456789abcdefghij\n[gofer: 12 bytes cut]\nWXYZ");
    }
}
