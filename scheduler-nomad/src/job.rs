//! The Nomad job for one task execution, as a pure function of the [`TaskSpec`] and the
//! scheduler's settings: one batch job, one group, one task, hardened, and never retried by Nomad.
//!
//! Only keys written here reach the driver: nothing a pipeline supplies becomes driver config.

use std::time::Duration;

use gofer_core::TenantId;
use gofer_core::scheduler::TaskSpec;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::config::NomadConfig;

pub mod hardening;
pub mod registry;

/// The job's only task group.
pub const GROUP: &str = "task";
/// The group's only task.
pub const TASK: &str = "main";
/// Env variables the registry-auth template sets, interpolated into the driver's `auth` block.
const REGISTRY_USER_VAR: &str = "GOFER_REGISTRY_USERNAME";
const REGISTRY_PASSWORD_VAR: &str = "GOFER_REGISTRY_PASSWORD";

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// The Nomad namespace of a tenant: `gofer-<tenant>`. Nomad namespaces allow letters, digits and
/// `-` only, so a tenant id with `_` gets them as `-` plus a hash of the real id, which keeps
/// `a_b` and `a-b` apart.
pub fn nomad_namespace(tenant: &TenantId) -> String {
    let id = tenant.as_str();
    if id.contains('_') {
        let digest = Sha256::digest(id.as_bytes());
        format!("gofer-{}-{}", id.replace('_', "-"), &hex::encode(digest)[..8])
    } else {
        format!("gofer-{id}")
    }
}

/// The registry host of an image reference (`docker.io` when it names none, as Docker reads it).
pub fn image_registry(image: &str) -> &str {
    match image.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => first,
        _ => "docker.io",
    }
}

/// Refuses an image from a registry the operator did not allow (empty list: any registry the
/// egress policy accepts), naming the registry and the reason; see [`registry`].
pub fn check_image(image: &str, allowed: &[String]) -> Result<(), String> {
    if image.trim().is_empty() {
        return Err("the task has no image".into());
    }
    registry::check(image_registry(image), allowed)
}

/// Where the task's registry credentials are kept: a Nomad Variable only this job's workload
/// identity can read (`nomad/jobs/<job id>`), so they never appear in the stored job.
pub fn registry_variable_path(job_id: &str) -> String {
    format!("nomad/jobs/{job_id}")
}

/// The node pool of a task: its plan's, else the configured default.
pub fn node_pool<'a>(spec: &'a TaskSpec, config: &'a NomadConfig) -> &'a str {
    spec.node_pool.as_deref().unwrap_or(&config.node_pool)
}

/// The driver `Config`: image, command and the hardening, nothing else.
fn driver_config(spec: &TaskSpec, config: &NomadConfig) -> Value {
    let mut c = Map::new();
    c.insert("image".into(), json!(spec.image));
    match &spec.entrypoint {
        Some(entrypoint) => {
            c.insert("entrypoint".into(), json!(entrypoint));
            if !spec.command.is_empty() {
                c.insert("args".into(), json!(spec.command));
            }
        }
        None => {
            if let Some((program, args)) = spec.command.split_first() {
                c.insert("command".into(), json!(program));
                if !args.is_empty() {
                    c.insert("args".into(), json!(args));
                }
            }
        }
    }
    hardening::driver_options(spec, config, &mut c);
    if spec.registry_auth.is_some() {
        // Interpolated by the client from the template's env at start; the stored job holds only
        // the variable names.
        c.insert(
            "auth".into(),
            json!({"username": format!("${{{REGISTRY_USER_VAR}}}"), "password": format!("${{{REGISTRY_PASSWORD_VAR}}}")}),
        );
    }
    Value::Object(c)
}

fn resources(spec: &TaskSpec, config: &NomadConfig) -> Value {
    let cpu = (u64::from(spec.cpu_millis) * u64::from(config.cpu_mhz_per_core) / 1000).max(1);
    // Nomad's floor is 10 MB.
    let memory = spec.memory_mb.max(10);
    if config.memory_oversubscription {
        // Reserve half, allow up to the task's limit when the node has room.
        json!({"CPU": cpu, "MemoryMB": (memory / 2).max(10), "MemoryMaxMB": memory})
    } else {
        json!({"CPU": cpu, "MemoryMB": memory})
    }
}

