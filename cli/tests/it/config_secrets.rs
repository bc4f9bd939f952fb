//! The server's own secrets (database password, bootstrap token, run-token and secret-store keys,
//! S3 secret key, Vault and Nomad tokens) never reach its output: a `gofer service start` at
//! `trace` level is given distinctive values for each, in the config keys of this release and of
//! the previous one, serves a few requests (or fails to reach its stores), and none of them
//! appears in anything it printed.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
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

/// A fresh database reached as a role of its own whose password is a sentinel: its URL and the
/// password.
async fn database_with_a_password() -> (String, String) {
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
    (format!("postgres://{role}:{password}@{host}/{database}"), password)
}

/// A `gofer service start` at trace level, its output going to files.
struct Server {
    child: Child,
    stdout: PathBuf,
    stderr: PathBuf,
    _dir: tempfile::TempDir,
}

impl Server {
    fn start(variables: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let (stdout, stderr) = (dir.path().join("stdout.log"), dir.path().join("stderr.log"));
        let child = Command::new(env!("CARGO_BIN_EXE_gofer"))
            .args(["service", "start"])
            .env_remove("RUST_LOG")
            .env("GOFER_LOG_LEVEL", "trace")
            .env("GOFER_LOG_FORMAT", "json")
            .env("GOFER_LISTEN", "127.0.0.1:0")
            .env("GOFER_STATE_DIR", dir.path().join("state"))
            .envs(variables.iter().copied())
            .stdout(Stdio::from(std::fs::File::create(&stdout).expect("stdout file")))
            .stderr(Stdio::from(std::fs::File::create(&stderr).expect("stderr file")))
            .spawn()
            .expect("the gofer binary starts");
        Self { child, stdout, stderr, _dir: dir }
    }

    /// The address it listens on, once it says.
    async fn address(&mut self) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let stdout = std::fs::read_to_string(&self.stdout).unwrap_or_default();
            if let Some(line) = stdout.lines().find_map(|l| l.strip_prefix("Gofer is listening on ")) {
                return line.trim().to_owned();
            }
            if let Some(status) = self.child.try_wait().expect("wait") {
                panic!("the server exited ({status}): {}", std::fs::read_to_string(&self.stderr).unwrap_or_default());
            }
            assert!(Instant::now() < deadline, "the server never printed its address");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Everything it printed, once it stopped (killed if still running after `grace`).
    async fn output(mut self, grace: Duration) -> String {
        let deadline = Instant::now() + grace;
        while self.child.try_wait().expect("wait").is_none() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::fs::read_to_string(&self.stdout).expect("stdout") + &std::fs::read_to_string(&self.stderr).expect("stderr")
    }
}

/// A little traffic: health, an authenticated request, and one that uses the secret store's key.
async fn serve_a_few_requests(address: &str, operator: &str) {
    let http = reqwest::Client::new();
    let health = http.get(format!("{address}/health")).send().await.expect("health");
    assert!(health.status().is_success());
    let tenant = http
        .post(format!("{address}/api/v1/tenants"))
        .bearer_auth(operator)
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
}

fn assert_logged_without(output: &str, secrets: &[(&str, &str)]) {
    assert!(output.contains("TRACE"), "the server logged at trace level");
    assert!(output.contains("starting with this configuration"), "the server logged its configuration");
    for (name, value) in secrets {
        assert!(!output.contains(value), "the {name} appears in the server's output");
    }
}

#[tokio::test]
async fn the_servers_own_secrets_never_appear_in_its_trace_output() {
    let (database_url, password) = database_with_a_password().await;
    let operator = sentinel("gofer_bootstrap");
    let (run_token_key, run_token_raw) = key("rtk");
    let (secret_key, secret_key_raw) = key("ssk");
    let nomad_token = sentinel("nomadtoken");
    let mut server = Server::start(&[
        ("GOFER_DATABASE_URL", &database_url),
        ("GOFER_BOOTSTRAP_TOKEN", &operator),
        ("GOFER_RUN_TOKENS__KEYS__K1", &run_token_key),
        ("GOFER_RUN_TOKENS__ACTIVE_KID", "k1"),
        ("GOFER_SECRET_STORE__KIND", "postgres"),
        ("GOFER_SECRET_STORE__KEYS__S1", &secret_key),
        ("GOFER_SECRET_STORE__PRIMARY_KEY", "s1"),
        ("GOFER_NOMAD_TOKEN", &nomad_token),
    ]);
    serve_a_few_requests(&server.address().await, &operator).await;
    let output = server.output(Duration::ZERO).await;
    assert_logged_without(
        &output,
        &[
            ("database password", &password),
            ("bootstrap token", &operator),
            ("run-token key", &run_token_key),
            ("run-token key bytes", &run_token_raw),
            ("secret-store key", &secret_key),
            ("secret-store key bytes", &secret_key_raw),
            ("Nomad token", &nomad_token),
        ],
    );
    assert!(!output.contains("deprecated"), "no key of the previous release was used");
}

