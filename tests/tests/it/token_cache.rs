//! Verified tokens are cached per replica, and every replica forgets them the moment they stop
//! being valid: revocation, tenant deletion, suspension, expiry (docs/config.md, `auth.token_cache_ttl_s`).
//! Complete runs are cached too, and forgotten by every replica when they are deleted
//! (`run_cache_ttl_s`).

use std::time::{Duration, Instant};

use gofer_tests::{TestApp, fresh_database, spawn_with, test_config};
use serde_json::json;

/// Two replicas on one database, both caching tokens for a long time (longer than any test), so
/// only eviction can make a cached token stop working.
async fn two_replicas() -> (TestApp, TestApp) {
    let database_url = fresh_database().await;
    let (dir_a, dir_b) = (tempfile::tempdir().expect("state dir a"), tempfile::tempdir().expect("state dir b"));
    let mut config_a = test_config(database_url.clone(), dir_a.path());
    config_a.auth.token_cache_ttl_s = 600;
    config_a.run_cache_ttl_s = 600;
    let mut config_b = test_config(database_url, dir_b.path());
    config_b.auth.token_cache_ttl_s = 600;
    config_b.run_cache_ttl_s = 600;
    config_b.bootstrap_token = config_a.bootstrap_token.clone();
    let a = spawn_with(config_a, dir_a).await;
    let b = spawn_with(config_b, dir_b).await;
    (a, b)
}

