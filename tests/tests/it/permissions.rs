//! docs/permissions.md is the truth about who may call what: every route of the OpenAPI document
//! is listed, no token gets 401, and a token without the route's permission gets 403.
//! Then every tenant route is probed as a second tenant with the first tenant's ids: zero leaks.

use std::collections::BTreeSet;

use gofer_tests::{TestApp, fresh_database, spawn_app, spawn_with, test_config};
use serde_json::{Value, json};

fn repo_file(path: &str) -> String {
    std::fs::read_to_string(format!("{}/../{path}", env!("CARGO_MANIFEST_DIR"))).expect("file")
}

/// (method, route, permission) rows of the route table.
fn permission_table() -> Vec<(String, String, String)> {
    repo_file("docs/permissions.md")
        .lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.trim().trim_matches('|').split('|').map(str::trim).collect();
            let method = *cells.first()?;
            (cells.len() == 3 && ["GET", "POST", "PATCH", "PUT", "DELETE"].contains(&method))
                .then(|| (cells[0].to_owned(), cells[1].to_owned(), cells[2].to_owned()))
        })
        .collect()
}

/// (method, route) → what a run token reaches through it, from the run token table; routes
/// not listed there answer run tokens 403.
fn run_token_table() -> std::collections::BTreeMap<(String, String), String> {
    repo_file("docs/permissions.md")
        .lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.trim().trim_matches('|').split('|').map(str::trim).collect();
            let reach = *cells.first()?;
            (cells.len() == 3 && ["own run", "own pipeline", "own namespace"].contains(&reach))
                .then(|| ((cells[1].to_owned(), cells[2].to_owned()), reach.to_owned()))
        })
        .collect()
}

fn openapi_routes() -> BTreeSet<(String, String)> {
    let doc: Value = serde_json::from_str(&repo_file("docs/openapi.json")).expect("json");
    let mut routes = BTreeSet::new();
    for (path, methods) in doc["paths"].as_object().expect("paths") {
        for method in methods.as_object().expect("methods").keys() {
            routes.insert((method.to_uppercase(), path.clone()));
        }
    }
    routes
}

/// Fills a route's path parameters with ids that exist for tenant "acme" (see `seed`).
fn concrete(route: &str) -> String {
    let acme = Ids { tenant: "acme", namespace: "builds", pipeline: "demo", task: "work" };
    concrete_for(route, &acme, "00000000-0000-4000-8000-000000000000")
}

/// Tenant "acme" with a namespace, a pipeline, a complete run; answers tokens by role.
async fn seed(app: &TestApp) -> [(String, String); 3] {
    let acme = app.tenant("acme").await;
    acme.namespace("builds").await;
    acme.register_one_task("builds", "demo", "work", &["true"]).await;
    let run = acme.start_run("builds", "demo").await;
    acme.wait_for_run("builds", "demo", run, std::time::Duration::from_secs(60)).await;
    let mut tokens = Vec::new();
    for role in ["read", "write"] {
        let created = acme.request("POST", "/api/v1/tokens", Some(&json!({"role": role}))).await;
        tokens.push((role.to_owned(), created.body["token"].as_str().expect("token").to_owned()));
    }
    [("admin".to_owned(), acme.token.clone()), tokens[0].clone(), tokens[1].clone()]
}

#[tokio::test]
async fn every_route_is_listed_and_its_permission_holds() {
    let table = permission_table();
    let listed: BTreeSet<(String, String)> = table.iter().map(|(m, r, _)| (m.clone(), r.clone())).collect();
    assert_eq!(listed.len(), table.len(), "a route is listed twice");
    let routes = openapi_routes();
    assert_eq!(
        listed.symmetric_difference(&routes).collect::<Vec<_>>(),
        Vec::<&(String, String)>::new(),
        "docs/permissions.md and docs/openapi.json disagree"
    );

    let app = spawn_app().await;
    let [(_, admin), (_, read), (_, write)] = seed(&app).await;
    let operator = app.operator_token.clone();
    for (method, route, permission) in &table {
        let path = concrete(route);
        let body = matches!(method.as_str(), "POST" | "PATCH" | "PUT").then(|| json!({}));
        let anonymous = app.request(method, &path, None, body.as_ref()).await;
        if permission == "public" {
            assert_ne!(anonymous.status, 401, "{method} {route} is public");
            continue;
        }
        assert_eq!((anonymous.status, anonymous.code()), (401, "unauthorized"), "{method} {route} without a token");
        let lacking: Vec<&str> = match permission.as_str() {
            "authenticated" => vec![],
            "operator" => vec![&admin],
            "token_manager" => vec![&read, &write],
            "read" => vec![&operator],
            "write" | "runs:attach" => vec![&operator, &read],
            "admin" => vec![&operator, &read, &write],
            other => panic!("unknown permission {other:?} for {method} {route}"),
        };
        for token in lacking {
            let answer = app.request(method, &path, Some(token), body.as_ref()).await;
            assert_eq!(answer.status, 403, "{method} {route} ({permission}) with a token lacking it: {answer:?}");
        }
    }
}

