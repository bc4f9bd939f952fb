//! Job identity: the task execution a scheduler job belongs to, and the job id built from it.
//!
//! # The job id scheme
//! `{tenant}~{namespace}~{pipeline}~{run}~{task}~{attempt}`, for example `acme~builds~cicd~7~test~1`.
//!
//! Identifiers are `[a-z][a-z0-9_-]*` and the run and attempt are decimal numbers, so no part can
//! contain `~`: splitting an id on `~` gives back exactly its six parts, and two different
//! executions can never share an id. Uniqueness holds by construction, with no hash involved.
//! (The previous scheme joined the parts with `-`, which identifiers contain too: tenant `acme` with
//! namespace `labs-builds` and tenant `acme-labs` with namespace `builds` got the same id.)
//!
//! `~` was chosen over other separators because every consumer of the id accepts it as it is:
//! - the local sandbox uses the id as a directory name (`[a-z0-9_~-]`, never `.` or `/`);
//! - Nomad job ids only refuse spaces and NUL, and `~` needs no escaping in a URL path segment;
//! - Nomad Variable paths allow `[a-zA-Z0-9-_~/]` only, so the per-job registry credentials path
//!   `nomad/jobs/<job id>` stays valid (`.` or `:` would not be), and the task's workload identity
//!   still reads it implicitly;
//! - people still read it, in `nomad job status` and in `ls` of the work directory.
//!
//! Schedulers must not rely on ids alone: [`JobIdentity`] is recorded with every job, and a start
//! that finds a job of its id recorded for another identity is refused (see [`Scheduler::start`]).
//!
//! Executions dispatched before this scheme keep their recorded `scheduler_id` (the engine
//! observes, stops and purges by the recorded id, never a recomputed one), so schedulers go on
//! accepting `-`-joined ids for those; [`JobIdentity::parse_job_id`] answers `None` for them.
//!
//! [`Scheduler::start`]: super::Scheduler::start

use crate::id::{NamespaceId, PipelineId, RunId, TaskId, TenantId};

/// The task execution a job belongs to: the parts its id is made of.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct JobIdentity {
    /// Owner of the task.
    pub tenant: TenantId,
    /// Namespace of the pipeline.
    pub namespace: NamespaceId,
    /// Pipeline.
    pub pipeline: PipelineId,
    /// Run.
    pub run: RunId,
    /// Task.
    pub task: TaskId,
    /// Attempt number, from 1.
    pub attempt: u32,
}

impl JobIdentity {
    /// What joins the parts of a job id; no identifier or number contains it.
    pub const SEPARATOR: char = '~';

    /// The deterministic job id of this execution (see the module docs).
    pub fn job_id(&self) -> String {
        join(&self.tenant, &self.namespace, &self.pipeline, self.run, &self.task, self.attempt)
    }

    /// The identity a job id of this scheme was built from; `None` for any other string
    /// (including ids of the earlier `-`-joined scheme, which cannot be split reliably).
    pub fn parse_job_id(job_id: &str) -> Option<Self> {
        let mut parts = job_id.split(Self::SEPARATOR);
        let identity = JobIdentity {
            tenant: TenantId::parse(parts.next()?).ok()?,
            namespace: NamespaceId::parse(parts.next()?).ok()?,
            pipeline: PipelineId::parse(parts.next()?).ok()?,
            run: RunId::parse(parts.next()?).ok()?,
            task: TaskId::parse(parts.next()?).ok()?,
            attempt: parts.next()?.parse().ok()?,
        };
        // Exactly six parts, each in its canonical form (no `+1` or `01` numbers).
        (parts.next().is_none() && identity.job_id() == job_id).then_some(identity)
    }
}

