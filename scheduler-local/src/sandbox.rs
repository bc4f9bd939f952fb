//! The sandbox command line: `sh` (to open fds 3 to 6) → `setpriv` (when root) → `prlimit` → `bwrap`.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use gofer_core::scheduler::{SchedulerError, TaskSpec};

use crate::error::LocalSchedulerError;
use crate::files::SandboxFiles;
use crate::settings::LocalSchedulerConfig;

/// The uid and gid the task runs as inside the sandbox (and, when the server is root, on the host).
pub(crate) const SANDBOX_UID: u32 = 65534;

/// `PATH` inside the sandbox unless the spec sets one.
pub(crate) const SANDBOX_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// `PATH` for the wrapper processes outside the sandbox; the tools themselves are run by absolute path.
pub(crate) const HOST_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The wrapper's script. `exec` keeps one process, so the pid tokio holds is bwrap's own.
/// fd 3 is bwrap's `--info-fd` (tokio cannot pass extra fds without `pre_exec`, which is unsafe);
/// fd 4 carries bwrap's options through `--args 4`, so `--setenv` values (task secrets) never appear
/// in the host's world-readable `/proc/<pid>/cmdline`; fds 5 and 6 are the two seccomp programs
/// (`--add-seccomp-fd`, see `seccomp.rs`). The task's stdin is `$ready`: /dev/null, or for a
/// networked task a FIFO that bwrap waits on (`--block-fd 0`) until the server has set the task's
/// network up (`network.rs`), and that is at its end once the task runs.
const WRAPPER_SCRIPT: &str = concat!(
    r#"info=$1; deny=$2; clone3=$3; ready=$4; shift 4; "#,
    r#"exec "$@" 3>"$info" 4<&0 5<"$deny" 6<"$clone3" <"$ready""#
);

/// `/dev/shm`'s size when the task's memory is larger (Docker's default).
const SHM_BYTES: u64 = 64 << 20;

/// With per-task cgroups, `RLIMIT_NPROC` (counted per host uid, over every sandbox) is only a
/// backstop against a host-wide fork bomb: this many tasks' worth of processes.
const NPROC_BACKSTOP_TASKS: u64 = 16;

/// Absolute paths of the programs a sandbox needs, resolved once at start-up.
#[derive(Debug, Clone)]
pub(crate) struct Tools {
    pub(crate) sh: PathBuf,
    /// For attach (`nsenter` into a running sandbox); absent: exec answers unavailable.
    pub(crate) nsenter: Option<PathBuf>,
    /// For attach with a tty (`setsid -c` inside the sandbox).
    pub(crate) setsid: Option<PathBuf>,
    /// Present when the server runs as root: the sandbox is then started as uid 65534 on the host.
    setpriv: Option<PathBuf>,
    pub(crate) prlimit: PathBuf,
    bwrap: PathBuf,
    /// The `gofer` binary mounted into `kind: gofer` tasks; absent: they are refused.
    pub(crate) gofer: Option<PathBuf>,
    /// The files every sandbox gets, written at start-up (`files.rs`).
    pub(crate) files: SandboxFiles,
}

/// Where a `kind: gofer` task finds the CLI, and the directory put first on its `PATH`.
pub(crate) const GOFER_DIR: &str = "/opt/gofer/bin";
const GOFER_PATH: &str = "/opt/gofer/bin/gofer";

impl Tools {
    /// Finds `sh`, `prlimit`, `bwrap`, when `privileged` `setpriv`, and the `gofer` binary: the
    /// configured one (which must exist), else the one next to this executable, else on `PATH`.
    pub(crate) fn find(bwrap: &Path, gofer: Option<&Path>, privileged: bool) -> Result<Self, LocalSchedulerError> {
        let gofer = match gofer {
            Some(path) => Some(
                find_program(path)
                    .and_then(|p| std::fs::canonicalize(p).ok())
                    .ok_or_else(|| LocalSchedulerError::GoferNotFound { path: path.to_path_buf() })?,
            ),
            None => std::env::current_exe()
                .ok()
                .and_then(|exe| exe.parent().map(|dir| dir.join("gofer")))
                .and_then(|sibling| find_program(&sibling))
                .or_else(|| find_program(Path::new("gofer"))),
        };
        let tool =
            |name: &'static str| find_program(Path::new(name)).ok_or(LocalSchedulerError::ToolNotFound { tool: name });
        Ok(Self {
            sh: tool("sh")?,
            nsenter: find_program(Path::new("nsenter")),
            setsid: find_program(Path::new("setsid")),
            setpriv: if privileged { Some(tool("setpriv")?) } else { None },
            prlimit: tool("prlimit")?,
            bwrap: find_program(bwrap)
                .ok_or_else(|| LocalSchedulerError::BwrapNotFound { path: bwrap.to_path_buf() })?,
            gofer,
            files: SandboxFiles::default(),
        })
    }

