#!/usr/bin/env python3
"""Loads a Docker-format seccomp profile with the host's libseccomp, the way runc and crun do,
and runs probes under it: everyday work must succeed, the denied system calls must fail.

    python3 infra/nomad/seccomp-check.py [profile.json]            # the probes
    python3 infra/nomad/seccomp-check.py profile.json -- CMD ARGS   # one command under the profile

Needs only python3 and libseccomp2 (no container runtime), so an operator can try the profile on a
client node before installing it, and scheduler-nomad's tests run it on the shipped one. Exits 0
when every probe behaved, 1 otherwise, 2 when the profile cannot be loaded here.
"""

import ctypes
import ctypes.util
import errno
import json
import os
import platform
import signal
import sys

ACT_ALLOW = 0x7FFF0000
ACT_ERRNO = 0x00050000
OPS = {"SCMP_CMP_NE": 1, "SCMP_CMP_LT": 2, "SCMP_CMP_LE": 3, "SCMP_CMP_EQ": 4,
       "SCMP_CMP_GE": 5, "SCMP_CMP_GT": 6, "SCMP_CMP_MASKED_EQ": 7}
ARCHES = {"x86_64": "SCMP_ARCH_X86_64", "aarch64": "SCMP_ARCH_AARCH64"}

# System call numbers for the probes: (x86_64, aarch64).
NR = {
    "mount": (165, 40), "unshare": (272, 97), "setns": (308, 268), "keyctl": (250, 219),
    "add_key": (248, 217), "bpf": (321, 280), "userfaultfd": (323, 282),
    "perf_event_open": (298, 241), "io_uring_setup": (425, 425), "init_module": (175, 105),
    "clock_settime": (227, 112), "settimeofday": (164, 170), "ptrace": (101, 117),
    "clone3": (435, 435), "clone": (56, 220), "socket": (41, 198), "personality": (135, 92),
}


class ArgCmp(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int),
                ("datum_a", ctypes.c_uint64), ("datum_b", ctypes.c_uint64)]


def action(name, errno_ret):
    if name == "SCMP_ACT_ALLOW":
        return ACT_ALLOW
    if name == "SCMP_ACT_ERRNO":
        return ACT_ERRNO | (errno_ret & 0xFFFF)
    raise SystemExit(f"unsupported action {name}")


def load(profile_path):
    """Builds and loads the filter in this process (after this, only the profile's calls work)."""
    with open(profile_path) as f:
        profile = json.load(f)
    arch = ARCHES.get(platform.machine())
    listed = [m["architecture"] for m in profile.get("archMap", [])]
    if arch is None or arch not in listed:
        print(f"this machine's architecture ({platform.machine()}) is not in the profile", file=sys.stderr)
        sys.exit(2)
    path = ctypes.util.find_library("seccomp") or "libseccomp.so.2"
    lib = ctypes.CDLL(path, use_errno=True)
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_rule_add_array.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int,
                                           ctypes.c_uint, ctypes.POINTER(ArgCmp)]
    lib.seccomp_load.argtypes = [ctypes.c_void_p]
    default = action(profile["defaultAction"], profile.get("defaultErrnoRet", errno.EPERM))
    ctx = lib.seccomp_init(default)
    unknown = []
    for rule in profile["syscalls"]:
        act = action(rule["action"], rule.get("errnoRet", errno.EPERM))
        if act == default:
            continue  # as runc: a rule that does what the default does adds nothing
        args = rule.get("args") or []
        cmps = (ArgCmp * max(len(args), 1))(*[
            ArgCmp(a["index"], OPS[a["op"]], a["value"], a.get("valueTwo", 0)) for a in args])
        for name in rule["names"]:
            nr = lib.seccomp_syscall_resolve_name(name.encode())
            if nr < 0:
                unknown.append(name)  # as runc and crun: unknown here, skipped
                continue
            rc = lib.seccomp_rule_add_array(ctx, act, nr, len(args), cmps)
            if rc != 0:
                print(f"cannot add the rule for {name}: {os.strerror(-rc)}", file=sys.stderr)
                sys.exit(2)
    if lib.seccomp_load(ctx) != 0:
        print("seccomp_load failed", file=sys.stderr)
        sys.exit(2)
    return unknown


