//! Secrets end to end: both stores (encrypted Postgres, and a real OpenBao started by
//! infra/test.sh), the write-only routes and their isolation, resolution of `secret{{ key }}` in
//! task env (pipeline first, then global secrets granted by namespace glob), masking in logs, and
//! purging with the pipeline, namespace or tenant.

// Helpers shared by the tests unwrap like the tests themselves.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use gofer_core::secrets::{SecretKey, SecretPrefix, SecretScope, SecretStore, SecretStoreError, SecretValue};
use gofer_core::{NamespaceId, PipelineId, TaskStatus, TenantId};
use gofer_secrets::{Keyring, PostgresStore, VaultSettings, VaultStore};
use gofer_tests::{TenantClient, TestApp, fresh_database, pipeline_path, spawn_app, spawn_with, test_config};
use serde_json::{Value, json};

const RUN_TIMEOUT: Duration = Duration::from_secs(60);
const VAULT_ADDR_ENV: &str = "GOFER_TEST_VAULT_ADDR";
const VAULT_TOKEN_ENV: &str = "GOFER_TEST_VAULT_TOKEN";

/// The OpenBao server of this test run (address, root token), or `None` with a loud message:
/// infra/test.sh always starts one and sets the variables.
fn vault_server() -> Option<(String, String)> {
    match (std::env::var(VAULT_ADDR_ENV), std::env::var(VAULT_TOKEN_ENV)) {
        (Ok(addr), Ok(token)) => Some((addr, token)),
        _ => {
            eprintln!(
                "\n!!!!! SKIPPED: {VAULT_ADDR_ENV} / {VAULT_TOKEN_ENV} are not set; run through infra/test.sh, which \
                 starts OpenBao !!!!!\n"
            );
            None
        }
    }
}

fn key(k: &str) -> SecretKey {
    SecretKey::parse(k).expect("valid key")
}

fn tenant(t: &str) -> TenantId {
    TenantId::parse(t).expect("valid tenant")
}

fn pipeline_scope(ns: &str, p: &str) -> SecretScope {
    SecretScope::Pipeline { namespace: NamespaceId::parse(ns).unwrap(), pipeline: PipelineId::parse(p).unwrap() }
}

/// A prefix of its own per test, so tests sharing the OpenBao server never see each other.
fn unique_prefix() -> String {
    format!("gofer-test-{}/", uuid::Uuid::new_v4().simple())
}

async fn vault_store(addr: &str, token: &str, prefix: &str) -> VaultStore {
    let settings = VaultSettings {
        addr: addr.to_owned(),
        token: Some(token.into()),
        prefix: prefix.to_owned(),
        ..Default::default()
    };
    VaultStore::connect(settings).await.expect("vault store")
}

