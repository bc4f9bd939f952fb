//! The task's output on the host: the sandbox writes stdout and stderr into one pipe, and a pump in
//! the server appends it to `output.log`, whose disk use never grows past its cap however much the
//! task prints (a task writing to the file itself made a 288 MiB file of 300 MB of output).
//!
//! The first `head` bytes go to the file as they arrive (what `read_logs` and live followers see);
//! past them the pump keeps only the most recent `tail` bytes in memory and, when the output ends,
//! extends the file by a **hole** for the bytes it dropped and appends that tail. So every byte
//! keeps its position in the task's output (the engine's log counts positions in it, and its own
//! cut marker then says how many bytes were cut), while the file occupies at most `head + tail`
//! bytes on disk (the hole reads as zeros and takes no blocks). A pipe also keeps the output out of
//! `RLIMIT_FSIZE`'s reach (a regular file as stdout would make a chatty task die of `SIGXFSZ`).

use std::collections::VecDeque;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How much of a task's output the host keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OutputCap {
    /// Bytes written as they arrive.
    pub head: u64,
    /// Bytes of the end kept once the head is full.
    pub tail: usize,
}

impl OutputCap {
    /// The cap for `max_bytes` of output: all of it live, then half as much again of the end (the
    /// engine keeps the first and the last half of its own cap).
    pub(crate) fn of(max_bytes: u64) -> Self {
        Self { head: max_bytes, tail: usize::try_from(max_bytes / 2).unwrap_or(usize::MAX) }
    }
}

/// What the pump did.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Pumped {
    /// Bytes the task wrote.
    pub total: u64,
    /// Bytes dropped between the head and the tail.
    pub cut: u64,
}

/// Copies `reader` into `file` (opened for appending) until the end of the output, within `cap`.
pub(crate) async fn pump(
    mut reader: impl tokio::io::AsyncRead + Unpin,
    mut file: tokio::fs::File,
    cap: OutputCap,
) -> std::io::Result<Pumped> {
    let mut buffer = vec![0_u8; 64 * 1024];
    let mut pumped = Pumped::default();
    let mut tail: VecDeque<u8> = VecDeque::new();
    loop {
        let n = match reader.read(&mut buffer).await {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let mut chunk = &buffer[..n];
        let room = cap.head.saturating_sub(pumped.total);
        if room > 0 {
            let live = chunk.len().min(usize::try_from(room).unwrap_or(usize::MAX));
            file.write_all(&chunk[..live]).await?;
            file.flush().await?;
            chunk = &chunk[live..];
        }
        pumped.total += n as u64;
        tail.extend(chunk);
        let over = tail.len().saturating_sub(cap.tail);
        if over > 0 {
            tail.drain(..over);
            pumped.cut += over as u64;
        }
    }
    if !tail.is_empty() {
        if pumped.cut > 0 {
            // The dropped bytes become a hole: positions stay those of the task's output.
            file.set_len(cap.head + pumped.cut).await?;
        }
        let (a, b) = tail.as_slices();
        file.write_all(a).await?;
        file.write_all(b).await?;
    }
    file.flush().await?;
    Ok(pumped)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::*;

    /// Pumps `input` into a fresh file; answers the file's bytes, its blocks on disk and the stats.
    async fn run(input: &[u8], cap: OutputCap) -> (Vec<u8>, u64, Pumped) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("output.log");
        let file = tokio::fs::OpenOptions::new().create(true).append(true).open(&path).await.unwrap();
        let pumped = pump(input, file, cap).await.unwrap();
        let on_disk = std::fs::metadata(&path).unwrap().blocks() * 512;
        (std::fs::read(&path).unwrap(), on_disk, pumped)
    }

    #[tokio::test]
    async fn output_under_the_cap_is_copied_whole() {
        let (out, _, pumped) = run(b"hello\nworld\n", OutputCap { head: 100, tail: 50 }).await;
        assert_eq!((out.as_slice(), pumped), (b"hello\nworld\n".as_slice(), Pumped { total: 12, cut: 0 }));
        // Past the head but within head + tail: nothing is cut, the rest comes at the end.
        let (out, _, pumped) = run(b"0123456789abcdef", OutputCap { head: 10, tail: 10 }).await;
        assert_eq!((out.as_slice(), pumped.cut), (b"0123456789abcdef".as_slice(), 0));
    }

    #[tokio::test]
    async fn output_past_the_cap_keeps_its_head_its_tail_and_every_position() {
        let input: Vec<u8> = (0..400_000_u32).flat_map(|i| format!("{i}\n").into_bytes()).collect();
        let cap = OutputCap { head: 64 * 1024, tail: 32 * 1024 };
        let (out, on_disk, pumped) = run(&input, cap).await;
        assert_eq!(pumped.total, input.len() as u64);
        assert_eq!(pumped.cut, input.len() as u64 - 96 * 1024);
        // Same length as the output: the head and the tail at their own positions, a hole between.
        assert_eq!(out.len(), input.len());
        assert_eq!(&out[..64 * 1024], &input[..64 * 1024]);
        assert_eq!(&out[out.len() - 32 * 1024..], &input[input.len() - 32 * 1024..]);
        assert!(out[64 * 1024..out.len() - 32 * 1024].iter().all(|b| *b == 0));
        // The hole takes no disk: about head + tail (plus a block or two at each edge).
        assert!(on_disk <= 96 * 1024 + 16 * 1024, "{on_disk} bytes on disk for {} of output", input.len());
    }
}
