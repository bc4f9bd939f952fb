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

/// A paid trial sign-up from `source`: a challenge asked for and solved from that address.
async fn trial_from(app: &TestApp, source: &str) -> Answer {
    let challenge = from(app, source, "POST", "/api/v1/trial/challenges", None).await;
    assert_eq!(challenge.status, 201, "{challenge:?}");
    from(app, source, "POST", "/api/v1/trial", Some(&gofer_tests::solved(&challenge.body))).await
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
    assert_eq!(trial_from(&app, "127.0.0.2").await.status, 201);
    let refused = trial_from(&app, "127.0.0.2").await;
    assert_eq!((refused.status, refused.code()), (403, "ip_blocked"), "{refused:?}");
    // Before the fix every IPv4 peer was keyed `::`: one visitor locked out all IPv4 clients.
    assert_eq!(trial_from(&app, "127.0.0.3").await.status, 201, "another IPv4 client");
    assert_eq!(trial_from(&app, "::1").await.status, 201, "an IPv6 client");
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
    let trial = trial_from(&app, "127.0.0.2").await;
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
    // The address's budget of 3 (the paying token's requests count in its own bucket), not one
    // per bearer.
    assert_eq!(passed, 3, "the address's budget, not one per bearer: {statuses:?}");
    assert!(statuses[3..].iter().all(|(status, code)| *status == 429 && code == "rate_limited"), "{statuses:?}");
    assert_eq!(from(&app, "127.0.0.7", "GET", "/api/v1/openapi.json", None).await.status, 429, "nor anonymously");
    // The authenticated token counts in its own bucket, and other addresses are untouched.
    let whoami = from_with_bearer(&app, "127.0.0.7", "GET", "/api/v1/tokens/whoami", None, Some(&paying.token)).await;
    assert_eq!(whoami.status, 200, "{whoami:?}");
    let bystander = from_with_bearer(&app, "127.0.0.8", "GET", "/api/v1/openapi.json", None, Some("made-up-9")).await;
    assert_eq!(bystander.status, 200, "{bystander:?}");
}

/// From `source`: a paying tenant's token and the operator's pass, while anonymous requests, a
/// trial's token and a made-up token are refused with `status`/`code`.
async fn only_verified_tokens_pass(
    app: &TestApp,
    source: &str,
    paying: &str,
    trial: Option<&str>,
    status: u16,
    code: &str,
) {
    let anonymous = from(app, source, "GET", "/api/v1/openapi.json", None).await;
    assert_eq!((anonymous.status, anonymous.code()), (status, code), "anonymous: {anonymous:?}");
    let made_up = from_with_bearer(app, source, "GET", "/api/v1/tokens/whoami", None, Some("gofer_made-up")).await;
    assert_eq!((made_up.status, made_up.code()), (status, code), "made-up token: {made_up:?}");
    if let Some(trial) = trial {
        let refused = from_with_bearer(app, source, "GET", "/api/v1/tokens/whoami", None, Some(trial)).await;
        assert_eq!((refused.status, refused.code()), (status, code), "trial token: {refused:?}");
    }
    let whoami = from_with_bearer(app, source, "GET", "/api/v1/tokens/whoami", None, Some(paying)).await;
    assert_eq!(whoami.status, 200, "a paying tenant's token passes: {whoami:?}");
    let tenants = from_with_bearer(app, source, "GET", "/api/v1/tenants", None, Some(&app.operator_token)).await;
    assert_eq!(tenants.status, 200, "the operator's token passes: {tenants:?}");
}

#[tokio::test]
async fn a_trial_abuse_block_refuses_anonymous_and_trial_requests_but_not_paying_or_operator_tokens() {
    let app = dual_stack(|c| c.trial.max_per_address_per_day = 1).await;
    let paying = app.tenant("acme").await;
    let trial = trial_from(&app, "127.0.0.10").await;
    let trial_token = trial.body["token"].as_str().expect("trial token").to_owned();
    let blocked = trial_from(&app, "127.0.0.10").await;
    assert_eq!((blocked.status, blocked.code()), (403, "ip_blocked"), "{blocked:?}");
    only_verified_tokens_pass(&app, "127.0.0.10", &paying.token, Some(&trial_token), 403, "ip_blocked").await;
    let refusal = from(&app, "127.0.0.10", "GET", "/api/v1/openapi.json", None).await;
    let detail = refusal.body["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("anonymous block")
            && detail.contains("until")
            && detail.contains("paying tenant's or an operator's token passes"),
        "{detail}"
    );
    assert_eq!(from(&app, "127.0.0.11", "GET", "/api/v1/openapi.json", None).await.status, 200, "a bystander address");
}

