//! A pipeline written in Rust: prints its validated JSON config, ready for
//! `cargo run -p gofer-sdk --example pipeline | gofer pipeline register ship --file -`.

use gofer_sdk::{Condition, Pipeline, Task};

fn main() {
    let pipeline = Pipeline::new("CI")
        .description("Test, then build; report either way")
        .parallelism(2)
        .task(Task::new("test", "rust:1").command(["cargo", "test", "--workspace"]).timeout_s(1800))
        .task(
            Task::new("build", "rust:1")
                .command(["cargo", "build", "--release"])
                .env("CARGO_INCREMENTAL", "0")
                .depends_on("test", Condition::Success)
                .retries(1),
        )
        .task(Task::new("report", "debian:12").script("echo run finished").depends_on("build", Condition::Any));
    match pipeline.to_json() {
        Ok(json) => println!("{json}"),
        Err(e) => {
            eprintln!("invalid pipeline ({}): {e}", e.code());
            std::process::exit(2);
        }
    }
}