/// Polls `app` with `token` until it answers `status`; fails after `within` (far under the TTL).
async fn refused_within(app: &TestApp, token: &str, status: u16, within: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let answer = app.request("GET", "/api/v1/namespaces", Some(token), None).await;
        if answer.status == status {
            return started.elapsed();
        }
        assert_eq!(answer.status, 200, "{answer:?}");
        assert!(started.elapsed() < within, "still accepted after {within:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Makes both replicas cache `token` (a few requests each).
async fn warm(a: &TestApp, b: &TestApp, token: &str) {
    for app in [a, b] {
        for _ in 0..3 {
            assert_eq!(app.request("GET", "/api/v1/namespaces", Some(token), None).await.status, 200);
        }
    }
}

#[tokio::test]
async fn a_token_revoked_through_one_replica_is_refused_by_the_other_at_once() {
    let (a, b) = two_replicas().await;
    let acme = a.tenant("acme").await;
    let created = acme.request("POST", "/api/v1/tokens", Some(&json!({"role": "read"}))).await;
    let (secret, id) = (
        created.body["token"].as_str().unwrap().to_owned(),
        created.body["metadata"]["id"].as_str().unwrap().to_owned(),
    );
    warm(&a, &b, &secret).await;
    let revoked = acme.request("POST", &format!("/api/v1/tokens/{id}/revoke"), None).await;
    assert_eq!(revoked.status, 200, "{revoked:?}");
    // The replica that revoked it refuses it on the very next request.
    assert_eq!(a.request("GET", "/api/v1/namespaces", Some(&secret), None).await.status, 401);
    let took = refused_within(&b, &secret, 401, Duration::from_secs(2)).await;
    eprintln!("replica B refused the revoked token after {took:?}");
    // The admin token of the same tenant still works (it is read again, not refused).
    assert_eq!(b.request("GET", "/api/v1/namespaces", Some(&acme.token), None).await.status, 200);
}

#[tokio::test]
async fn a_deleted_or_suspended_tenants_tokens_are_refused_by_every_replica() {
    let (a, b) = two_replicas().await;
    let acme = a.tenant("acme").await;
    let gone = a.tenant("gone").await;
    warm(&a, &b, &acme.token).await;
    warm(&a, &b, &gone.token).await;

    let suspended = a.request("POST", "/api/v1/tenants/acme/suspend", Some(&a.operator_token), None).await;
    assert_eq!(suspended.status, 200, "{suspended:?}");
    assert_eq!(a.request("GET", "/api/v1/namespaces", Some(&acme.token), None).await.status, 403);
    refused_within(&b, &acme.token, 403, Duration::from_secs(2)).await;
    let resumed = b.request("POST", "/api/v1/tenants/acme/resume", Some(&a.operator_token), None).await;
    assert_eq!(resumed.status, 200, "{resumed:?}");
    assert_eq!(b.request("GET", "/api/v1/namespaces", Some(&acme.token), None).await.status, 200);
    wait_for_status(&a, &acme.token, 200).await;

    let deleted = b.request("DELETE", "/api/v1/tenants/gone", Some(&a.operator_token), None).await;
    assert_eq!(deleted.status, 204, "{deleted:?}");
    assert_eq!(b.request("GET", "/api/v1/namespaces", Some(&gone.token), None).await.status, 401);
    refused_within(&a, &gone.token, 401, Duration::from_secs(2)).await;
}

/// A change made straight in the database (another tool, a purge job) evicts too.
#[tokio::test]
async fn the_cache_never_lets_an_expired_token_through() {
    let (a, b) = two_replicas().await;
    let acme = a.tenant("acme").await;
    // Expiring in 2 s: cached entries must end with the token, not 600 s later.
    let created = acme.request("POST", "/api/v1/tokens", Some(&json!({"role": "read"}))).await;
    let (secret, id) = (
        created.body["token"].as_str().unwrap().to_owned(),
        created.body["metadata"]["id"].as_str().unwrap().to_owned(),
    );
    sqlx::query("UPDATE api_tokens SET expires_at = now() + interval '2 seconds' WHERE id = $1::uuid")
        .bind(&id)
        .execute(&a.db)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    warm(&a, &b, &secret).await;
    tokio::time::sleep(Duration::from_millis(2200)).await;
    for app in [&a, &b] {
        assert_eq!(app.request("GET", "/api/v1/namespaces", Some(&secret), None).await.status, 401);
    }

    // Expired early by an edit in the database: every replica hears of it.
    let other = acme.request("POST", "/api/v1/tokens", Some(&json!({"role": "read"}))).await;
    let (secret, id) =
        (other.body["token"].as_str().unwrap().to_owned(), other.body["metadata"]["id"].as_str().unwrap().to_owned());
    warm(&a, &b, &secret).await;
    sqlx::query("UPDATE api_tokens SET expires_at = now() - interval '1 second' WHERE id = $1::uuid")
        .bind(&id)
        .execute(&a.db)
        .await
        .unwrap();
    refused_within(&a, &secret, 401, Duration::from_secs(2)).await;
    refused_within(&b, &secret, 401, Duration::from_secs(2)).await;
}

#[tokio::test]
async fn an_unknown_token_is_not_remembered_as_valid() {
    let (a, b) = two_replicas().await;
    let acme = a.tenant("acme").await;
    let forged = format!("{}x", acme.token);
    for _ in 0..3 {
        assert_eq!(b.request("GET", "/api/v1/namespaces", Some(&forged), None).await.status, 401);
    }
    assert_eq!(b.request("GET", "/api/v1/namespaces", Some(&acme.token), None).await.status, 200);
}

async fn wait_for_status(app: &TestApp, token: &str, status: u16) {
    gofer_tests::wait_until("the expected answer", Duration::from_secs(2), || async {
        app.request("GET", "/api/v1/namespaces", Some(token), None).await.status == status
    })
    .await;
}

#[tokio::test]
async fn a_complete_run_is_read_from_memory_until_a_replica_deletes_it() {
    let (a, b) = two_replicas().await;
    let acme = a.tenant("acme").await;
    acme.namespace("builds").await;
    let config = json!({"name": "Quick", "tasks": [{"id": "noop", "image": "debian:12", "command": ["true"]}]});
    acme.register("builds", "quick", config).await;
    let run = acme.run_to_completion("builds", "quick", Duration::from_secs(60)).await;
    let path = format!("/api/v1/namespaces/builds/pipelines/quick/runs/{}", run.id);
    let list = "/api/v1/namespaces/builds/pipelines/quick/runs";
    for app in [&a, &b] {
        let read = app.request("GET", &path, Some(&acme.token), None).await;
        assert_eq!(read.status, 200, "{read:?}");
        assert_eq!(read.body["run"]["state"], "complete");
    }
    // A's run list remembers the run too (B's is still cold).
    let listed = a.request("GET", list, Some(&acme.token), None).await;
    assert_eq!(listed.body["items"][0]["state"], "complete", "{listed:?}");
    // Both replicas answer from memory now: a change behind their back (which the service never
    // makes to a complete run) is not seen.
    sqlx::query(
        "UPDATE runs SET status_reason = 'task_failed', status_description = 'changed behind the cache' WHERE id = $1",
    )
    .bind(run.id.get())
    .execute(&a.db)
    .await
    .expect("edit the run");
    for app in [&a, &b] {
        let read = app.request("GET", &path, Some(&acme.token), None).await;
        assert_eq!(read.status, 200, "{read:?}");
        assert_ne!(read.body["run"]["status_reason"]["description"], "changed behind the cache", "{read:?}");
    }
    // A page mixes remembered runs with runs read now: a new run is read, the old one is not.
    let second = acme.run_to_completion("builds", "quick", Duration::from_secs(60)).await;
    let listed = a.request("GET", list, Some(&acme.token), None).await;
    assert_eq!(listed.status, 200, "{listed:?}");
    let ids: Vec<i64> = listed.body["items"].as_array().unwrap().iter().map(|r| r["id"].as_i64().unwrap()).collect();
    assert_eq!(ids, [second.id.get(), run.id.get()]);
    assert_ne!(listed.body["items"][1]["status_reason"]["description"], "changed behind the cache", "{listed:?}");
    assert_eq!(listed.body["next_cursor"], serde_json::Value::Null);
    let paged = a.request("GET", &format!("{list}?limit=1"), Some(&acme.token), None).await;
    assert_eq!(paged.body["items"][0]["id"], second.id.get(), "{paged:?}");
    let cursor = paged.body["next_cursor"].as_str().expect("a next page");
    let rest = a.request("GET", &format!("{list}?limit=1&cursor={cursor}"), Some(&acme.token), None).await;
    assert_eq!(rest.body["items"][0]["id"], run.id.get(), "{rest:?}");
    assert_eq!(rest.body["next_cursor"], serde_json::Value::Null);
    // A token that may not reach the namespace is still refused: authorization is not cached.
    let other =
        acme.request("POST", "/api/v1/tokens", Some(&json!({"role": "read", "namespaces": ["elsewhere"]}))).await;
    let other = other.body["token"].as_str().expect("token").to_owned();
    assert_eq!(a.request("GET", &path, Some(&other), None).await.status, 403);

    // Deleting the pipeline (and its runs) through B: A forgets the run at once.
    let deleted = b
        .request("DELETE", "/api/v1/namespaces/builds/pipelines/quick?delete_runs=true", Some(&acme.token), None)
        .await;
    assert_eq!(deleted.status, 204, "{deleted:?}");
    assert_eq!(b.request("GET", &path, Some(&acme.token), None).await.status, 404);
    let started = Instant::now();
    loop {
        let read = a.request("GET", &path, Some(&acme.token), None).await;
        if read.status == 404 {
            break;
        }
        assert_eq!(read.status, 200, "{read:?}");
        assert!(started.elapsed() < Duration::from_secs(2), "replica A still answers the deleted run");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let listed = a.request("GET", list, Some(&acme.token), None).await;
    assert_eq!((listed.status, listed.body["code"].as_str()), (404, Some("pipeline_not_found")), "{listed:?}");
}

#[tokio::test]
async fn a_run_page_remembered_by_one_replica_shows_runs_started_through_another_with_fresh_states() {
    let (a, b) = two_replicas().await;
    let acme = a.tenant("acme").await;
    acme.namespace("builds").await;
    let config = json!({"name": "Slow", "tasks": [{"id": "nap", "image": "debian:12", "command": ["sleep", "1"]}]});
    acme.register("builds", "slow", config).await;
    let list = "/api/v1/namespaces/builds/pipelines/slow/runs";
    let ids_on_b = || async {
        let listed = b.request("GET", list, Some(&acme.token), None).await;
        assert_eq!(listed.status, 200, "{listed:?}");
        let items = listed.body["items"].as_array().expect("items").clone();
        items.iter().map(|r| (r["id"].as_i64().unwrap(), r["state"].as_str().unwrap().to_owned())).collect::<Vec<_>>()
    };
    let first = acme.run_to_completion("builds", "slow", Duration::from_secs(60)).await;
    // B remembers the page (one run) from here on: its TTL is longer than the test.
    for _ in 0..3 {
        assert_eq!(ids_on_b().await, [(first.id.get(), "complete".to_owned())]);
    }
    // A run started through A is on B's page at once (the insert's notification evicts it).
    let second = acme.start_run("builds", "slow").await;
    let started = Instant::now();
    let page = loop {
        let page = ids_on_b().await;
        if page.len() == 2 {
            break page;
        }
        assert!(started.elapsed() < Duration::from_secs(2), "B's page still lacks the new run: {page:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    assert_eq!(page[0].0, second.get());
    assert_ne!(page[0].1, "complete", "the new run sleeps a second: {page:?}");
    // Its state is read fresh while the page of ids is remembered.
    acme.wait_for_run("builds", "slow", second, Duration::from_secs(60)).await;
    assert_eq!(ids_on_b().await, [(second.get(), "complete".to_owned()), (first.id.get(), "complete".to_owned())]);
}
