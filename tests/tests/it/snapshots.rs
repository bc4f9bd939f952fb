//! Snapshots of answers whose every field is part of the contract: a problem body, a run and a
//! task execution as the API shows them. A field added, renamed or reformatted shows up as a
//! snapshot diff in review (`cargo insta review`, or `INSTA_UPDATE=always` to accept), rather
//! than passing unnoticed because no assertion named it. Times, token ids and the host are
//! redacted.

use std::time::Duration;

use gofer_tests::spawn_app;

#[tokio::test]
async fn a_problem_body() {
    let app = spawn_app().await;
    let acme = app.tenant("acme").await;
    let missing = acme.request("GET", "/api/v1/namespaces/nowhere", None).await;
    assert_eq!(missing.status, 404);
    insta::assert_json_snapshot!("problem_namespace_not_found", missing.body);
    let unknown = acme
        .request("POST", "/api/v1/namespaces", Some(&serde_json::json!({"id": "abc", "name": "x", "colour": 1})))
        .await;
    insta::assert_json_snapshot!("problem_unknown_field", unknown.body);
}

#[tokio::test]
async fn a_complete_run_and_its_task_execution() {
    let app = spawn_app().await;
    let acme = app.tenant("acme").await;
    acme.namespace("builds").await;
    acme.register_one_task("builds", "quick", "noop", &["true"]).await;
    let run = acme.run_to_completion("builds", "quick", Duration::from_secs(60)).await;
    let path = format!("/api/v1/namespaces/builds/pipelines/quick/runs/{}", run.id);
    let read = acme.request("GET", &path, None).await;
    insta::assert_json_snapshot!("run_complete", read.body, {
        ".run.created" => "[time]",
        ".run.deadline" => "[time]",
        ".run.started" => "[time]",
        ".run.ended" => "[time]",
        ".run.initiator.id" => "[token id]",
    });
    let task = acme.request("GET", &format!("{path}/tasks/noop"), None).await;
    insta::assert_json_snapshot!("task_execution_successful", task.body, {
        ".task.started" => "[time]",
        ".task.ended" => "[time]",
        ".task.created" => "[time]",
        ".task.node" => "[host]",
    });
}