/// Write, read, list, delete and purge, with two tenants that never see each other's values.
async fn exercise_store(store: &dyn SecretStore) {
    let (acme, globex) = (tenant("acme"), tenant("globex"));
    let build = pipeline_scope("team-a", "build");
    let other = pipeline_scope("team-a", "build2");
    store.put(&acme, &build, &key("API_KEY"), &SecretValue::new("hunter2")).await.unwrap();
    store.put(&acme, &build, &key("B"), &SecretValue::new("b-value")).await.unwrap();
    store.put(&acme, &other, &key("API_KEY"), &SecretValue::new("other")).await.unwrap();
    store.put(&acme, &SecretScope::Global, &key("API_KEY"), &SecretValue::new("global")).await.unwrap();
    store.put(&globex, &build, &key("API_KEY"), &SecretValue::new("globex's")).await.unwrap();

    let read = |t: &'static str, scope: SecretScope, k: &'static str| {
        let t = tenant(t);
        async move { store.get(&t, &scope, &key(k)).await.unwrap().map(|v| v.expose().to_owned()) }
    };
    assert_eq!(read("acme", build.clone(), "API_KEY").await.as_deref(), Some("hunter2"));
    assert_eq!(read("acme", SecretScope::Global, "API_KEY").await.as_deref(), Some("global"));
    assert_eq!(read("globex", build.clone(), "API_KEY").await.as_deref(), Some("globex's"));
    assert_eq!(read("globex", build.clone(), "B").await, None, "another tenant's key is not there");
    assert_eq!(read("acme", build.clone(), "MISSING").await, None);

    // Replacing a value.
    store.put(&acme, &build, &key("B"), &SecretValue::new("b-2")).await.unwrap();
    assert_eq!(read("acme", build.clone(), "B").await.as_deref(), Some("b-2"));
    assert_eq!(store.list(&acme, &build).await.unwrap(), vec![key("API_KEY"), key("B")]);
    assert_eq!(store.list(&globex, &build).await.unwrap(), vec![key("API_KEY")]);

    store.delete(&acme, &build, &key("B")).await.unwrap();
    store.delete(&acme, &build, &key("B")).await.unwrap(); // deleting twice is fine
    assert_eq!(read("acme", build.clone(), "B").await, None);

    // Purging a pipeline keeps its neighbour (whose id it prefixes) and other tenants.
    let (ns, p) = (NamespaceId::parse("team-a").unwrap(), PipelineId::parse("build").unwrap());
    store.purge(&acme, &SecretPrefix::Pipeline(ns.clone(), p)).await.unwrap();
    assert!(store.list(&acme, &build).await.unwrap().is_empty());
    assert_eq!(read("acme", other.clone(), "API_KEY").await.as_deref(), Some("other"));
    assert_eq!(read("globex", build.clone(), "API_KEY").await.as_deref(), Some("globex's"));
    store.purge(&acme, &SecretPrefix::Namespace(ns)).await.unwrap();
    assert_eq!(read("acme", other.clone(), "API_KEY").await, None);
    assert_eq!(read("acme", SecretScope::Global, "API_KEY").await.as_deref(), Some("global"));
    store.purge(&acme, &SecretPrefix::Tenant).await.unwrap();
    assert_eq!(read("acme", SecretScope::Global, "API_KEY").await, None);
    assert_eq!(read("globex", build, "API_KEY").await.as_deref(), Some("globex's"));
}

async fn tenants_in_db(app: &TestApp) {
    for t in ["acme", "globex"] {
        app.tenant(t).await;
    }
}

fn keyring(keys: &BTreeMap<String, String>, primary: &str) -> Keyring {
    Keyring::new(keys, primary).expect("keyring")
}

#[tokio::test]
async fn the_postgres_store_writes_reads_lists_deletes_and_purges_per_tenant() {
    let app = spawn_app().await;
    tenants_in_db(&app).await;
    let keys = BTreeMap::from([("k1".to_owned(), Keyring::generate_key())]);
    let store = PostgresStore::new(app.db.clone(), keyring(&keys, "k1"));
    exercise_store(&store).await;
    // Values are stored encrypted, never in clear.
    store.put(&tenant("acme"), &SecretScope::Global, &key("X"), &SecretValue::new("plain-text-value")).await.unwrap();
    let clear: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM secret_values WHERE position(convert_to('plain-text-value', 'UTF8') in ciphertext) > 0",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(clear, 0);
}

