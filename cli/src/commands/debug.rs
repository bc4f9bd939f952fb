//! `gofer debug dump`: one JSON document with everything needed to debug a run or a task: the
//! API's debug document (`GET …/runs/{run}/debug`) plus the last log lines of every attempt.
//! Secret values are never in it: the API never returns them, and the config's environment
//! values are masked here too, since users sometimes paste credentials into them.

use gofer_core::debug::TaskDebug;
use gofer_core::{NamespaceId, PipelineId, RunId, TaskId};
use gofer_sdk::Client;
use serde_json::{Value, json};

use crate::args::{DebugCommand, DumpCommand};
use crate::output;
use crate::{CliError, Ctx};

pub(crate) async fn run(ctx: &Ctx, command: DebugCommand) -> Result<(), CliError> {
    let DebugCommand::Dump(what) = command;
    let document = match what {
        DumpCommand::Run { pipeline, run, log_lines } => {
            let (ns, p, r) = ctx.run(&pipeline, &run).await?;
            dump(&ctx.client, &ns, &p, r, None, log_lines).await?
        }
        DumpCommand::Task { pipeline, run, task, log_lines } => {
            let (ns, p, r, t) = ctx.task(&pipeline, &run, &task).await?;
            dump(&ctx.client, &ns, &p, r, Some(t), log_lines).await?
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

/// One task: the execution, each attempt with its last log lines, its scheduler jobs and nodes.
async fn task_section(
    client: &Client,
    (ns, p, run): (&NamespaceId, &PipelineId, RunId),
    task: &TaskDebug,
    log_lines: usize,
) -> Value {
    let id = &task.execution.task_id;
    let mut attempts = Vec::new();
    for attempt in &task.attempts {
        let log = match client.attempt_logs(ns, p, run, id, attempt.attempt).await {
            Ok(log) => json!(tail(&log, log_lines)),
            Err(e) => json!({ "unavailable": e.to_string() }),
        };
        attempts.push(json!({ "attempt": attempt, "last_log_lines": log }));
    }
    json!({
        "execution": task.execution,
        "attempts": attempts,
        "scheduler": {
            "job_ids": task.attempts.iter().map(|a| &a.scheduler_id).collect::<Vec<_>>(),
            "nodes": task.attempts.iter().filter_map(|a| a.node.as_ref()).collect::<Vec<_>>(),
        },
    })
}

async fn dump(
    client: &Client,
    ns: &NamespaceId,
    p: &PipelineId,
    run: RunId,
    only: Option<TaskId>,
    log_lines: usize,
) -> Result<Value, CliError> {
    let debug = client.run_debug(ns, p, run).await?;
    if let Some(id) = &only
        && !debug.tasks.iter().any(|t| &t.execution.task_id == id)
    {
        // The API's own not-found answer, with its code.
        client.get_task(ns, p, run, id).await?;
    }
    let mut config = serde_json::to_value(&debug.config).expect("configs serialize");
    if let Some(inner) = config.get_mut("config") {
        mask_env(inner);
    }
    let mut tasks = Vec::new();
    for task in debug.tasks.iter().filter(|t| only.as_ref().is_none_or(|id| &t.execution.task_id == id)) {
        tasks.push(task_section(client, (ns, p, run), task, log_lines).await);
    }
    let events: Vec<_> = debug
        .events
        .iter()
        .filter(|e| only.as_ref().is_none_or(|id| e.task_id.is_none() || e.task_id.as_ref() == Some(id)))
        .collect();
    Ok(json!({
        "gofer_debug_dump": 1,
        "generated": output::time(Some(time::OffsetDateTime::now_utc())),
        "server": client.base(),
        "caller": client.whoami().await.ok(),
        "config_version": config,
        "run": debug.run,
        "tasks": tasks,
        "events": events,
        "quota": debug.quota,
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