/// The ids one tenant's objects have.
struct Ids {
    tenant: &'static str,
    namespace: &'static str,
    pipeline: &'static str,
    task: &'static str,
}

fn concrete_for(route: &str, ids: &Ids, token_id: &str) -> String {
    route
        .replace("{tenant}", ids.tenant)
        .replace("{plan}", "default")
        .replace("{namespace}", ids.namespace)
        .replace("{pipeline}", ids.pipeline)
        .replace("{run}", "1")
        .replace("{task}", ids.task)
        .replace("{version}", "1")
        .replace("{from}", "1")
        .replace("{to}", "1")
        .replace("{deployment}", "1")
        // Object keys may hold slashes; secret keys may not: each seeded tenant has both.
        .replace("{key}", if route.contains("/objects/") { "dist/app" } else { "API_KEY" })
        .replace("{id}", token_id)
}

/// Gives the tenant a namespace, a pipeline with a completed run; answers its admin client.
async fn seed_tenant<'a>(app: &'a TestApp, ids: &Ids) -> gofer_tests::TenantClient<'a> {
    let client = app.tenant(ids.tenant).await;
    client.namespace(ids.namespace).await;
    let config = json!({"name": "P", "tasks": [{"id": ids.task, "image": "debian:12", "command": ["true"]}]});
    client.register(ids.namespace, ids.pipeline, config).await;
    let secret = format!("/api/v1/namespaces/{}/pipelines/{}/secrets/API_KEY", ids.namespace, ids.pipeline);
    assert_eq!(client.request("PUT", &secret, Some(&json!({"value": "s3cr3t-value"}))).await.status, 201);
    let run = client.start_run(ids.namespace, ids.pipeline).await;
    client.wait_for_run(ids.namespace, ids.pipeline, run, std::time::Duration::from_secs(60)).await;
    client
}

/// Probes every tenant route as `prober` with `owner`'s ids: each answer must be exactly the
/// answer for ids that exist nowhere, and lists must not show the owner's data.
async fn probe(prober: &gofer_tests::TenantClient<'_>, owner: &Ids, owner_token_id: &str) {
    for (method, route, permission) in permission_table() {
        if !["read", "write", "admin", "token_manager", "runs:attach"].contains(&permission.as_str()) {
            continue;
        }
        let path = concrete_for(&route, owner, owner_token_id);
        let body = matches!(method.as_str(), "POST" | "PATCH" | "PUT").then(|| json!({}));
        let answer = prober.request(&method, &path, body.as_ref()).await;
        let text = answer.body.to_string();
        let leaks = [owner.namespace, owner.pipeline, owner_token_id];
        if route.matches('{').count() == 0 {
            // Lists and the caller's own objects: whatever answers, none of the owner's data.
            assert!(answer.status < 500, "{method} {route}: {answer:?}");
            assert!(!leaks.iter().any(|l| text.contains(l)), "{method} {route} leaked {}'s data: {text}", owner.tenant);
            continue;
        }
        let nowhere = Ids { tenant: "nowhere", namespace: "nowhere", pipeline: "nothing", task: "nobody" };
        let missing = prober
            .request(&method, &concrete_for(&route, &nowhere, "00000000-0000-4000-8000-00000000beef"), body.as_ref())
            .await;
        assert!(
            answer.status == 404 || (answer.status == 400 && body.is_some()),
            "{method} {route} as {} must not find {}'s objects: {answer:?}",
            prober.tenant,
            owner.tenant
        );
        assert_eq!(
            (answer.status, answer.code()),
            (missing.status, missing.code()),
            "{method} {route}: another tenant's object must look missing"
        );
    }
}