    /// Whether sandboxes are started through `setpriv` (the server runs as root).
    pub(crate) fn privileged(&self) -> bool {
        self.setpriv.is_some()
    }
}

/// Looks a program up like `execvp`: a name with a `/` is taken as is, a bare name is searched on `PATH`.
fn find_program(name: &Path) -> Option<PathBuf> {
    let is_executable =
        |p: &Path| std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
    if name.as_os_str().as_bytes().contains(&b'/') {
        return is_executable(name).then(|| name.to_path_buf());
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| HOST_PATH.into());
    std::env::split_paths(&path).map(|dir| dir.join(name)).find(|p| is_executable(p))
}

/// A sandbox ready to spawn: run `program` with `args`, and write `options` to its stdin.
#[derive(Debug)]
pub(crate) struct SandboxCommand {
    pub program: PathBuf,
    pub args: Vec<OsString>,
    /// bwrap's options, NUL-separated, read by `--args 4` (the wrapper moves stdin to fd 4).
    pub options: Vec<u8>,
}

/// The task's working directory.
#[derive(Debug, Clone, Copy)]
pub(crate) enum JobMount<'a> {
    /// A tmpfs of its own, this big: tasks. Its pages count in the task's memory cgroup.
    Tmpfs { size_bytes: u64 },
    /// A host directory, read-only: the start-up probe, proving the sandbox user can reach it.
    ReadOnly(&'a Path),
}

/// What one sandbox runs and where.
pub(crate) struct SandboxRequest<'a> {
    /// What the sandbox gets at `/job`.
    pub job: JobMount<'a>,
    /// Host file receiving bwrap's `--info-fd` JSON.
    pub info_path: &'a Path,
    /// The argv run inside: the entrypoint (if any) followed by the command.
    pub command: &'a [String],
    pub env: &'a BTreeMap<String, String>,
    /// Memory limit for this task, in MiB: its cgroup's, or with [`ProcessLimits::PerProcess`] the
    /// address-space limit of each process; also the size of `/tmp`.
    pub memory_limit_mb: u64,
    /// The most one file may hold, in MiB (`RLIMIT_FSIZE`): the task's disk.
    pub disk_limit_mb: u64,
    /// What the per-process limits are for this sandbox.
    pub process_limits: ProcessLimits,
    /// For a networked task (its plan allows it and `sandbox.share_network`): the FIFO bwrap waits
    /// on until the task's own network is set up (`network.rs`). `None`: loopback only.
    pub network_ready: Option<&'a Path>,
    /// For a `kind: gofer` task: the host's `gofer` binary, mounted at `/opt/gofer/bin/gofer`.
    pub gofer: Option<&'a Path>,
}

impl SandboxCommand {
    /// Builds the full command line for one sandbox.
    pub(crate) fn new(tools: &Tools, config: &LocalSchedulerConfig, request: &SandboxRequest<'_>) -> Self {
        let mut args: Vec<OsString> = vec!["-c".into(), WRAPPER_SCRIPT.into(), "sh".into()];
        args.push(request.info_path.into());
        args.extend(tools.files.wrapper_args());
        args.push(request.network_ready.map_or_else(|| OsString::from("/dev/null"), |fifo| fifo.into()));
        if let Some(setpriv) = &tools.setpriv {
            // As root, bwrap would map the sandbox user onto host root: still no capabilities, but it
            // could read root-owned files such as /etc/shadow, and root is exempt from RLIMIT_NPROC.
            args.push(setpriv.into());
            args.extend(
                [format!("--reuid={SANDBOX_UID}"), format!("--regid={SANDBOX_UID}"), "--clear-groups".to_owned()]
                    .map(OsString::from),
            );
        }
        args.push(tools.prlimit.clone().into());
        args.extend(request.process_limits.prlimit_args(config, request.memory_limit_mb));
        // No file larger than the task's disk (the task's stdout is a pipe, so its output is not a file).
        args.push(format!("--fsize={}", request.disk_limit_mb.saturating_mul(1024 * 1024)).into());
        args.push("--".into());
        args.push(tools.bwrap.clone().into());
        args.extend(["--args", "4", "--"].map(OsString::from));
        args.extend(request.command.iter().map(OsString::from));
        Self { program: tools.sh.clone(), args, options: bwrap_options(tools, request) }
    }
}

