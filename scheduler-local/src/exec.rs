//! Exec (attach): a command run inside a running sandbox, joined with `nsenter`.
//!
//! The command is `sh` (joins the task's cgroups) → `prlimit` (the task's own limits) → `nsenter -t
//! <sandbox pid 1> -a -S 65534 -G 65534 --wdns=/job` → `/usr/bin/env -i <the request's environment>`
//! → the argv: the sandbox's own namespaces (mount, pid, network, user…), the same unprivileged
//! user with no capabilities, `/job` as the working directory, the task's memory, process and CPU
//! limits, and exactly the request's environment (plus the sandbox's `PATH`/`HOME` defaults).
//!
//! **The host-side processes (`sh`, `prlimit`, `nsenter`) get a fixed environment** (`PATH`
//! only): the request's environment is the task's, which a tenant controls (`LD_LIBRARY_PATH`, or
//! worse), so it is applied by `env` inside the sandbox, after the user and namespaces changed.
//! nsenter forks into the pid namespace, so when the task's pid 1 ends, the kernel kills the
//! command too.
//!
//! With a tty the command runs on a fresh pseudo-terminal (`pty-process` opens it) through
//! `setsid -w -c` inside the sandbox, so it leads a session of the sandbox's pid namespace with
//! the pty as its controlling terminal; otherwise on pipes. Either way one background
//! task owns the process: it feeds stdin, applies resizes, forwards output, and ends with
//! [`ExecOutput::Exited`] once the process exited and its output is drained. When the session's
//! input side is dropped, the process group is killed.

use std::ffi::OsString;
use std::os::fd::AsFd;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use gofer_core::scheduler::{
    BoxFuture, ExecInput, ExecInputSink, ExecOutput, ExecRequest, ExecSession, SchedulerError, TerminalSize,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::Child;
use tokio::sync::mpsc;

use crate::LocalScheduler;
use crate::sandbox::{self, HOST_PATH, SANDBOX_PATH, SANDBOX_UID};

/// How long output may still arrive after the process exited (a background process may keep the
/// pipes or the pty open for ever).
const DRAIN_WAIT: Duration = Duration::from_secs(2);

/// Messages buffered each way.
const CHANNEL_DEPTH: usize = 64;

/// The terminal size when the request gives none.
const DEFAULT_SIZE: TerminalSize = TerminalSize { cols: 80, rows: 24 };

/// The input side of a session: a channel to the task that owns the process.
struct ChannelSink(mpsc::Sender<ExecInput>);

impl ExecInputSink for ChannelSink {
    fn send(&self, input: ExecInput) -> BoxFuture<'_, Result<(), SchedulerError>> {
        Box::pin(async move {
            self.0.send(input).await.map_err(|_| SchedulerError::NotFound("the exec session has ended".into()))
        })
    }
}

