//! The command line, as clap parses it. `docs/cli.md` is checked against this (see cli/tests).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Gofer: a hosted, multi-tenant pipeline runner.
///
/// Exit codes: 0 success; 1 a run that ended unsuccessful (`--watch`, `run watch`); 2 a usage
/// error (bad arguments, missing host, token or namespace, an invalid config file); 3 an API
/// error (the server refused the request or could not be reached).
#[derive(Debug, Parser)]
#[command(name = "gofer", version, about, long_about = None)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Where and as whom to connect, and how to print.
#[derive(Debug, Clone, Args)]
pub struct Global {
    /// The server's URL [env: GOFER_HOST, then GOFER_API_URL; default: the login config].
    #[arg(long, global = true)]
    pub host: Option<String>,
    /// The API token [env: GOFER_TOKEN, then GOFER_API_TOKEN; default: the login config].
    #[arg(long, global = true)]
    pub token: Option<String>,
    /// The namespace of pipeline commands [env: GOFER_NAMESPACE; default: the login config, then
    /// GOFER_NAMESPACE_ID].
    #[arg(long, short = 'n', global = true)]
    pub namespace: Option<String>,
    /// `table` for people, `json` for scripts (exactly the API's objects; lists as arrays).
    #[arg(long, short = 'o', global = true, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    /// The CLI config file `gofer login` writes [env: GOFER_CLI_CONFIG; default:
    /// $XDG_CONFIG_HOME/gofer/config.json or ~/.config/gofer/config.json].
    #[arg(long, global = true, env = "GOFER_CLI_CONFIG")]
    pub cli_config: Option<PathBuf>,
}

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Aligned columns.
    Table,
    /// The API's JSON objects, pretty-printed.
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run and manage the Gofer service.
    Service {
        #[command(subcommand)]
        command: ServiceCommand,
    },
    /// Check --host and --token, and save them (and --namespace) to the CLI config file.
    Login,
    /// Print the shell completion script: `gofer completion bash > ~/.local/share/bash-completion/completions/gofer`.
    Completion {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Show who the token is.
    Whoami,
    /// Tenants (operator tokens).
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// Namespaces.
    #[command(subcommand)]
    Namespace(NamespaceCommand),
    /// API tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Plans (operator tokens).
    #[command(subcommand)]
    Plan(PlanCommand),
    /// Pipelines, their config versions and deployments.
    #[command(subcommand)]
    Pipeline(PipelineCommand),
    /// Runs of a pipeline.
    #[command(subcommand)]
    Run(RunCommand),
    /// Task executions of a run.
    #[command(subcommand)]
    Task(TaskCommand),
    /// A task execution's log.
    Logs {
        pipeline: String,
        run: String,
        task: String,
        /// Keep streaming as the task writes, until it completes.
        #[arg(long, short = 'f')]
        follow: bool,
        /// An earlier attempt's log (default: the current attempt).
        #[arg(long)]
        attempt: Option<u32>,
    },
    /// Run a command (default: a shell) inside a running task. With a terminal on stdin the
    /// command gets a terminal of the same size (raw mode: keys go to the task, Ctrl-D ends a
    /// shell); otherwise stdin is piped. Exits with the command's exit code (3 on an API error).
    Attach {
        pipeline: String,
        run: String,
        task: String,
        /// Never allocate a terminal, even when stdin is one.
        #[arg(long, short = 'T')]
        no_tty: bool,
        /// The command and its arguments, after `--` (default: /bin/sh).
        #[arg(last = true)]
        command: Vec<String>,
    },
    /// The tenant's events.
    #[command(subcommand)]
    Event(EventCommand),
    /// Secrets: a pipeline's (with --pipeline) or the tenant's global secrets. Values are write-only.
    #[command(subcommand)]
    Secret(SecretCommand),
    /// Objects of a pipeline, or of a run (with --run).
    #[command(subcommand)]
    Object(ObjectCommand),
    /// Task-seconds used, per day or per pipeline, and this month's total against the plan.
    Usage {
        /// Start of the period, inclusive: RFC 3339 or YYYY-MM-DD (default: start of this month).
        #[arg(long)]
        from: Option<String>,
        /// End of the period, exclusive: RFC 3339 or YYYY-MM-DD (default: now).
        #[arg(long)]
        to: Option<String>,
        /// Sum per `day` or per `pipeline`.
        #[arg(long, value_enum, default_value_t = GroupBy::Day)]
        group_by: GroupBy,
        /// Another tenant's usage (operator tokens).
        #[arg(long)]
        tenant: Option<String>,
        /// Print CSV (with --tenant).
        #[arg(long, requires = "tenant")]
        csv: bool,
    },
    /// Blocked client addresses (operator tokens).
    #[command(subcommand)]
    IpBlock(IpBlockCommand),
    /// Start an anonymous trial (no token needed); prints the trial tenant's token once.
    Trial,
    /// Debugging aids.
    #[command(subcommand)]
    Debug(DebugCommand),
}

