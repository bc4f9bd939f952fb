//! Where a task's log stands in the scheduler's raw output, kept beside the stored log
//! (`<log>.raw`) for a replica that takes the task over.
//!
//! Masking changes lengths (`hunter2-long-value` → `***`), and the masker holds back a tail that
//! may start a secret, so the stored log's length is not the scheduler's raw offset. Before each
//! append that makes them differ, the writer records both positions before and after the append:
//! `stored_before raw_before stored_after raw_after`. Whoever resumes compares the stored length
//! with that record: equal to `stored_after` (the append happened) or to `stored_before` (the
//! writer died before appending) gives the exact raw offset, so nothing is copied twice or lost.
//! Without a record, raw and stored lengths never differed.

use std::path::Path;

use tokio::io::AsyncWriteExt;

const MAGIC: &str = "GOFERRAW";

/// Positions of one append: (stored, raw) before and after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Checkpoint {
    pub(crate) stored_before: u64,
    pub(crate) raw_before: u64,
    pub(crate) stored_after: u64,
    pub(crate) raw_after: u64,
}

impl Checkpoint {
    fn encode(&self) -> String {
        format!("{MAGIC} {} {} {} {}\n", self.stored_before, self.raw_before, self.stored_after, self.raw_after)
    }

    fn decode(text: &str) -> Option<Self> {
        let mut words = text.split_whitespace();
        if words.next()? != MAGIC {
            return None;
        }
        let mut next = || words.next()?.parse::<u64>().ok();
        Some(Self { stored_before: next()?, raw_before: next()?, stored_after: next()?, raw_after: next()? })
    }

    /// The raw offset matching a stored length, when this record knows it.
    pub(crate) fn raw_for(&self, stored: u64) -> Option<u64> {
        if stored == self.stored_after {
            Some(self.raw_after)
        } else if stored == self.stored_before {
            Some(self.raw_before)
        } else {
            None
        }
    }
}

/// Writes the record atomically (temporary file, renamed over it).
pub(crate) async fn write(path: &Path, checkpoint: &Checkpoint) -> std::io::Result<()> {
    let tmp = path.with_extension("raw.tmp");
    let mut file = tokio::fs::File::create(&tmp).await?;
    file.write_all(checkpoint.encode().as_bytes()).await?;
    file.flush().await?;
    drop(file);
    tokio::fs::rename(&tmp, path).await
}

/// Reads the record; `None` when there is none (or it is unreadable: resuming then falls back).
pub(crate) async fn read(path: &Path) -> std::io::Result<Option<Checkpoint>> {
    match tokio::fs::read_to_string(path).await {
        Ok(text) => Ok(Checkpoint::decode(&text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_round_trips_and_answers_only_for_the_lengths_it_knows() {
        let c = Checkpoint { stored_before: 10, raw_before: 30, stored_after: 13, raw_after: 52 };
        assert_eq!(Checkpoint::decode(&c.encode()), Some(c));
        assert_eq!(Checkpoint::decode("junk 1 2 3 4"), None);
        assert_eq!((c.raw_for(13), c.raw_for(10), c.raw_for(11)), (Some(52), Some(30), None));
    }
}
