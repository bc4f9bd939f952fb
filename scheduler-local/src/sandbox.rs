//! The sandbox command line: `sh` (to open fds 3 and 4) → `setpriv` (when root) → `prlimit` → `bwrap`.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use gofer_core::scheduler::{SchedulerError, TaskSpec};

use crate::{LocalSchedulerConfig, LocalSchedulerError};

/// The uid and gid the task runs as inside the sandbox (and, when the server is root, on the host).
pub(crate) const SANDBOX_UID: u32 = 65534;

/// `PATH` inside the sandbox unless the spec sets one.
pub(crate) const SANDBOX_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// `PATH` for the wrapper processes outside the sandbox; the tools themselves are run by absolute path.
pub(crate) const HOST_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The wrapper's script. `exec` keeps one process, so the pid tokio holds is bwrap's own.
/// fd 3 is bwrap's `--info-fd` (tokio cannot pass extra fds without `pre_exec`, which is unsafe);
/// fd 4 carries bwrap's options through `--args 4`, so `--setenv` values (task secrets) never appear
/// in the host's world-readable `/proc/<pid>/cmdline`. The task's stdin becomes /dev/null.
const WRAPPER_SCRIPT: &str = r#"info=$1; shift; exec "$@" 3>"$info" 4<&0 </dev/null"#;

/// Absolute paths of the programs a sandbox needs, resolved once at start-up.
#[derive(Debug, Clone)]
pub(crate) struct Tools {
    sh: PathBuf,
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

/// What one sandbox runs and where.
pub(crate) struct SandboxRequest<'a> {
    /// Host directory mounted read-write at `/job`.
    pub job_dir: &'a Path,
    /// Host file receiving bwrap's `--info-fd` JSON.
    pub info_path: &'a Path,
    /// The argv run inside: the entrypoint (if any) followed by the command.
    pub command: &'a [String],
    pub env: &'a BTreeMap<String, String>,
    /// Address-space limit for this task, in MiB.
    pub memory_limit_mb: u64,
    /// Whether the tenant's plan lets this task reach the network; the host network is shared
    /// only when the scheduler's config allows it too (never for trials: their plan does not).
    pub allow_network: bool,
    /// For a `kind: gofer` task: the host's `gofer` binary, mounted at `/opt/gofer/bin/gofer`.
    pub gofer: Option<&'a Path>,
}

impl SandboxCommand {
    /// Builds the full command line for one sandbox.
    pub(crate) fn new(tools: &Tools, config: &LocalSchedulerConfig, request: &SandboxRequest<'_>) -> Self {
        let mut args: Vec<OsString> = vec!["-c".into(), WRAPPER_SCRIPT.into(), "sh".into()];
        args.push(request.info_path.into());
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
        args.push(format!("--nproc={}", config.max_processes).into());
        args.push(format!("--as={}", request.memory_limit_mb.saturating_mul(1024 * 1024)).into());
        args.push("--".into());
        args.push(tools.bwrap.clone().into());
        args.extend(["--args", "4", "--"].map(OsString::from));
        args.extend(request.command.iter().map(OsString::from));
        Self { program: tools.sh.clone(), args, options: bwrap_options(config, request) }
    }
}