#[tokio::test]
async fn a_rotated_postgres_key_still_reads_old_values_and_reencryption_moves_them_to_the_new_key() {
    let app = spawn_app().await;
    tenants_in_db(&app).await;
    let mut keys = BTreeMap::from([("old".to_owned(), Keyring::generate_key())]);
    let old = PostgresStore::new(app.db.clone(), keyring(&keys, "old"));
    let (acme, scope) = (tenant("acme"), SecretScope::Global);
    for (k, v) in [("A", "value-a"), ("B", "value-b")] {
        old.put(&acme, &scope, &key(k), &SecretValue::new(v)).await.unwrap();
    }
    keys.insert("new".to_owned(), Keyring::generate_key());
    let rotated = PostgresStore::new(app.db.clone(), keyring(&keys, "new"));
    assert_eq!(rotated.get(&acme, &scope, &key("A")).await.unwrap().unwrap().expose(), "value-a");
    rotated.put(&acme, &scope, &key("C"), &SecretValue::new("value-c")).await.unwrap();
    let key_ids =
        || sqlx::query_scalar::<_, String>("SELECT key_id FROM secret_values ORDER BY path").fetch_all(&app.db);
    assert_eq!(key_ids().await.unwrap(), vec!["old", "old", "new"]);

    assert_eq!(rotated.reencrypt().await.unwrap(), 2);
    assert_eq!(key_ids().await.unwrap(), vec!["new", "new", "new"]);
    assert_eq!(rotated.reencrypt().await.unwrap(), 0, "nothing left to re-encrypt");

    // The old key can go now: the new one alone reads everything.
    keys.remove("old");
    let new_only = PostgresStore::new(app.db.clone(), keyring(&keys, "new"));
    for (k, v) in [("A", "value-a"), ("B", "value-b"), ("C", "value-c")] {
        assert_eq!(new_only.get(&acme, &scope, &key(k)).await.unwrap().unwrap().expose(), v);
    }
    // A store without the key refuses to read rather than answering garbage.
    let stranger =
        PostgresStore::new(app.db.clone(), keyring(&BTreeMap::from([("new".into(), Keyring::generate_key())]), "new"));
    assert!(matches!(stranger.get(&acme, &scope, &key("A")).await, Err(SecretStoreError::Corrupt(_))));
}

#[tokio::test]
async fn the_vault_store_writes_reads_lists_deletes_and_purges_per_tenant() {
    let Some((addr, token)) = vault_server() else { return };
    let store = vault_store(&addr, &token, &unique_prefix()).await;
    exercise_store(&store).await;
}

/// A Vault policy that lets a token reach one tenant's path only.
fn tenant_policy(prefix: &str, tenant: &str) -> String {
    format!(
        "path \"secret/data/{prefix}tenants/{tenant}/*\" {{ capabilities = [\"create\", \"read\", \"update\", \"delete\"] }}\n\
         path \"secret/metadata/{prefix}tenants/{tenant}/*\" {{ capabilities = [\"list\", \"read\", \"delete\"] }}\n"
    )
}

async fn vault_call(addr: &str, token: &str, method: reqwest::Method, path: &str, body: Value) -> Value {
    let response = reqwest::Client::new()
        .request(method, format!("{addr}/v1/{path}"))
        .header("X-Vault-Token", token)
        .json(&body)
        .send()
        .await
        .expect("vault answers");
    assert!(response.status().is_success(), "vault {path}: {}", response.status());
    response.json().await.unwrap_or(Value::Null)
}

#[tokio::test]
async fn a_token_scoped_to_one_tenant_by_a_vault_policy_cannot_read_another_tenants_path() {
    let Some((addr, root)) = vault_server() else { return };
    let prefix = unique_prefix();
    let policy = format!("gofer-acme-{}", uuid::Uuid::new_v4().simple());
    vault_call(
        &addr,
        &root,
        reqwest::Method::PUT,
        &format!("sys/policies/acl/{policy}"),
        json!({"policy": tenant_policy(&prefix, "acme")}),
    )
    .await;
    let created = vault_call(
        &addr,
        &root,
        reqwest::Method::POST,
        "auth/token/create",
        json!({"policies": [policy], "ttl": "10m"}),
    )
    .await;
    let scoped_token = created["auth"]["client_token"].as_str().expect("token").to_owned();

    let admin = vault_store(&addr, &root, &prefix).await;
    let scope = pipeline_scope("team-a", "build");
    admin.put(&tenant("globex"), &scope, &key("API_KEY"), &SecretValue::new("globex-only")).await.unwrap();

    let acme_only = vault_store(&addr, &scoped_token, &prefix).await;
    acme_only.put(&tenant("acme"), &scope, &key("API_KEY"), &SecretValue::new("acme's")).await.unwrap();
    assert_eq!(acme_only.get(&tenant("acme"), &scope, &key("API_KEY")).await.unwrap().unwrap().expose(), "acme's");
    for attempt in [
        acme_only.get(&tenant("globex"), &scope, &key("API_KEY")).await.map(|_| ()),
        acme_only.put(&tenant("globex"), &scope, &key("API_KEY"), &SecretValue::new("overwritten")).await,
        acme_only.list(&tenant("globex"), &scope).await.map(|_| ()),
        acme_only.purge(&tenant("globex"), &SecretPrefix::Tenant).await,
    ] {
        assert!(matches!(attempt, Err(SecretStoreError::Unavailable(ref e)) if e.contains("403")), "{attempt:?}");
    }
    assert_eq!(admin.get(&tenant("globex"), &scope, &key("API_KEY")).await.unwrap().unwrap().expose(), "globex-only");
}

