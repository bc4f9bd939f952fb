//! Where a job lives on disk, and the job id check that keeps it inside the work directory.

use std::path::{Path, PathBuf};

use gofer_core::scheduler::SchedulerError;
use sha2::{Digest, Sha256};

/// Longest job id accepted at all: far above what the engine builds, low enough to keep errors and logs small.
const MAX_JOB_ID_LEN: usize = 1024;

/// Longest job id used verbatim as a directory name. Engine ids can reach ~290 bytes (four 64-byte
/// identifiers, a run number, an attempt), past the 255-byte file name limit, so longer ids are hashed.
const MAX_PLAIN_NAME_LEN: usize = 128;

/// How much of a long id is kept in front of its hash, so directories stay recognisable. A hashed
/// name is `PREFIX + 1 + 64` = 165 bytes long: longer than any plain name, so the two never collide.
const HASHED_PREFIX_LEN: usize = 100;

/// The files of one job under the work directory.
#[derive(Debug, Clone)]
pub(crate) struct JobPaths {
    /// `<work_dir>/<name>`: everything the job holds; the sandbox never sees this directory itself.
    pub root: PathBuf,
    /// `<root>/output.log`: combined stdout and stderr.
    pub output: PathBuf,
    /// `<root>/info.json`: bubblewrap's `--info-fd` output (`child-pid`, namespaces), for attach.
    pub info: PathBuf,
    /// `<root>/result.json`: the final observation, kept for a restarted server.
    pub result: PathBuf,
    /// `<root>/identity.json`: the task execution the job was started for (see `identity.rs`).
    pub identity: PathBuf,
}

impl JobPaths {
    /// The paths of `job_id` under `work_dir`, refusing any id that could leave it.
    pub(crate) fn new(work_dir: &Path, job_id: &str) -> Result<Self, SchedulerError> {
        validate_job_id(job_id)?;
        let root = work_dir.join(dir_name(job_id));
        Ok(Self {
            output: root.join("output.log"),
            info: root.join("info.json"),
            result: root.join("result.json"),
            identity: root.join("identity.json"),
            root,
        })
    }
}

/// Accepts `[a-z0-9_~-]+`: the engine's ids are validated identifiers and numbers joined by `~`
/// (`-` in ids recorded before that scheme), and with no `.` or `/` an id can never name a parent
/// directory or a path outside the work directory.
pub(crate) fn validate_job_id(job_id: &str) -> Result<(), SchedulerError> {
    let allowed = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-' | b'~');
    if job_id.is_empty() || job_id.len() > MAX_JOB_ID_LEN || !job_id.bytes().all(allowed) {
        let shown: String = job_id.chars().take(80).collect();
        return Err(SchedulerError::Rejected(format!(
            "invalid job id {shown:?}: must be 1 to {MAX_JOB_ID_LEN} characters of a-z, 0-9, '_', '~' and '-'"
        )));
    }
    Ok(())
}

/// The directory name for a (valid) job id: the id itself, or a prefix and its SHA-256 when too long.
fn dir_name(job_id: &str) -> String {
    if job_id.len() <= MAX_PLAIN_NAME_LEN {
        return job_id.to_owned();
    }
    // Valid ids are ASCII, so slicing at a byte index is slicing at a character boundary.
    let digest = hex::encode(Sha256::digest(job_id.as_bytes()));
    format!("{}-{digest}", &job_id[..HASHED_PREFIX_LEN])
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn short_ids_are_used_as_directory_names() {
        let paths = JobPaths::new(Path::new("/w"), "acme-team-build-7-test-1").unwrap();
        assert_eq!(paths.root, Path::new("/w/acme-team-build-7-test-1"));
    }

    #[test]
    fn engine_ids_of_both_schemes_are_used_as_directory_names() {
        for id in ["acme~labs-builds~hello~1~build~1", "acme-labs-builds-hello-1-build-1"] {
            assert_eq!(JobPaths::new(Path::new("/w"), id).unwrap().root, Path::new("/w").join(id));
        }
        let identity = JobPaths::new(Path::new("/w"), "a~b~c~1~d~1").unwrap().identity;
        assert_eq!(identity, Path::new("/w/a~b~c~1~d~1/identity.json"));
    }

    #[test]
    fn long_ids_get_distinct_hashed_names_within_the_file_name_limit() {
        let long_a = format!("{}-1-t-1", "a".repeat(280));
        let long_b = format!("{}-1-t-2", "a".repeat(280));
        let (a, b) = (dir_name(&long_a), dir_name(&long_b));
        assert_ne!(a, b);
        assert!(a.len() <= 255 && a.len() > MAX_PLAIN_NAME_LEN, "{}", a.len());
        assert_eq!(dir_name(&long_a), a, "the name is deterministic");
    }

    #[test]
    fn ids_that_could_escape_the_work_directory_are_rejected() {
        for bad in ["", ".", "..", "../etc", "a/b", "/abs", "A", "a.b", "a b", "é", "a\0b", &"a".repeat(1025)] {
            assert!(matches!(JobPaths::new(Path::new("/w"), bad), Err(SchedulerError::Rejected(_))), "{bad:?}");
        }
    }
}
