//! Runs that start runs (issue 19, item 10): a run started with a run token records the chain of
//! runs that led to it, and a start that loops back to a pipeline of its chain, or goes deeper
//! than `engine.max_run_chain_depth`, is refused with a problem naming the chain. Here the tokens
//! are minted as the engine mints them and used over HTTP, so every answer is checked exactly;
//! `cli/tests/it/run_chains.rs` drives the same attacks with real `kind: gofer` tasks.

use std::time::Duration;

use gofer_core::RunId;
use gofer_tenants::run_tokens::{RunScope, RunTokenKeys};
use gofer_tests::{Answer, TenantClient, TestApp, fresh_database, pipeline_path, spawn_with, test_config, wait_until};
use serde_json::{Value, json};

const PIPELINES: [&str; 4] = ["alpha", "beta", "gamma", "delta"];

/// The server with run-token keys the test knows and chains at most two runs deep.
async fn spawn() -> (TestApp, RunTokenKeys) {
    let state_dir = tempfile::tempdir().expect("state dir");
    let mut config = test_config(fresh_database().await, state_dir.path());
    let key = gofer_tests::KnownRunTokenKey::generate();
    key.configure(&mut config);
    config.engine.max_run_chain_depth = 2;
    (spawn_with(config, state_dir).await, key.keys())
}

/// A tenant whose namespace `builds` holds the [`PIPELINES`], each one task that sleeps (a run
/// token works only while its run is live).
async fn tenant_with_pipelines<'a>(app: &'a TestApp, id: &str) -> TenantClient<'a> {
    let tenant = app.tenant(id).await;
    tenant.namespace("builds").await;
    for pipeline in PIPELINES {
        tenant.register_one_task("builds", pipeline, "nap", &["sleep", "120"]).await;
    }
    tenant
}

/// The run token of `pipeline`'s run `run`, as the engine gives it to the run's tasks.
fn token(keys: &RunTokenKeys, tenant: &TenantClient<'_>, pipeline: &str, run: RunId) -> String {
    let scope = RunScope {
        tenant: tenant.tenant.clone(),
        namespace: "builds".parse().expect("namespace"),
        pipeline: pipeline.parse().expect("pipeline"),
        run,
    };
    keys.mint(&scope, time::OffsetDateTime::now_utc() + time::Duration::hours(1)).expect("token")
}

/// `POST …/runs` of `pipeline` with `token`.
async fn start(app: &TestApp, token: &str, pipeline: &str) -> Answer {
    app.request("POST", &format!("{}/runs", pipeline_path("builds", pipeline)), Some(token), Some(&json!({}))).await
}

fn started(answer: &Answer) -> RunId {
    assert_eq!(answer.status, 201, "{answer:?}");
    RunId::from_i64(answer.body["run"]["id"].as_i64().expect("run id"))
}

fn ancestor(pipeline: &str, run: RunId) -> Value {
    json!({"namespace_id": "builds", "pipeline_id": pipeline, "run_id": run.get()})
}

async fn ancestry(tenant: &TenantClient<'_>, pipeline: &str, run: RunId) -> Value {
    let answer = tenant.request("GET", &format!("{}/runs/{run}", pipeline_path("builds", pipeline)), None).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    answer.body["run"]["ancestry"].clone()
}

async fn run_count(tenant: &TenantClient<'_>, pipeline: &str) -> usize {
    let answer = tenant.request("GET", &format!("{}/runs", pipeline_path("builds", pipeline)), None).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    answer.body["items"].as_array().expect("items").len()
}