/// A pipeline whose one task prints what it is given.
async fn echo_pipeline(client: &TenantClient<'_>, ns: &str, p: &str, env: Value, script: &str) {
    let config = json!({"name": p, "tasks": [{"id": "show", "image": "debian:12", "env": env,
        "command": ["sh", "-c", script]}]});
    client.register(ns, p, config).await;
}

async fn task_log(client: &TenantClient<'_>, ns: &str, p: &str, run: i64) -> String {
    let path = format!("{}/runs/{run}/tasks/show/logs", pipeline_path(ns, p));
    let answer = client.request("GET", &path, None).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    answer.body["text"].as_str().unwrap_or_default().to_owned()
}

async fn put(client: &TenantClient<'_>, path: &str, body: Value) -> gofer_tests::Answer {
    client.request("PUT", path, Some(&body)).await
}

fn secret_path(ns: &str, p: &str, k: &str) -> String {
    format!("{}/secrets/{k}", pipeline_path(ns, p))
}

#[tokio::test]
async fn secret_routes_are_write_only_and_paginate_metadata() {
    let app = spawn_app().await;
    let acme = app.tenant("acme").await;
    acme.namespace("team-a").await;
    echo_pipeline(&acme, "team-a", "build", json!({}), "true").await;

    let created = put(&acme, &secret_path("team-a", "build", "API_KEY"), json!({"value": "hunter2-value"})).await;
    assert_eq!(created.status, 201, "{created:?}");
    assert_eq!(created.body["secret"]["key"], "API_KEY");
    assert_eq!(created.body["secret"]["namespace_id"], "team-a");
    let replaced = put(&acme, &secret_path("team-a", "build", "API_KEY"), json!({"value": "hunter3-value"})).await;
    assert_eq!(replaced.status, 200);
    for k in ["B", "C"] {
        assert_eq!(put(&acme, &secret_path("team-a", "build", k), json!({"value": "v-value"})).await.status, 201);
    }
    let one = acme.request("GET", &secret_path("team-a", "build", "API_KEY"), None).await;
    assert_eq!(one.status, 200);
    let page = acme.request("GET", &format!("{}/secrets?limit=2", pipeline_path("team-a", "build")), None).await;
    let keys: Vec<&str> = page.body["items"].as_array().unwrap().iter().map(|s| s["key"].as_str().unwrap()).collect();
    assert_eq!(keys, vec!["API_KEY", "B"]);
    let cursor = page.body["next_cursor"].as_str().expect("a next page");
    let rest = acme
        .request("GET", &format!("{}/secrets?limit=2&cursor={cursor}", pipeline_path("team-a", "build")), None)
        .await;
    assert_eq!(rest.body["items"][0]["key"], "C");
    assert!(rest.body["next_cursor"].is_null());
    for answer in [&created, &replaced, &one, &page, &rest] {
        let text = answer.body.to_string();
        assert!(!text.contains("hunter") && !text.contains("v-value") && !text.contains("\"value\""), "{text}");
    }

    // Refusals: bad key, oversized or empty value, unknown field, missing pipeline.
    let bad = put(&acme, &secret_path("team-a", "build", "-bad"), json!({"value": "x"})).await;
    assert_eq!((bad.status, bad.code()), (400, "invalid_identifier"));
    let big = put(&acme, &secret_path("team-a", "build", "BIG"), json!({"value": "x".repeat(40_000)})).await;
    assert_eq!(big.status, 400, "{big:?}");
    assert_eq!(put(&acme, &secret_path("team-a", "build", "E"), json!({"value": ""})).await.status, 400);
    assert_eq!(put(&acme, &secret_path("team-a", "build", "E"), json!({"value": "x", "extra": 1})).await.status, 400);
    let missing = put(&acme, &secret_path("team-a", "nope", "API_KEY"), json!({"value": "x"})).await;
    assert_eq!((missing.status, missing.code()), (404, "pipeline_not_found"));

    let deleted = acme.request("DELETE", &secret_path("team-a", "build", "B"), None).await;
    assert_eq!(deleted.status, 204);
    let gone = acme.request("GET", &secret_path("team-a", "build", "B"), None).await;
    assert_eq!((gone.status, gone.code()), (404, "secret_not_found"));
    assert_eq!(acme.request("DELETE", &secret_path("team-a", "build", "B"), None).await.status, 404);
}