/// What the per-process limits (`prlimit`) of a sandbox, or of what attach runs in one, are for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProcessLimits {
    /// Only a host-wide backstop: `RLIMIT_NPROC` at 16 tasks' worth and no address-space limit
    /// (it breaks runtimes that reserve large virtual ranges). For a task in cgroups of its own,
    /// which count what is really used, and for the start-up probe.
    Backstop,
    /// The limits themselves, for a host without cgroups: `RLIMIT_NPROC` (shared by every sandbox
    /// of the host uid) and the address space of each process.
    PerProcess,
}

impl ProcessLimits {
    /// Backstop when the task has cgroups of its own, else per process.
    pub(crate) fn for_task(in_cgroups: bool) -> Self {
        if in_cgroups { Self::Backstop } else { Self::PerProcess }
    }

    /// `prlimit`'s options.
    pub(crate) fn prlimit_args(self, config: &LocalSchedulerConfig, memory_limit_mb: u64) -> Vec<OsString> {
        match self {
            Self::Backstop => {
                vec![format!("--nproc={}", config.settings.max_processes.saturating_mul(NPROC_BACKSTOP_TASKS)).into()]
            }
            Self::PerProcess => vec![
                format!("--nproc={}", config.settings.max_processes).into(),
                format!("--as={}", memory_limit_mb.saturating_mul(1024 * 1024)).into(),
            ],
        }
    }
}

/// bwrap's options, NUL-separated for `--args`.
fn bwrap_options(tools: &Tools, request: &SandboxRequest<'_>) -> Vec<u8> {
    // Every namespace is new, the network too: a networked task gets its own (never the host's).
    let mut opts: Vec<&[u8]> = vec![b"--unshare-all"];
    if request.network_ready.is_some() {
        opts.extend([b"--block-fd".as_slice(), b"0"]);
    }
    let uid = SANDBOX_UID.to_string();
    opts.extend([
        b"--unshare-user".as_slice(),
        b"--uid",
        uid.as_bytes(),
        b"--gid",
        uid.as_bytes(),
        b"--die-with-parent",
        b"--new-session",
        // No user namespaces inside (the classic way to regain capabilities), and the syscall filter.
        b"--disable-userns",
        b"--add-seccomp-fd",
        b"5",
        b"--add-seccomp-fd",
        b"6",
        b"--clearenv",
    ]);
    for (key, value) in request.env {
        opts.extend([b"--setenv".as_slice(), key.as_bytes(), value.as_bytes()]);
    }
    for (key, default) in [("PATH", SANDBOX_PATH), ("HOME", "/job")] {
        if !request.env.contains_key(key) {
            opts.extend([b"--setenv".as_slice(), key.as_bytes(), default.as_bytes()]);
        }
    }
    // Set after the task's own PATH, which it overrides: the CLI comes first.
    let gofer_path = format!("{GOFER_DIR}:{}", request.env.get("PATH").map_or(SANDBOX_PATH, String::as_str));
    if let Some(gofer) = request.gofer {
        opts.extend([
            b"--setenv".as_slice(),
            b"PATH",
            gofer_path.as_bytes(),
            b"--ro-bind",
            gofer.as_os_str().as_bytes(),
            GOFER_PATH.as_bytes(),
        ]);
    }
    opts.extend([
        b"--ro-bind".as_slice(),
        b"/usr",
        b"/usr",
        b"--symlink",
        b"usr/bin",
        b"/bin",
        b"--symlink",
        b"usr/lib",
        b"/lib",
    ]);
    if Path::new("/usr/lib64").exists() {
        opts.extend([b"--symlink".as_slice(), b"usr/lib64", b"/lib64"]);
    }
    // Sized tmpfs: their pages count in the task's memory cgroup, and the sizes bound them even
    // without one. `/dev` itself (bwrap's tmpfs of device nodes) is made read-only.
    let memory_bytes = request.memory_limit_mb.saturating_mul(1024 * 1024);
    let tmp_size = memory_bytes.to_string();
    let shm_size = memory_bytes.min(SHM_BYTES).to_string();
    // A minimal /etc, staged once (files.rs), and the host's live resolv.conf.
    opts.extend([b"--ro-bind".as_slice(), tools.files.etc.as_os_str().as_bytes(), b"/etc"]);
    if Path::new("/etc/resolv.conf").exists() {
        opts.extend([b"--ro-bind".as_slice(), b"/etc/resolv.conf", b"/etc/resolv.conf"]);
    }
    opts.extend([
        b"--proc".as_slice(),
        b"/proc",
        b"--dev",
        b"/dev",
        b"--size",
        shm_size.as_bytes(),
        b"--perms",
        b"1777",
        b"--tmpfs",
        b"/dev/shm",
        b"--remount-ro",
        b"/dev",
        b"--size",
        tmp_size.as_bytes(),
        b"--tmpfs",
        b"/tmp",
    ]);
    // `/job` is in memory too: the task's disk, at most its memory (what it holds counts there).
    let job_size;
    match request.job {
        JobMount::Tmpfs { size_bytes } => {
            job_size = size_bytes.to_string();
            opts.extend([b"--size".as_slice(), job_size.as_bytes(), b"--perms", b"0700", b"--tmpfs", b"/job"]);
        }
        JobMount::ReadOnly(dir) => opts.extend([b"--ro-bind".as_slice(), dir.as_os_str().as_bytes(), b"/job"]),
    }
    opts.extend([b"--chdir".as_slice(), b"/job", b"--hostname", b"gofer-sandbox", b"--info-fd", b"3"]);
    let mut out = Vec::new();
    for opt in opts {
        out.extend_from_slice(opt);
        out.push(0);
    }
    out
}

