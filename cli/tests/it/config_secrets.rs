//! The server's own secrets (database password, bootstrap token, run-token and secret-store keys,
//! S3 secret key, Vault and Nomad tokens) never reach its output: a `gofer service start` at
//! `trace` level is given distinctive values for each, serves a few requests, and none of them
//! appears in anything it printed.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::json;

/// A distinctive value no log line could contain by chance.
fn sentinel(what: &str) -> String {
    format!("{what}-{}", uuid::Uuid::new_v4().simple())
}

/// A base64 key of exactly 32 bytes whose text and bytes are both distinctive.
fn key(what: &str) -> (String, String) {
    let raw: String = sentinel(what).chars().take(32).collect();
    (base64::engine::general_purpose::STANDARD.encode(raw.as_bytes()), raw)
}

#[tokio::test]
async fn the_servers_own_secrets_never_appear_in_its_trace_output() {
    // The database URL carries a password: a role of its own, owning the test database.
    let admin_url = gofer_tests::fresh_database().await;
    let password = sentinel("dbpassword");
    let role = format!("gofer_secret_{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let admin = sqlx::PgPool::connect(&admin_url).await.expect("connect as the admin");
    // DDL takes no binds; the role, password and database names are generated just above.
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE ROLE {role} LOGIN SUPERUSER PASSWORD '{password}'")))
        .execute(&admin)
        .await
        .expect("create the role");
    let (rest, database) = admin_url.rsplit_once('/').expect("database URL has a path");
    sqlx::query(sqlx::AssertSqlSafe(format!("ALTER DATABASE {database} OWNER TO {role}")))
        .execute(&admin)
        .await
        .expect("owner");
    admin.close().await;
    let host = rest.rsplit_once('@').map_or(rest.trim_start_matches("postgres://"), |(_, host)| host);
    let database_url = format!("postgres://{role}:{password}@{host}/{database}");

    let operator = sentinel("gofer_bootstrap");
    let (run_token_key, run_token_raw) = key("rtk");
    let (secret_key, secret_key_raw) = key("ssk");
    let s3_secret = sentinel("s3secretaccesskey");
    let vault_token = sentinel("vaulttoken");
    let vault_secret_id = sentinel("vaultsecretid");
    let nomad_token = sentinel("nomadtoken");

    let state_dir = tempfile::tempdir().expect("temp dir");
    let stdout_path = state_dir.path().join("stdout.log");
    let stderr_path = state_dir.path().join("stderr.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_gofer"))
        .args(["service", "start"])
        .env_remove("RUST_LOG")
        .env("GOFER_LOG_LEVEL", "trace")
        .env("GOFER_LOG_FORMAT", "json")
        .env("GOFER_LISTEN", "127.0.0.1:0")
        .env("GOFER_DATABASE_URL", &database_url)
        .env("GOFER_STATE_DIR", state_dir.path().join("state"))
        .env("GOFER_BOOTSTRAP_TOKEN", &operator)
        .env("GOFER_RUN_TOKENS__KEYS__K1", &run_token_key)
        .env("GOFER_RUN_TOKENS__ACTIVE_KID", "k1")
        .env("GOFER_SECRET_KEYS__S1", &secret_key)
        .env("GOFER_SECRET_PRIMARY_KEY", "s1")
        // Accepted at start-up although the local store, sandbox and Postgres store are in use.
        .env("GOFER_S3_ACCESS_KEY_ID", "AKIDVISIBLE")
        .env("GOFER_S3_SECRET_ACCESS_KEY", &s3_secret)
        .env("GOFER_VAULT_TOKEN", &vault_token)
        .env("GOFER_VAULT_ROLE_ID", "role-visible")
        .env("GOFER_VAULT_SECRET_ID", &vault_secret_id)
        .env("GOFER_NOMAD_TOKEN", &nomad_token)
        .stdout(Stdio::from(std::fs::File::create(&stdout_path).expect("stdout file")))
        .stderr(Stdio::from(std::fs::File::create(&stderr_path).expect("stderr file")))
        .spawn()
        .expect("the gofer binary starts");

    let deadline = Instant::now() + Duration::from_secs(60);
    let address = loop {
        let stdout = std::fs::read_to_string(&stdout_path).unwrap_or_default();
        if let Some(line) = stdout.lines().find_map(|l| l.strip_prefix("Gofer is listening on ")) {
            break line.trim().to_owned();
        }
        if let Some(status) = child.try_wait().expect("wait") {
            panic!("the server exited ({status}): {}", std::fs::read_to_string(&stderr_path).unwrap_or_default());
        }
        assert!(Instant::now() < deadline, "the server never printed its address");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    // A little traffic: health, an authenticated request, and one that uses the secret store's key.
    let http = reqwest::Client::new();
    let health = http.get(format!("{address}/health")).send().await.expect("health");
    assert!(health.status().is_success());
    let tenant = http
        .post(format!("{address}/api/v1/tenants"))
        .bearer_auth(&operator)
        .json(&json!({"id": "acme", "name": "Acme"}))
        .send()
        .await
        .expect("create a tenant");
    assert_eq!(tenant.status(), 201);
    let tenant: serde_json::Value = tenant.json().await.expect("json");
    let token = tenant["token"].as_str().expect("token");
    let put = http
        .put(format!("{address}/api/v1/secrets/greeting"))
        .bearer_auth(token)
        .json(&json!({"value": "hello"}))
        .send()
        .await
        .expect("put a secret");
    assert!(put.status().is_success(), "{}", put.status());
    let _ = child.kill();
    let _ = child.wait();

    let output = std::fs::read_to_string(&stdout_path).expect("stdout")
        + &std::fs::read_to_string(&stderr_path).expect("stderr");
    assert!(output.contains("TRACE"), "the server logged at trace level");
    assert!(output.contains("starting with this configuration"), "the server logged its configuration");
    for (name, value) in [
        ("database password", password.as_str()),
        ("bootstrap token", operator.as_str()),
        ("run-token key", run_token_key.as_str()),
        ("run-token key bytes", run_token_raw.as_str()),
        ("secret-store key", secret_key.as_str()),
        ("secret-store key bytes", secret_key_raw.as_str()),
        ("S3 secret access key", s3_secret.as_str()),
        ("Vault token", vault_token.as_str()),
        ("Vault secret id", vault_secret_id.as_str()),
        ("Nomad token", nomad_token.as_str()),
    ] {
        assert!(!output.contains(value), "the {name} appears in the server's output");
    }
}