#[tokio::test]
async fn another_tenant_and_operators_cannot_reach_a_tenants_secrets() {
    let app = spawn_app().await;
    let acme = app.tenant("acme").await;
    acme.namespace("team-a").await;
    echo_pipeline(&acme, "team-a", "build", json!({}), "true").await;
    assert_eq!(
        put(&acme, &secret_path("team-a", "build", "API_KEY"), json!({"value": "acme-secret"})).await.status,
        201
    );
    let global = put(&acme, "/api/v1/secrets/SHARED", json!({"value": "acme-shared", "namespaces": ["team-*"]})).await;
    assert_eq!(global.status, 201, "{global:?}");
    assert_eq!(global.body["secret"]["namespaces"], json!(["team-*"]));
    assert!(global.body.get("warnings").is_none(), "a granted secret needs no warning: {:?}", global.body);

    let globex = app.tenant("globex").await;
    let theirs = globex.request("GET", &secret_path("team-a", "build", "API_KEY"), None).await;
    let nowhere = globex.request("GET", &secret_path("nowhere", "nothing", "API_KEY"), None).await;
    assert_eq!((theirs.status, theirs.code()), (nowhere.status, nowhere.code()));
    assert_eq!(theirs.status, 404);
    let shared = globex.request("GET", "/api/v1/secrets/SHARED", None).await;
    assert_eq!((shared.status, shared.code()), (404, "secret_not_found"));
    let list = globex.request("GET", "/api/v1/secrets", None).await;
    assert_eq!(list.body["items"], json!([]));

    for (method, path) in [
        ("GET", secret_path("team-a", "build", "API_KEY")),
        ("GET", format!("{}/secrets", pipeline_path("team-a", "build"))),
        ("GET", "/api/v1/secrets/SHARED".to_owned()),
        ("GET", "/api/v1/secrets".to_owned()),
        ("DELETE", "/api/v1/secrets/SHARED".to_owned()),
    ] {
        let answer = app.request(method, &path, Some(&app.operator_token), None).await;
        assert_eq!(answer.status, 403, "operator {method} {path}: {answer:?}");
    }

    // A namespace-limited admin may not change tenant-wide secrets.
    let limited =
        acme.request("POST", "/api/v1/tokens", Some(&json!({"role": "admin", "namespaces": ["team-*"]}))).await;
    let limited = limited.body["token"].as_str().expect("token").to_owned();
    let answer = app
        .request("PUT", "/api/v1/secrets/OTHER", Some(&limited), Some(&json!({"value": "x", "namespaces": ["*"]})))
        .await;
    assert_eq!((answer.status, answer.code()), (403, "namespace_forbidden"));
}