impl LocalScheduler {
    /// Starts `request.command` inside the running job `request.job_id`.
    #[tracing::instrument(skip_all, fields(job_id = %request.job_id, tty = request.tty), err(level = "debug"))]
    pub(crate) async fn exec_job(&self, request: &ExecRequest) -> Result<ExecSession, SchedulerError> {
        if request.command.first().is_none_or(String::is_empty) {
            return Err(SchedulerError::Rejected("the command is empty".into()));
        }
        sandbox::check_process(&request.command, &request.env)?;
        let nsenter = self.tools.nsenter.clone().ok_or_else(|| {
            SchedulerError::Unavailable("nsenter not found on PATH: apt-get install -y util-linux".into())
        })?;
        let not_running = || SchedulerError::NotFound(format!("job {} is not running here", request.job_id));
        // Only jobs this process started: their pid 1 is known to be this job's, not a recycled pid.
        let job = self.jobs.lock().await.get(&request.job_id).cloned().ok_or_else(not_running)?;
        if job.observation().is_final() {
            return Err(not_running());
        }
        let init = job.init_pid().await.ok_or_else(not_running)?;
        if request.command[0].contains('=') {
            // `env` would take it for a variable.
            return Err(SchedulerError::Rejected("the command's program name contains '='".into()));
        }

        let limits = job.limits();
        let uid = SANDBOX_UID.to_string();
        let mut args: Vec<OsString> = vec!["-c".into(), JOIN_CGROUPS_SCRIPT.into(), "sh".into()];
        args.extend(limits.cgroup.iter().flat_map(|c| c.procs_files()).map(OsString::from));
        args.push("--".into());
        args.push(self.tools.prlimit.clone().into());
        args.extend(
            sandbox::ProcessLimits::for_task(limits.cgroup.is_some())
                .prlimit_args(&self.config, limits.memory_limit_mb),
        );
        args.extend([
            "--".into(),
            nsenter.into(),
            "-t".into(),
            init.as_raw_nonzero().to_string().into(),
            "-a".into(),
            "-S".into(),
            uid.clone().into(),
            "-G".into(),
            uid.into(),
            "--wdns=/job".into(),
            "--".into(),
        ]);
        let mut env = request.env.clone();
        env.entry("PATH".into()).or_insert_with(|| SANDBOX_PATH.into());
        env.entry("HOME".into()).or_insert_with(|| "/job".into());
        // Inside the sandbox: the task's environment reaches only the sandbox's processes.
        args.extend([ENV_PROGRAM.into(), "-i".into()]);
        args.extend(env.iter().map(|(key, value)| OsString::from(format!("{key}={value}"))));
        if request.tty {
            // Inside the sandbox, the command leads its own session with the pty as controlling
            // terminal: a shell must find its process groups in its own pid namespace (made the
            // leader outside, by us, it fails on exit restoring a group it cannot see).
            let setsid = self.tools.setsid.clone().ok_or_else(|| {
                SchedulerError::Unavailable("setsid not found on PATH: apt-get install -y util-linux".into())
            })?;
            args.extend([setsid.into(), "-w".into(), "-c".into(), "--".into()]);
        }
        args.extend(request.command.iter().map(OsString::from));
        let program = self.tools.sh.clone();

        let (input_tx, input_rx) = mpsc::channel(CHANNEL_DEPTH);
        let (output_tx, output_rx) = mpsc::channel(CHANNEL_DEPTH);
        let launch = Launch { program, args };
        if request.tty {
            let (pty, child) = launch.spawn_tty(request.size.unwrap_or(DEFAULT_SIZE))?;
            tokio::spawn(drive_tty(child, pty, input_rx, output_tx));
        } else {
            let child = launch.spawn_pipes()?;
            tokio::spawn(drive_pipes(child, input_rx, output_tx));
        }
        tracing::info!(pid = %init.as_raw_nonzero(), "exec started in the sandbox");
        let output = futures_util::stream::unfold(output_rx, |mut rx| async move { rx.recv().await.map(|o| (o, rx)) });
        Ok(ExecSession { input: Box::new(ChannelSink(input_tx)), output: Box::pin(output) })
    }
}

/// Joins the cgroups whose `cgroup.procs` files come before `--`, then runs what follows: the
/// shell's own pid moves, so every process it then becomes or starts is inside.
const JOIN_CGROUPS_SCRIPT: &str =
    r#"for f; do shift; [ "$f" = -- ] && break; echo $$ > "$f" || exit 125; done; exec "$@""#;

/// The sandbox's `env`, which applies the request's environment after nsenter.
const ENV_PROGRAM: &str = "/usr/bin/env";

/// What to spawn on the host: the program and its arguments, with [`HOST_PATH`] as the whole
/// environment.
struct Launch {
    program: PathBuf,
    args: Vec<OsString>,
}

fn spawn_error(e: impl std::fmt::Display) -> SchedulerError {
    SchedulerError::Unavailable(format!("starting the exec process: {e}"))
}

impl Launch {
    fn spawn_pipes(self) -> Result<Child, SchedulerError> {
        tokio::process::Command::new(&self.program)
            .args(&self.args)
            .env_clear()
            .env("PATH", HOST_PATH)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group, so ending the session can reach what nsenter forked.
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(spawn_error)
    }

    fn spawn_tty(self, size: TerminalSize) -> Result<(pty_process::Pty, Child), SchedulerError> {
        let (pty, pts) = pty_process::open().map_err(spawn_error)?;
        pty.resize(pty_size(size)).map_err(spawn_error)?;
        let stdio = || pts.as_fd().try_clone_to_owned().map(Stdio::from).map_err(spawn_error);
        // The terminal on stdin, stdout and stderr; `setsid -c` inside makes it the controlling one.
        let child = tokio::process::Command::new(&self.program)
            .args(&self.args)
            .env_clear()
            .env("PATH", HOST_PATH)
            .stdin(stdio()?)
            .stdout(stdio()?)
            .stderr(stdio()?)
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(spawn_error)?;
        // Only the child holds the terminal now: reads answer EIO once it and its children are gone.
        drop(pts);
        Ok((pty, child))
    }
}

fn pty_size(size: TerminalSize) -> pty_process::Size {
    pty_process::Size::new(size.rows.max(1), size.cols.max(1))
}

/// The exit code of a status: the code, or 128 + the signal that killed it.
fn exit_code(status: ExitStatus) -> i32 {
    status.code().or_else(|| status.signal().map(|s| 128 + s)).unwrap_or(-1)
}

