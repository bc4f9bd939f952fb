//! Request rate limits: per token, per client address without one, a stricter bucket for starting
//! runs, RateLimit-* headers, and X-Forwarded-For believed only from trusted proxies.

use gofer_tests::{TestApp, fresh_database, spawn_with, test_config};
use serde_json::json;

async fn app_with(configure: impl FnOnce(&mut gofer_api::Config)) -> TestApp {
    let state_dir = tempfile::tempdir().expect("temp dir");
    let mut config = test_config(fresh_database().await, state_dir.path());
    configure(&mut config);
    spawn_with(config, state_dir).await
}

async fn get(app: &TestApp, path: &str, token: Option<&str>, forwarded: Option<&str>) -> reqwest::Response {
    let mut request = app.http.get(format!("{}{path}", app.address));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(forwarded) = forwarded {
        request = request.header("x-forwarded-for", forwarded);
    }
    request.send().await.expect("request")
}

fn header(response: &reqwest::Response, name: &str) -> String {
    response.headers().get(name).map(|v| v.to_str().expect("ascii").to_owned()).unwrap_or_default()
}

#[tokio::test]
async fn each_token_has_its_own_limit_and_every_answer_says_what_is_left() {
    let app = app_with(|_| {}).await;
    sqlx::query("UPDATE plans SET requests_per_minute = 5 WHERE id = 'default'").execute(&app.db).await.unwrap();
    let acme = app.tenant("acme").await;
    let other = acme.request("POST", "/api/v1/tokens", Some(&json!({"role": "read"}))).await;
    let other = other.body["token"].as_str().unwrap().to_owned();
    // Every request is limited at the token's plan's rate (five a minute), verified before it is
    // counted: the token creation above was the first.
    for expected_remaining in [3, 2, 1, 0] {
        let response = get(&app, "/api/v1/namespaces", Some(&acme.token), None).await;
        assert_eq!(response.status(), 200);
        assert_eq!(header(&response, "ratelimit-limit"), "5");
        assert_eq!(header(&response, "ratelimit-remaining"), expected_remaining.to_string());
    }
    let refused = get(&app, "/api/v1/namespaces", Some(&acme.token), None).await;
    assert_eq!(refused.status(), 429);
    let retry_after: u64 = header(&refused, "retry-after").parse().unwrap();
    assert!((1..=12).contains(&retry_after), "{retry_after}");
    assert_eq!(header(&refused, "ratelimit-remaining"), "0");
    assert!(!header(&refused, "ratelimit-reset").is_empty());
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["code"], "rate_limited");
    assert_eq!(get(&app, "/api/v1/namespaces", Some(&other), None).await.status(), 200, "another token is not limited");
    // Raising the plan's rate applies from the token's next authentication on.
    sqlx::query("UPDATE plans SET requests_per_minute = 600 WHERE id = 'default'").execute(&app.db).await.unwrap();
    get(&app, "/api/v1/namespaces", Some(&other), None).await;
    let raised = get(&app, "/api/v1/namespaces", Some(&other), None).await;
    assert_eq!(header(&raised, "ratelimit-limit"), "600");
    assert_eq!(get(&app, "/health", Some(&acme.token), None).await.status(), 200, "health probes are never limited");
}

#[tokio::test]
async fn starting_runs_has_a_stricter_limit() {
    let app = app_with(|c| c.rate_limits.start_runs_per_minute = 2).await;
    let acme = app.tenant("acme").await;
    acme.namespace("builds").await;
    acme.register_one_task("builds", "quick", "noop", &["true"]).await;
    for _ in 0..2 {
        acme.start_run("builds", "quick").await;
    }
    let refused = acme.request("POST", "/api/v1/namespaces/builds/pipelines/quick/runs", Some(&json!({}))).await;
    assert_eq!((refused.status, refused.code()), (429, "rate_limited"));
    assert_eq!(acme.request("GET", "/api/v1/namespaces/builds/pipelines/quick/runs", None).await.status, 200);
}

#[tokio::test]
async fn anonymous_clients_are_limited_per_address_and_forwarded_addresses_only_from_trusted_proxies() {
    let app = app_with(|c| {
        c.rate_limits.anonymous_per_minute = 2;
        c.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    })
    .await;
    for _ in 0..2 {
        assert_eq!(get(&app, "/api/v1/openapi.json", None, Some("192.0.2.10")).await.status(), 200);
    }
    assert_eq!(get(&app, "/api/v1/openapi.json", None, Some("192.0.2.10")).await.status(), 429);
    assert_eq!(get(&app, "/api/v1/openapi.json", None, Some("192.0.2.11")).await.status(), 200, "another client");
    // A spoofed left-most entry does not give a new bucket: the proxy appended the real client.
    assert_eq!(get(&app, "/api/v1/openapi.json", None, Some("6.6.6.6, 192.0.2.10")).await.status(), 429);

    let untrusting = app_with(|c| c.rate_limits.anonymous_per_minute = 2).await;
    for forwarded in ["192.0.2.20", "192.0.2.21"] {
        assert_eq!(get(&untrusting, "/api/v1/openapi.json", None, Some(forwarded)).await.status(), 200);
    }
    let refused = get(&untrusting, "/api/v1/openapi.json", None, Some("192.0.2.22")).await;
    assert_eq!(refused.status(), 429, "without a trusted proxy, X-Forwarded-For is ignored: one bucket for the peer");
}