async fn status_of(client: &TenantClient<'_>, ns: &str, p: &str) -> (gofer_core::model::Run, Value) {
    let run = client.run_to_completion(ns, p, RUN_TIMEOUT).await;
    let task = client.request("GET", &format!("{}/runs/{}/tasks/show", pipeline_path(ns, p), run.id), None).await;
    (run, task.body["task"].clone())
}

/// A task prints its secret plainly, in base64 and split by a pause; the stored log shows `***`
/// each time, and the value appears in no database row.
async fn a_task_sees_its_secret_and_its_log_shows_it_masked(app: &TestApp) {
    let acme = app.tenant("acme").await;
    acme.namespace("team-a").await;
    let script = "echo \"plain=$TOKEN\"; printf '%s' \"$TOKEN\" | base64; printf 'split=%s' \"${TOKEN%?????????}\"; \
                  sleep 0.3; printf '%s\\n' \"${TOKEN#?????????}\"; echo \"auth=$AUTH\"; \
                  [ \"$TOKEN\" = 's3cr3t-t0ken-value' ]";
    echo_pipeline(
        &acme,
        "team-a",
        "build",
        json!({"TOKEN": "secret{{ TOKEN }}", "AUTH": "Bearer secret{{TOKEN}}"}),
        script,
    )
    .await;
    assert_eq!(
        put(&acme, &secret_path("team-a", "build", "TOKEN"), json!({"value": "s3cr3t-t0ken-value"})).await.status,
        201
    );

    let (run, task) = status_of(&acme, "team-a", "build").await;
    assert_eq!(task["status"], "successful", "{task}");
    let log = task_log(&acme, "team-a", "build", run.id.get()).await;
    assert_eq!(log, "plain=***\n***\nsplit=***\nauth=Bearer ***\n", "{log}");

    let leaked: i64 = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM events WHERE payload::text LIKE '%s3cr3t%')
              + (SELECT count(*) FROM runs WHERE variables::text LIKE '%s3cr3t%')
              + (SELECT count(*) FROM task_executions WHERE coalesce(status_description, '') LIKE '%s3cr3t%')",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(leaked, 0);
}

/// A line ending in what could begin the secret (`s`, for `s3cr3t…` wrapped onto the next line)
/// is held back by the masker; when the task then goes quiet the line still reaches the live log
/// while the task runs, instead of when it ends.
#[tokio::test]
async fn a_line_held_back_for_a_possible_secret_reaches_the_live_log_while_the_task_is_quiet() {
    let app = spawn_app().await;
    let acme = app.tenant("acme").await;
    acme.namespace("team-a").await;
    echo_pipeline(&acme, "team-a", "quiet", json!({"TOKEN": "secret{{ TOKEN }}"}), "echo status; sleep 8").await;
    let path = secret_path("team-a", "quiet", "TOKEN");
    assert_eq!(put(&acme, &path, json!({"value": "s3cr3t-t0ken-value"})).await.status, 201);
    let run = acme.start_run("team-a", "quiet").await;
    let logs = format!("{}/runs/{run}/tasks/show/logs", pipeline_path("team-a", "quiet"));
    gofer_tests::wait_until("the held line in the live log", Duration::from_secs(6), || async {
        let answer = acme.request("GET", &logs, None).await;
        answer.body["text"].as_str().is_some_and(|t| t.contains("status"))
    })
    .await;
    let (state, _) = status_of_running(&acme, "team-a", "quiet", run.get()).await;
    assert_eq!(state, "running", "the line arrived while the task ran");
    let done = acme.wait_for_run("team-a", "quiet", run, RUN_TIMEOUT).await;
    assert_eq!(task_log(&acme, "team-a", "quiet", done.id.get()).await, "status\n");
}

async fn status_of_running(client: &TenantClient<'_>, ns: &str, p: &str, run: i64) -> (String, Value) {
    let answer = client.request("GET", &format!("{}/runs/{run}", pipeline_path(ns, p)), None).await;
    (answer.body["run"]["state"].as_str().unwrap_or_default().to_owned(), answer.body)
}