#[derive(Debug, Subcommand)]
pub enum ServiceCommand {
    /// Start the API server and engine (configured by --config and GOFER_* variables; see docs/config.md).
    Start {
        /// A TOML config file; GOFER_* environment variables override it.
        #[arg(long, env = "GOFER_CONFIG")]
        config: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// Every tenant.
    List,
    /// One tenant.
    Get { tenant: String },
    /// Create a tenant; prints its first admin token once.
    Create {
        tenant: String,
        /// Display name (default: the id).
        #[arg(long)]
        name: Option<String>,
    },
    /// Delete a tenant and everything it owns (asks for its id on a terminal; else needs --yes).
    Delete {
        tenant: String,
        #[command(flatten)]
        confirm: Confirm,
    },
    /// Refuse the tenant's tokens and stop its runs.
    Suspend { tenant: String },
    /// Accept the tenant's tokens again.
    Resume { tenant: String },
    /// Give the tenant a plan.
    SetPlan { tenant: String, plan: String },
    /// Move a trial tenant to a paid plan.
    Convert { tenant: String, plan: String },
}

#[derive(Debug, Subcommand)]
pub enum NamespaceCommand {
    /// Every namespace the token sees.
    List,
    /// One namespace.
    Get { namespace: String },
    /// Create a namespace.
    Create {
        namespace: String,
        /// Display name (default: the id).
        #[arg(long)]
        name: Option<String>,
        #[arg(long, default_value = "")]
        description: String,
    },
    /// Rename or describe a namespace.
    Update {
        namespace: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        description: Option<String>,
    },
    /// Delete a namespace with every pipeline, run, log, secret and object in it (asks for its id
    /// on a terminal; else needs --yes).
    Delete {
        namespace: String,
        /// Cancel its live runs first instead of refusing.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        confirm: Confirm,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Tokens the caller may see.
    List,
    /// One token.
    Get { id: String },
    /// Create a token; prints its secret once.
    Create {
        /// `tenant` or `operator` (default: the caller's kind).
        #[arg(long)]
        kind: Option<String>,
        /// `admin`, `write`, `read` (tenant; default read) or `operator`.
        #[arg(long)]
        role: Option<String>,
        /// Limit to namespaces matching this glob (repeatable).
        #[arg(long = "namespace-glob")]
        namespaces: Vec<String>,
        /// Only usable from this network (CIDR, repeatable).
        #[arg(long = "cidr")]
        allowed_cidrs: Vec<String>,
        #[arg(long, default_value = "")]
        description: String,
        #[arg(long)]
        expires_in_days: Option<u32>,
    },
    /// Revoke a token.
    Revoke { id: String },
}

#[derive(Debug, Subcommand)]
pub enum PlanCommand {
    /// Every plan.
    List,
    /// One plan.
    Get { plan: String },
    /// Create a plan from a JSON file (`-`: stdin).
    Create {
        #[arg(long, short = 'f')]
        file: String,
    },
    /// Replace a plan from a JSON file (`-`: stdin).
    Update {
        #[arg(long, short = 'f')]
        file: String,
    },
    /// Delete a plan.
    Delete { plan: String },
}

#[derive(Debug, Subcommand)]
pub enum PipelineCommand {
    /// Register a config version from a JSON file (`-`: stdin); it goes live unless --no-deploy.
    Register {
        pipeline: String,
        #[arg(long, short = 'f')]
        file: String,
        /// Only register the version; deploy it later with `pipeline deploy`.
        #[arg(long)]
        no_deploy: bool,
    },
    /// Pipelines of the namespace.
    List,
    /// One pipeline.
    Get { pipeline: String },
    /// Config versions of a pipeline.
    Versions { pipeline: String },
    /// One config version, with its config.
    Config { pipeline: String, version: i64 },
    /// What changed from version <a> to version <b>.
    Diff { pipeline: String, a: i64, b: i64 },
    /// Make a version live at once.
    Deploy { pipeline: String, version: i64 },
    /// Send a share of new runs to a version, promoting or rolling back on their failure rate.
    Canary {
        pipeline: String,
        version: i64,
        /// Share of new runs sent to the version, in percent.
        #[arg(long, default_value_t = 10)]
        percent: u32,
        /// Highest failure rate that still promotes it (0.0 to 1.0; default 0: any failure rolls back).
        #[arg(long)]
        max_failure_rate: Option<f64>,
        /// Completed canary runs needed before it is promoted (default 10).
        #[arg(long)]
        min_runs: Option<u32>,
    },
    /// Deployments of a pipeline.
    Deployments { pipeline: String },
    /// One deployment.
    Deployment { pipeline: String, deployment: String },
    /// Stop a running canary.
    Rollback {
        pipeline: String,
        deployment: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Refuse new runs.
    Disable { pipeline: String },
    /// Accept new runs again.
    Enable { pipeline: String },
    /// Success rate and durations of the pipeline's runs over the last 7 and 30 days.
    Stats { pipeline: String },
    /// Delete a pipeline with its config versions and deployments (asks for its id on a terminal;
    /// else needs --yes).
    Delete {
        pipeline: String,
        /// Also delete its finished runs instead of refusing.
        #[arg(long)]
        delete_runs: bool,
        #[command(flatten)]
        confirm: Confirm,
    },
}

#[derive(Debug, Subcommand)]
pub enum RunCommand {
    /// Start a run.
    Start {
        pipeline: String,
        /// A variable for every task, as KEY=VALUE (repeatable).
        #[arg(long = "var", value_parser = parse_var)]
        vars: Vec<(String, String)>,
        /// Show the run live until it ends; the exit code is 1 unless it succeeded.
        #[arg(long, short = 'w')]
        watch: bool,
    },
    /// Runs of a pipeline, newest first.
    List {
        pipeline: String,
        /// At most this many runs.
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// One run.
    Get { pipeline: String, run: String },
    /// Cancel a run.
    Cancel { pipeline: String, run: String },
    /// Cancel every unfinished run of a pipeline.
    CancelAll { pipeline: String },
    /// Show a run live until it ends; the exit code is 1 unless it succeeded.
    Watch { pipeline: String, run: String },
    /// A text Gantt chart of a run: queue wait and run time per task, critical path marked.
    Timeline {
        pipeline: String,
        run: String,
        /// Width of the chart in characters.
        #[arg(long, default_value_t = 50)]
        width: usize,
    },
}

#[derive(Debug, Subcommand)]
pub enum TaskCommand {
    /// Task executions of a run.
    List { pipeline: String, run: String },
    /// One task execution.
    Get { pipeline: String, run: String, task: String },
    /// Every attempt of a task execution.
    Attempts { pipeline: String, run: String, task: String },
}

#[derive(Debug, Subcommand)]
pub enum EventCommand {
    /// Events so far (of the namespace given, narrowed by --pipeline and --run).
    List {
        #[command(flatten)]
        filter: EventArgs,
    },
    /// Stream events as they happen, until interrupted.
    Follow {
        #[command(flatten)]
        filter: EventArgs,
    },
}

/// Confirmation of a deletion that cannot be undone.
#[derive(Debug, Args)]
pub struct Confirm {
    /// Delete without asking (needed when not on a terminal).
    #[arg(long, short = 'y')]
    pub yes: bool,
}

/// Which events.
#[derive(Debug, Args)]
pub struct EventArgs {
    /// Only this pipeline's events (needs a namespace).
    #[arg(long)]
    pub pipeline: Option<String>,
    /// Only this run's events (needs --pipeline).
    #[arg(long)]
    pub run: Option<String>,
    /// Start after this event (its id, as listed); without it, at the first event.
    // An id is base64url, so one in 32 starts with `-`: it is a value here, not a flag.
    #[arg(long, allow_hyphen_values = true)]
    pub after: Option<gofer_core::id::EventId>,
}

/// How usage is summed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GroupBy {
    /// Per UTC day.
    Day,
    /// Per pipeline.
    Pipeline,
}

/// Which secrets: a pipeline's, or the tenant's global ones.
#[derive(Debug, Args)]
pub struct SecretScopeArgs {
    /// A secret of this pipeline (in the namespace given); without it, a global secret.
    #[arg(long, short = 'p')]
    pub pipeline: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum SecretCommand {
    /// Create or replace a secret; the value comes from --value or stdin (one trailing newline dropped).
    Set {
        key: String,
        #[command(flatten)]
        scope: SecretScopeArgs,
        /// The value (visible in the process list; prefer stdin).
        #[arg(long)]
        value: Option<String>,
        /// Global secrets: a namespace glob whose pipelines may use it (repeatable).
        #[arg(long = "namespace-glob")]
        namespaces: Vec<String>,
    },
    /// A secret's metadata (never its value).
    Get {
        key: String,
        #[command(flatten)]
        scope: SecretScopeArgs,
    },
    /// Secrets' metadata.
    List {
        #[command(flatten)]
        scope: SecretScopeArgs,
    },
    /// Delete a secret.
    Delete {
        key: String,
        #[command(flatten)]
        scope: SecretScopeArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum ObjectCommand {
    /// Write an object from a file (`-`: stdin).
    Put {
        pipeline: String,
        key: String,
        #[arg(long, short = 'f')]
        file: String,
        /// An object of this run.
        #[arg(long)]
        run: Option<String>,
    },
    /// Read an object into a file (default, or `-`: stdout).
    Get {
        pipeline: String,
        key: String,
        #[arg(long, short = 'f', default_value = "-")]
        file: String,
        /// An object of this run.
        #[arg(long)]
        run: Option<String>,
    },
    /// Objects' metadata.
    List {
        pipeline: String,
        /// Objects of this run.
        #[arg(long)]
        run: Option<String>,
    },
    /// Delete an object.
    Delete {
        pipeline: String,
        key: String,
        /// An object of this run.
        #[arg(long)]
        run: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum IpBlockCommand {
    /// Every block in force.
    List,
    /// Refuse a client address (IPv6: its /64) for a while.
    Add {
        address: String,
        /// How long, in seconds.
        #[arg(long, default_value_t = 86_400)]
        duration: u64,
        /// Why (default: `operator`).
        #[arg(long)]
        reason: Option<String>,
        /// What it refuses: `anonymous` (requests without a paying tenant's or an operator's
        /// token) or `all` (everyone).
        #[arg(long, default_value = "anonymous", value_parser = ["anonymous", "all"])]
        scope: String,
    },
    /// Lift a block.
    Remove { address: String },
}

#[derive(Debug, Subcommand)]
pub enum DebugCommand {
    /// One JSON document with everything needed to debug a run or a task (never secrets).
    #[command(subcommand)]
    Dump(DumpCommand),
}

#[derive(Debug, Subcommand)]
pub enum DumpCommand {
    /// A whole run.
    Run {
        pipeline: String,
        run: String,
        /// Log lines kept per task.
        #[arg(long, default_value_t = 50)]
        log_lines: usize,
    },
    /// One task execution of a run.
    Task {
        pipeline: String,
        run: String,
        task: String,
        /// Log lines kept per attempt.
        #[arg(long, default_value_t = 200)]
        log_lines: usize,
    },
}

fn parse_var(text: &str) -> Result<(String, String), String> {
    let (key, value) = text.split_once('=').ok_or_else(|| format!("expected KEY=VALUE, got {text:?}"))?;
    if key.is_empty() {
        return Err(format!("expected KEY=VALUE, got {text:?}"));
    }
    Ok((key.to_owned(), value.to_owned()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use clap::Parser;

    use super::*;

    /// Event ids are base64url: one that starts with `-` is still the value of `--after`.
    #[test]
    fn an_event_id_starting_with_a_hyphen_is_a_value() {
        let id = "-vQ2fXbT9kLmN0pRsTuVwx";
        let cli = Cli::try_parse_from(["gofer", "event", "list", "--after", id]).unwrap();
        let Command::Event(EventCommand::List { filter }) = cli.command else { panic!("not event list") };
        assert_eq!(filter.after.unwrap().as_str(), id);
    }
}
