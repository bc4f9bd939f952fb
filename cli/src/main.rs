//! The `gofer` binary: parses arguments and hands over to the library crates.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

/// Gofer: a hosted, multi-tenant pipeline runner.
#[derive(Parser)]
#[command(name = "gofer", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run and manage the Gofer service.
    Service {
        #[command(subcommand)]
        command: ServiceCommand,
    },
}

#[derive(Subcommand)]
enum ServiceCommand {
    /// Start the API server and engine (configured by --config and GOFER_* variables; see docs/config.md).
    Start {
        /// A TOML config file; GOFER_* environment variables override it.
        #[arg(long, env = "GOFER_CONFIG")]
        config: Option<PathBuf>,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Service { command: ServiceCommand::Start { config } } => {
            let config = gofer_api::Config::load(config.as_deref())?;
            gofer_api::telemetry::init(config.log_format, &config.log_level);
            let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
            runtime.block_on(serve(config))
        }
    }
}

async fn serve(config: gofer_api::Config) -> anyhow::Result<()> {
    let listen = config.listen.clone();
    let state_dir = config.state_dir.clone();
    let app = gofer_api::Application::build(config).await?;
    let url = gofer_api::startup::local_url(&listen, app.port());
    println!("Gofer is listening on {url}");
    println!("  health:  curl {url}/health");
    if let Some(token) = app.bootstrap_token() {
        println!("Bootstrap operator token (shown once, also saved to {}/bootstrap-token):", state_dir.display());
        println!("  {token}");
    } else {
        println!(
            "The bootstrap operator token was issued on an earlier start ({}/bootstrap-token).",
            state_dir.display()
        );
    }
    app.run_until_stopped().await.context("serving HTTP")
}
