//! Tokens: scoped, expiring, revocable; failed authentications limited per client address.

use std::time::{Duration, Instant};

use gofer_tests::{fresh_database, spawn_app, spawn_with, test_config};
use serde_json::json;

#[tokio::test]
async fn a_tenant_admin_creates_a_scoped_read_token_shown_once() {
    let app = spawn_app().await;
    let acme = app.tenant("acme").await;
    for ns in ["team-a", "team-b", "ops"] {
        acme.namespace(ns).await;
    }
    let created = acme
        .request(
            "POST",
            "/api/v1/tokens",
            Some(&json!({"role": "read", "namespaces": ["team-*"], "description": "ci reader"})),
        )
        .await;
    assert_eq!(created.status, 201, "{created:?}");
    let secret = created.body["token"].as_str().unwrap().to_owned();
    let meta = &created.body["metadata"];
    assert_eq!((meta["kind"].as_str(), meta["role"].as_str()), (Some("tenant"), Some("read")));
    assert_eq!(meta["namespaces"], json!(["team-*"]));
    assert!(meta["expires"].is_string(), "tokens expire by default");

    let listed = acme.request("GET", "/api/v1/tokens", None).await;
    assert_eq!(listed.status, 200);
    assert!(!listed.body.to_string().contains(&secret), "lists never show secrets");
    assert_eq!(listed.body["items"].as_array().unwrap().len(), 2, "the initial admin token and the new one");

    let namespaces = app.request("GET", "/api/v1/namespaces", Some(&secret), None).await;
    let ids: Vec<&str> =
        namespaces.body["items"].as_array().unwrap().iter().map(|n| n["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["team-a", "team-b"], "only the namespaces the globs allow are listed");
    let allowed = app.request("GET", "/api/v1/namespaces/team-a", Some(&secret), None).await;
    assert_eq!(allowed.status, 200);
    let outside = app.request("GET", "/api/v1/namespaces/ops", Some(&secret), None).await;
    assert_eq!((outside.status, outside.code()), (403, "namespace_forbidden"));
    let write =
        app.request("POST", "/api/v1/namespaces", Some(&secret), Some(&json!({"id": "team-c", "name": "c"}))).await;
    assert_eq!((write.status, write.code()), (403, "forbidden"));
    let manage = app.request("GET", "/api/v1/tokens", Some(&secret), None).await;
    assert_eq!((manage.status, manage.code()), (403, "forbidden"));
    let all_events = app.request("GET", "/api/v1/events", Some(&secret), None).await;
    assert_eq!(
        (all_events.status, all_events.code()),
        (403, "namespace_forbidden"),
        "a limited token must filter events"
    );
    let ops_events = app.request("GET", "/api/v1/events?namespace=ops", Some(&secret), None).await;
    assert_eq!((ops_events.status, ops_events.code()), (403, "namespace_forbidden"));
    let team_events = app.request("GET", "/api/v1/events?namespace=team-a", Some(&secret), None).await;
    assert_eq!(team_events.status, 200);

    let who = app.request("GET", "/api/v1/tokens/whoami", Some(&secret), None).await;
    assert_eq!(who.body["whoami"]["tenant_id"], "acme");
    assert_eq!(who.body["whoami"]["role"], "read");
    assert_eq!(who.body["whoami"]["token_id"], meta["id"]);
    let op = app.request("GET", "/api/v1/tokens/whoami", Some(&app.operator_token), None).await;
    assert_eq!(
        (op.body["whoami"]["kind"].as_str(), op.body["whoami"]["role"].as_str()),
        (Some("operator"), Some("operator"))
    );
}

#[tokio::test]
async fn a_write_token_limited_to_some_namespaces_cannot_create_others() {
    let app = spawn_app().await;
    let acme = app.tenant("acme").await;
    let created =
        acme.request("POST", "/api/v1/tokens", Some(&json!({"role": "write", "namespaces": ["team-*"]}))).await;
    let secret = created.body["token"].as_str().unwrap().to_owned();
    let ok =
        app.request("POST", "/api/v1/namespaces", Some(&secret), Some(&json!({"id": "team-x", "name": "x"}))).await;
    assert_eq!(ok.status, 201);
    let refused =
        app.request("POST", "/api/v1/namespaces", Some(&secret), Some(&json!({"id": "prod", "name": "p"}))).await;
    assert_eq!((refused.status, refused.code()), (403, "namespace_forbidden"));
    let limited_admin =
        acme.request("POST", "/api/v1/tokens", Some(&json!({"role": "admin", "namespaces": ["team-*"]}))).await;
    let limited_admin = limited_admin.body["token"].as_str().unwrap().to_owned();
    let manage = app.request("POST", "/api/v1/tokens", Some(&limited_admin), Some(&json!({"role": "read"}))).await;
    assert_eq!((manage.status, manage.code()), (403, "forbidden"), "only an unrestricted admin manages tokens");
}

#[tokio::test]
async fn a_revoked_token_stops_working_at_once_and_other_tenants_cannot_see_or_revoke_it() {
    let app = spawn_app().await;
    let acme = app.tenant("acme").await;
    let umbrella = app.tenant("umbrella").await;
    let created = acme.request("POST", "/api/v1/tokens", Some(&json!({"role": "read"}))).await;
    let (secret, id) = (
        created.body["token"].as_str().unwrap().to_owned(),
        created.body["metadata"]["id"].as_str().unwrap().to_owned(),
    );
    assert_eq!(app.request("GET", "/api/v1/namespaces", Some(&secret), None).await.status, 200);

    let theirs = umbrella.request("GET", &format!("/api/v1/tokens/{id}"), None).await;
    assert_eq!((theirs.status, theirs.code()), (404, "token_not_found"));
    let theirs = umbrella.request("POST", &format!("/api/v1/tokens/{id}/revoke"), None).await;
    assert_eq!((theirs.status, theirs.code()), (404, "token_not_found"));
    assert_eq!(app.request("GET", "/api/v1/namespaces", Some(&secret), None).await.status, 200, "still works");

    let revoked = acme.request("POST", &format!("/api/v1/tokens/{id}/revoke"), None).await;
    assert_eq!(revoked.status, 200);
    assert!(revoked.body["token"]["revoked"].is_string());
    let after = app.request("GET", "/api/v1/namespaces", Some(&secret), None).await;
    assert_eq!((after.status, after.code()), (401, "unauthorized"));
    let again = acme.request("POST", &format!("/api/v1/tokens/{id}/revoke"), None).await;
    assert_eq!(again.status, 200, "revoking twice changes nothing");
    let bad = acme.request("GET", "/api/v1/tokens/not-a-uuid", None).await;
    assert_eq!((bad.status, bad.code()), (400, "invalid_identifier"));
}

#[tokio::test]
async fn token_requests_are_validated() {
    let app = spawn_app().await;
    let acme = app.tenant("acme").await;
    for (body, field) in [
        (json!({"role": "god"}), "role"),
        (json!({"role": "read", "allowed_cidrs": ["10.0.0.300/8"]}), "allowed_cidrs"),
        (json!({"role": "read", "allowed_cidrs": ["10.0.0.0"]}), "allowed_cidrs"),
        (json!({"role": "read", "namespaces": ["Team"]}), "namespaces"),
        (json!({"role": "read", "expires_in_days": 0}), "expires_in_days"),
        (json!({"role": "read", "expires_in_days": 5000}), "expires_in_days"),
        (json!({"role": "read", "kind": "robot"}), "kind"),
    ] {
        let answer = acme.request("POST", "/api/v1/tokens", Some(&body)).await;
        assert_eq!((answer.status, answer.code()), (400, "invalid_field"), "{body}");
        assert!(answer.body["detail"].as_str().unwrap().starts_with(field), "{body}: {answer:?}");
    }
    // What the caller may not grant is forbidden, naming the field.
    for (body, field) in [(json!({"role": "read", "kind": "operator"}), "kind"), (json!({"role": "operator"}), "role")]
    {
        let answer = acme.request("POST", "/api/v1/tokens", Some(&body)).await;
        assert_eq!((answer.status, answer.code()), (403, "token_not_grantable"), "{body}");
        assert!(answer.body["detail"].as_str().unwrap().starts_with(field), "{body}: {answer:?}");
    }
    // A tenant token without a role is a read token: least privilege.
    let default_role = acme.request("POST", "/api/v1/tokens", Some(&json!({}))).await;
    assert_eq!(
        (default_role.status, default_role.body["metadata"]["role"].as_str()),
        (201, Some("read")),
        "{default_role:?}"
    );
    let unknown = acme.request("POST", "/api/v1/tokens", Some(&json!({"role": "read", "scopes": []}))).await;
    assert_eq!((unknown.status, unknown.code()), (400, "unknown_field"));
    let operator_token = app
        .request("POST", "/api/v1/tokens", Some(&app.operator_token), Some(&json!({"description": "second operator"})))
        .await;
    assert_eq!(operator_token.status, 201);
    assert_eq!(operator_token.body["metadata"]["kind"], "operator");
}

#[tokio::test]
async fn a_token_works_only_from_its_allowed_networks() {
    let app = spawn_app().await;
    let acme = app.tenant("acme").await;
    let elsewhere =
        acme.request("POST", "/api/v1/tokens", Some(&json!({"role": "read", "allowed_cidrs": ["10.0.0.0/8"]}))).await;
    let elsewhere = elsewhere.body["token"].as_str().unwrap().to_owned();
    let refused = app.request("GET", "/api/v1/namespaces", Some(&elsewhere), None).await;
    assert_eq!((refused.status, refused.code()), (403, "client_ip_not_allowed"));
    let here = acme
        .request("POST", "/api/v1/tokens", Some(&json!({"role": "read", "allowed_cidrs": ["127.0.0.0/8", "::1/128"]})))
        .await;
    let here = here.body["token"].as_str().unwrap().to_owned();
    assert_eq!(app.request("GET", "/api/v1/namespaces", Some(&here), None).await.status, 200);
}

#[tokio::test]
async fn expired_tokens_stop_working_and_are_purged_with_an_event() {
    let state_dir = tempfile::tempdir().unwrap();
    let mut config = test_config(fresh_database().await, state_dir.path());
    config.tokens.purge_interval_s = 1;
    config.tokens.purge_grace_s = 0;
    let app = spawn_with(config, state_dir).await;
    let acme = app.tenant("acme").await;
    let created = acme.request("POST", "/api/v1/tokens", Some(&json!({"role": "read"}))).await;
    let (secret, id) = (
        created.body["token"].as_str().unwrap().to_owned(),
        created.body["metadata"]["id"].as_str().unwrap().to_owned(),
    );
    assert_eq!(app.request("GET", "/api/v1/namespaces", Some(&secret), None).await.status, 200);
    sqlx::query("UPDATE api_tokens SET expires_at = now() - interval '1 second' WHERE id = $1::uuid")
        .bind(&id)
        .execute(&app.db)
        .await
        .unwrap();
    assert_eq!(
        app.request("GET", "/api/v1/namespaces", Some(&secret), None).await.status,
        401,
        "expired at its expiry"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left: i64 = sqlx::query_scalar("SELECT count(*) FROM api_tokens WHERE id = $1::uuid")
            .bind(&id)
            .fetch_one(&app.db)
            .await
            .unwrap();
        if left == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the purge job did not delete the expired token");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let purged: Vec<serde_json::Value> =
        sqlx::query_scalar("SELECT payload FROM events WHERE tenant_id = 'acme' AND kind = 'tokens_purged'")
            .fetch_all(&app.db)
            .await
            .unwrap();
    assert_eq!(purged, vec![json!({"count": 1})]);
}

#[tokio::test]
async fn repeated_failed_authentications_block_the_client_for_a_while() {
    let state_dir = tempfile::tempdir().unwrap();
    let mut config = test_config(fresh_database().await, state_dir.path());
    config.auth.failures_per_minute = 5;
    config.auth.failure_block_s = 120;
    let app = spawn_with(config, state_dir).await;
    let acme = app.tenant("acme").await;
    for _ in 0..5 {
        let answer = app.request("GET", "/api/v1/namespaces", Some("gofer_wrong"), None).await;
        assert_eq!(answer.status, 401);
    }
    let blocked = app.request("GET", "/api/v1/namespaces", Some("gofer_wrong"), None).await;
    assert_eq!((blocked.status, blocked.code()), (429, "rate_limited"));
    let response =
        app.http.get(format!("{}/api/v1/namespaces", app.address)).bearer_auth("gofer_other").send().await.unwrap();
    assert_eq!(response.status(), 429, "further failed authentications are refused without a lookup");
    let retry_after: u64 = response.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((100..=120).contains(&retry_after), "{retry_after}");
    // Issue 29: the block stops guessing, not the people behind the address: a valid token passes.
    let valid = app.request("GET", "/api/v1/namespaces", Some(&acme.token), None).await;
    assert_eq!(valid.status, 200, "{valid:?}");
}
