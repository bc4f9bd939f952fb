//! The example client-node files in `infra/nomad/` match what the job builder asks for: the seccomp
//! profile every job names denies what docs/nomad.md says (and does so when loaded), and the CNI
//! network and its nftables rules refuse exactly the core egress policy's blocks.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use gofer_scheduler_nomad::NomadConfig;
use serde_json::Value;

fn infra(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../infra/nomad").join(file)
}

fn read(file: &str) -> String {
    std::fs::read_to_string(infra(file)).unwrap_or_else(|e| panic!("{file}: {e}"))
}

fn profile() -> Value {
    serde_json::from_str(&read("seccomp.json")).unwrap()
}

/// Names of the rules with this action, whatever their arguments.
fn names(profile: &Value, action: &str) -> BTreeSet<String> {
    let rules = profile["syscalls"].as_array().unwrap();
    let of_action = rules.iter().filter(|r| r["action"] == action);
    of_action.flat_map(|r| r["names"].as_array().unwrap().iter().map(|n| n.as_str().unwrap().to_owned())).collect()
}

#[test]
fn the_seccomp_profile_denies_by_default_and_never_allows_what_it_denies() {
    let profile = profile();
    assert_eq!(profile["defaultAction"], "SCMP_ACT_ERRNO");
    let allowed = names(&profile, "SCMP_ACT_ALLOW");
    let denied = names(&profile, "SCMP_ACT_ERRNO");
    for name in [
        "unshare",
        "setns",
        "mount",
        "umount2",
        "pivot_root",
        "move_mount",
        "fsopen",
        "keyctl",
        "add_key",
        "request_key",
        "bpf",
        "userfaultfd",
        "perf_event_open",
        "io_uring_setup",
        "io_uring_enter",
        "io_uring_register",
        "init_module",
        "finit_module",
        "delete_module",
        "kexec_load",
        "clock_settime",
        "clock_adjtime",
        "settimeofday",
        "adjtimex",
        "ptrace",
        "process_vm_readv",
        "open_by_handle_at",
        "clone3",
    ] {
        assert!(denied.contains(name) && !allowed.contains(name), "{name} must be denied");
    }
    for name in ["read", "write", "openat", "execve", "wait4", "futex", "mmap", "socketpair", "statx", "getrandom"] {
        assert!(allowed.contains(name), "{name} must be allowed");
    }
    // clone only without namespace flags; socket only for the everyday families.
    let rules = profile["syscalls"].as_array().unwrap();
    let clone: Vec<&Value> = rules.iter().filter(|r| r["names"] == serde_json::json!(["clone"])).collect();
    assert_eq!(clone.len(), 1);
    assert_eq!(clone[0]["args"][0]["op"], "SCMP_CMP_MASKED_EQ");
    assert_eq!(clone[0]["args"][0]["value"], 0x7E02_0000u64, "CLONE_NEW* flags");
    let socket = rules.iter().filter(|r| r["names"] == serde_json::json!(["socket"]));
    let families: BTreeSet<u64> = socket.map(|r| r["args"][0]["valueTwo"].as_u64().unwrap()).collect();
    assert_eq!(families, BTreeSet::from([1, 2, 10, 16]), "AF_UNIX, AF_INET, AF_INET6, AF_NETLINK");
    let arches: Vec<&str> =
        profile["archMap"].as_array().unwrap().iter().map(|a| a["architecture"].as_str().unwrap()).collect();
    assert_eq!(arches, ["SCMP_ARCH_X86_64", "SCMP_ARCH_AARCH64"], "no 32-bit entry points");
}

#[test]
fn under_the_seccomp_profile_namespaces_and_the_denied_calls_fail_and_everyday_work_runs() {
    if !matches!(std::env::consts::ARCH, "x86_64" | "aarch64") {
        eprintln!("skipped: the profile is for x86_64 and aarch64");
        return;
    }
    let has_libseccomp = "import ctypes.util, sys; sys.exit(0 if ctypes.util.find_library('seccomp') else 3)";
    match Command::new("python3").args(["-c", has_libseccomp]).status() {
        Ok(status) if status.success() => {}
        _ => {
            eprintln!("skipped: the probe needs python3 and libseccomp2 (Debian: libseccomp2), which this host lacks");
            return;
        }
    }
    let output = Command::new("python3").arg(infra("seccomp-check.py")).arg(infra("seccomp.json")).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(stdout.trim(), "ok");
}

/// The blocks of one nftables set's `elements`.
fn nft_set(text: &str, set: &str) -> BTreeSet<String> {
    let start = text.find(&format!("set {set} {{")).unwrap_or_else(|| panic!("no set {set}"));
    let rest = &text[start..];
    let elements = &rest[rest.find("elements = {").unwrap() + "elements = {".len()..];
    let elements = &elements[..elements.find('}').unwrap()];
    elements.split([',', '\n', ' ']).map(str::trim).filter(|e| !e.is_empty()).map(str::to_owned).collect()
}

#[test]
fn the_egress_rules_refuse_exactly_the_core_policys_blocks() {
    let text = read("gofer-egress.nft");
    let listed: BTreeSet<String> = nft_set(&text, "refused4").union(&nft_set(&text, "refused6")).cloned().collect();
    let policy: BTreeSet<String> = gofer_core::egress::refused_networks().iter().map(ToString::to_string).collect();
    assert_eq!(listed, policy, "regenerate the sets of infra/nomad/gofer-egress.nft from refused_networks()");
}

#[test]
fn the_cni_network_is_the_one_jobs_name_and_the_rules_guard_its_bridge() {
    let conflist: Value = serde_json::from_str(&read("gofer-egress.conflist")).unwrap();
    assert_eq!(conflist["name"], NomadConfig::default().egress_network.as_str());
    let bridge = conflist["plugins"].as_array().unwrap().iter().find(|p| p["type"] == "bridge").unwrap();
    assert_eq!(bridge["ipMasq"], true);
    let bridge_name = bridge["bridge"].as_str().unwrap();
    let rules = read("gofer-egress.nft");
    assert!(rules.contains(&format!("define tasks_bridge = \"{bridge_name}\"")), "the rules name the bridge");
}
