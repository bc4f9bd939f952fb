//! Who a Nomad job belongs to: the job's `Meta` (`gofer.tenant`, … set by `job.rs`) and its Nomad
//! namespace, checked before a start takes an existing job of its id as its own.
//!
//! Job ids cannot collide between task executions (see [`JobIdentity`]); this is the second line.
//! Check-and-set registration only says that *a* job of the id exists in the namespace: a start
//! adopts it only when it sits in the tenant's own namespace with `Meta` naming exactly the
//! spec's execution, since adopting a stranger's job would hand over its output, exit status,
//! attach, stop and purge.

use std::collections::BTreeMap;

use gofer_core::scheduler::{JobIdentity, SchedulerError};

use crate::client::JobStub;
use crate::job::nomad_namespace;

/// The `Meta` keys and values `job.rs` records for an execution, on the job and on its task.
pub(crate) fn meta(identity: &JobIdentity) -> BTreeMap<&'static str, String> {
    BTreeMap::from([
        ("gofer.tenant", identity.tenant.to_string()),
        ("gofer.namespace", identity.namespace.to_string()),
        ("gofer.pipeline", identity.pipeline.to_string()),
        ("gofer.run", identity.run.to_string()),
        ("gofer.task", identity.task.to_string()),
        ("gofer.attempt", identity.attempt.to_string()),
    ])
}

/// The only Nomad namespace a job of this id may live in, for ids of the current scheme; `None`
/// for ids recorded before it (they are looked up in every namespace, as before).
pub(crate) fn home_namespace(job_id: &str) -> Option<String> {
    JobIdentity::parse_job_id(job_id).map(|identity| nomad_namespace(&identity.tenant))
}

/// Whether a start of `wanted` may take `existing` (a job of its id) as its own: only when it is
/// in the tenant's namespace and its `Meta` names exactly that execution. The refusal names the
/// job id only, never what the other job records.
pub(crate) fn adopt(existing: &JobStub, wanted: &JobIdentity) -> Result<(), SchedulerError> {
    let recorded = existing.meta.as_ref();
    let same_meta = meta(wanted).iter().all(|(key, value)| recorded.and_then(|m| m.get(*key)) == Some(value));
    if existing.namespace == nomad_namespace(&wanted.tenant) && same_meta {
        return Ok(());
    }
    Err(SchedulerError::Rejected(format!(
        "Nomad job {} already exists for another task execution: refusing to take it over",
        existing.id
    )))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use gofer_core::id::RunId;
    use gofer_core::scheduler::TaskSpec;

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

    fn stub(namespace: &str, of: &JobIdentity) -> JobStub {
        let meta = meta(of).into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        JobStub { id: "j".into(), namespace: namespace.into(), meta: Some(meta), ..JobStub::default() }
    }

    #[test]
    fn only_a_job_recorded_for_the_same_execution_in_the_tenants_namespace_is_adopted() {
        let mine = identity("acme", "labs-builds");
        assert!(adopt(&stub("gofer-acme", &mine), &mine).is_ok());
        let refused = [
            stub("gofer-acme", &identity("acme-labs", "builds")),
            stub("gofer-acme", &JobIdentity { attempt: 2, ..mine.clone() }),
            stub("gofer-acme-labs", &mine),
            JobStub { meta: None, ..stub("gofer-acme", &mine) },
            JobStub { meta: Some(BTreeMap::new()), ..stub("gofer-acme", &mine) },
        ];
        for existing in refused {
            match adopt(&existing, &mine) {
                Err(SchedulerError::Rejected(message)) => {
                    assert!(message.contains("job j already exists"), "{message}");
                    assert!(!message.contains("labs") && !message.contains("acme"), "{message}");
                }
                other => panic!("{existing:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn the_meta_checked_is_the_meta_the_job_spec_records() {
        let wanted = identity("acme", "builds");
        let spec = TaskSpec {
            job_id: wanted.job_id(),
            tenant: wanted.tenant.clone(),
            namespace: wanted.namespace.clone(),
            pipeline: wanted.pipeline.clone(),
            run: wanted.run,
            task: wanted.task.clone(),
            attempt: wanted.attempt,
            image: "alpine:3".into(),
            command: vec!["true".into()],
            entrypoint: None,
            env: Default::default(),
            timeout: std::time::Duration::from_secs(60),
            cpu_millis: 500,
            memory_mb: 256,
            disk_mb: 1024,
            registry_auth: None,
            allow_network: true,
            untrusted: false,
            node_pool: None,
            gofer_cli: false,
        };
        let job = crate::job::job_spec(&spec, &crate::config::NomadConfig::default());
        let expected: serde_json::Value = serde_json::to_value(meta(&spec.identity())).unwrap();
        assert_eq!(job["Meta"], expected);
        assert_eq!(job["TaskGroups"][0]["Tasks"][0]["Meta"], expected);
    }

    #[test]
    fn allocations_of_the_same_id_in_another_namespace_are_not_tracked() {
        let tracker = crate::watch::Tracker::default();
        let job_id = identity("acme", "builds").job_id();
        tracker.track(&job_id);
        let alloc = |namespace: &str| crate::state::Allocation {
            id: format!("alloc-in-{namespace}"),
            job_id: job_id.clone(),
            namespace: namespace.into(),
            create_index: 1,
            modify_index: 1,
            ..Default::default()
        };
        tracker.store(alloc("gofer-acme-labs"), true);
        assert!(tracker.any(&job_id).is_none());
        tracker.store(alloc("gofer-acme"), true);
        assert_eq!(tracker.any(&job_id).unwrap().id, "alloc-in-gofer-acme");
    }

    #[test]
    fn ids_of_the_current_scheme_have_one_home_namespace() {
        assert_eq!(home_namespace("acme-labs~builds~hello~1~build~1").as_deref(), Some("gofer-acme-labs"));
        assert_eq!(home_namespace("acme-labs-builds-hello-1-build-1"), None);
    }
}
