//! Trials and IP blocks: anonymous signups with per-address limits, trials that run out or end,
//! conversion to a paying tenant, and blocked addresses (by abuse, or by operators).

use std::sync::Arc;
use std::time::Duration;

use gofer_core::{RunStatus, StatusReason};
use gofer_tests::fake_scheduler::FakeScheduler;
use gofer_tests::{Answer, TestApp, fresh_database, spawn_replica, test_config, wait_until};
use serde_json::{Value, json};

/// A server behind a trusted proxy on 127.0.0.1, so tests speak as any client address.
async fn app_with(configure: impl FnOnce(&mut gofer_api::Config)) -> TestApp {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = test_config(fresh_database().await, dir.path());
    config.trusted_proxies = vec!["127.0.0.1/32".parse().expect("cidr")];
    config.engine.quota_check_interval_ms = 100;
    configure(&mut config);
    spawn_replica(config, dir, Some(Arc::new(FakeScheduler::default()))).await
}

/// A request from `client` (through the trusted proxy).
async fn from(
    app: &TestApp,
    client: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> Answer {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut request = app.http.request(method, format!("{}{path}", app.address)).header("x-forwarded-for", client);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(body);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    let content_type = response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let body = response.json().await.unwrap_or(Value::Null);
    Answer { status, content_type, body }
}

/// A trial sign-up from `client`, paid for: a challenge asked for and solved from that address.
async fn trial(app: &TestApp, client: &str) -> Answer {
    let challenge = from(app, client, "POST", "/api/v1/trial/challenges", None, None).await;
    assert_eq!(challenge.status, 201, "{challenge:?}");
    from(app, client, "POST", "/api/v1/trial", None, Some(&gofer_tests::solved(&challenge.body))).await
}

#[tokio::test]
async fn a_visitor_gets_a_trial_tenant_on_the_trial_plan_and_its_address_is_recorded() {
    let app = app_with(|_| {}).await;
    let answer = trial(&app, "192.0.2.1").await;
    assert_eq!(answer.status, 201, "{answer:?}");
    let tenant = &answer.body["tenant"];
    assert_eq!(tenant["plan"], "trial");
    let id = tenant["id"].as_str().unwrap();
    assert!(id.starts_with("trial-"), "{id}");
    let expires = time::OffsetDateTime::parse(
        tenant["trial_expires"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let left = expires - time::OffsetDateTime::now_utc();
    assert!(left > time::Duration::hours(23) && left <= time::Duration::hours(24), "{left}");
    let token = answer.body["token"].as_str().unwrap();
    let me = from(&app, "192.0.2.1", "GET", "/api/v1/tokens/whoami", Some(token), None).await;
    assert_eq!(me.status, 200, "{me:?}");
    let created = from(
        &app,
        "192.0.2.1",
        "POST",
        "/api/v1/namespaces",
        Some(token),
        Some(&json!({"id": "play", "name": "Play"})),
    )
    .await;
    assert_eq!(created.status, 201, "a trial can work in its tenant");
    let (kind, address): (String, String) = sqlx::query_as(
        "SELECT k.kind, t.client_ip FROM trials t JOIN api_tokens k ON k.tenant_id = t.tenant_id WHERE t.tenant_id = $1",
    )
    .bind(id)
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!((kind.as_str(), address.as_str()), ("trial", "192.0.2.1"));
    // IPv6 clients are recorded per /64.
    let v6 = trial(&app, "2001:db8:1:2::99").await;
    let v6_address: String = sqlx::query_scalar("SELECT client_ip FROM trials WHERE tenant_id = $1")
        .bind(v6.body["tenant"]["id"].as_str().unwrap())
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(v6_address, "2001:db8:1:2::");
}

#[tokio::test]
async fn an_address_over_its_daily_trials_is_blocked_until_the_block_ends_or_an_operator_lifts_it() {
    let app = app_with(|c| c.trial.max_per_address_per_day = 2).await;
    for _ in 0..2 {
        assert_eq!(trial(&app, "192.0.2.7").await.status, 201);
    }
    let refused = trial(&app, "192.0.2.7").await;
    assert_eq!((refused.status, refused.code()), (403, "ip_blocked"), "{refused:?}");
    assert!(refused.body["detail"].as_str().unwrap().contains("blocked until"), "{refused:?}");
    let anything = from(&app, "192.0.2.7", "GET", "/api/v1/openapi.json", None, None).await;
    assert_eq!((anything.status, anything.code()), (403, "ip_blocked"), "the address is blocked everywhere");
    assert_eq!(trial(&app, "192.0.2.8").await.status, 201, "other addresses are not");

    let op = Some(app.operator_token.as_str());
    let blocks = app.request("GET", "/api/v1/ip-blocks", op, None).await;
    assert_eq!(blocks.body["items"][0]["address"], "192.0.2.7");
    assert_eq!(blocks.body["items"][0]["reason"], "trial_signups");
    assert_eq!(app.request("DELETE", "/api/v1/ip-blocks/192.0.2.7", op, None).await.status, 204);
    let again = from(&app, "192.0.2.7", "GET", "/api/v1/openapi.json", None, None).await;
    assert_eq!(again.status, 200, "unblocked at once");
    let gone = app.request("DELETE", "/api/v1/ip-blocks/192.0.2.7", op, None).await;
    assert_eq!((gone.status, gone.code()), (404, "ip_block_not_found"));
}

#[tokio::test]
async fn trial_signups_have_a_strict_rate_per_address() {
    let app = app_with(|c| c.rate_limits.trial_signups_per_minute = 1).await;
    assert_eq!(trial(&app, "192.0.2.20").await.status, 201);
    let limited = trial(&app, "192.0.2.20").await;
    assert_eq!((limited.status, limited.code()), (429, "rate_limited"));
    assert_eq!(trial(&app, "192.0.2.21").await.status, 201);
}

#[tokio::test]
async fn a_trial_that_used_up_its_task_seconds_can_still_read_but_its_address_gets_no_new_trial() {
    let app = app_with(|_| {}).await;
    let op = Some(app.operator_token.as_str());
    let mut tiny = app.request("GET", "/api/v1/plans/trial", op, None).await.body["plan"].clone();
    tiny["task_seconds_per_month"] = json!(1);
    assert_eq!(app.request("PUT", "/api/v1/plans/trial", op, Some(&tiny)).await.status, 200);
    let signup = trial(&app, "198.51.100.5").await;
    let token = signup.body["token"].as_str().unwrap().to_owned();
    let ip = "198.51.100.5";
    from(&app, ip, "POST", "/api/v1/namespaces", Some(&token), Some(&json!({"id": "play", "name": "P"}))).await;
    let config = json!({"name": "S", "run_timeout_s": 300, "tasks": [
        {"id": "work", "image": "x", "command": ["sleep", "30"], "timeout_s": 60, "cpu": 500, "memory_mb": 128}]});
    let registered =
        from(&app, ip, "POST", "/api/v1/namespaces/play/pipelines/slow/configs", Some(&token), Some(&config)).await;
    assert_eq!(registered.status, 201, "{registered:?}");
    let run =
        from(&app, ip, "POST", "/api/v1/namespaces/play/pipelines/slow/runs", Some(&token), Some(&json!({}))).await;
    assert_eq!(run.status, 201, "{run:?}");
    let path = "/api/v1/namespaces/play/pipelines/slow/runs/1";
    wait_until("the trial's run to stop", Duration::from_secs(15), || async {
        from(&app, ip, "GET", path, Some(&token), None).await.body["run"]["state"] == "complete"
    })
    .await;
    let done = from(&app, ip, "GET", path, Some(&token), None).await.body["run"].clone();
    assert_eq!(done["status"], serde_json::to_value(RunStatus::Failed).unwrap());
    assert_eq!(done["status_reason"]["reason"], serde_json::to_value(StatusReason::QuotaExhausted).unwrap());
    assert_eq!(from(&app, ip, "GET", path, Some(&token), None).await.status, 200, "it still reads its results");
    let refused =
        from(&app, ip, "POST", "/api/v1/namespaces/play/pipelines/slow/runs", Some(&token), Some(&json!({}))).await;
    assert_eq!(refused.code(), "quota_exceeded");

    let again = trial(&app, ip).await;
    assert_eq!((again.status, again.code()), (403, "trial_refused"), "{again:?}");
    assert!(again.body["detail"].as_str().unwrap().contains("used up its task-seconds"), "{again:?}");
    assert_eq!(trial(&app, "198.51.100.6").await.status, 201, "another address may");
}

#[tokio::test]
async fn an_ended_trial_is_suspended_then_removed_with_its_data() {
    let app = app_with(|c| {
        c.trial.lifetime_s = 1;
        c.trial.removal_grace_s = 1;
        c.trial.job_interval_s = 1;
    })
    .await;
    let signup = trial(&app, "192.0.2.30").await;
    let id = signup.body["tenant"]["id"].as_str().unwrap().to_owned();
    let token = signup.body["token"].as_str().unwrap().to_owned();
    from(&app, "192.0.2.30", "POST", "/api/v1/namespaces", Some(&token), Some(&json!({"id": "play", "name": "P"})))
        .await;
    let op = app.operator_token.clone();
    wait_until("the trial to be suspended", Duration::from_secs(10), || async {
        app.request("GET", &format!("/api/v1/tenants/{id}"), Some(&op), None).await.body["tenant"]["suspended"]
            .is_string()
    })
    .await;
    wait_until("the trial to be removed", Duration::from_secs(10), || async {
        app.request("GET", &format!("/api/v1/tenants/{id}"), Some(&op), None).await.status == 404
    })
    .await;
    let namespaces: i64 = sqlx::query_scalar("SELECT count(*) FROM namespaces WHERE tenant_id = $1")
        .bind(&id)
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(namespaces, 0, "its data went with it");
    let removed: bool = sqlx::query_scalar("SELECT removed_at IS NOT NULL FROM trials WHERE tenant_id = $1")
        .bind(&id)
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert!(removed, "the trial's record stays for the per-address checks");
}

#[tokio::test]
async fn a_trial_converted_to_a_paid_plan_keeps_its_pipelines_and_tenants_are_created_on_a_plan() {
    let app = app_with(|_| {}).await;
    let signup = trial(&app, "192.0.2.40").await;
    let id = signup.body["tenant"]["id"].as_str().unwrap().to_owned();
    let token = signup.body["token"].as_str().unwrap().to_owned();
    let ip = "192.0.2.40";
    from(&app, ip, "POST", "/api/v1/namespaces", Some(&token), Some(&json!({"id": "play", "name": "P"}))).await;
    let config = json!({"name": "K", "tasks": [{"id": "work", "image": "x", "command": ["exit", "0"], "timeout_s": 60,
                                                  "cpu": 500, "memory_mb": 128}], "run_timeout_s": 300});
    from(&app, ip, "POST", "/api/v1/namespaces/play/pipelines/keep/configs", Some(&token), Some(&config)).await;

    let op = Some(app.operator_token.as_str());
    let converted =
        app.request("POST", &format!("/api/v1/tenants/{id}/convert"), op, Some(&json!({"plan": "default"}))).await;
    assert_eq!(converted.status, 200, "{converted:?}");
    assert_eq!(converted.body["tenant"]["plan"], "default");
    assert!(converted.body["tenant"]["trial_expires"].is_null());
    let pipeline = from(&app, ip, "GET", "/api/v1/namespaces/play/pipelines/keep", Some(&token), None).await;
    assert_eq!(pipeline.status, 200, "same token, same pipelines: {pipeline:?}");
    let kind: String = sqlx::query_scalar("SELECT kind FROM api_tokens WHERE tenant_id = $1")
        .bind(&id)
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(kind, "tenant");
    let bad = app.request("POST", &format!("/api/v1/tenants/{id}/convert"), op, Some(&json!({"plan": "gold"}))).await;
    assert_eq!((bad.status, bad.code()), (404, "plan_not_found"));

    let on_trial =
        app.request("POST", "/api/v1/tenants", op, Some(&json!({"id": "small", "name": "S", "plan": "trial"}))).await;
    assert_eq!((on_trial.status, on_trial.body["tenant"]["plan"].as_str()), (201, Some("trial")));
    let unknown =
        app.request("POST", "/api/v1/tenants", op, Some(&json!({"id": "other", "name": "O", "plan": "gold"}))).await;
    assert_eq!((unknown.status, unknown.code()), (404, "plan_not_found"));
}

#[tokio::test]
async fn operators_block_addresses_on_every_replica_and_blocks_expire_by_themselves() {
    let database_url = fresh_database().await;
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut config_a = test_config(database_url.clone(), dir_a.path());
    config_a.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    let mut config_b = config_a.clone();
    config_b.state_dir = dir_b.path().to_path_buf();
    let a = spawn_replica(config_a, dir_a, None).await;
    let b = spawn_replica(config_b, dir_b, None).await;
    let op = Some(a.operator_token.as_str());
    let body = json!({"address": "203.0.113.9", "duration_s": 2, "reason": "abuse report"});
    let created = a.request("POST", "/api/v1/ip-blocks", op, Some(&body)).await;
    assert_eq!(created.status, 201, "{created:?}");
    assert_eq!(created.body["block"]["reason"], "abuse report");
    let blocked = from(&a, "203.0.113.9", "GET", "/api/v1/openapi.json", None, None).await;
    assert_eq!((blocked.status, blocked.code()), (403, "ip_blocked"));
    wait_until("replica B to hear of the block", Duration::from_secs(2), || async {
        from(&b, "203.0.113.9", "GET", "/api/v1/openapi.json", None, None).await.status == 403
    })
    .await;
    assert_eq!(from(&b, "203.0.113.10", "GET", "/api/v1/openapi.json", None, None).await.status, 200);
    let bad = a.request("POST", "/api/v1/ip-blocks", op, Some(&json!({"address": "nope", "duration_s": 5}))).await;
    assert_eq!((bad.status, bad.code()), (400, "invalid_field"));
    wait_until("the block to expire", Duration::from_secs(5), || async {
        from(&b, "203.0.113.9", "GET", "/api/v1/openapi.json", None, None).await.status == 200
    })
    .await;
    assert_eq!(a.request("GET", "/api/v1/ip-blocks", op, None).await.body["items"], json!([]));
}

#[tokio::test]
async fn an_address_that_keeps_hitting_rate_limits_is_blocked() {
    let app = app_with(|c| {
        c.rate_limits.anonymous_per_minute = 2;
        c.ip_blocks.rate_limited_per_minute = 2;
    })
    .await;
    let ip = "192.0.2.60";
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(from(&app, ip, "GET", "/api/v1/openapi.json", None, None).await.status);
    }
    assert_eq!(statuses, [200, 200, 429, 429, 429, 403], "two 429s are tolerated, the third blocks");
    wait_until("the block to be recorded", Duration::from_secs(2), || async {
        let listed = app.request("GET", "/api/v1/ip-blocks", Some(&app.operator_token), None).await;
        listed.body["items"][0]["reason"] == "rate_limits"
    })
    .await;
    assert_eq!(from(&app, "192.0.2.61", "GET", "/api/v1/openapi.json", None, None).await.status, 200);
}

#[tokio::test]
async fn a_sign_up_pays_with_a_proof_of_work_that_is_bound_to_its_address_and_spent_once() {
    let app = app_with(|c| {
        c.trial.challenge_ttl_s = 2;
        c.rate_limits.trial_signups_per_minute = 100;
    })
    .await;
    let post = |client: &'static str, body: Option<Value>| {
        let app = &app;
        async move { from(app, client, "POST", "/api/v1/trial", None, body.as_ref()).await }
    };
    let unpaid = post("192.0.2.1", None).await;
    assert_eq!((unpaid.status, unpaid.code()), (400, "proof_of_work_required"), "{unpaid:?}");
    assert!(unpaid.body["detail"].as_str().is_some_and(|d| d.contains("/api/v1/trial/challenges")), "{unpaid:?}");

    let challenge = from(&app, "192.0.2.1", "POST", "/api/v1/trial/challenges", None, None).await;
    assert_eq!(challenge.status, 201, "{challenge:?}");
    assert_eq!(
        (challenge.body["algorithm"].as_str(), challenge.body["bits"].as_u64()),
        (Some("sha256-leading-zero-bits"), Some(8))
    );
    let paid = gofer_tests::solved(&challenge.body);
    // A nonce that does not solve it.
    let text = paid["challenge"].as_str().unwrap().to_owned();
    let nonce = paid["nonce"].as_u64().unwrap();
    let wrong = (0..).find(|n| !gofer_core::proof_of_work::meets(&text, *n, 8)).unwrap();
    let unsolved = post("192.0.2.1", Some(json!({"challenge": text, "nonce": wrong}))).await;
    assert_eq!((unsolved.status, unsolved.code()), (422, "proof_of_work_invalid"), "{unsolved:?}");
    // Solved work is bound to the address that asked: another address cannot spend it.
    let elsewhere = post("192.0.2.99", Some(paid.clone())).await;
    assert_eq!((elsewhere.status, elsewhere.code()), (422, "challenge_invalid"), "{elsewhere:?}");
    // A forged challenge (its signature changed) is refused whatever the work.
    let mut forged = text.clone();
    forged.replace_range(forged.len() - 4.., "AAAA");
    let forged = post("192.0.2.1", Some(gofer_tests::solved(&json!({"challenge": forged, "bits": 8})))).await;
    assert_eq!((forged.status, forged.code()), (422, "challenge_invalid"), "{forged:?}");
    // Unknown fields and wrong types name the field.
    let extra = post("192.0.2.1", Some(json!({"challenge": text, "nonce": nonce, "x": 1}))).await;
    assert_eq!((extra.status, extra.code()), (400, "invalid_body"), "{extra:?}");
    assert!(extra.body["detail"].as_str().is_some_and(|d| d.contains('x')), "{extra:?}");

    assert_eq!(post("192.0.2.1", Some(paid.clone())).await.status, 201, "the paid sign-up");
    let replayed = post("192.0.2.1", Some(paid)).await;
    assert_eq!((replayed.status, replayed.code()), (409, "challenge_spent"), "{replayed:?}");

    // An expired challenge is refused.
    let late = from(&app, "192.0.2.1", "POST", "/api/v1/trial/challenges", None, None).await;
    let late = gofer_tests::solved(&late.body);
    tokio::time::sleep(Duration::from_millis(3100)).await;
    let expired = post("192.0.2.1", Some(late)).await;
    assert_eq!((expired.status, expired.code()), (422, "challenge_invalid"), "{expired:?}");
    // A bystander's paid sign-up works throughout.
    assert_eq!(trial(&app, "198.51.100.7").await.status, 201);
}

#[tokio::test]
async fn trials_are_capped_per_network_around_the_address_and_per_hour_for_the_service() {
    let app = app_with(|c| {
        c.trial.max_per_ipv4_24_per_day = 2;
        c.trial.max_per_ipv6_56_per_day = 2;
        c.trial.max_per_ipv6_48_per_day = 3;
    })
    .await;
    assert_eq!(trial(&app, "192.0.2.1").await.status, 201);
    assert_eq!(trial(&app, "192.0.2.2").await.status, 201);
    let refused = trial(&app, "192.0.2.3").await;
    assert_eq!((refused.status, refused.code()), (403, "trial_refused"), "{refused:?}");
    let detail = refused.body["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("max_per_ipv4_24_per_day") && detail.contains("192.0.2.0/24"), "{detail}");
    assert!(detail.contains("before 20"), "says when it lifts: {detail}");
    assert_eq!(trial(&app, "198.51.100.1").await.status, 201, "another /24");

    // IPv6: two /64s of one /56, then a third /56 would be the /48's fourth.
    assert_eq!(trial(&app, "2001:db8:1:100::1").await.status, 201);
    assert_eq!(trial(&app, "2001:db8:1:101::1").await.status, 201);
    let refused = trial(&app, "2001:db8:1:102::1").await;
    assert!(refused.body["detail"].as_str().is_some_and(|d| d.contains("max_per_ipv6_56_per_day")), "{refused:?}");
    assert_eq!(trial(&app, "2001:db8:1:200::1").await.status, 201, "another /56 of the /48");
    let refused = trial(&app, "2001:db8:1:300::1").await;
    assert!(refused.body["detail"].as_str().is_some_and(|d| d.contains("max_per_ipv6_48_per_day")), "{refused:?}");
    assert_eq!(trial(&app, "2001:db8:2::1").await.status, 201, "another /48");
    // Network caps refuse without blocking: the refused addresses are not blocked.
    let blocks = app.request("GET", "/api/v1/ip-blocks", Some(&app.operator_token), None).await;
    assert_eq!(blocks.body["items"].as_array().map(Vec::len), Some(0), "{blocks:?}");

    let budget = app_with(|c| c.trial.max_per_hour = 2).await;
    assert_eq!(trial(&budget, "192.0.2.1").await.status, 201);
    assert_eq!(trial(&budget, "198.51.100.1").await.status, 201);
    let refused = trial(&budget, "203.0.113.1").await;
    assert_eq!((refused.status, refused.code()), (403, "trial_refused"), "{refused:?}");
    assert!(refused.body["detail"].as_str().is_some_and(|d| d.contains("max_per_hour")), "{refused:?}");
}