/// Cancels every run of the tenants and waits until they are complete and the queue is empty.
async fn stop_everything(app: &TestApp, tenants: [&TenantClient<'_>; 2]) {
    for tenant in tenants {
        for pipeline in PIPELINES {
            let path = format!("{}/runs/cancel-all", pipeline_path("builds", pipeline));
            let answer = tenant.request("POST", &path, None).await;
            assert_eq!(answer.status, 200, "{answer:?}");
        }
    }
    wait_until("every run to complete", Duration::from_secs(60), || async {
        let unfinished: i64 = sqlx::query_scalar("SELECT count(*) FROM runs WHERE state <> 'complete'")
            .fetch_one(&app.db)
            .await
            .expect("count");
        unfinished == 0
    })
    .await;
    app.assert_queue_drained().await;
}

#[tokio::test]
async fn runs_that_start_each_other_are_refused_at_the_loop_and_a_bystanders_chain_is_untouched() {
    let (app, keys) = spawn().await;
    let acme = tenant_with_pipelines(&app, "acme").await;
    let globex = tenant_with_pipelines(&app, "globex").await;

    // alpha#1 (a user's) starts beta, whose run starts alpha again: A → B → A.
    let alpha = acme.start_run("builds", "alpha").await;
    assert_eq!(ancestry(&acme, "alpha", alpha).await, json!([]), "a user's run has no chain");
    let beta = started(&start(&app, &token(&keys, &acme, "alpha", alpha), "beta").await);
    assert_eq!(ancestry(&acme, "beta", beta).await, json!([ancestor("alpha", alpha)]));
    let beta_token = token(&keys, &acme, "beta", beta);
    let looped = start(&app, &beta_token, "alpha").await;
    assert_eq!((looped.status, looped.code()), (409, "run_chain_loop"), "{looped:?}");
    assert_eq!(
        looped.body["detail"],
        format!(
            "builds/alpha#{alpha} → builds/beta#{beta} → builds/alpha: pipeline builds/alpha is already in this chain"
        )
    );
    // Its own pipeline is in its chain too.
    let itself = start(&app, &beta_token, "beta").await;
    assert_eq!((itself.status, itself.code()), (409, "run_chain_loop"), "{itself:?}");
    assert_eq!(
        itself.body["detail"],
        format!(
            "builds/alpha#{alpha} → builds/beta#{beta} → builds/beta: pipeline builds/beta is already in this chain"
        )
    );
    assert_eq!((run_count(&acme, "alpha").await, run_count(&acme, "beta").await), (1, 1), "nothing was started");

    // The bystander's runs of the same pipelines, started the same way, are its own chain.
    let their_alpha = globex.start_run("builds", "alpha").await;
    let their_beta = started(&start(&app, &token(&keys, &globex, "alpha", their_alpha), "beta").await);
    assert_eq!(ancestry(&globex, "beta", their_beta).await, json!([ancestor("alpha", their_alpha)]));
    let their_gamma = started(&start(&app, &token(&keys, &globex, "beta", their_beta), "gamma").await);
    assert_eq!(
        ancestry(&globex, "gamma", their_gamma).await,
        json!([ancestor("alpha", their_alpha), ancestor("beta", their_beta)])
    );

    // A user may still start the pipeline the loop was refused: only the chain is.
    assert_eq!(acme.start_run("builds", "alpha").await, RunId::from_i64(2), "the refusal took no run number");
    stop_everything(&app, [&acme, &globex]).await;
}

#[tokio::test]
async fn a_chain_deeper_than_the_limit_is_refused_and_a_bystanders_chain_at_the_limit_runs() {
    let (app, keys) = spawn().await;
    let acme = tenant_with_pipelines(&app, "acme").await;
    let globex = tenant_with_pipelines(&app, "globex").await;

    // alpha#1 → beta#1 → gamma#1 has two runs before gamma: the limit. gamma may start no more.
    let alpha = acme.start_run("builds", "alpha").await;
    let beta = started(&start(&app, &token(&keys, &acme, "alpha", alpha), "beta").await);
    let gamma = started(&start(&app, &token(&keys, &acme, "beta", beta), "gamma").await);
    assert_eq!(ancestry(&acme, "gamma", gamma).await, json!([ancestor("alpha", alpha), ancestor("beta", beta)]));
    let deep = start(&app, &token(&keys, &acme, "gamma", gamma), "delta").await;
    assert_eq!((deep.status, deep.code()), (409, "run_chain_too_deep"), "{deep:?}");
    assert_eq!(
        deep.body["detail"],
        format!(
            "builds/alpha#{alpha} → builds/beta#{beta} → builds/gamma#{gamma} → builds/delta: the run would have 3 \
             runs before it in its chain; at most 2 may be"
        )
    );
    assert_eq!(run_count(&acme, "delta").await, 0);

    // The bystander goes as deep as the limit, at the same time.
    let their_alpha = globex.start_run("builds", "alpha").await;
    let their_beta = started(&start(&app, &token(&keys, &globex, "alpha", their_alpha), "beta").await);
    let their_gamma = started(&start(&app, &token(&keys, &globex, "beta", their_beta), "gamma").await);
    assert_eq!(run_count(&globex, "gamma").await, 1);
    assert_eq!(ancestry(&globex, "gamma", their_gamma).await.as_array().map(Vec::len), Some(2));

    // A user's start of delta is a new chain.
    assert_eq!(ancestry(&acme, "delta", acme.start_run("builds", "delta").await).await, json!([]));
    stop_everything(&app, [&acme, &globex]).await;
}