PROBE = r"""
import ctypes, errno, os, platform, socket, subprocess, sys, tempfile, threading
NR = %(nr)r
arch = 0 if platform.machine() == "x86_64" else 1
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
def call(name, *args):
    ctypes.set_errno(0)
    r = libc.syscall(ctypes.c_long(NR[name][arch]), *[ctypes.c_ulong(a) for a in args])
    if r == 0 and name == "clone":
        os._exit(0)
    return r, ctypes.get_errno()
failures = []
def expect(what, got, wanted):
    if got != wanted:
        failures.append(f"{what}: got {got}, wanted {wanted}")
# Everyday work.
with tempfile.TemporaryDirectory() as d:
    p = os.path.join(d, "f")
    open(p, "w").write("x" * 100000)
    os.rename(p, p + "2"); os.symlink(p + "2", p); os.chmod(p + "2", 0o600)
    expect("files", open(p).read(), "x" * 100000)
t = threading.Thread(target=lambda: None); t.start(); t.join()
expect("sh", subprocess.run(["sh", "-c", "echo hi | cat; ls / >/dev/null; sleep 0.01 & wait; id -u"],
                            capture_output=True).returncode, 0)
for family in (socket.AF_UNIX, socket.AF_INET, socket.AF_INET6):
    socket.socket(family, socket.SOCK_STREAM).close()
socket.socketpair()[0].close()
expect("personality query", call("personality", 0xFFFFFFFF)[1], 0)
# What must fail.
for name, args, err in [
    ("unshare", (0x10000000,), errno.EPERM), ("unshare", (0x40000000,), errno.EPERM),
    ("setns", (0, 0), errno.EPERM), ("mount", (0, 0, 0, 0, 0), errno.EPERM),
    ("keyctl", (0, 0), errno.EPERM), ("add_key", (0, 0, 0, 0, 0), errno.EPERM),
    ("bpf", (0, 0, 0), errno.EPERM), ("userfaultfd", (0,), errno.EPERM),
    ("perf_event_open", (0, 0, 0, 0, 0), errno.EPERM), ("io_uring_setup", (1, 0), errno.EPERM),
    ("init_module", (0, 0, 0), errno.EPERM), ("clock_settime", (0, 0), errno.EPERM),
    ("settimeofday", (0, 0), errno.EPERM), ("ptrace", (0, 0, 0, 0), errno.EPERM),
    ("clone", (0x10000000 | 17, 0, 0, 0, 0), errno.EPERM), ("clone3", (0, 0), errno.ENOSYS),
    ("socket", (40, 1, 0), errno.EPERM), ("socket", (38, 5, 0), errno.EPERM),
    ("socket", ((1 << 32) | 40, 1, 0), errno.EPERM), ("personality", (0x0040000,), errno.EPERM),
]:
    expect(f"{name}{args}", call(name, *args), (-1, err))
expect("unshare -U", subprocess.run(["unshare", "-U", "true"], capture_output=True).returncode != 0, True)
print("\n".join(failures) if failures else "ok")
sys.exit(1 if failures else 0)
"""


def main():
    argv = sys.argv[1:]
    command = None
    if "--" in argv:
        command = argv[argv.index("--") + 1:]
        argv = argv[:argv.index("--")]
    profile = argv[0] if argv else os.path.join(os.path.dirname(os.path.abspath(__file__)), "seccomp.json")
    if command is None:
        command = [sys.executable, "-c", PROBE % {"nr": NR}]
    pid = os.fork()
    if pid == 0:
        unknown = load(profile)
        if unknown:
            print(f"not known to this libseccomp (skipped): {' '.join(unknown)}", file=sys.stderr)
        try:
            os.execvp(command[0], command)
        except OSError as e:
            print(f"cannot run {command[0]}: {e}", file=sys.stderr)
            os._exit(127)
    while True:
        _, status = os.waitpid(pid, 0)
        if os.WIFEXITED(status) or os.WIFSIGNALED(status):
            sys.exit(os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 1)
        os.kill(pid, signal.SIGCONT)  # stopped (job control): let it go on


if __name__ == "__main__":
    main()
