//! The sandbox's syscall filter, in the spirit of Docker's default profile: everything ordinary
//! programs and builds use stays allowed; what reaches kernel surface a task never needs is
//! refused with `EPERM` (namespaces, mounts, keyrings, BPF, userfaultfd, perf, io_uring, kernel
//! modules, clocks, reboot, swap, accounting, handle-based opens).
//!
//! Two BPF programs (built with `seccompiler`), given to bwrap with `--add-seccomp-fd`:
//! - the deny list, `EPERM`;
//! - `clone3`, `ENOSYS`: its flags live in memory a filter cannot read, so it is refused the way
//!   Docker refuses it, as "not implemented", which makes the C library fall back to `clone`,
//!   whose namespace flags the first program checks.
//!
//! On x86_64, the x32 ABI numbers (`nr | 0x4000_0000`, same `AUDIT_ARCH_X86_64`) of every refused
//! call are refused too; any other architecture's calls (i386 via `int 0x80`) are killed by
//! seccompiler's architecture check.

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule, TargetArch,
};

/// Syscalls refused outright.
const DENIED: &[libc::c_long] = &[
    // New namespaces, entering others, and changing the filesystem view.
    libc::SYS_unshare,
    libc::SYS_setns,
    libc::SYS_mount,
    libc::SYS_umount2,
    libc::SYS_pivot_root,
    libc::SYS_chroot,
    libc::SYS_fsopen,
    libc::SYS_fsconfig,
    libc::SYS_fsmount,
    libc::SYS_fspick,
    libc::SYS_move_mount,
    libc::SYS_open_tree,
    libc::SYS_mount_setattr,
    // Kernel keyrings, BPF, userfaultfd, perf, io_uring: large attack surface, rarely needed.
    libc::SYS_keyctl,
    libc::SYS_add_key,
    libc::SYS_request_key,
    libc::SYS_bpf,
    libc::SYS_userfaultfd,
    libc::SYS_perf_event_open,
    libc::SYS_io_uring_setup,
    libc::SYS_io_uring_enter,
    libc::SYS_io_uring_register,
    // Kernel modules, kexec, reboot, swap, accounting, quotas.
    libc::SYS_init_module,
    libc::SYS_finit_module,
    libc::SYS_delete_module,
    libc::SYS_kexec_load,
    libc::SYS_kexec_file_load,
    libc::SYS_reboot,
    libc::SYS_swapon,
    libc::SYS_swapoff,
    libc::SYS_acct,
    libc::SYS_quotactl,
    // The host's clocks.
    libc::SYS_clock_settime,
    libc::SYS_clock_adjtime,
    libc::SYS_settimeofday,
    libc::SYS_adjtimex,
    // Opening files by handle bypasses the mount view (the "shocker" escape).
    libc::SYS_open_by_handle_at,
    libc::SYS_name_to_handle_at,
    // The kernel log, and terminal hangups of the host.
    libc::SYS_syslog,
    libc::SYS_vhangup,
    libc::SYS_lookup_dcookie,
];

/// `clone` flags that create namespaces: a `clone` with any of them is refused.
const NAMESPACE_FLAGS: &[libc::c_int] = &[
    libc::CLONE_NEWNS,
    libc::CLONE_NEWUTS,
    libc::CLONE_NEWIPC,
    libc::CLONE_NEWUSER,
    libc::CLONE_NEWPID,
    libc::CLONE_NEWNET,
    libc::CLONE_NEWCGROUP,
    // CLONE_NEWTIME shares its bit with CSIGNAL's range in clone(2), so only unshare can use it;
    // unshare is refused whole.
];

/// The x32 ABI's syscall number bit on x86_64.
#[cfg(target_arch = "x86_64")]
const X32_SYSCALL_BIT: libc::c_long = 0x4000_0000;

#[cfg(target_arch = "x86_64")]
const ARCH: TargetArch = TargetArch::x86_64;
#[cfg(target_arch = "aarch64")]
const ARCH: TargetArch = TargetArch::aarch64;

/// Every number a syscall can be called by on this architecture.
fn numbers(nr: libc::c_long) -> Vec<i64> {
    #[cfg(target_arch = "x86_64")]
    return vec![nr, nr | X32_SYSCALL_BIT];
    #[cfg(not(target_arch = "x86_64"))]
    return vec![nr];
}

/// The two programs as bytes for bwrap's `--add-seccomp-fd`: (deny list with `EPERM`, `clone3`
/// with `ENOSYS`).
pub(crate) fn programs() -> Result<(Vec<u8>, Vec<u8>), seccompiler::BackendError> {
    let mut denied: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for nr in DENIED {
        for n in numbers(*nr) {
            denied.insert(n, Vec::new());
        }
    }
    // clone(flags, …): refused when any namespace flag is set; one rule per flag (rules are OR-ed).
    let clone_rules = NAMESPACE_FLAGS
        .iter()
        .map(|flag| {
            let flag = u64::from(flag.unsigned_abs());
            SeccompCondition::new(0, SeccompCmpArgLen::Qword, SeccompCmpOp::MaskedEq(flag), flag)
                .and_then(|condition| SeccompRule::new(vec![condition]))
        })
        .collect::<Result<Vec<_>, _>>()?;
    for n in numbers(libc::SYS_clone) {
        denied.insert(n, clone_rules.clone());
    }
    let deny = SeccompFilter::new(denied, SeccompAction::Allow, SeccompAction::Errno(errno(libc::EPERM)), ARCH)?;

    let clone3: BTreeMap<i64, Vec<SeccompRule>> =
        numbers(libc::SYS_clone3).into_iter().map(|n| (n, Vec::new())).collect();
    let no_clone3 = SeccompFilter::new(clone3, SeccompAction::Allow, SeccompAction::Errno(errno(libc::ENOSYS)), ARCH)?;

    Ok((to_bytes(deny.try_into()?), to_bytes(no_clone3.try_into()?)))
}

fn errno(code: libc::c_int) -> u32 {
    code.unsigned_abs()
}

/// A program as the kernel's `struct sock_filter` array, which bwrap reads verbatim.
fn to_bytes(program: BpfProgram) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(program.len() * 8);
    for instruction in program {
        bytes.extend_from_slice(&instruction.code.to_ne_bytes());
        bytes.push(instruction.jt);
        bytes.push(instruction.jf);
        bytes.extend_from_slice(&instruction.k.to_ne_bytes());
    }
    bytes
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn both_programs_build_to_whole_instructions() {
        let (deny, clone3) = programs().unwrap();
        assert!(!deny.is_empty() && deny.len() % 8 == 0, "{}", deny.len());
        assert!(!clone3.is_empty() && clone3.len() % 8 == 0, "{}", clone3.len());
        // The kernel refuses programs over 4096 instructions.
        assert!(deny.len() / 8 <= 4096);
    }
}