#[tokio::test]
async fn a_task_echoing_a_postgres_stored_secret_shows_it_masked() {
    let app = spawn_app().await;
    a_task_sees_its_secret_and_its_log_shows_it_masked(&app).await;
}

#[tokio::test]
async fn a_task_echoing_a_vault_stored_secret_shows_it_masked() {
    let Some((addr, token)) = vault_server() else { return };
    let state_dir = tempfile::tempdir().unwrap();
    let mut config = test_config(fresh_database().await, state_dir.path());
    config.secret_store = gofer_secrets::SecretStoreSettings::Vault(VaultSettings {
        addr,
        token: Some(token.into()),
        prefix: unique_prefix(),
        ..Default::default()
    });
    let app = spawn_with(config, state_dir).await;
    a_task_sees_its_secret_and_its_log_shows_it_masked(&app).await;
}

#[tokio::test]
async fn a_global_secret_reaches_only_the_namespaces_it_is_granted_to() {
    let app = spawn_app().await;
    let acme = app.tenant("acme").await;
    for ns in ["team-a", "other"] {
        acme.namespace(ns).await;
        echo_pipeline(&acme, ns, "deploy", json!({"CRED": "secret{{ DEPLOY_KEY }}"}), "echo \"cred=$CRED\"").await;
    }
    let granted =
        put(&acme, "/api/v1/secrets/DEPLOY_KEY", json!({"value": "global-deploy-key", "namespaces": ["team-*"]})).await;
    assert_eq!(granted.status, 201, "{granted:?}");

    let (run, task) = status_of(&acme, "team-a", "deploy").await;
    assert_eq!(task["status"], "successful", "{task}");
    assert_eq!(task_log(&acme, "team-a", "deploy", run.id.get()).await, "cred=***\n");

    let (run, task) = status_of(&acme, "other", "deploy").await;
    assert_eq!(run.status, gofer_core::RunStatus::Failed);
    assert_eq!(task["status"], TaskStatus::Failed.as_str(), "{task}");
    assert_eq!(task["status_reason"]["reason"], "secret_unavailable", "{task}");
    let description = task["status_reason"]["description"].as_str().unwrap();
    assert!(description.contains("DEPLOY_KEY") && description.contains("other"), "{description}");
    assert!(task["started"].is_null() || task["exit_code"].is_null(), "the task never ran: {task}");

    // A pipeline secret of the same key wins over the global one, even where it is not granted.
    assert_eq!(
        put(&acme, &secret_path("other", "deploy", "DEPLOY_KEY"), json!({"value": "own-key-value"})).await.status,
        201
    );
    let (run, task) = status_of(&acme, "other", "deploy").await;
    assert_eq!(task["status"], "successful", "{task}");
    assert_eq!(task_log(&acme, "other", "deploy", run.id.get()).await, "cred=***\n");

    // Revoking the grant stops it at the next task start.
    let revoked =
        put(&acme, "/api/v1/secrets/DEPLOY_KEY", json!({"value": "global-deploy-key", "namespaces": []})).await;
    assert_eq!(revoked.status, 200);
    let warning = revoked.body["warnings"][0].as_str().unwrap_or_default();
    assert!(warning.starts_with("namespaces: empty, so no namespace may use this secret"), "{:?}", revoked.body);
    let (_, task) = status_of(&acme, "team-a", "deploy").await;
    assert_eq!(task["status_reason"]["reason"], "secret_unavailable", "{task}");
    app.assert_queue_drained().await;
}

async fn stored_values(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM secret_values").fetch_one(&app.db).await.unwrap()
}