#[tokio::test]
async fn each_tenant_probing_every_route_with_the_other_tenants_ids_finds_nothing() {
    let app = spawn_app().await;
    let acme_ids = Ids { tenant: "acme", namespace: "builds", pipeline: "demo", task: "work" };
    let umbrella_ids = Ids { tenant: "umbrella", namespace: "storage", pipeline: "vault", task: "keep" };
    let acme = seed_tenant(&app, &acme_ids).await;
    let umbrella = seed_tenant(&app, &umbrella_ids).await;
    let token_of = |tenant: &str| {
        sqlx::query_scalar::<_, String>("SELECT id::text FROM api_tokens WHERE tenant_id = $1 LIMIT 1")
            .bind(tenant.to_owned())
    };
    let acme_token = token_of("acme").fetch_one(&app.db).await.unwrap();
    let umbrella_token = token_of("umbrella").fetch_one(&app.db).await.unwrap();

    probe(&umbrella, &acme_ids, &acme_token).await;
    probe(&acme, &umbrella_ids, &umbrella_token).await;

    // Both tenants' objects are all still there, untouched.
    for (client, ids) in [(&acme, &acme_ids), (&umbrella, &umbrella_ids)] {
        let path = format!("/api/v1/namespaces/{}/pipelines/{}/runs/1", ids.namespace, ids.pipeline);
        let run = client.request("GET", &path, None).await;
        assert_eq!((run.status, run.body["run"]["status"].as_str()), (200, Some("successful")), "{}", ids.tenant);
        assert_eq!(
            client
                .request(
                    "GET",
                    &format!("/api/v1/tokens/{}", if ids.tenant == "acme" { &acme_token } else { &umbrella_token }),
                    None
                )
                .await
                .status,
            200
        );
    }
}

#[tokio::test]
async fn a_run_token_reaches_exactly_the_routes_its_table_lists() {
    let state_dir = tempfile::tempdir().unwrap();
    let mut config = test_config(fresh_database().await, state_dir.path());
    let key = gofer_tests::KnownRunTokenKey::generate();
    key.configure(&mut config);
    let keys = key.keys();
    let app = spawn_with(config, state_dir).await;
    let table = permission_table();
    let reach = run_token_table();
    let unknown: Vec<_> = reach.keys().filter(|k| !table.iter().any(|(m, r, _)| (m, r) == (&k.0, &k.1))).collect();
    assert!(unknown.is_empty(), "the run token table lists routes that do not exist: {unknown:?}");

    // "demo" has a complete run; the token is "live"'s, whose run sleeps (a token works only while
    // its run is live).
    let acme = app.tenant("acme").await;
    acme.namespace("builds").await;
    acme.register_one_task("builds", "demo", "work", &["true"]).await;
    acme.run_to_completion("builds", "demo", std::time::Duration::from_secs(60)).await;
    acme.register_one_task("builds", "live", "nap", &["sleep", "120"]).await;
    let run = acme.start_run("builds", "live").await;
    let scope = gofer_tenants::run_tokens::RunScope {
        tenant: "acme".parse().unwrap(),
        namespace: "builds".parse().unwrap(),
        pipeline: "live".parse().unwrap(),
        run,
    };
    let token = keys.mint(&scope, time::OffsetDateTime::now_utc() + time::Duration::hours(1)).unwrap();

    let own = Ids { tenant: "acme", namespace: "builds", pipeline: "live", task: "nap" };
    let sibling = Ids { tenant: "acme", namespace: "builds", pipeline: "demo", task: "work" };
    for (method, route, permission) in &table {
        if ["public", "authenticated"].contains(&permission.as_str()) {
            continue;
        }
        let reach = reach.get(&(method.clone(), route.clone())).map(String::as_str);
        // Namespace-wide routes are probed on the sibling pipeline; the rest on the token's own
        // run, where a refusal is the strongest.
        let mut path = concrete_for(route, if reach == Some("own namespace") { &sibling } else { &own }, "x");
        if reach == Some("own namespace") && !route.contains("{namespace}") {
            path.push_str("?namespace=builds");
        }
        let body = matches!(method.as_str(), "POST" | "PATCH" | "PUT").then(|| json!({}));
        let answer = app.request(method, &path, Some(&token), body.as_ref()).await;
        match reach {
            Some(reach) => assert!(
                ![401, 403].contains(&answer.status),
                "{method} {route} reaches {reach} for run tokens: {answer:?}"
            ),
            None => assert_eq!(answer.status, 403, "{method} {route} is not for run tokens: {answer:?}"),
        }
    }
    // The start above was of the sibling; its own pipeline it may not start (it would loop): the
    // route is reached, and the engine refuses the chain.
    let own_start =
        app.request("POST", "/api/v1/namespaces/builds/pipelines/live/runs", Some(&token), Some(&json!({}))).await;
    assert_eq!((own_start.status, own_start.code()), (409, "run_chain_loop"), "{own_start:?}");
    let sibling_runs = acme.request("GET", "/api/v1/namespaces/builds/pipelines/demo/runs/2", None).await;
    assert_eq!(sibling_runs.body["run"]["initiator"], json!({"kind": "run", "id": format!("builds/live/{run}")}));
    acme.request("POST", &format!("/api/v1/namespaces/builds/pipelines/live/runs/{run}/cancel"), None).await;
}
