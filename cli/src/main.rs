//! The `gofer` binary: parses arguments, starts the service or hands over to the CLI library.

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use gofer_cli::args::{Cli, Command, ServiceCommand};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Service { command: ServiceCommand::Start { config } } => match start_service(config) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("Error: {e:?}");
                ExitCode::FAILURE
            }
        },
        Command::Completion { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut command, "gofer", &mut std::io::stdout());
            ExitCode::SUCCESS
        }
        command => match tokio::runtime::Runtime::new() {
            Ok(runtime) => runtime.block_on(gofer_cli::run(cli.global, command)),
            Err(e) => {
                eprintln!("error: starting the async runtime: {e}");
                ExitCode::FAILURE
            }
        },
    }
}

fn start_service(config: Option<std::path::PathBuf>) -> anyhow::Result<()> {
    let loaded = gofer_api::Config::load(config.as_deref())?;
    gofer_api::telemetry::init(loaded.config.log_format, &loaded.config.log_level);
    loaded.warn_deprecated();
    let config = loaded.config;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(serve(config))
}

async fn serve(config: gofer_api::Config) -> anyhow::Result<()> {
    let listen = config.listen.clone();
    let state_dir = config.state_dir.clone();
    // A preset token is the operator's own config value: never echo it.
    let preset_token = config.bootstrap_token.is_some();
    let app = gofer_api::Application::build(config).await?;
    let url = gofer_api::wiring::local_url(&listen, app.port());
    println!("Gofer is listening on {url}");
    println!("  health:  curl {url}/health");
    if preset_token && app.bootstrap_token().is_some() {
        println!("Issued the bootstrap operator token preset in the configuration (bootstrap_token).");
    } else if let Some(token) = app.bootstrap_token() {
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
