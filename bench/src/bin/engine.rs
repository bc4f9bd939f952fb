//! `engine`: runs the engine benchmarks and prints tables (or JSON with `--json`).

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let options = gofer_bench::Options::parse();
    let report = gofer_bench::run(&options).await?;
    if options.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", gofer_bench::report::render(&report));
    }
    Ok(())
}