#[tokio::test]
async fn a_failed_authentication_block_refuses_made_up_tokens_but_not_paying_or_operator_tokens() {
    let app = dual_stack(|c| c.auth.failures_per_minute = 3).await;
    let paying = app.tenant("acme").await;
    let trial = trial_from(&app, "127.0.0.12").await;
    let trial_token = trial.body["token"].as_str().expect("trial token").to_owned();
    let mut statuses = Vec::new();
    for i in 0..4 {
        let bearer = format!("gofer_made-up-{i}");
        statuses.push(
            from_with_bearer(&app, "127.0.0.12", "GET", "/api/v1/tokens/whoami", None, Some(&bearer)).await.status,
        );
    }
    assert_eq!(statuses, [401, 401, 401, 429], "blocked after the budget of failures");
    let refused = from(&app, "127.0.0.12", "GET", "/api/v1/openapi.json", None).await;
    let detail = refused.body["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("failed authentications") && detail.contains("paying tenant's"), "{detail}");
    only_verified_tokens_pass(&app, "127.0.0.12", &paying.token, Some(&trial_token), 429, "rate_limited").await;
    assert_eq!(from(&app, "127.0.0.13", "GET", "/api/v1/openapi.json", None).await.status, 200, "a bystander address");
}

#[tokio::test]
async fn a_limiter_strike_block_refuses_anonymous_requests_but_not_paying_or_operator_tokens() {
    let app = dual_stack(|c| {
        c.rate_limits.anonymous_per_minute = 4;
        c.ip_blocks.rate_limited_per_minute = 2;
    })
    .await;
    let paying = app.tenant("acme").await;
    // A trial from the address: its two anonymous requests (challenge, sign-up) leave two.
    let trial = trial_from(&app, "127.0.0.14").await;
    let trial_token = trial.body["token"].as_str().expect("trial token").to_owned();
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(from(&app, "127.0.0.14", "GET", "/api/v1/openapi.json", None).await.status);
    }
    assert_eq!(statuses, [200, 200, 429, 429, 429, 403], "limited, then blocked for striking the limit");
    only_verified_tokens_pass(&app, "127.0.0.14", &paying.token, Some(&trial_token), 403, "ip_blocked").await;
    assert_eq!(from(&app, "127.0.0.15", "GET", "/api/v1/openapi.json", None).await.status, 200, "a bystander address");
}

#[tokio::test]
async fn an_operators_all_block_refuses_everyone_but_the_operator_can_still_lift_it() {
    let app = dual_stack(|_| {}).await;
    let paying = app.tenant("acme").await;
    let op = Some(app.operator_token.as_str());
    let bad = app
        .request(
            "POST",
            "/api/v1/ip-blocks",
            op,
            Some(&json!({"address": "127.0.0.16", "duration_s": 600, "scope": "most"})),
        )
        .await;
    assert_eq!((bad.status, bad.code()), (400, "invalid_field"), "{bad:?}");
    assert!(bad.body["detail"].as_str().is_some_and(|d| d.starts_with("scope: one of anonymous, all")), "{bad:?}");
    let body = json!({"address": "127.0.0.16", "duration_s": 600, "scope": "all"});
    assert_eq!(app.request("POST", "/api/v1/ip-blocks", op, Some(&body)).await.status, 201);
    let listed = app.request("GET", "/api/v1/ip-blocks", op, None).await;
    assert_eq!(listed.body["items"][0]["scope"], "all", "{listed:?}");
    for token in [paying.token.as_str(), app.operator_token.as_str()] {
        let refused = from_with_bearer(&app, "127.0.0.16", "GET", "/api/v1/tokens/whoami", None, Some(token)).await;
        assert_eq!((refused.status, refused.code()), (403, "ip_blocked"), "{refused:?}");
        assert!(refused.body["detail"].as_str().is_some_and(|d| d.contains("all block")), "{refused:?}");
    }
    // From the blocked address itself, the operator lists and lifts the block.
    let mine = from_with_bearer(&app, "127.0.0.16", "GET", "/api/v1/ip-blocks", None, op).await;
    assert_eq!(mine.status, 200, "{mine:?}");
    let lifted = from_with_bearer(&app, "127.0.0.16", "DELETE", "/api/v1/ip-blocks/127.0.0.16", None, op).await;
    assert_eq!(lifted.status, 204, "{lifted:?}");
    let whoami = from_with_bearer(&app, "127.0.0.16", "GET", "/api/v1/tokens/whoami", None, Some(&paying.token)).await;
    assert_eq!(whoami.status, 200, "{whoami:?}");
    assert_eq!(from(&app, "::1", "GET", "/api/v1/openapi.json", None).await.status, 200, "a bystander address");
}