#[tokio::test]
async fn secrets_in_the_keys_of_the_previous_release_never_appear_either_and_each_key_is_warned_about() {
    let (database_url, password) = database_with_a_password().await;
    let operator = sentinel("gofer_bootstrap");
    let (secret_key, secret_key_raw) = key("ssk");
    let s3_secret = sentinel("s3secretaccesskey");
    let vault_token = sentinel("vaulttoken");
    let vault_secret_id = sentinel("vaultsecretid");
    let mut server = Server::start(&[
        ("GOFER_DATABASE_URL", &database_url),
        ("GOFER_BOOTSTRAP_TOKEN", &operator),
        ("GOFER_SECRET_KEYS__S1", &secret_key),
        ("GOFER_SECRET_PRIMARY_KEY", "s1"),
        // Ignored, as they always were, since the local store and the Postgres store are in use.
        ("GOFER_S3_ACCESS_KEY_ID", "AKIDVISIBLE"),
        ("GOFER_S3_SECRET_ACCESS_KEY", &s3_secret),
        ("GOFER_VAULT_TOKEN", &vault_token),
        ("GOFER_VAULT_ROLE_ID", "role-visible"),
        ("GOFER_VAULT_SECRET_ID", &vault_secret_id),
    ]);
    serve_a_few_requests(&server.address().await, &operator).await;
    let output = server.output(Duration::ZERO).await;
    assert_logged_without(
        &output,
        &[
            ("database password", &password),
            ("bootstrap token", &operator),
            ("secret-store key", &secret_key),
            ("secret-store key bytes", &secret_key_raw),
            ("S3 secret access key", &s3_secret),
            ("Vault token", &vault_token),
            ("Vault secret id", &vault_secret_id),
        ],
    );
    for (old, new) in [
        ("secret_keys", "secret_store.keys"),
        ("secret_primary_key", "secret_store.primary_key"),
        ("s3_secret_access_key", "object_store.secret_access_key"),
        ("vault_token", "secret_store.token"),
        ("vault_secret_id", "secret_store.secret_id"),
    ] {
        let warned = output.lines().any(|l| l.contains("WARN") && l.contains(&format!("`{old}`")) && l.contains(new));
        assert!(warned, "no warning names {old} and {new}:\n{output}");
    }
}

#[tokio::test]
async fn a_server_that_cannot_reach_its_s3_and_vault_prints_none_of_their_secrets() {
    let (database_url, password) = database_with_a_password().await;
    let s3_secret = sentinel("s3secretaccesskey");
    let vault_token = sentinel("vaulttoken");
    let vault_secret_id = sentinel("vaultsecretid");
    // A port nothing listens on any more.
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a port").port();
    let unreachable = format!("http://127.0.0.1:{port}");
    let server = Server::start(&[
        ("GOFER_DATABASE_URL", &database_url),
        ("GOFER_OBJECT_STORE__KIND", "s3"),
        ("GOFER_OBJECT_STORE__ENDPOINT", &unreachable),
        ("GOFER_OBJECT_STORE__ACCESS_KEY_ID", "AKIDVISIBLE"),
        ("GOFER_OBJECT_STORE__SECRET_ACCESS_KEY", &s3_secret),
        ("GOFER_SECRET_STORE__KIND", "vault"),
        ("GOFER_SECRET_STORE__ADDR", &unreachable),
        ("GOFER_SECRET_STORE__TOKEN", &vault_token),
        ("GOFER_SECRET_STORE__ROLE_ID", "role-visible"),
        ("GOFER_SECRET_STORE__SECRET_ID", &vault_secret_id),
    ]);
    let output = server.output(Duration::from_secs(60)).await;
    assert!(output.contains("opening the object store"), "the server gave up on S3:\n{output}");
    assert_logged_without(
        &output,
        &[
            ("database password", &password),
            ("S3 secret access key", &s3_secret),
            ("Vault token", &vault_token),
            ("Vault secret id", &vault_secret_id),
        ],
    );
}
