//! `gofer run watch` / `run start --watch`: the run's DAG with each task's state, duration and
//! reason, redrawn whenever the run's event stream says something changed. On a terminal the view
//! is redrawn in place; otherwise each change is printed once, as a line.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::time::Duration;

use gofer_core::model::{Run, TaskExecution};
use gofer_core::{NamespaceId, PipelineConfig, PipelineId, RunId, RunState, RunStatus, TaskId, TaskState, TaskStatus};
use gofer_sdk::{EventFilter, EventStream};

use crate::commands::task_reason;
use crate::output::{duration, elapsed, json, opt, table};
use crate::{CliError, Ctx};

/// How often the view is refreshed without events (durations tick; a lost stream is noticed).
const REFRESH: Duration = Duration::from_secs(1);
/// Events closer together than this are drawn once.
const COALESCE: Duration = Duration::from_millis(50);

/// Follows a run until it completes; an unsuccessful run is [`CliError::RunUnsuccessful`].
pub(crate) async fn watch(ctx: &Ctx, ns: &NamespaceId, p: &PipelineId, run: RunId) -> Result<(), CliError> {
    let c = &ctx.client;
    let first = c.get_run(ns, p, run).await?;
    let config = c.get_config(ns, p, first.config_version).await?.config;
    let filter = EventFilter::run(ns, p, run);
    let after = c.all_events(&filter, None).await?.pop().map(|e| e.id);
    let mut stream = c.follow_events(&filter, after.as_ref()).await.ok();
    let terminal = ctx.human() && std::io::stdout().is_terminal();
    let mut drawn_lines = 0usize;
    let mut seen: BTreeMap<TaskId, (TaskState, TaskStatus)> = BTreeMap::new();
    let finished = loop {
        let current = c.get_run(ns, p, run).await?;
        let tasks = c.list_tasks(ns, p, run).await?;
        if terminal {
            let view = render(&current, &config, &tasks);
            // Move up over the previous drawing and clear it.
            if drawn_lines > 0 {
                crate::output::write_stdout(format!("\x1b[{drawn_lines}A\x1b[J").as_bytes());
            }
            crate::output::write_stdout(view.as_bytes());
            drawn_lines = view.lines().count();
        } else if ctx.human() {
            for t in &tasks {
                let now = (t.state, t.status);
                if seen.insert(t.task_id.clone(), now) != Some(now) {
                    let status = if t.status == TaskStatus::Unknown { String::new() } else { format!(" {}", t.status) };
                    let line = format!("{:<20} {}{status}  {}", t.task_id.as_str(), t.state, reason_or_blank(t));
                    crate::output::print_line(line.trim_end());
                }
            }
        }
        if current.state == RunState::Complete {
            if !terminal && ctx.human() {
                crate::output::write_stdout(render(&current, &config, &tasks).as_bytes());
            }
            break current;
        }
        wait_for_change(&mut stream, c, &filter).await;
    };
    if !ctx.human() {
        json(&finished);
    }
    if finished.status == RunStatus::Successful {
        Ok(())
    } else {
        Err(CliError::RunUnsuccessful { run, status: finished.status })
    }
}

fn reason_or_blank(t: &TaskExecution) -> String {
    let reason = task_reason(t);
    if reason == "-" { String::new() } else { reason }
}

/// Waits for an event of the run (then lets a burst settle), or for the refresh period. A broken
/// stream is reopened from its last event on the next call.
async fn wait_for_change(stream: &mut Option<EventStream>, client: &gofer_sdk::Client, filter: &EventFilter) {
    let Some(events) = stream.as_mut() else {
        tokio::time::sleep(REFRESH).await;
        return;
    };
    match tokio::time::timeout(REFRESH, events.next()).await {
        Err(_) => {}
        Ok(Some(Ok(_))) => while let Ok(Some(Ok(_))) = tokio::time::timeout(COALESCE, events.next()).await {},
        Ok(None | Some(Err(_))) => {
            let after = events.last_event_id().cloned();
            *stream = client.follow_events(filter, after.as_ref()).await.ok();
        }
    }
}

/// The run's header and its tasks in dependency order, children indented under their deepest parent.
pub(crate) fn render(run: &Run, config: &PipelineConfig, tasks: &[TaskExecution]) -> String {
    let mut depth: BTreeMap<&TaskId, usize> = BTreeMap::new();
    // Configs are validated acyclic and list tasks in any order: settle depths by repetition.
    for _ in 0..=config.tasks.len() {
        for t in &config.tasks {
            let d = t.depends_on.keys().map(|p| depth.get(p).copied().unwrap_or(0) + 1).max().unwrap_or(0);
            depth.insert(&t.id, d);
        }
    }
    let mut ordered: Vec<&TaskExecution> = tasks.iter().collect();
    ordered.sort_by_key(|t| (depth.get(&t.task_id).copied().unwrap_or(0), t.task_id.clone()));
    let parents = |id: &TaskId| -> String {
        let deps: Vec<String> = config
            .tasks
            .iter()
            .find(|t| &t.id == id)
            .map(|t| t.depends_on.iter().map(|(p, c)| format!("{p}({c})")).collect())
            .unwrap_or_default();
        if deps.is_empty() { "-".into() } else { deps.join(" ") }
    };
    let status = if run.state == RunState::Complete { run.status.to_string() } else { run.state.to_string() };
    let mut out = format!(
        "Run {} of {}/{} (version {}): {}  {}\n",
        run.id,
        run.namespace_id,
        run.pipeline_id,
        run.config_version,
        status,
        opt(elapsed(run.started.or(Some(run.created)), run.ended).map(duration)),
    );
    out.push_str(&table(
        ["task", "state", "status", "duration", "after", "reason"],
        ordered.iter().map(|t| {
            let indent = "  ".repeat(depth.get(&t.task_id).copied().unwrap_or(0));
            [
                format!("{indent}{}", t.task_id),
                t.state.to_string(),
                t.status.to_string(),
                opt(elapsed(t.started, t.ended).map(duration)),
                parents(&t.task_id),
                task_reason(t),
            ]
        }),
    ));
    if let Some(reason) = &run.status_reason {
        out.push_str(&format!("{}: {}\n", reason.reason, reason.description));
    }
    out
}