/// Kills what the session started: its whole process group (nsenter and the command it forked).
fn kill_group(child: &Child) {
    if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()).and_then(rustix::process::Pid::from_raw) {
        // The group may be gone already; nothing else to do then.
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
    }
}

/// Forwards everything `reader` produces as `wrap(bytes)` until EOF or an error (a pty answers
/// EIO once the terminal's last user closed it).
async fn forward(
    mut reader: impl AsyncRead + Unpin,
    output: mpsc::Sender<ExecOutput>,
    wrap: fn(Vec<u8>) -> ExecOutput,
) {
    let mut buffer = vec![0_u8; 16 * 1024];
    loop {
        match reader.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if output.send(wrap(buffer[..n].to_vec())).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Where stdin goes and how resizes apply.
trait Terminal {
    async fn write(&mut self, bytes: &[u8]) -> std::io::Result<()>;
    async fn close(&mut self);
    fn resize(&self, size: TerminalSize);
}

/// Pipes: stdin until closed; no terminal to resize.
struct Pipe(Option<tokio::process::ChildStdin>);

impl Terminal for Pipe {
    async fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match &mut self.0 {
            Some(stdin) => stdin.write_all(bytes).await,
            None => Ok(()),
        }
    }
    async fn close(&mut self) {
        self.0 = None;
    }
    fn resize(&self, _size: TerminalSize) {}
}

/// A pty: input goes to the terminal; end of input is the terminal's EOF character (Ctrl-D).
struct Pty(pty_process::OwnedWritePty);

impl Terminal for Pty {
    async fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.0.write_all(bytes).await
    }
    async fn close(&mut self) {
        // Ctrl-D at the start of a line: what a terminal's user types to end input.
        let _ = self.0.write_all(&[0x04]).await;
    }
    fn resize(&self, size: TerminalSize) {
        if let Err(e) = self.0.resize(pty_size(size)) {
            tracing::debug!(error = %e, "could not resize the exec terminal");
        }
    }
}

/// Runs the session until the process exits: input in, then output drained, then the exit.
async fn run(
    mut child: Child,
    mut terminal: impl Terminal,
    mut input: mpsc::Receiver<ExecInput>,
    output: mpsc::Sender<ExecOutput>,
    readers: Vec<tokio::task::JoinHandle<()>>,
) {
    let mut input_open = true;
    let status = loop {
        tokio::select! {
            status = child.wait() => break status,
            message = input.recv(), if input_open => match message {
                Some(ExecInput::Stdin(bytes)) => {
                    if let Err(e) = terminal.write(&bytes).await {
                        tracing::debug!(error = %e, "exec stdin closed by the command");
                        terminal.close().await;
                    }
                }
                Some(ExecInput::CloseStdin) => terminal.close().await,
                Some(ExecInput::Resize(size)) => terminal.resize(size),
                None => {
                    // The client went away: end the command rather than leave it in the sandbox.
                    input_open = false;
                    kill_group(&child);
                }
            },
        }
    };
    for mut reader in readers {
        if tokio::time::timeout(DRAIN_WAIT, &mut reader).await.is_err() {
            // Ending the reader closes our end of the pipe or pty: what still writes to it gets
            // SIGPIPE, or SIGHUP for a terminal's session.
            tracing::debug!("exec output still open after the command exited; not waiting for it");
            reader.abort();
        }
    }
    let last = match status {
        Ok(status) => ExecOutput::Exited(exit_code(status)),
        Err(e) => ExecOutput::Failed(format!("waiting for the exec process: {e}")),
    };
    let _ = output.send(last).await;
}

async fn drive_pipes(mut child: Child, input: mpsc::Receiver<ExecInput>, output: mpsc::Sender<ExecOutput>) {
    let mut readers = Vec::new();
    if let Some(stdout) = child.stdout.take() {
        readers.push(tokio::spawn(forward(stdout, output.clone(), ExecOutput::Stdout)));
    }
    if let Some(stderr) = child.stderr.take() {
        readers.push(tokio::spawn(forward(stderr, output.clone(), ExecOutput::Stderr)));
    }
    let stdin = child.stdin.take();
    run(child, Pipe(stdin), input, output, readers).await;
}

async fn drive_tty(
    child: Child,
    pty: pty_process::Pty,
    input: mpsc::Receiver<ExecInput>,
    output: mpsc::Sender<ExecOutput>,
) {
    let (reader, writer) = pty.into_split();
    let readers = vec![tokio::spawn(forward(reader, output.clone(), ExecOutput::Stdout))];
    run(child, Pty(writer), input, output, readers).await;
}