#[tokio::test]
async fn deleting_a_pipeline_a_namespace_or_a_tenant_removes_its_secrets_from_the_store() {
    let app = spawn_app().await;
    let acme = app.tenant("acme").await;
    for (ns, p) in [("team-a", "one"), ("team-a", "two"), ("team-b", "three")] {
        if p != "two" {
            acme.namespace(ns).await;
        }
        echo_pipeline(&acme, ns, p, json!({}), "true").await;
        assert_eq!(put(&acme, &secret_path(ns, p, "K"), json!({"value": "value-of-k"})).await.status, 201);
    }
    assert_eq!(
        put(&acme, "/api/v1/secrets/G", json!({"value": "global-value", "namespaces": ["*"]})).await.status,
        201
    );
    let globex = app.tenant("globex").await;
    globex.namespace("team-a").await;
    echo_pipeline(&globex, "team-a", "one", json!({}), "true").await;
    assert_eq!(put(&globex, &secret_path("team-a", "one", "K"), json!({"value": "globex-k"})).await.status, 201);
    assert_eq!(stored_values(&app).await, 5);

    assert_eq!(acme.request("DELETE", &pipeline_path("team-a", "one"), None).await.status, 204);
    assert_eq!(stored_values(&app).await, 4);
    // A pipeline recreated with the same id starts without secrets.
    echo_pipeline(&acme, "team-a", "one", json!({}), "true").await;
    let listed = acme.request("GET", &format!("{}/secrets", pipeline_path("team-a", "one")), None).await;
    assert_eq!(listed.body["items"], json!([]));

    assert_eq!(acme.request("DELETE", "/api/v1/namespaces/team-a", None).await.status, 204);
    assert_eq!(stored_values(&app).await, 3);
    let deleted = app.request("DELETE", "/api/v1/tenants/acme", Some(&app.operator_token), None).await;
    assert_eq!(deleted.status, 204);
    assert_eq!(stored_values(&app).await, 1, "only globex's secret is left");
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM secrets").fetch_one(&app.db).await.unwrap();
    assert_eq!(left, 1);
}

#[tokio::test]
async fn the_vault_store_logs_in_with_approle_and_again_when_its_token_expired() {
    let Some((addr, root)) = vault_server() else { return };
    let prefix = unique_prefix();
    let id = uuid::Uuid::new_v4().simple().to_string();
    let mount = format!("approle-{id}");
    let post = reqwest::Method::POST;
    vault_call(&addr, &root, post.clone(), &format!("sys/auth/{mount}"), json!({"type": "approle"})).await;
    let policy = format!("gofer-{id}");
    vault_call(
        &addr,
        &root,
        reqwest::Method::PUT,
        &format!("sys/policies/acl/{policy}"),
        json!({"policy": tenant_policy(&prefix, "acme")}),
    )
    .await;
    // Tokens that expire after 2 s, so the store must log in again mid-test.
    let role = format!("auth/{mount}/role/gofer");
    vault_call(
        &addr,
        &root,
        post.clone(),
        &role,
        json!({"token_policies": [policy], "token_ttl": "2s", "token_max_ttl": "2s"}),
    )
    .await;
    let role_id =
        vault_call(&addr, &root, reqwest::Method::GET, &format!("{role}/role-id"), json!({})).await["data"]["role_id"]
            .as_str()
            .expect("role id")
            .to_owned();
    let secret_id = vault_call(&addr, &root, post, &format!("{role}/secret-id"), json!({})).await["data"]["secret_id"]
        .as_str()
        .expect("secret id")
        .to_owned();
    let settings = VaultSettings {
        addr: addr.clone(),
        role_id: Some(role_id),
        secret_id: Some(secret_id.into()),
        approle_mount: mount,
        prefix: prefix.clone(),
        ..Default::default()
    };
    let store = VaultStore::connect(settings).await.expect("AppRole login");
    let scope = pipeline_scope("team-a", "build");
    store.put(&tenant("acme"), &scope, &key("API_KEY"), &SecretValue::new("approle-value")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(store.get(&tenant("acme"), &scope, &key("API_KEY")).await.unwrap().unwrap().expose(), "approle-value");
    // The policy still confines it to its tenant.
    let other = store.get(&tenant("globex"), &scope, &key("API_KEY")).await;
    assert!(matches!(other, Err(SecretStoreError::Unavailable(_))), "{other:?}");
}
