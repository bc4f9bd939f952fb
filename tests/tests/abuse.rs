//! Abuse through the real server (issue 19): each test performs an attack and asserts it fails.

use std::net::IpAddr;

use gofer_tests::{Answer, TestApp, fresh_database, spawn_with, test_config};
use serde_json::{Value, json};

/// A server on a dual-stack `[::]` listener (IPv4 peers arrive as `::ffff:a.b.c.d`), with no
/// trusted proxy: the socket peer is the client.
async fn dual_stack(configure: impl FnOnce(&mut gofer_api::Config)) -> TestApp {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = test_config(fresh_database().await, dir.path());
    config.listen = "[::]:0".into();
    configure(&mut config);
    spawn_with(config, dir).await
}

/// A request from the client address `source`: an IPv4 loopback address (127.0.0.x, bound as
/// the socket's local address and reaching the `[::]` listener as `::ffff:127.0.0.x`) or `::1`.
async fn from(app: &TestApp, source: &str, method: &str, path: &str, body: Option<&Value>) -> Answer {
    from_with_bearer(app, source, method, path, body, None).await
}

/// [`from`] with an `Authorization: Bearer` header.
async fn from_with_bearer(
    app: &TestApp,
    source: &str,
    method: &str,
    path: &str,
    body: Option<&Value>,
    bearer: Option<&str>,
) -> Answer {
    let source: IpAddr = source.parse().expect("source address");
    let port = app.address.rsplit(':').next().expect("port");
    let (client, base) = match source {
        IpAddr::V4(_) => (
            reqwest::Client::builder().local_address(source).build().expect("client"),
            format!("http://127.0.0.1:{port}"),
        ),
        IpAddr::V6(_) => (reqwest::Client::new(), format!("http://[{source}]:{port}")),
    };
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut request = client.request(method, format!("{base}{path}"));
    if let Some(body) = body {
        request = request.json(body);
    }
    if let Some(bearer) = bearer {
        request = request.bearer_auth(bearer);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    let content_type = response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let body = response.json().await.unwrap_or(Value::Null);
    Answer { status, content_type, body }
}

#[tokio::test]
async fn ipv4_clients_of_a_dual_stack_listener_have_a_trial_allowance_each() {
    let app = dual_stack(|c| c.trial.max_per_address_per_day = 1).await;
    assert_eq!(from(&app, "127.0.0.2", "POST", "/api/v1/trial", None).await.status, 201);
    let refused = from(&app, "127.0.0.2", "POST", "/api/v1/trial", None).await;
    assert_eq!((refused.status, refused.code()), (403, "ip_blocked"), "{refused:?}");
    // Before the fix every IPv4 peer was keyed `::`: one visitor locked out all IPv4 clients.
    assert_eq!(from(&app, "127.0.0.3", "POST", "/api/v1/trial", None).await.status, 201, "another IPv4 client");
    assert_eq!(from(&app, "::1", "POST", "/api/v1/trial", None).await.status, 201, "an IPv6 client");
    let mut addresses: Vec<String> =
        sqlx::query_scalar("SELECT client_ip FROM trials").fetch_all(&app.db).await.expect("trials");
    addresses.sort();
    assert_eq!(addresses, ["127.0.0.2", "127.0.0.3", "::"]);
    let blocks = app.request("GET", "/api/v1/ip-blocks", Some(&app.operator_token), None).await;
    assert_eq!(blocks.body["items"].as_array().map(Vec::len), Some(1), "{blocks:?}");
    assert_eq!(blocks.body["items"][0]["address"], "127.0.0.2");
}

#[tokio::test]
async fn ipv4_clients_of_a_dual_stack_listener_have_an_anonymous_rate_limit_each() {
    let app = dual_stack(|c| {
        c.rate_limits.anonymous_per_minute = 2;
        c.ip_blocks.rate_limited_per_minute = 0;
    })
    .await;
    for _ in 0..2 {
        assert_eq!(from(&app, "127.0.0.4", "GET", "/api/v1/openapi.json", None).await.status, 200);
    }
    let limited = from(&app, "127.0.0.4", "GET", "/api/v1/openapi.json", None).await;
    assert_eq!((limited.status, limited.code()), (429, "rate_limited"));
    assert_eq!(from(&app, "127.0.0.5", "GET", "/api/v1/openapi.json", None).await.status, 200, "another IPv4 client");
    assert_eq!(from(&app, "::1", "GET", "/api/v1/openapi.json", None).await.status, 200, "an IPv6 client");
}

#[tokio::test]
async fn an_operators_block_of_an_ipv4_address_holds_on_a_dual_stack_listener() {
    let app = dual_stack(|_| {}).await;
    let op = Some(app.operator_token.as_str());
    let block = json!({"address": "127.0.0.2", "duration_s": 600});
    assert_eq!(app.request("POST", "/api/v1/ip-blocks", op, Some(&block)).await.status, 201);
    let blocked = from(&app, "127.0.0.2", "GET", "/api/v1/openapi.json", None).await;
    assert_eq!((blocked.status, blocked.code()), (403, "ip_blocked"));
    assert_eq!(from(&app, "127.0.0.3", "GET", "/api/v1/openapi.json", None).await.status, 200);
    assert_eq!(from(&app, "::1", "GET", "/api/v1/openapi.json", None).await.status, 200);
    // A block written in the mapped form means the IPv4 address.
    let mapped = json!({"address": "::ffff:127.0.0.6", "duration_s": 600});
    let created = app.request("POST", "/api/v1/ip-blocks", op, Some(&mapped)).await;
    assert_eq!((created.status, &created.body["block"]["address"]), (201, &json!("127.0.0.6")), "{created:?}");
    assert_eq!(from(&app, "127.0.0.6", "GET", "/api/v1/openapi.json", None).await.status, 403);
}

#[tokio::test]
async fn a_trial_cannot_mint_tokens_of_its_own_and_a_paying_tenant_can() {
    let app = dual_stack(|_| {}).await;
    let trial = from(&app, "127.0.0.2", "POST", "/api/v1/trial", None).await;
    assert_eq!(trial.status, 201, "{trial:?}");
    let trial_token = trial.body["token"].as_str().expect("trial token").to_owned();
    let trial_id = trial.body["tenant"]["id"].as_str().expect("trial id").to_owned();
    let body = json!({"role": "admin", "expires_in_days": 365});
    let refused = app.request("POST", "/api/v1/tokens", Some(&trial_token), Some(&body)).await;
    assert_eq!((refused.status, refused.code()), (403, "trial_tokens_refused"), "{refused:?}");
    assert!(refused.body["detail"].as_str().is_some_and(|d| d.contains("paid plan")), "{refused:?}");
    let minted: i64 = sqlx::query_scalar("SELECT count(*) FROM api_tokens WHERE tenant_id = $1")
        .bind(&trial_id)
        .fetch_one(&app.db)
        .await
        .expect("count tokens");
    assert_eq!(minted, 1, "only the trial token");

    let paying = app.tenant("acme").await;
    let created = app.request("POST", "/api/v1/tokens", Some(&paying.token), Some(&body)).await;
    assert_eq!(created.status, 201, "{created:?}");

    // Converted to a paid plan, the former trial can create tokens.
    let op = Some(app.operator_token.as_str());
    let converted = app
        .request("POST", &format!("/api/v1/tenants/{trial_id}/convert"), op, Some(&json!({"plan": "default"})))
        .await;
    assert_eq!(converted.status, 200, "{converted:?}");
    let created = app.request("POST", "/api/v1/tokens", Some(&trial_token), Some(&body)).await;
    assert_eq!(created.status, 201, "{created:?}");
}

#[tokio::test]
async fn made_up_bearers_buy_no_fresh_bucket_on_public_routes() {
    let app = dual_stack(|c| {
        c.rate_limits.anonymous_per_minute = 3;
        c.ip_blocks.rate_limited_per_minute = 0;
    })
    .await;
    // A paying tenant's token that has authenticated from this address before the flood.
    let paying = app.tenant("acme").await;
    let whoami = from_with_bearer(&app, "127.0.0.7", "GET", "/api/v1/tokens/whoami", None, Some(&paying.token)).await;
    assert_eq!(whoami.status, 200, "{whoami:?}");
    // Before the fix each made-up bearer had a bucket of its own: an unlimited anonymous client.
    let mut statuses = Vec::new();
    for i in 0..6 {
        let bearer = format!("made-up-{i}");
        let answer = from_with_bearer(&app, "127.0.0.7", "GET", "/api/v1/openapi.json", None, Some(&bearer)).await;
        statuses.push((answer.status, answer.code().to_owned()));
    }
    let passed = statuses.iter().filter(|(status, _)| *status == 200).count();
    // The address's budget of 3, less the paying token's first request (counted there too:
    // until then its token was unknown), not one per bearer.
    assert_eq!(passed, 2, "the address's budget, not one per bearer: {statuses:?}");
    assert!(statuses[2..].iter().all(|(status, code)| *status == 429 && code == "rate_limited"), "{statuses:?}");
    assert_eq!(from(&app, "127.0.0.7", "GET", "/api/v1/openapi.json", None).await.status, 429, "nor anonymously");
    // The authenticated token counts in its own bucket, and other addresses are untouched.
    let whoami = from_with_bearer(&app, "127.0.0.7", "GET", "/api/v1/tokens/whoami", None, Some(&paying.token)).await;
    assert_eq!(whoami.status, 200, "{whoami:?}");
    let bystander = from_with_bearer(&app, "127.0.0.8", "GET", "/api/v1/openapi.json", None, Some("made-up-9")).await;
    assert_eq!(bystander.status, 200, "{bystander:?}");
}
