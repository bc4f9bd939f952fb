//! `gofer debug dump`: one JSON document with everything needed to debug a run or a task,
//! assembled from the API (never secret values: the API never returns them, and environment
//! values of the config are masked here since users sometimes paste credentials into them).

use gofer_core::model::TaskExecution;
use gofer_core::{NamespaceId, PipelineId, RunId};
use gofer_sdk::{Client, EventFilter};
use serde_json::{Value, json};

use crate::args::{DebugCommand, DumpCommand};
use crate::output;
use crate::{CliError, Ctx};

pub(crate) async fn run(ctx: &Ctx, command: DebugCommand) -> Result<(), CliError> {
    let DebugCommand::Dump(dump) = command;
    let document = match dump {
        DumpCommand::Run { pipeline, run, log_lines } => {
            let (ns, p, r) = ctx.run(&pipeline, &run)?;
            dump_run(&ctx.client, &ns, &p, r, None, log_lines).await?
        }
        DumpCommand::Task { pipeline, run, task, log_lines } => {
            let (ns, p, r, t) = ctx.task(&pipeline, &run, &task)?;
            dump_run(&ctx.client, &ns, &p, r, Some(t), log_lines).await?
        }
    };
    // A dump is a JSON document whatever --output says.
    output::json(&document);
    Ok(())
}

/// The last `n` lines of a log.
fn tail(text: &str, n: usize) -> Vec<&str> {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].to_vec()
}

/// Masks every value of an `env` map in a config (keys stay: they say what was set).
fn mask_env(config: &mut Value) {
    if let Some(tasks) = config.get_mut("tasks").and_then(Value::as_array_mut) {
        for task in tasks {
            if let Some(env) = task.get_mut("env").and_then(Value::as_object_mut) {
                env.values_mut().for_each(|v| *v = json!("<redacted>"));
            }
        }
    }
}

async fn task_section(
    client: &Client,
    ns: &NamespaceId,
    p: &PipelineId,
    run: RunId,
    task: &TaskExecution,
    log_lines: usize,
) -> Result<Value, CliError> {
    let attempts = client.list_attempts(ns, p, run, &task.task_id).await?;
    let mut with_logs = Vec::new();
    for attempt in &attempts {
        let log = client.attempt_logs(ns, p, run, &task.task_id, attempt.attempt).await.unwrap_or_default();
        with_logs.push(json!({ "attempt": attempt, "last_log_lines": tail(&log, log_lines) }));
    }
    Ok(json!({
        "execution": task,
        "attempts": with_logs,
        "scheduler": {
            "job_ids": attempts.iter().map(|a| &a.scheduler_id).collect::<Vec<_>>(),
            "nodes": attempts.iter().filter_map(|a| a.node.as_ref()).collect::<Vec<_>>(),
        },
    }))
}

async fn dump_run(
    client: &Client,
    ns: &NamespaceId,
    p: &PipelineId,
    run: RunId,
    only: Option<gofer_core::TaskId>,
    log_lines: usize,
) -> Result<Value, CliError> {
    let current = client.get_run(ns, p, run).await?;
    let config = client.get_config(ns, p, current.config_version).await?;
    let mut config_value = serde_json::to_value(&config).expect("configs serialize");
    if let Some(inner) = config_value.get_mut("config") {
        mask_env(inner);
    }
    let tasks = client.list_tasks(ns, p, run).await?;
    let mut sections = Vec::new();
    for task in tasks.iter().filter(|t| only.as_ref().is_none_or(|id| &t.task_id == id)) {
        sections.push(task_section(client, ns, p, run, task, log_lines).await?);
    }
    if let Some(id) = &only
        && sections.is_empty()
    {
        // The API's own not-found answer, with its code.
        client.get_task(ns, p, run, id).await?;
    }
    let events: Vec<_> = client
        .all_events(&EventFilter::run(ns, p, run), 0)
        .await?
        .into_iter()
        .filter(|e| only.as_ref().is_none_or(|id| e.task_id.is_none() || e.task_id.as_ref() == Some(id)))
        .collect();
    let waiting: Vec<Value> = tasks
        .iter()
        .filter_map(|t| t.waiting_reason.map(|w| json!({ "task_id": t.task_id, "waiting_reason": w })))
        .collect();
    let whoami = client.whoami().await.ok();
    Ok(json!({
        "gofer_debug_dump": 1,
        "generated": output::time(Some(time::OffsetDateTime::now_utc())),
        "server": client.base(),
        "caller": whoami,
        "pipeline": client.get_pipeline(ns, p).await?,
        "config_version": config_value,
        "run": current,
        "tasks": sections,
        "events": events,
        "quota": {
            "tasks_waiting": waiting,
            "note": "tasks waiting with waiting_for_quota are held by the tenant's plan (max_concurrent_tasks)",
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_values_are_masked_and_tails_are_short() {
        let mut config = json!({ "tasks": [{ "id": "a", "env": { "PASSWORD": "hunter2" } }] });
        mask_env(&mut config);
        assert_eq!(config["tasks"][0]["env"]["PASSWORD"], "<redacted>");
        assert_eq!(tail("a\nb\nc\n", 2), vec!["b", "c"]);
    }
}
