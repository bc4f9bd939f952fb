//! The API document is the server's contract (issue 29): Schemathesis, a property-based fuzzer,
//! reads the served `/api/v1/openapi.json`, sends requests generated from it (valid ones,
//! invalid ones, and sequences that feed one answer into the next request) and checks every
//! answer against the document: no server error, only documented status codes, content types and
//! headers, bodies that match their schemas, valid requests accepted, invalid ones refused.
//!
//! It runs once with a tenant admin's token and once with the operator's, with all checks, a
//! fixed seed and a fixed number of examples, and must find nothing. `infra/deps.sh` installs the pinned
//! Schemathesis; `infra/test.sh` points `GOFER_TEST_SCHEMATHESIS` at it. What the run leaves out
//! is in `tests/contract/` and `docs/api.md` ("The contract test").

use std::path::Path;
use std::time::Duration;

use gofer_tests::{fresh_database, spawn_with, test_config};
use serde_json::json;

/// The environment variable naming the `st` (Schemathesis) executable.
const SCHEMATHESIS_ENV: &str = "GOFER_TEST_SCHEMATHESIS";

/// Generated requests per operation and phase, per token: a count, not a time, so that a run
/// is the same sequence of requests on any machine (about 45 s each here).
const EXAMPLES_PER_OPERATION: u32 = 40;

/// Runs Schemathesis against `address` with `token`; answers whether it passed and its report.
async fn fuzz(st: &str, address: &str, token: &str, work: &Path) -> (bool, String) {
    let contract = Path::new(env!("CARGO_MANIFEST_DIR")).join("contract");
    let output = tokio::process::Command::new(st)
        .current_dir(work)
        .env("SCHEMATHESIS_HOOKS", contract.join("hooks.py"))
        .env("NO_COLOR", "1")
        .arg("--config-file")
        .arg(contract.join("schemathesis.toml"))
        .arg("run")
        .arg(format!("{address}/api/v1/openapi.json"))
        .args(["--url", address, "--checks", "all", "--seed", "1", "--generation-database", "none"])
        .args(["--max-examples", &EXAMPLES_PER_OPERATION.to_string()])
        .args(["-H", &format!("Authorization: Bearer {token}")])
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(600), output)
        .await
        .expect("Schemathesis ends within its time bound")
        .expect("Schemathesis starts");
    let report = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.success(), report)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_is_the_servers_contract_for_a_tenant_and_for_the_operator() {
    let st = std::env::var(SCHEMATHESIS_ENV)
        .unwrap_or_else(|_| panic!("{SCHEMATHESIS_ENV} is not set: run the tests through infra/test.sh"));
    let state_dir = tempfile::tempdir().expect("temp dir");
    let mut config = test_config(fresh_database().await, state_dir.path());
    // The fuzzer sends thousands of requests a minute from one address; the limits are tested
    // in rate_limits.rs and abuse.rs, and a 429 here would only hide the routes behind it.
    config.rate_limits.enabled = false;
    // Its authentication checks send made-up tokens on purpose: the failed-authentication block
    // (tested in tokens.rs and abuse.rs) would turn the second run's answers into 429s.
    config.auth.failures_per_minute = 1_000_000;
    let app = spawn_with(config, state_dir).await;
    // Something to find: a namespace with a pipeline that has run.
    let acme = app.tenant("acme").await;
    acme.namespace("builds").await;
    acme.register(
        "builds",
        "quick",
        json!({"name": "Quick", "tasks": [{"id": "noop", "image": "debian:12", "command": ["true"]}]}),
    )
    .await;
    acme.run_to_completion("builds", "quick", Duration::from_secs(60)).await;

    let work = tempfile::tempdir().expect("temp dir");
    for (who, token) in [("tenant admin", &acme.token), ("operator", &app.operator_token)] {
        let (passed, report) = fuzz(&st, &app.address, token, work.path()).await;
        assert!(passed, "Schemathesis found failures with the {who} token:\n{report}");
        assert!(report.contains("generated"), "Schemathesis generated no requests with the {who} token:\n{report}");
    }
}