/// The job id of the execution with these parts (see the module docs).
pub(super) fn join(
    tenant: &TenantId,
    namespace: &NamespaceId,
    pipeline: &PipelineId,
    run: RunId,
    task: &TaskId,
    attempt: u32,
) -> String {
    let sep = JobIdentity::SEPARATOR;
    format!("{tenant}{sep}{namespace}{sep}{pipeline}{sep}{run}{sep}{task}{sep}{attempt}")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn identity(tenant: &str, namespace: &str, pipeline: &str, run: i64, task: &str, attempt: u32) -> JobIdentity {
        JobIdentity {
            tenant: tenant.parse().unwrap(),
            namespace: namespace.parse().unwrap(),
            pipeline: pipeline.parse().unwrap(),
            run: RunId::from_i64(run),
            task: task.parse().unwrap(),
            attempt,
        }
    }

    #[test]
    fn a_job_id_reads_as_its_parts_joined_by_tildes() {
        assert_eq!(identity("acme", "builds", "cicd", 7, "test", 1).job_id(), "acme~builds~cicd~7~test~1");
    }

    #[test]
    fn tenants_whose_names_ran_together_under_the_dash_scheme_get_different_ids() {
        let first = identity("acme", "labs-builds", "hello", 1, "build", 1);
        let second = identity("acme-labs", "builds", "hello", 1, "build", 1);
        assert_ne!(first.job_id(), second.job_id());
    }

    #[test]
    fn namespaces_and_pipelines_of_one_tenant_that_ran_together_get_different_ids() {
        let first = identity("acme", "aaa", "bbb-ccc", 1, "build", 1);
        let second = identity("acme", "aaa-bbb", "ccc", 1, "build", 1);
        assert_ne!(first.job_id(), second.job_id());
        let (task_a, task_b) =
            (identity("acme", "aaa", "bbb", 1, "x_1-2", 3), identity("acme", "aaa", "bbb", 1, "x_1", 23));
        assert_ne!(task_a.job_id(), task_b.job_id());
    }

    #[test]
    fn ids_of_the_dash_scheme_and_malformed_ids_do_not_parse() {
        for id in [
            "acme-builds-cicd-7-test-1",
            "acme~builds~cicd~7~test",
            "acme~builds~cicd~7~test~1~x",
            "acme~builds~cicd~07~test~1",
            "acme~builds~cicd~+7~test~1",
            "acme~builds~cicd~0~test~1",
            "ACME~builds~cicd~7~test~1",
            "acme~~cicd~7~test~1",
            "",
        ] {
            assert_eq!(JobIdentity::parse_job_id(id), None, "{id}");
        }
    }

    fn identifier() -> impl Strategy<Value = String> {
        // Mostly separators, to make accidental joins likely if the scheme allowed them.
        "[a-c][a-c_-]{2,12}"
    }

    fn identities() -> impl Strategy<Value = JobIdentity> {
        (identifier(), identifier(), identifier(), 1..1_000_i64, identifier(), 1..1_000_u32)
            .prop_map(|(t, n, p, r, k, a)| identity(&t, &n, &p, r, &k, a))
    }

    /// `a`'s tenant, namespace and pipeline joined by `-` and split again at other dashes: the
    /// identities the dash scheme gave `a`'s id to.
    fn resplit(a: &JobIdentity, cuts: (prop::sample::Index, prop::sample::Index)) -> Option<JobIdentity> {
        let joined = format!("{}-{}-{}", a.tenant, a.namespace, a.pipeline);
        let dashes: Vec<usize> = joined.match_indices('-').map(|(i, _)| i).collect();
        let (mut first, mut second) = (cuts.0.get(&dashes), cuts.1.get(&dashes));
        if first > second {
            std::mem::swap(&mut first, &mut second);
        }
        if first == second {
            return None;
        }
        Some(JobIdentity {
            tenant: joined[..*first].parse().ok()?,
            namespace: joined[first + 1..*second].parse().ok()?,
            pipeline: joined[second + 1..].parse().ok()?,
            ..a.clone()
        })
    }

    proptest! {
        #[test]
        fn distinct_identities_never_share_a_job_id(a in identities(), b in identities()) {
            prop_assert_eq!(a == b, a.job_id() == b.job_id());
        }

        #[test]
        fn identities_the_dash_scheme_ran_together_get_different_ids(
            a in identities(),
            cuts in (any::<prop::sample::Index>(), any::<prop::sample::Index>()),
        ) {
            if let Some(b) = resplit(&a, cuts).filter(|b| *b != a) {
                prop_assert_ne!(a.job_id(), b.job_id());
            }
        }

        #[test]
        fn a_job_id_parses_back_to_its_identity(a in identities()) {
            prop_assert_eq!(JobIdentity::parse_job_id(&a.job_id()), Some(a));
        }

        #[test]
        fn job_ids_use_only_characters_every_scheduler_accepts(a in identities()) {
            let id = a.job_id();
            let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "_-~".contains(c);
            prop_assert!(id.chars().all(allowed), "{}", id);
            // Nomad Variable paths: `^[a-zA-Z0-9-_~/]{1,128}$`.
            let path = format!("nomad/jobs/{id}");
            prop_assert!(path.chars().all(|c| c.is_ascii_alphanumeric() || "-_~/".contains(c)), "{}", path);
        }
    }
}