/// Refuses specs that cannot be passed to a process: bwrap would fail in confusing ways otherwise.
pub(crate) fn check_spec(spec: &TaskSpec) -> Result<(), SchedulerError> {
    let reject = |what: String| Err(SchedulerError::Rejected(what));
    if spec.command.is_empty() || spec.command[0].is_empty() {
        return reject("the command is empty".to_owned());
    }
    if spec.entrypoint.as_ref().is_some_and(|e| e.is_empty() || e[0].is_empty()) {
        return reject("the entrypoint is empty".to_owned());
    }
    check_process(spec.command.iter().chain(spec.entrypoint.iter().flatten()), &spec.env)
}

/// Refuses an argv or environment that cannot be passed to a process (NUL bytes, bad names).
pub(crate) fn check_process<'a>(
    argv: impl IntoIterator<Item = &'a String>,
    env: &BTreeMap<String, String>,
) -> Result<(), SchedulerError> {
    let reject = |what: String| Err(SchedulerError::Rejected(what));
    if argv.into_iter().any(|arg| arg.contains('\0')) {
        return reject("the command contains a NUL byte".to_owned());
    }
    for (key, value) in env {
        if key.is_empty() || key.contains(['=', '\0']) {
            return reject(format!("invalid environment variable name {key:?}"));
        }
        if value.contains('\0') {
            return reject(format!("environment variable {key} contains a NUL byte"));
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    fn tools() -> Tools {
        Tools {
            sh: "/bin/sh".into(),
            nsenter: None,
            setsid: None,
            setpriv: None,
            prlimit: "/usr/bin/prlimit".into(),
            bwrap: "/usr/bin/bwrap".into(),
            gofer: None,
            files: SandboxFiles::default(),
        }
    }

    fn options(env: &[(&str, &str)]) -> Vec<String> {
        options_for(env, None)
    }

    /// A request for `command` with `env`, network allowed and no gofer CLI; tests change fields.
    fn request<'a>(command: &'a [String], env: &'a BTreeMap<String, String>) -> SandboxRequest<'a> {
        SandboxRequest {
            job: JobMount::Tmpfs { size_bytes: 1 << 30 },
            info_path: Path::new("/w/j/info.json"),
            command,
            env,
            memory_limit_mb: 4096,
            disk_limit_mb: 1024,
            process_limits: ProcessLimits::PerProcess,
            network_ready: None,
            gofer: None,
        }
    }

    /// bwrap's options (NUL-separated) as strings.
    fn option_strings(options: &[u8]) -> Vec<String> {
        options.split(|b| *b == 0).filter(|s| !s.is_empty()).map(|s| String::from_utf8_lossy(s).into_owned()).collect()
    }

    fn options_for(env: &[(&str, &str)], network_ready: Option<&Path>) -> Vec<String> {
        let env: BTreeMap<String, String> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let command = ["true".to_owned()];
        option_strings(&bwrap_options(&tools(), &SandboxRequest { network_ready, ..request(&command, &env) }))
    }

    fn setenvs(opts: &[String]) -> Vec<(String, String)> {
        opts.windows(3).filter(|w| w[0] == "--setenv").map(|w| (w[1].clone(), w[2].clone())).collect()
    }

    #[test]
    fn a_task_never_shares_the_hosts_network_and_a_networked_one_waits_for_its_own() {
        let plain = options(&[]);
        assert!(plain.contains(&"--unshare-all".to_owned()) && !plain.contains(&"--share-net".to_owned()));
        assert!(!plain.contains(&"--block-fd".to_owned()));
        let networked = options_for(&[], Some(Path::new("/w/j/network-ready")));
        assert!(networked.contains(&"--unshare-all".to_owned()) && !networked.contains(&"--share-net".to_owned()));
        assert!(networked.windows(2).any(|w| w == ["--block-fd", "0"]), "{networked:?}");
    }

    #[test]
    fn path_and_home_default_only_when_the_spec_does_not_set_them() {
        let defaults = setenvs(&options(&[("A", "1")]));
        assert!(defaults.contains(&("PATH".into(), SANDBOX_PATH.into())));
        assert!(defaults.contains(&("HOME".into(), "/job".into())));
        let set = setenvs(&options(&[("HOME", "/job/home"), ("PATH", "/bin")]));
        assert_eq!(set, vec![("HOME".into(), "/job/home".into()), ("PATH".into(), "/bin".into())]);
    }

    #[test]
    fn a_gofer_task_gets_the_cli_first_on_its_path() {
        let env = BTreeMap::from([("PATH".to_owned(), "/bin".to_owned())]);
        let command = ["gofer".to_owned()];
        let request = SandboxRequest { gofer: Some(Path::new("/srv/gofer")), ..request(&command, &env) };
        let opts = option_strings(&bwrap_options(&tools(), &request));
        let binds: Vec<&[String]> = opts.windows(3).filter(|w| w[0] == "--ro-bind").collect();
        assert!(binds.iter().any(|w| w[1] == "/srv/gofer" && w[2] == GOFER_PATH), "{opts:?}");
        // bwrap applies --setenv in order: the last PATH wins.
        let paths: Vec<(String, String)> = setenvs(&opts).into_iter().filter(|(k, _)| k == "PATH").collect();
        assert_eq!(paths.last().map(|(_, v)| v.as_str()), Some("/opt/gofer/bin:/bin"));
        assert!(!options(&[]).iter().any(|o| o.contains("/opt/gofer")));
    }

    #[test]
    fn env_values_stay_off_the_command_line() {
        let tools = tools();
        let env = BTreeMap::from([("SECRET".to_owned(), "hunter2".to_owned())]);
        let command = ["true".to_owned()];
        let sandbox = SandboxCommand::new(&tools, &LocalSchedulerConfig::default(), &request(&command, &env));
        assert!(!sandbox.args.iter().any(|a| a.to_string_lossy().contains("hunter2")));
        assert!(sandbox.options.windows(7).any(|w| w == b"hunter2"));
        assert!(sandbox.args.contains(&OsString::from("--as=4294967296")));
    }

    #[test]
    fn specs_that_cannot_reach_a_process_are_rejected() {
        let base = TaskSpec {
            job_id: "j".into(),
            tenant: "acme".parse().unwrap(),
            namespace: "team".parse().unwrap(),
            pipeline: "build".parse().unwrap(),
            run: gofer_core::id::RunId::from_i64(1),
            task: "test".parse().unwrap(),
            attempt: 1,
            image: "debian".into(),
            command: vec!["true".into()],
            entrypoint: None,
            env: BTreeMap::new(),
            timeout: std::time::Duration::from_secs(1),
            cpu_millis: 1000,
            memory_mb: 4096,
            disk_mb: 1024,
            registry_auth: None,
            allow_network: true,
            untrusted: false,
            node_pool: None,
            gofer_cli: false,
        };
        assert!(check_spec(&base).is_ok());
        let mut empty = base.clone();
        empty.command.clear();
        let mut nul = base.clone();
        nul.command.push("a\0b".into());
        let mut bad_key = base.clone();
        bad_key.env.insert("A=B".into(), "x".into());
        for spec in [empty, nul, bad_key] {
            assert!(matches!(check_spec(&spec), Err(SchedulerError::Rejected(_))), "{spec:?}");
        }
    }
}
