//! What every task's driver config and group get besides its image and command (docs/nomad.md,
//! "The job of a task execution"): no privileges and no capabilities, `no-new-privileges` and an
//! explicit seccomp profile, a read-only root filesystem with `/local` (Nomad's task directory) as
//! the writable working directory and a sized tmpfs `/tmp`, `nofile` and `fsize` ulimits, a disk
//! reservation (`EphemeralDisk`) and, with docker, the writable layer's size; no network, or the
//! operator's CNI network with its egress rules.
//!
//! The option names differ between the docker and podman drivers (`work_dir`/`working_dir`,
//! `mount`/`tmpfs`); podman's driver has no `storage_opt`. Blocks go in Nomad's JSON form: a list
//! of objects (`"ulimit": [{…}]`), as Nomad stores them from HCL.

use std::collections::BTreeMap;

use gofer_core::scheduler::TaskSpec;
use serde_json::{Map, Value, json};

use crate::config::{Driver, NomadConfig};

/// The task's writable working directory: Nomad's task-local directory, on the client's disk
/// (what `EphemeralDisk` reserves), mounted by both drivers. Also `HOME` unless the task sets it.
pub const WORK_DIR: &str = "/local";
/// A sized tmpfs, since the root filesystem is read-only and most tools need `/tmp`.
pub const TMP_DIR: &str = "/tmp";
/// Log files Nomad keeps per output, and their size: the task's `LogConfig`.
pub const LOG_MAX_FILES: u32 = 2;
/// See [`LOG_MAX_FILES`].
pub const LOG_MAX_FILE_MB: u32 = 10;
const MIB: u64 = 1024 * 1024;
/// `01777`: world-writable with the sticky bit, like a host's `/tmp`.
const TMP_MODE: u32 = 0o1777;

/// An rlimit as both drivers take it: `"soft:hard"`.
fn rlimit(value: u64) -> String {
    format!("{value}:{value}")
}

/// The `/tmp` size: the setting, at most the task's disk.
pub fn tmp_size_mb(spec: &TaskSpec, config: &NomadConfig) -> u32 {
    config.tmp_size_mb.min(spec.disk_mb).max(1)
}

/// `EphemeralDisk.SizeMB`: the task's disk plus its logs (stdout and stderr, kept in the same
/// allocation directory). Nomad wants at least 10 and more than one output's log storage. Nomad
/// places by it but does not enforce it; the task is bounded per file by `fsize`.
pub fn ephemeral_disk_mb(spec: &TaskSpec) -> u32 {
    spec.disk_mb.max(1).saturating_add(2 * LOG_MAX_FILES * LOG_MAX_FILE_MB)
}

/// Adds the hardening options to the driver `Config` being built.
pub fn driver_options(spec: &TaskSpec, config: &NomadConfig, c: &mut Map<String, Value>) {
    c.insert("privileged".into(), json!(false));
    c.insert("cap_drop".into(), json!(["ALL"]));
    c.insert("security_opt".into(), json!(["no-new-privileges", format!("seccomp={}", config.seccomp_profile)]));
    c.insert("pids_limit".into(), json!(config.pids_limit));
    c.insert("readonly_rootfs".into(), json!(true));
    let fsize = u64::from(spec.disk_mb.max(1)) * MIB;
    c.insert("ulimit".into(), json!([{"nofile": rlimit(u64::from(config.nofile_limit)), "fsize": rlimit(fsize)}]));
    let tmp_mb = tmp_size_mb(spec, config);
    match config.driver {
        Driver::Docker => {
            c.insert("work_dir".into(), json!(WORK_DIR));
            c.insert(
                "mount".into(),
                json!([{"type": "tmpfs", "target": TMP_DIR,
                        "tmpfs_options": [{"size": u64::from(tmp_mb) * MIB, "mode": TMP_MODE}]}]),
            );
            if config.storage_size_limit {
                c.insert("storage_opt".into(), json!([{"size": format!("{}M", spec.disk_mb.max(1))}]));
            }
        }
        Driver::Podman => {
            c.insert("working_dir".into(), json!(WORK_DIR));
            c.insert("tmpfs".into(), json!([format!("{TMP_DIR}:size={tmp_mb}m,mode={TMP_MODE:o}")]));
        }
    }
    if !spec.allow_network {
        c.insert("network_mode".into(), json!("none"));
    }
}

/// Adds the disk reservation and, for a networked task, the CNI network to the task group.
pub fn group_options(spec: &TaskSpec, config: &NomadConfig, group: &mut Value) {
    group["EphemeralDisk"] = json!({"SizeMB": ephemeral_disk_mb(spec)});
    if spec.allow_network {
        // The task joins the group's network namespace: its driver config sets no network_mode.
        group["Networks"] = json!([{"Mode": format!("cni/{}", config.egress_network)}]);
    }
}

