//! Progress of long transfers (object uploads and downloads): bytes done of the total, the rate
//! and the time left, redrawn in place. Drawn only when stdout is a terminal and the output is a
//! table, and cleared before the result is printed: nothing of it reaches a pipe, a file or
//! `--output json`.

use std::io::IsTerminal;
use std::time::Duration;

use futures_util::{Stream, TryStreamExt};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::io::AsyncReadExt;

use crate::Ctx;

/// How much of a file is read per chunk of an upload.
const CHUNK: usize = 256 * 1024;

/// One transfer's progress; a hidden one does nothing.
pub(crate) struct Transfer(Option<ProgressBar>);

impl Transfer {
    /// A bar for `total` bytes (a spinner when unknown), when `ctx` draws progress at all.
    pub(crate) fn new(ctx: &Ctx, what: String, total: Option<u64>) -> Self {
        if !draws_progress(ctx) {
            return Self(None);
        }
        let template = match total {
            Some(_) => "{msg} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} ({eta} left)",
            None => "{spinner} {msg} {bytes} {binary_bytes_per_sec}",
        };
        let bar = ProgressBar::with_draw_target(total, ProgressDrawTarget::stdout());
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(what);
        bar.enable_steady_tick(Duration::from_millis(200));
        Self(Some(bar))
    }

    /// Whether anything is drawn.
    pub(crate) fn is_drawn(&self) -> bool {
        self.0.is_some()
    }

    /// Counts `bytes` more as done.
    pub(crate) fn advance(&self, bytes: u64) {
        if let Some(bar) = &self.0 {
            bar.inc(bytes);
        }
    }
}

impl Drop for Transfer {
    /// Clears the bar, on success and on error alike, so the result or the error is printed on
    /// a clean line.
    fn drop(&mut self) {
        if let Some(bar) = self.0.take() {
            bar.finish_and_clear();
        }
    }
}

/// Whether this invocation draws progress: a table on a terminal.
pub(crate) fn draws_progress(ctx: &Ctx) -> bool {
    ctx.human() && std::io::stdout().is_terminal()
}

/// Reads `file` as a stream of chunks, counting each on `progress`: the upload body of
/// `objects put` when progress is drawn.
pub(crate) fn counted_file(
    file: tokio::fs::File,
    progress: &Transfer,
) -> impl Stream<Item = Result<Vec<u8>, std::io::Error>> + Send + 'static {
    // A clone of the bar, not of the `Transfer`: the stream must not clear it when dropped.
    let bar = progress.0.clone();
    futures_util::stream::try_unfold(file, |mut file| async move {
        let mut chunk = vec![0; CHUNK];
        let n = file.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        chunk.truncate(n);
        Ok(Some((chunk, file)))
    })
    .inspect_ok(move |chunk| {
        if let Some(bar) = &bar {
            bar.inc(chunk.len() as u64);
        }
    })
}

/// A spinner for work of unknown length (a trial's proof of work), drawn like [`Transfer`] only
/// on a terminal with table output, and cleared when dropped.
pub(crate) struct Spinner(Option<ProgressBar>);

impl Spinner {
    /// A spinner showing `what`, when `ctx` draws progress at all.
    pub(crate) fn new(ctx: &Ctx, what: String) -> Self {
        if !draws_progress(ctx) {
            return Self(None);
        }
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stdout());
        if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} ({elapsed})") {
            bar.set_style(style);
        }
        bar.set_message(what);
        bar.enable_steady_tick(Duration::from_millis(100));
        Self(Some(bar))
    }
}

impl Drop for Spinner {
    fn drop(&mut self) {
        if let Some(bar) = self.0.take() {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_counted_file_streams_its_bytes_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let content: Vec<u8> = (0..CHUNK * 2 + 17).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &content).unwrap();
        let file = tokio::fs::File::open(&path).await.unwrap();
        let chunks: Vec<Vec<u8>> = counted_file(file, &Transfer(None)).try_collect().await.unwrap();
        assert_eq!(chunks.len(), 3);
        assert_eq!(chunks.concat(), content);
    }
}
