//! The start-up probe: one throwaway sandbox proving this host can run them.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::Stdio;

use crate::error::LocalSchedulerError;
use crate::process;
use crate::sandbox::{HOST_PATH, JobMount, ProcessLimits, SANDBOX_UID, SandboxCommand, SandboxRequest, Tools};
use crate::settings::LocalSchedulerConfig;

/// Runs `true` in a sandbox with `work_dir` at `/job`: proves that bwrap runs, user namespaces work
/// and (as root) that uid 65534 can reach the work directory. Blocks for a few milliseconds.
pub(crate) fn probe(tools: &Tools, config: &LocalSchedulerConfig, work_dir: &Path) -> Result<(), LocalSchedulerError> {
    let command = ["true".to_owned()];
    let env = BTreeMap::new();
    let sandbox = SandboxCommand::new(
        tools,
        config,
        &SandboxRequest {
            job: JobMount::ReadOnly(work_dir),
            // The info JSON comes back through the pipe: it names the probe's pid 1, to reap.
            info_path: Path::new("/dev/stdout"),
            command: &command,
            env: &env,
            memory_limit_mb: config.settings.memory_limit_mb,
            disk_limit_mb: 64,
            // The probe runs `true`: only the host-wide backstop, not a task's limit (other
            // sandboxes of the same uid may already hold that many processes).
            process_limits: ProcessLimits::Backstop,
            network_ready: None,
            gofer: None,
        },
    );
    let unusable = |detail: String| LocalSchedulerError::SandboxUnusable { detail };
    let mut child = std::process::Command::new(&sandbox.program)
        .args(&sandbox.args)
        .env_clear()
        .env("PATH", HOST_PATH)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| unusable(format!("could not run {}: {e}", sandbox.program.display())))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A failed write shows up as bwrap's own error below.
        let _ = stdin.write_all(&sandbox.options);
    }
    let output = child.wait_with_output().map_err(|e| unusable(format!("waiting for the probe sandbox: {e}")))?;
    if let Some(init) = process::init_pid_from_info(&output.stdout) {
        process::reap_blocking(init);
    }
    if output.status.success() {
        return Ok(());
    }
    let mut detail =
        format!("a probe sandbox failed ({}): {}", output.status, String::from_utf8_lossy(&output.stderr).trim());
    if tools.privileged() {
        detail.push_str(&format!(
            " (as root, bwrap runs as uid {SANDBOX_UID}, which must be able to enter {}: every parent \
             directory needs o+x)",
            work_dir.display()
        ));
    }
    Err(unusable(detail))
}
