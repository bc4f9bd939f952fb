//! The `gofer` command line: every API resource as a command, live run views, timelines and
//! debug dumps. `main.rs` parses the arguments and calls [`run`] (or starts the service).

use std::process::ExitCode;

use gofer_core::{NamespaceId, PipelineId, RunId, TaskId};

pub mod args;
mod attach;
mod commands;
mod confirm;
mod output;
mod progress;
mod settings;
mod timeline;
mod watch;

pub use args::{Cli, Command};
use args::{Global, Output};

/// Exit code: a run that ended unsuccessful (with `--watch` or `run watch`).
pub const EXIT_RUN_FAILED: u8 = 1;
/// Exit code: bad arguments, missing settings, an invalid input file (clap uses 2 as well).
pub const EXIT_USAGE: u8 = 2;
/// Exit code: the server refused the request or could not be reached.
pub const EXIT_API: u8 = 3;

/// Why a command did not succeed; each kind has its own exit code.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The command line or an input was wrong.
    #[error("{0}")]
    Usage(String),
    /// The API answered with a problem, or could not be reached.
    #[error(transparent)]
    Api(#[from] gofer_sdk::Error),
    /// A local file could not be read or written.
    #[error("{0}")]
    Io(String),
    /// The attached command ended with this exit code (nothing to print).
    #[error("the command exited with code {0}")]
    CommandExited(i32),
    /// The server ended an attach session with an error.
    #[error("{code}: {detail}")]
    Attach {
        /// Stable code (`task_not_running`, …).
        code: String,
        /// What went wrong.
        detail: String,
    },
    /// The watched run ended without success.
    #[error("run {run} ended {status}")]
    RunUnsuccessful {
        /// The run.
        run: RunId,
        /// How it ended.
        status: gofer_core::RunStatus,
    },
}

impl CliError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) | CliError::Io(_) => EXIT_USAGE,
            CliError::Api(_) | CliError::Attach { .. } => EXIT_API,
            // Exit codes are a byte; a signal death (128 + n) fits, anything else wraps like a shell's.
            CliError::CommandExited(code) => u8::try_from(code.rem_euclid(256)).unwrap_or(1),
            CliError::RunUnsuccessful { .. } => EXIT_RUN_FAILED,
        }
    }
}

impl From<gofer_core::IdError> for CliError {
    fn from(e: gofer_core::IdError) -> Self {
        CliError::Usage(e.to_string())
    }
}

/// What every command needs: a client, the namespace (when given) and the output format.
pub(crate) struct Ctx {
    pub client: gofer_sdk::Client,
    pub namespace: Option<String>,
    pub output: Output,
}

impl Ctx {
    /// The namespace pipeline commands work in.
    pub fn ns(&self) -> Result<NamespaceId, CliError> {
        let ns = self.namespace.as_deref().ok_or_else(|| {
            CliError::Usage("no namespace: pass --namespace, set GOFER_NAMESPACE, or `gofer login --namespace`".into())
        })?;
        Ok(NamespaceId::parse(ns)?)
    }

    /// Namespace and pipeline.
    pub fn pipeline(&self, pipeline: &str) -> Result<(NamespaceId, PipelineId), CliError> {
        Ok((self.ns()?, PipelineId::parse(pipeline)?))
    }

    /// Namespace, pipeline and run; the run `latest` is the pipeline's newest run.
    pub async fn run(&self, pipeline: &str, run: &str) -> Result<(NamespaceId, PipelineId, RunId), CliError> {
        let (ns, p) = self.pipeline(pipeline)?;
        let r = self.run_id(&ns, &p, run).await?;
        Ok((ns, p, r))
    }

    /// A run id as typed: a number, or `latest` for the pipeline's newest run (runs list newest
    /// first).
    pub async fn run_id(&self, ns: &NamespaceId, p: &PipelineId, run: &str) -> Result<RunId, CliError> {
        if run != "latest" {
            return Ok(RunId::parse(run)?);
        }
        let page = self.client.list_runs(ns, p, gofer_sdk::PageOptions { limit: 1, cursor: None }).await?;
        page.items
            .first()
            .map(|newest| newest.id)
            .ok_or_else(|| CliError::Usage(format!("latest: pipeline {p} has no runs yet")))
    }

    /// Namespace, pipeline, run (`latest` too) and task.
    pub async fn task(
        &self,
        pipeline: &str,
        run: &str,
        task: &str,
    ) -> Result<(NamespaceId, PipelineId, RunId, TaskId), CliError> {
        let (ns, p, r) = self.run(pipeline, run).await?;
        Ok((ns, p, r, TaskId::parse(task)?))
    }

    /// Whether tables (and live views) are wanted rather than JSON.
    pub fn human(&self) -> bool {
        self.output == Output::Table
    }
}

/// A problem's detail with the API's query strings said as this CLI's flags: a user of `gofer`
/// types `--force`, not `?force=true`.
fn in_cli_words(detail: &str) -> String {
    [("?force=true", "--force"), ("?delete_runs=true", "--delete-runs")]
        .iter()
        .fold(detail.to_owned(), |text, (query, flag)| text.replace(query, flag))
}

/// Why a request got no answer, in words a user can act on, naming the server's URL; the
/// transport's own chain of causes follows in parentheses.
fn unreachable(e: &reqwest::Error) -> String {
    let url = e.url().map_or_else(|| "the server".to_owned(), |u| format!("{}://{}", u.scheme(), u.authority()));
    let chain = gofer_core::with_sources(e);
    let lower = chain.to_lowercase();
    let cause = if lower.contains("connection refused") {
        "connection refused: is the server running, and is this its address and port?"
    } else if lower.contains("dns error") || lower.contains("failed to lookup address") {
        "the host name does not resolve (DNS)"
    } else if lower.contains("certificate") || lower.contains("tls") || lower.contains("ssl") {
        "the TLS handshake failed: is it an https server with a certificate this machine trusts?"
    } else if e.is_timeout() {
        "the request timed out"
    } else if e.is_decode() || e.is_body() {
        "the answer could not be read"
    } else {
        "the request failed"
    };
    format!("cannot reach {url}: {cause} ({chain})")
}

/// Runs a client command (anything but `service start`) and answers the process exit code,
/// after printing the error, if any, to stderr.
pub async fn run(global: Global, command: Command) -> ExitCode {
    match dispatch(global, command).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            match &e {
                // The live view already said how the run ended.
                CliError::RunUnsuccessful { .. } | CliError::CommandExited(_) => {}
                CliError::Api(gofer_sdk::Error::Api(problem)) => {
                    eprintln!("error: {} ({}): {}", problem.code, problem.status, in_cli_words(&problem.detail))
                }
                CliError::Api(gofer_sdk::Error::Transport(e)) => eprintln!("error: {}", unreachable(e)),
                other => eprintln!("error: {other}"),
            }
            ExitCode::from(e.exit_code())
        }
    }
}

async fn dispatch(global: Global, command: Command) -> Result<(), CliError> {
    let settings = settings::Settings::resolve(&global)?;
    if let Command::Login = command {
        return commands::login(&settings, &global).await;
    }
    // A trial is how one gets a token: it needs only the host.
    let client = if let Command::Trial = command { settings.anonymous_client()? } else { settings.client()? };
    let ctx = Ctx { client, namespace: settings.namespace.clone(), output: global.output };
    commands::dispatch(&ctx, command).await
}