/// bwrap's options, NUL-separated for `--args`.
fn bwrap_options(config: &LocalSchedulerConfig, request: &SandboxRequest<'_>) -> Vec<u8> {
    let mut opts: Vec<&[u8]> = vec![b"--unshare-all"];
    if config.share_network && request.allow_network {
        opts.push(b"--share-net");
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
    opts.extend([
        b"--ro-bind".as_slice(),
        b"/etc",
        b"/etc",
        b"--proc",
        b"/proc",
        b"--dev",
        b"/dev",
        b"--tmpfs",
        b"/tmp",
        b"--bind",
        request.job_dir.as_os_str().as_bytes(),
        b"/job",
        b"--chdir",
        b"/job",
        b"--hostname",
        b"gofer-sandbox",
        b"--info-fd",
        b"3",
    ]);
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

    fn options(config: &LocalSchedulerConfig, env: &[(&str, &str)]) -> Vec<String> {
        options_for(config, env, true)
    }

    /// A request for `command` with `env`, network allowed and no gofer CLI; tests change fields.
    fn request<'a>(command: &'a [String], env: &'a BTreeMap<String, String>) -> SandboxRequest<'a> {
        SandboxRequest {
            job_dir: Path::new("/w/j/job"),
            info_path: Path::new("/w/j/info.json"),
            command,
            env,
            memory_limit_mb: 4096,
            allow_network: true,
            gofer: None,
        }
    }

    /// bwrap's options (NUL-separated) as strings.
    fn option_strings(options: &[u8]) -> Vec<String> {
        options.split(|b| *b == 0).filter(|s| !s.is_empty()).map(|s| String::from_utf8_lossy(s).into_owned()).collect()
    }

    fn options_for(config: &LocalSchedulerConfig, env: &[(&str, &str)], allow_network: bool) -> Vec<String> {
        let env: BTreeMap<String, String> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let command = ["true".to_owned()];
        option_strings(&bwrap_options(config, &SandboxRequest { allow_network, ..request(&command, &env) }))
    }

    fn setenvs(opts: &[String]) -> Vec<(String, String)> {
        opts.windows(3).filter(|w| w[0] == "--setenv").map(|w| (w[1].clone(), w[2].clone())).collect()
    }

    #[test]
    fn the_network_is_shared_only_when_configured() {
        let mut config = LocalSchedulerConfig::default();
        assert!(!options(&config, &[]).contains(&"--share-net".to_owned()));
        config.share_network = true;
        assert!(options(&config, &[]).contains(&"--share-net".to_owned()));
        // A plan without network (the trial plan) keeps the task on loopback whatever the config.
        assert!(!options_for(&config, &[], false).contains(&"--share-net".to_owned()));
    }

    #[test]
    fn path_and_home_default_only_when_the_spec_does_not_set_them() {
        let config = LocalSchedulerConfig::default();
        let defaults = setenvs(&options(&config, &[("A", "1")]));
        assert!(defaults.contains(&("PATH".into(), SANDBOX_PATH.into())));
        assert!(defaults.contains(&("HOME".into(), "/job".into())));
        let set = setenvs(&options(&config, &[("HOME", "/job/home"), ("PATH", "/bin")]));
        assert_eq!(set, vec![("HOME".into(), "/job/home".into()), ("PATH".into(), "/bin".into())]);
    }

    #[test]
    fn a_gofer_task_gets_the_cli_first_on_its_path() {
        let env = BTreeMap::from([("PATH".to_owned(), "/bin".to_owned())]);
        let command = ["gofer".to_owned()];
        let request = SandboxRequest { gofer: Some(Path::new("/srv/gofer")), ..request(&command, &env) };
        let opts = option_strings(&bwrap_options(&LocalSchedulerConfig::default(), &request));
        let binds: Vec<&[String]> = opts.windows(3).filter(|w| w[0] == "--ro-bind").collect();
        assert!(binds.iter().any(|w| w[1] == "/srv/gofer" && w[2] == GOFER_PATH), "{opts:?}");
        // bwrap applies --setenv in order: the last PATH wins.
        let paths: Vec<(String, String)> = setenvs(&opts).into_iter().filter(|(k, _)| k == "PATH").collect();
        assert_eq!(paths.last().map(|(_, v)| v.as_str()), Some("/opt/gofer/bin:/bin"));
        assert!(!options(&LocalSchedulerConfig::default(), &[]).iter().any(|o| o.contains("/opt/gofer")));
    }

    #[test]
    fn env_values_stay_off_the_command_line() {
        let tools = Tools {
            sh: "/bin/sh".into(),
            nsenter: None,
            setsid: None,
            setpriv: None,
            prlimit: "/usr/bin/prlimit".into(),
            bwrap: "/usr/bin/bwrap".into(),
            gofer: None,
        };
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
