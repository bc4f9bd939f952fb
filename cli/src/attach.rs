//! `gofer attach`: a command inside a running task over the attach websocket. With a terminal on
//! stdin, the local terminal goes into raw mode (keys are passed through as typed and echoed once,
//! by the remote terminal) and its size, then every resize, is sent along.

use std::io::{IsTerminal, Read, Write};

use gofer_sdk::{AttachEvent, AttachOptions};
use tokio::sync::mpsc;

use crate::{CliError, Ctx};

/// Puts the terminal in raw mode until dropped.
struct RawMode;

impl RawMode {
    fn enable() -> Result<Self, CliError> {
        crossterm::terminal::enable_raw_mode()
            .map_err(|e| CliError::Io(format!("setting the terminal to raw mode: {e}")))?;
        Ok(RawMode)
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = crossterm::terminal::disable_raw_mode();
    }
}

/// Reads stdin on a plain thread (a blocking read cannot be cancelled; the thread ends with the
/// process) and hands over chunks; `None` is end of input.
fn read_stdin() -> mpsc::Receiver<Option<Vec<u8>>> {
    let (tx, rx) = mpsc::channel(16);
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let mut buffer = [0_u8; 8192];
        loop {
            match stdin.read(&mut buffer) {
                Ok(0) | Err(_) => {
                    let _ = tx.blocking_send(None);
                    return;
                }
                Ok(n) => {
                    if tx.blocking_send(Some(buffer[..n].to_vec())).is_err() {
                        return;
                    }
                }
            }
        }
    });
    rx
}

fn write_out(mut out: impl Write, bytes: &[u8]) -> Result<(), CliError> {
    match out.write_all(bytes).and_then(|()| out.flush()) {
        // The reader of stdout went away: end quietly (`crate::output::stdout_failed`).
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => crate::output::stdout_failed(&e),
        other => other.map_err(|e| CliError::Io(format!("writing output: {e}"))),
    }
}

/// `gofer attach <pipeline> <run> <task> [-- command…]`.
pub(crate) async fn attach(
    ctx: &Ctx,
    pipeline: &str,
    run: &str,
    task: &str,
    command: Vec<String>,
    no_tty: bool,
) -> Result<(), CliError> {
    let (ns, p, r, t) = ctx.task(pipeline, run, task).await?;
    let tty = !no_tty && std::io::stdin().is_terminal();
    let size = if tty { crossterm::terminal::size().ok() } else { None };
    let options = AttachOptions { command, tty, size };
    let (mut writer, mut reader) = ctx.client.attach(&ns, &p, r, &t, &options).await?;
    let _raw = if tty { Some(RawMode::enable()?) } else { None };
    let mut stdin = read_stdin();
    let mut stdin_open = true;
    let mut resized = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change())
        .map_err(|e| CliError::Io(format!("watching the terminal size: {e}")))?;
    loop {
        tokio::select! {
            event = reader.next() => match event {
                Some(Ok(AttachEvent::Stdout(bytes))) => write_out(std::io::stdout().lock(), &bytes)?,
                Some(Ok(AttachEvent::Stderr(bytes))) => write_out(std::io::stderr().lock(), &bytes)?,
                Some(Ok(AttachEvent::Exit(code))) => {
                    return if code == 0 { Ok(()) } else { Err(CliError::CommandExited(code)) };
                }
                Some(Ok(AttachEvent::Error { code, detail })) => return Err(CliError::Attach { code, detail }),
                Some(Err(e)) => return Err(e.into()),
                None => {
                    return Err(CliError::Attach {
                        code: "connection_closed".into(),
                        detail: "the server closed the session without an exit code".into(),
                    });
                }
            },
            chunk = stdin.recv(), if stdin_open => match chunk.flatten() {
                Some(bytes) => writer.stdin(&bytes).await?,
                None => {
                    stdin_open = false;
                    writer.close_stdin().await?;
                }
            },
            _ = resized.recv(), if tty => {
                if let Ok((cols, rows)) = crossterm::terminal::size() {
                    writer.resize(cols, rows).await?;
                }
            }
        }
    }
}
