//! Task execution logs on the local filesystem, keyed
//! `tenants/<t>/namespaces/<ns>/pipelines/<p>/runs/<r>/tasks/<task>/attempt-<n>.log`.
//!
//! The object-store backend (S3) replaces this in a later issue; the keys stay the same.

use std::path::PathBuf;

use gofer_core::{NamespaceId, PipelineId, RunId, TaskId, TenantId};
use tokio::io::AsyncWriteExt;

/// Where one task execution's log lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogKey {
    /// Owner.
    pub tenant: TenantId,
    /// Namespace.
    pub namespace: NamespaceId,
    /// Pipeline.
    pub pipeline: PipelineId,
    /// Run.
    pub run: RunId,
    /// Task.
    pub task: TaskId,
    /// Attempt, from 1: each attempt keeps its own log.
    pub attempt: u32,
}

impl LogKey {
    /// The relative path of the log; every component was validated, so it cannot escape the root.
    pub fn path(&self) -> String {
        format!(
            "tenants/{}/namespaces/{}/pipelines/{}/runs/{}/tasks/{}/attempt-{}.log",
            self.tenant, self.namespace, self.pipeline, self.run, self.task, self.attempt
        )
    }
}

/// Stores logs as files under a root directory.
#[derive(Debug, Clone)]
pub struct LogStore {
    root: PathBuf,
}

impl LogStore {
    /// A store rooted at `root` (created on first write).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// Appends bytes to a log.
    pub async fn append(&self, key: &LogKey, data: &[u8]) -> std::io::Result<()> {
        let path = self.root.join(key.path());
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent).await?;
        }
        let mut file = tokio::fs::OpenOptions::new().create(true).append(true).open(&path).await?;
        file.write_all(data).await?;
        file.flush().await
    }

    /// Removes every log of a pipeline: the directory `tenants/<t>/namespaces/<ns>/pipelines/<p>/`.
    /// Removing logs that were never written is not an error.
    pub async fn remove_pipeline(
        &self,
        tenant: &TenantId,
        namespace: &NamespaceId,
        pipeline: &PipelineId,
    ) -> std::io::Result<()> {
        // Every component was validated, so the path cannot escape the root.
        let dir = self.root.join(format!("tenants/{tenant}/namespaces/{namespace}/pipelines/{pipeline}"));
        match tokio::fs::remove_dir_all(&dir).await {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }

    /// Reads a whole log; `None` when nothing was written yet.
    pub async fn read(&self, key: &LogKey) -> std::io::Result<Option<Vec<u8>>> {
        match tokio::fs::read(self.root.join(key.path())).await {
            Ok(data) => Ok(Some(data)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// How many bytes were ever appended to a log (where a re-attaching watcher resumes copying).
    pub async fn written_len(&self, key: &LogKey) -> std::io::Result<u64> {
        match tokio::fs::metadata(self.root.join(key.path())).await {
            Ok(meta) => Ok(meta.len()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(e),
        }
    }
}
