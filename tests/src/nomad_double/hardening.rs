//! Test code only: the hardening every job Gofer registers must carry (docs/nomad.md, "The job of a
//! task execution"; issue 18 item 8). The double records each job without it as a violation, so
//! every Nomad test that asserts no violations also checks every job it made Gofer register.

use serde_json::{Value, json};

/// The driver options Gofer may set; anything else (volumes, devices, `cap_add`, `sysctl`,
/// `userns_mode`, `runtime`, …) is a hole.
const DRIVER_KEYS: &[&str] = &[
    "image",
    "command",
    "args",
    "entrypoint",
    "auth",
    "privileged",
    "cap_drop",
    "security_opt",
    "pids_limit",
    "readonly_rootfs",
    "ulimit",
    "network_mode",
    "work_dir",
    "working_dir",
    "mount",
    "tmpfs",
    "storage_opt",
];

/// An rlimit `"n:n"` as a number, if it is one with equal soft and hard values.
fn rlimit(value: &Value) -> Option<u64> {
    let (soft, hard) = value.as_str()?.split_once(':')?;
    (soft == hard).then(|| soft.parse().ok()).flatten()
}

/// What a registered job lacks of the hardening, one line per hole.
pub fn problems(job: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    for group in job["TaskGroups"].as_array().into_iter().flatten() {
        if group.get("Volumes").is_some() {
            problems.push("the group declares volumes".to_owned());
        }
        let disk_mb = group["EphemeralDisk"]["SizeMB"].as_u64();
        if disk_mb.is_none() {
            problems.push("the group has no EphemeralDisk.SizeMB".to_owned());
        }
        let cni = match group.get("Networks").map(|n| n.as_array().map(Vec::as_slice)) {
            None => false,
            Some(Some([one])) if one["Mode"].as_str().is_some_and(|m| m.len() > 4 && m.starts_with("cni/")) => true,
            Some(other) => {
                problems.push(format!("the group network is not one CNI network: {other:?}"));
                false
            }
        };
        for task in group["Tasks"].as_array().into_iter().flatten() {
            problems.extend(task_problems(task, disk_mb.unwrap_or(0), cni));
        }
    }
    problems
}

fn task_problems(task: &Value, disk_mb: u64, cni: bool) -> Vec<String> {
    let mut problems = Vec::new();
    let mut hole = |what: String| problems.push(what);
    let user = task["User"].as_str().unwrap_or_default();
    if user.is_empty() || user.starts_with("0:") || user == "0" || user.starts_with("root") {
        hole(format!("the task runs as {user:?}"));
    }
    if task.get("VolumeMounts").is_some() {
        hole("the task mounts volumes".to_owned());
    }
    let config = &task["Config"];
    let Some(options) = config.as_object() else {
        hole("the task has no driver config".to_owned());
        return problems;
    };
    for key in options.keys().filter(|k| !DRIVER_KEYS.contains(&k.as_str())) {
        hole(format!("driver option {key} is not one Gofer sets"));
    }
    if config["privileged"] != false || config["cap_drop"] != json!(["ALL"]) || config["readonly_rootfs"] != true {
        hole("not unprivileged, without capabilities and on a read-only root".to_owned());
    }
    let security: Vec<&str> =
        config["security_opt"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    let seccomp = security.iter().filter_map(|o| o.strip_prefix("seccomp=")).collect::<Vec<_>>();
    if !security.contains(&"no-new-privileges") || !matches!(seccomp.as_slice(), [path] if path.starts_with('/')) {
        hole(format!("security_opt {security:?} lacks no-new-privileges or a seccomp profile file"));
    }
    if config["pids_limit"].as_u64().is_none_or(|n| n == 0) {
        hole("no pids_limit".to_owned());
    }
    let ulimit = &config["ulimit"][0];
    let fsize_ok = rlimit(&ulimit["fsize"]).is_some_and(|bytes| bytes > 0 && bytes <= disk_mb * 1024 * 1024);
    if config["ulimit"].as_array().map(Vec::len) != Some(1) || rlimit(&ulimit["nofile"]).is_none() || !fsize_ok {
        hole(format!("ulimit {} lacks nofile, or an fsize within the disk", config["ulimit"]));
    }
    let (work_dir_key, tmp_ok) = match task["Driver"].as_str() {
        Some("docker") => {
            let mounts = config["mount"].as_array().map(Vec::as_slice).unwrap_or_default();
            let sized = |m: &Value| m["tmpfs_options"][0]["size"].as_u64().is_some_and(|size| size > 0);
            ("work_dir", matches!(mounts, [m] if m["type"] == "tmpfs" && m["target"] == "/tmp" && sized(m)))
        }
        Some("podman") => {
            let tmpfs: Vec<&str> = config["tmpfs"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
            let sized = matches!(tmpfs.as_slice(), [tmp] if tmp.starts_with("/tmp:size="));
            ("working_dir", sized && config.get("storage_opt").is_none())
        }
        other => {
            hole(format!("driver {other:?} is neither docker nor podman"));
            return problems;
        }
    };
    if config[work_dir_key] != "/local" || !tmp_ok {
        hole(format!("the writable places are not /local and a sized tmpfs /tmp only: {config}"));
    }
    // A networked task joins the group's CNI network (no network_mode); any other has none.
    let network_ok = if cni { config.get("network_mode").is_none() } else { config["network_mode"] == "none" };
    if !network_ok {
        hole(format!("network: CNI group network {cni}, network_mode {}", config["network_mode"]));
    }
    problems
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    fn hardened() -> Value {
        json!({"TaskGroups": [{"EphemeralDisk": {"SizeMB": 296}, "Tasks": [{
            "Driver": "docker", "User": "65534:65534",
            "Config": {"image": "alpine:3", "privileged": false, "cap_drop": ["ALL"], "readonly_rootfs": true,
                       "security_opt": ["no-new-privileges", "seccomp=/etc/gofer/seccomp.json"], "pids_limit": 512,
                       "ulimit": [{"nofile": "8192:8192", "fsize": "268435456:268435456"}], "work_dir": "/local",
                       "mount": [{"type": "tmpfs", "target": "/tmp", "tmpfs_options": [{"size": 1024, "mode": 1023}]}],
                       "network_mode": "none"}}]}]})
    }

    #[test]
    fn a_hardened_job_passes_and_each_hole_is_named() {
        assert_eq!(problems(&hardened()), Vec::<String>::new());
        let holes: [(&str, Value); 8] = [
            ("/TaskGroups/0/Tasks/0/Config/readonly_rootfs", json!(false)),
            ("/TaskGroups/0/Tasks/0/Config/security_opt", json!(["no-new-privileges"])),
            ("/TaskGroups/0/Tasks/0/Config/volumes", json!(["/:/host"])),
            ("/TaskGroups/0/Tasks/0/Config/network_mode", json!("host")),
            ("/TaskGroups/0/Tasks/0/User", json!("0:0")),
            ("/TaskGroups/0/Networks", json!([{"Mode": "host"}])),
            ("/TaskGroups/0/EphemeralDisk", json!({})),
            (
                "/TaskGroups/0/Tasks/0/Config/ulimit",
                json!([{"nofile": "1024:1024", "fsize": "999999999999:999999999999"}]),
            ),
        ];
        for (pointer, value) in holes {
            let mut job = hardened();
            let (parent, key) = pointer.rsplit_once('/').unwrap();
            job.pointer_mut(parent).unwrap()[key] = value;
            assert!(!problems(&job).is_empty(), "{pointer} went unnoticed");
        }
    }
}
