//! docs/permissions.md is the truth about who may call what: every route of the OpenAPI document
//! is listed, no token gets 401, and a token without the route's permission gets 403.
//! Then every tenant route is probed as a second tenant with the first tenant's ids: zero leaks.

use std::collections::BTreeSet;

use gofer_tests::{TestApp, spawn_app};
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
    route
        .replace("{tenant}", "acme")
        .replace("{namespace}", "builds")
        .replace("{pipeline}", "demo")
        .replace("{run}", "1")
        .replace("{task}", "work")
        .replace("{version}", "1")
        .replace("{from}", "1")
        .replace("{to}", "1")
        .replace("{deployment}", "1")
        .replace("{id}", "00000000-0000-4000-8000-000000000000")
}

/// Tenant "acme" with a namespace, a pipeline, a complete run; answers tokens by role.
async fn seed(app: &TestApp) -> [(String, String); 3] {
    let acme = app.tenant("acme").await;
    acme.namespace("builds").await;
    acme.register(
        "builds",
        "demo",
        json!({"name": "Demo", "tasks": [{"id": "work", "image": "debian:12", "command": ["true"]}]}),
    )
    .await;
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
        let body = matches!(method.as_str(), "POST" | "PATCH").then(|| json!({}));
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
            "write" => vec![&operator, &read],
            "admin" => vec![&operator, &read, &write],
            other => panic!("unknown permission {other:?} for {method} {route}"),
        };
        for token in lacking {
            let answer = app.request(method, &path, Some(token), body.as_ref()).await;
            assert_eq!(answer.status, 403, "{method} {route} ({permission}) with a token lacking it: {answer:?}");
        }
    }
}

#[tokio::test]
async fn a_second_tenant_probing_every_route_with_the_first_tenants_ids_finds_nothing() {
    let app = spawn_app().await;
    let [(_, acme_admin), _, _] = seed(&app).await;
    let umbrella = app.tenant("umbrella").await;
    umbrella.namespace("mine").await;
    let acme_token_id: String = sqlx::query_scalar("SELECT id::text FROM api_tokens WHERE tenant_id = 'acme' LIMIT 1")
        .fetch_one(&app.db)
        .await
        .unwrap();

    for (method, route, permission) in permission_table() {
        if !["read", "write", "admin", "token_manager"].contains(&permission.as_str()) {
            continue;
        }
        let path = concrete(&route).replace("00000000-0000-4000-8000-000000000000", &acme_token_id);
        let body = matches!(method.as_str(), "POST" | "PATCH").then(|| json!({}));
        let answer = umbrella.request(&method, &path, body.as_ref()).await;
        let text = answer.body.to_string();
        match route.as_str() {
            // Lists and the caller's own objects: whatever answers, none of acme's data.
            "/api/v1/namespaces" | "/api/v1/tokens" | "/api/v1/events" | "/api/v1/tokens/whoami" => {
                assert!(answer.status < 500, "{method} {route}: {answer:?}");
                assert!(
                    !text.contains("builds") && !text.contains("\"acme\"") && !text.contains(&acme_token_id),
                    "{method} {route} leaked: {text}"
                );
            }
            _ => {
                // Exactly the answer for ids that exist nowhere.
                let nowhere = concrete(&route)
                    .replace("builds", "nowhere")
                    .replace("00000000-0000-4000-8000-000000000000", "00000000-0000-4000-8000-00000000beef");
                let missing = umbrella.request(&method, &nowhere, body.as_ref()).await;
                assert!(
                    answer.status == 404 || (answer.status == 400 && body.is_some()),
                    "{method} {route} as another tenant must not find acme's objects: {answer:?}"
                );
                assert_eq!(
                    (answer.status, answer.code()),
                    (missing.status, missing.code()),
                    "{method} {route}: another tenant's object must look missing"
                );
            }
        }
    }
    // And acme's objects are all still there, untouched.
    let acme = app.request("GET", "/api/v1/namespaces/builds/pipelines/demo/runs/1", Some(&acme_admin), None).await;
    assert_eq!((acme.status, acme.body["run"]["status"].as_str()), (200, Some("successful")));
}