/// The job to register (the value of `Job` in `POST /v1/jobs`).
pub fn job_spec(spec: &TaskSpec, config: &NomadConfig) -> Value {
    let namespace = nomad_namespace(&spec.tenant);
    let meta = json!({
        "gofer.tenant": spec.tenant.as_str(),
        "gofer.namespace": spec.namespace.as_str(),
        "gofer.pipeline": spec.pipeline.as_str(),
        "gofer.run": spec.run.to_string(),
        "gofer.task": spec.task.as_str(),
        "gofer.attempt": spec.attempt.to_string(),
    });
    let mut task = json!({
        "Name": TASK,
        "Driver": config.driver.as_str(),
        "User": config.task_user,
        "Config": driver_config(spec, config),
        "Env": hardening::env(spec),
        "Resources": resources(spec, config),
        "KillTimeout": nanos(Duration::from_secs(config.kill_timeout_s)),
        "LogConfig": {"MaxFiles": hardening::LOG_MAX_FILES, "MaxFileSizeMB": hardening::LOG_MAX_FILE_MB},
        "Meta": meta,
    });
    if spec.registry_auth.is_some() {
        let path = registry_variable_path(&spec.job_id);
        task["Templates"] = json!([{
            "EmbeddedTmpl": format!(
                "{{{{ with nomadVar \"{path}\" }}}}{REGISTRY_USER_VAR}={{{{ .username }}}}\n{REGISTRY_PASSWORD_VAR}={{{{ .password }}}}\n{{{{ end }}}}"
            ),
            "DestPath": "secrets/registry.env",
            "Envvars": true,
            "ChangeMode": "noop",
        }]);
    }
    let mut group = json!({
        "Name": GROUP,
        "Count": 1,
        // The engine decides retries: Nomad neither restarts nor reschedules.
        "RestartPolicy": {"Attempts": 0, "Mode": "fail", "Interval": nanos(Duration::from_secs(86400)),
                          "Delay": nanos(Duration::from_secs(15))},
        "ReschedulePolicy": {"Attempts": 0, "Unlimited": false},
        "Tasks": [task],
    });
    hardening::group_options(spec, config, &mut group);
    if config.max_run_duration {
        group["MaxRunDuration"] = json!(nanos(spec.timeout));
    }
    let mut job = json!({
        "ID": spec.job_id,
        "Name": spec.job_id,
        "Type": "batch",
        "Namespace": namespace,
        "Datacenters": config.datacenters,
        "NodePool": node_pool(spec, config),
        "Priority": 50,
        "Meta": meta,
        "TaskGroups": [group],
    });
    if let Some(region) = &config.region {
        job["Region"] = json!(region);
    }
    job
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod tests {
    use std::collections::BTreeMap;

    use gofer_core::id::RunId;
    use gofer_core::scheduler::RegistryAuth;

    use super::*;

    pub(crate) fn spec() -> TaskSpec {
        TaskSpec {
            job_id: "acme-builds-cicd-7-test-1".into(),
            tenant: "acme".parse().unwrap(),
            namespace: "builds".parse().unwrap(),
            pipeline: "cicd".parse().unwrap(),
            run: RunId::from_i64(7),
            task: "test".parse().unwrap(),
            attempt: 1,
            image: "ghcr.io/acme/build:1".into(),
            command: vec!["make".into(), "test".into()],
            entrypoint: None,
            env: BTreeMap::from([("A".into(), "1".into())]),
            timeout: Duration::from_secs(60),
            cpu_millis: 500,
            memory_mb: 256,
            disk_mb: 1024,
            registry_auth: None,
            allow_network: true,
            untrusted: false,
            node_pool: None,
            gofer_cli: false,
        }
    }

    #[test]
    fn a_task_becomes_one_batch_job_that_nomad_never_retries() {
        let job = job_spec(&spec(), &NomadConfig::default());
        assert_eq!(job["ID"], "acme-builds-cicd-7-test-1");
        assert_eq!(job["Name"], job["ID"]);
        assert_eq!(job["Type"], "batch");
        assert_eq!(job["Namespace"], "gofer-acme");
        assert_eq!(job["NodePool"], "default");
        assert_eq!(job["Datacenters"], json!(["*"]));
        assert!(job.get("Region").is_none());
        let group = &job["TaskGroups"][0];
        assert_eq!(group["Count"], 1);
        assert_eq!(group["RestartPolicy"]["Attempts"], 0);
        assert_eq!(group["RestartPolicy"]["Mode"], "fail");
        assert_eq!(group["ReschedulePolicy"], json!({"Attempts": 0, "Unlimited": false}));
        assert_eq!(group["MaxRunDuration"], 60_000_000_000u64);
        let task = &group["Tasks"][0];
        assert_eq!(task["Driver"], "docker");
        assert_eq!(task["User"], "65534:65534");
        assert_eq!(task["KillTimeout"], 10_000_000_000u64);
        assert_eq!(task["Resources"], json!({"CPU": 500, "MemoryMB": 256}));
        assert_eq!(task["Env"], json!({"A": "1", "HOME": "/local"}));
        let meta = json!({"gofer.tenant": "acme", "gofer.namespace": "builds", "gofer.pipeline": "cicd",
                          "gofer.run": "7", "gofer.task": "test", "gofer.attempt": "1"});
        assert_eq!(job["Meta"], meta);
        assert_eq!(task["Meta"], meta);
        // The hardening, field by field, is in job/hardening.rs.
        assert_eq!(task["Config"]["image"], "ghcr.io/acme/build:1");
        assert_eq!(
            (task["Config"]["command"].clone(), task["Config"]["args"].clone()),
            (json!("make"), json!(["test"]))
        );
        assert_eq!(task["Config"]["readonly_rootfs"], true);
    }

    #[test]
    fn plans_choose_the_pool_and_the_network() {
        let mut trial = spec();
        trial.node_pool = Some("gofer-trial".into());
        trial.allow_network = false;
        let config = NomadConfig { driver: crate::Driver::Podman, region: Some("eu".into()), ..NomadConfig::default() };
        let job = job_spec(&trial, &config);
        assert_eq!(job["NodePool"], "gofer-trial");
        assert_eq!(job["Region"], "eu");
        let task = &job["TaskGroups"][0]["Tasks"][0];
        assert_eq!(task["Driver"], "podman");
        assert_eq!(task["Config"]["network_mode"], "none");
    }

    #[test]
    fn resources_follow_the_task_and_the_settings() {
        let mut s = spec();
        s.cpu_millis = 2500;
        s.memory_mb = 4;
        let config = NomadConfig { cpu_mhz_per_core: 2000, ..NomadConfig::default() };
        assert_eq!(
            job_spec(&s, &config)["TaskGroups"][0]["Tasks"][0]["Resources"],
            json!({"CPU": 5000, "MemoryMB": 10})
        );
        s.memory_mb = 1024;
        s.cpu_millis = 0;
        let config = NomadConfig { memory_oversubscription: true, ..NomadConfig::default() };
        assert_eq!(
            job_spec(&s, &config)["TaskGroups"][0]["Tasks"][0]["Resources"],
            json!({"CPU": 1, "MemoryMB": 512, "MemoryMaxMB": 1024})
        );
    }

    #[test]
    fn an_entrypoint_takes_the_command_as_arguments() {
        let mut s = spec();
        s.entrypoint = Some(vec!["/bin/sh".into(), "-c".into()]);
        s.command = vec!["echo hi".into()];
        let config = &job_spec(&s, &NomadConfig::default())["TaskGroups"][0]["Tasks"][0]["Config"];
        assert_eq!(config["entrypoint"], json!(["/bin/sh", "-c"]));
        assert_eq!(config["args"], json!(["echo hi"]));
        assert!(config.get("command").is_none());
    }

    #[test]
    fn registry_credentials_never_appear_in_the_job() {
        let mut s = spec();
        s.registry_auth = Some(RegistryAuth { username: "robot".into(), password: "hunter2-secret".into() });
        let job = job_spec(&s, &NomadConfig::default());
        let text = job.to_string();
        assert!(!text.contains("hunter2-secret") && !text.contains("robot"), "{text}");
        let task = &job["TaskGroups"][0]["Tasks"][0];
        assert_eq!(task["Config"]["auth"]["password"], "${GOFER_REGISTRY_PASSWORD}");
        let template = &task["Templates"][0];
        assert_eq!(template["Envvars"], true);
        assert!(
            template["EmbeddedTmpl"].as_str().unwrap().contains("nomadVar \"nomad/jobs/acme-builds-cicd-7-test-1\"")
        );
    }

    #[test]
    fn namespaces_and_registries() {
        assert_eq!(nomad_namespace(&"acme".parse().unwrap()), "gofer-acme");
        let odd = nomad_namespace(&"a_b".parse().unwrap());
        assert!(odd.starts_with("gofer-a-b-") && odd.len() == "gofer-a-b-".len() + 8, "{odd}");
        assert_ne!(odd, nomad_namespace(&"a-b".parse().unwrap()));
        assert_eq!(image_registry("alpine:3"), "docker.io");
        assert_eq!(image_registry("library/alpine"), "docker.io");
        assert_eq!(image_registry("ghcr.io/acme/x"), "ghcr.io");
        assert_eq!(image_registry("localhost:5000/x"), "localhost:5000");
        let allowed = vec!["ghcr.io".to_owned()];
        assert!(check_image("ghcr.io/acme/x:1", &allowed).is_ok());
        assert!(check_image("alpine", &allowed).unwrap_err().contains("docker.io"));
        assert!(check_image("alpine", &[]).is_ok());
        assert!(check_image(" ", &[]).is_err());
    }
}
