//! Who a local job belongs to: `identity.json` in the job root, written before the sandbox starts,
//! and the check a start makes before taking an existing job of its id as its own.
//!
//! Job ids cannot collide between task executions (see [`JobIdentity`]), so this is the second
//! line: whatever produced a directory of the same id (a bug, an older version's `-`-joined id
//! that ran two tenants together, a hand-made directory), a start adopts it only when the record
//! names exactly its own execution. Adopting a stranger's job would hand over its unmasked
//! output, its exit status, attach, stop and purge.

use std::io::ErrorKind;
use std::path::Path;

use gofer_core::scheduler::{JobIdentity, SchedulerError};
use tokio::io::AsyncWriteExt;

/// What a job root says about whom the job belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Recorded {
    /// The execution the job was started for.
    Identity(JobIdentity),
    /// No record: a job of a version before records, or a directory not made by a start.
    Missing,
    /// A record that does not parse (a start interrupted while writing it, or tampering).
    Unreadable,
}

/// Writes the record of a job whose directory was just created; never replaces one.
pub(crate) async fn record(path: &Path, identity: &JobIdentity) -> Result<(), SchedulerError> {
    let unavailable = |e: std::io::Error| SchedulerError::Unavailable(format!("writing identity.json: {e}"));
    let json = serde_json::to_vec(identity).map_err(|e| unavailable(std::io::Error::other(e)))?;
    let mut file =
        tokio::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).await.map_err(unavailable)?;
    file.write_all(&json).await.map_err(unavailable)?;
    file.flush().await.map_err(unavailable)
}

/// Reads the record of an existing job.
pub(crate) async fn read(path: &Path) -> Result<Recorded, SchedulerError> {
    match tokio::fs::read(path).await {
        Ok(bytes) => Ok(serde_json::from_slice(&bytes).map_or(Recorded::Unreadable, Recorded::Identity)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(Recorded::Missing),
        Err(e) => Err(SchedulerError::Unavailable(format!("reading identity.json: {e}"))),
    }
}

/// Whether a start of `wanted` may take the existing job `job_id` as its own: only when the job was
/// recorded for exactly that execution. The refusal names the job id only, never what the record
/// says (another tenant's names).
pub(crate) fn adopt(job_id: &str, recorded: &Recorded, wanted: &JobIdentity) -> Result<(), SchedulerError> {
    let why = match recorded {
        Recorded::Identity(identity) if identity == wanted => return Ok(()),
        Recorded::Identity(_) => "belongs to another task execution",
        Recorded::Missing => "has no recorded owner (left by an older version?)",
        Recorded::Unreadable => "has an unreadable owner record",
    };
    Err(SchedulerError::Rejected(format!("job {job_id} already exists and {why}: refusing to take it over")))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use gofer_core::id::RunId;

    use super::*;

    fn identity(tenant: &str, namespace: &str) -> JobIdentity {
        JobIdentity {
            tenant: tenant.parse().unwrap(),
            namespace: namespace.parse().unwrap(),
            pipeline: "hello".parse().unwrap(),
            run: RunId::from_i64(1),
            task: "build".parse().unwrap(),
            attempt: 1,
        }
    }

    #[test]
    fn only_the_recorded_execution_adopts_its_job() {
        let mine = identity("acme", "labs-builds");
        assert!(adopt("j", &Recorded::Identity(mine.clone()), &mine).is_ok());
        let theirs = Recorded::Identity(identity("acme-labs", "builds"));
        for recorded in [theirs, Recorded::Missing, Recorded::Unreadable] {
            match adopt("j", &recorded, &mine) {
                Err(SchedulerError::Rejected(message)) => {
                    assert!(message.starts_with("job j already exists"), "{message}");
                    assert!(!message.contains("acme"), "the other owner stays unnamed: {message}");
                }
                other => panic!("{recorded:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn another_attempt_of_the_same_task_is_another_execution() {
        let first = identity("acme", "builds");
        let second = JobIdentity { attempt: 2, ..first.clone() };
        assert!(adopt("j", &Recorded::Identity(first), &second).is_err());
    }

    #[tokio::test]
    async fn a_record_reads_back_and_is_never_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("identity.json");
        assert_eq!(read(&path).await.unwrap(), Recorded::Missing);
        let mine = identity("acme", "builds");
        record(&path, &mine).await.unwrap();
        assert_eq!(read(&path).await.unwrap(), Recorded::Identity(mine));
        assert!(record(&path, &identity("acme-labs", "builds")).await.is_err());
        std::fs::write(&path, b"{\"tenant\": \"ACME\"").unwrap();
        assert_eq!(read(&path).await.unwrap(), Recorded::Unreadable);
    }
}