/// The task's environment, with `HOME` in the writable working directory unless it sets one.
pub fn env(spec: &TaskSpec) -> BTreeMap<String, String> {
    let mut env = spec.env.clone();
    env.entry("HOME".to_owned()).or_insert_with(|| WORK_DIR.to_owned());
    env
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use crate::job::job_spec;
    use crate::job::tests::spec;

    fn task_config(spec: &TaskSpec, config: &NomadConfig) -> Value {
        job_spec(spec, config)["TaskGroups"][0]["Tasks"][0]["Config"].clone()
    }

    #[test]
    fn a_docker_task_gets_exactly_the_hardened_driver_config() {
        let mut s = spec();
        s.disk_mb = 2048;
        assert_eq!(
            task_config(&s, &NomadConfig::default()),
            json!({"image": "ghcr.io/acme/build:1", "command": "make", "args": ["test"],
                   "privileged": false, "cap_drop": ["ALL"],
                   "security_opt": ["no-new-privileges", "seccomp=/etc/gofer/seccomp.json"],
                   "pids_limit": 512, "readonly_rootfs": true, "work_dir": "/local",
                   "ulimit": [{"nofile": "8192:8192", "fsize": "2147483648:2147483648"}],
                   "mount": [{"type": "tmpfs", "target": "/tmp",
                              "tmpfs_options": [{"size": 268_435_456u64, "mode": 1023}]}],
                   "storage_opt": [{"size": "2048M"}]})
        );
    }

    #[test]
    fn a_podman_task_gets_exactly_the_hardened_driver_config() {
        let mut s = spec();
        s.allow_network = false;
        s.disk_mb = 100;
        let config = NomadConfig {
            driver: Driver::Podman,
            nofile_limit: 4096,
            seccomp_profile: "/opt/gofer/profile.json".into(),
            ..NomadConfig::default()
        };
        assert_eq!(
            task_config(&s, &config),
            json!({"image": "ghcr.io/acme/build:1", "command": "make", "args": ["test"],
                   "privileged": false, "cap_drop": ["ALL"],
                   "security_opt": ["no-new-privileges", "seccomp=/opt/gofer/profile.json"],
                   "pids_limit": 512, "readonly_rootfs": true, "working_dir": "/local",
                   "ulimit": [{"nofile": "4096:4096", "fsize": "104857600:104857600"}],
                   "tmpfs": ["/tmp:size=100m,mode=1777"],
                   "network_mode": "none"}),
            "/tmp is at most the task's disk; podman has no storage_opt"
        );
    }

    #[test]
    fn the_group_reserves_the_tasks_disk_and_its_logs() {
        let mut s = spec();
        s.disk_mb = 256;
        let job = job_spec(&s, &NomadConfig::default());
        let group = &job["TaskGroups"][0];
        assert_eq!(group["EphemeralDisk"], json!({"SizeMB": 296}));
        let logs = &group["Tasks"][0]["LogConfig"];
        assert_eq!(logs, &json!({"MaxFiles": 2, "MaxFileSizeMB": 10}));
        let log_storage = logs["MaxFiles"].as_u64().unwrap() * logs["MaxFileSizeMB"].as_u64().unwrap();
        s.disk_mb = 1;
        let smallest = ephemeral_disk_mb(&s);
        assert!(u64::from(smallest) > log_storage && smallest >= 10, "Nomad's validation: {smallest}");
        let no_size_limit = NomadConfig { storage_size_limit: false, ..NomadConfig::default() };
        assert!(task_config(&s, &no_size_limit).get("storage_opt").is_none(), "the operator's switch");
    }

    #[test]
    fn networked_tasks_join_the_egress_network_and_others_have_none() {
        let networked =
            job_spec(&spec(), &NomadConfig { egress_network: "tenants-out".into(), ..NomadConfig::default() });
        let group = &networked["TaskGroups"][0];
        assert_eq!(group["Networks"], json!([{"Mode": "cni/tenants-out"}]));
        assert!(group["Tasks"][0]["Config"].get("network_mode").is_none(), "it joins the group's namespace");
        let mut offline = spec();
        offline.allow_network = false;
        let job = job_spec(&offline, &NomadConfig::default());
        assert!(job["TaskGroups"][0].get("Networks").is_none());
        assert_eq!(job["TaskGroups"][0]["Tasks"][0]["Config"]["network_mode"], "none");
    }

    #[test]
    fn home_is_the_writable_work_directory_unless_the_task_sets_it() {
        let mut s = spec();
        assert_eq!(job_spec(&s, &NomadConfig::default())["TaskGroups"][0]["Tasks"][0]["Env"]["HOME"], "/local");
        s.env.insert("HOME".into(), "/local/home".into());
        assert_eq!(job_spec(&s, &NomadConfig::default())["TaskGroups"][0]["Tasks"][0]["Env"]["HOME"], "/local/home");
    }

    #[test]
    fn settings_that_would_weaken_every_job_are_refused() {
        assert_eq!(NomadConfig::default().validate(), Ok(()));
        let bad = [
            NomadConfig { task_user: "0:0".into(), ..NomadConfig::default() },
            NomadConfig { task_user: "root".into(), ..NomadConfig::default() },
            NomadConfig { seccomp_profile: "unconfined".into(), ..NomadConfig::default() },
            NomadConfig { seccomp_profile: "builtin".into(), ..NomadConfig::default() },
            NomadConfig { nofile_limit: 0, ..NomadConfig::default() },
            NomadConfig { tmp_size_mb: 0, ..NomadConfig::default() },
            NomadConfig { egress_network: String::new(), ..NomadConfig::default() },
            NomadConfig { egress_network: "host\"; drop".into(), ..NomadConfig::default() },
        ];
        for config in bad {
            assert!(config.validate().is_err(), "{config:?}");
        }
    }
}
