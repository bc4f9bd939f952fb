//! Run, task, log and event commands.

use std::collections::BTreeMap;

use futures_util::StreamExt;
use gofer_core::model::{Event, Run, TaskAttempt, TaskExecution};
use gofer_core::{PipelineId, RunId, TaskState};
use gofer_sdk::{EventFilter, PageOptions};

use crate::args::{EventCommand, RunCommand, TaskCommand};
use crate::output::{duration, elapsed, emit, fields, opt, table, time};
use crate::{CliError, Ctx, timeline, watch};

pub(crate) async fn run(ctx: &Ctx, command: RunCommand) -> Result<(), CliError> {
    let c = &ctx.client;
    match command {
        RunCommand::Start { pipeline, vars, watch: follow } => {
            let (ns, p) = ctx.pipeline(&pipeline)?;
            let variables: BTreeMap<String, String> = vars.into_iter().collect();
            let run = c.start_run(&ns, &p, &variables).await?;
            if follow {
                if ctx.human() {
                    crate::output::print_line(&format!(
                        "Started run {} of {pipeline} (version {})",
                        run.id, run.config_version
                    ));
                }
                return watch::watch(ctx, &ns, &p, run.id).await;
            }
            emit(ctx, &run, |r| format!("Started run {} of {pipeline} (version {})", r.id, r.config_version));
        }
        RunCommand::List { pipeline, limit } => {
            let (ns, p) = ctx.pipeline(&pipeline)?;
            let page = c.list_runs(&ns, &p, PageOptions::first(limit)).await?;
            emit(ctx, &page.items, |i| runs_table(i));
        }
        RunCommand::Get { pipeline, run } => {
            let (ns, p, r) = ctx.run(&pipeline, &run).await?;
            emit(ctx, &c.get_run(&ns, &p, r).await?, run_fields);
        }
        RunCommand::Cancel { pipeline, run } => {
            let (ns, p, r) = ctx.run(&pipeline, &run).await?;
            emit(ctx, &c.cancel_run(&ns, &p, r).await?, run_fields);
        }
        RunCommand::CancelAll { pipeline } => {
            let (ns, p) = ctx.pipeline(&pipeline)?;
            let cancelled = c.cancel_all_runs(&ns, &p).await?;
            emit(ctx, &serde_json::json!({ "cancelled": cancelled }), |_| {
                format!("Cancelling {} run(s): {}", cancelled.len(), ids(&cancelled))
            });
        }
        RunCommand::Watch { pipeline, run } => {
            let (ns, p, r) = ctx.run(&pipeline, &run).await?;
            return watch::watch(ctx, &ns, &p, r).await;
        }
        RunCommand::Timeline { pipeline, run, width } => {
            let (ns, p, r) = ctx.run(&pipeline, &run).await?;
            emit(ctx, &c.run_timeline(&ns, &p, r).await?, |t| timeline::chart(t, width));
        }
    }
    Ok(())
}

fn ids(runs: &[RunId]) -> String {
    runs.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}

fn runs_table(items: &[Run]) -> String {
    table(
        ["run", "version", "state", "status", "created", "duration", "reason"],
        items.iter().map(|r| {
            [
                r.id.to_string(),
                r.config_version.to_string(),
                r.state.to_string(),
                r.status.to_string(),
                time(Some(r.created)),
                opt(elapsed(r.started, r.ended).map(duration)),
                opt(r.status_reason.as_ref().map(|s| s.reason)),
            ]
        }),
    )
}

pub(crate) fn run_fields(r: &Run) -> String {
    let vars: Vec<String> = r.variables.iter().map(|(k, v)| format!("{k}={v}")).collect();
    fields(&[
        ("run", format!("{} of {}/{}", r.id, r.namespace_id, r.pipeline_id)),
        ("version", r.config_version.to_string()),
        ("state", r.state.to_string()),
        ("status", r.status.to_string()),
        ("reason", opt(r.status_reason.as_ref().map(|s| format!("{}: {}", s.reason, s.description)))),
        ("variables", if vars.is_empty() { "-".into() } else { vars.join(" ") }),
        ("initiator", format!("{} {}", r.initiator.kind, r.initiator.id)),
        // The runs whose tasks started this one, oldest first: why it started.
        ("chain", if r.ancestry.is_empty() { "-".into() } else { chain(&r.ancestry) }),
        ("created", time(Some(r.created))),
        ("started", time(r.started)),
        ("ended", time(r.ended)),
        ("duration", opt(elapsed(r.started, r.ended).map(duration))),
    ])
}

fn chain(ancestry: &[gofer_core::chain::RunAncestor]) -> String {
    ancestry.iter().map(ToString::to_string).collect::<Vec<_>>().join(" → ")
}

pub(crate) fn tasks_table(items: &[TaskExecution]) -> String {
    table(
        ["task", "state", "status", "attempt", "duration", "exit", "node", "reason"],
        items.iter().map(|t| {
            [
                t.task_id.to_string(),
                t.state.to_string(),
                t.status.to_string(),
                t.attempt.to_string(),
                opt(elapsed(t.started, t.ended).map(duration)),
                opt(t.exit_code),
                opt(t.node.as_ref()),
                task_reason(t),
            ]
        }),
    )
}

/// Why a task is waiting, or why it ended the way it did.
pub(crate) fn task_reason(t: &TaskExecution) -> String {
    match (&t.status_reason, t.state) {
        (Some(reason), _) => format!("{}: {}", reason.reason, reason.description),
        // The engine keeps the last waiting reason after dispatch; it only means something before.
        (None, TaskState::Waiting | TaskState::Queued) => opt(t.waiting_reason),
        (None, _) => "-".into(),
    }
}

fn attempts_table(items: &[TaskAttempt]) -> String {
    table(
        ["attempt", "state", "status", "exit", "duration", "retried", "node", "job", "reason"],
        items.iter().map(|a| {
            [
                a.attempt.to_string(),
                a.state.to_string(),
                a.status.to_string(),
                opt(a.exit_code),
                opt(elapsed(Some(a.started), a.ended).map(duration)),
                a.retried.to_string(),
                opt(a.node.as_ref()),
                a.scheduler_id.clone(),
                opt(a.status_reason.as_ref().map(|s| s.reason)),
            ]
        }),
    )
}

pub(crate) async fn task(ctx: &Ctx, command: TaskCommand) -> Result<(), CliError> {
    let c = &ctx.client;
    match command {
        TaskCommand::List { pipeline, run } => {
            let (ns, p, r) = ctx.run(&pipeline, &run).await?;
            emit(ctx, &c.list_tasks(&ns, &p, r).await?, |i| tasks_table(i));
        }
        TaskCommand::Get { pipeline, run, task } => {
            let (ns, p, r, t) = ctx.task(&pipeline, &run, &task).await?;
            emit(ctx, &c.get_task(&ns, &p, r, &t).await?, |t| tasks_table(std::slice::from_ref(t)));
        }
        TaskCommand::Attempts { pipeline, run, task } => {
            let (ns, p, r, t) = ctx.task(&pipeline, &run, &task).await?;
            emit(ctx, &c.list_attempts(&ns, &p, r, &t).await?, |i| attempts_table(i));
        }
    }
    Ok(())
}

/// `gofer logs`: the log as text whatever `--output` says (it is not an API object).
pub(crate) async fn logs(
    ctx: &Ctx,
    pipeline: &str,
    run: &str,
    task: &str,
    follow: bool,
    attempt: Option<u32>,
) -> Result<(), CliError> {
    let (ns, p, r, t) = ctx.task(pipeline, run, task).await?;
    let c = &ctx.client;
    if follow && attempt.is_none() {
        let mut stream = c.follow_logs(&ns, &p, r, &t, 0).await?;
        while let Some(chunk) = stream.next().await {
            crate::output::write_stdout(&chunk?);
        }
        return Ok(());
    }
    let text = match attempt {
        Some(n) => c.attempt_logs(&ns, &p, r, &t, n).await?,
        None => c.task_logs(&ns, &p, r, &t).await?,
    };
    crate::output::write_stdout(text.as_bytes());
    Ok(())
}

fn event_filter(ctx: &Ctx, args: &crate::args::EventArgs) -> Result<EventFilter, CliError> {
    let namespace = match &ctx.namespace {
        Some(ns) => Some(gofer_core::NamespaceId::parse(ns)?),
        None => None,
    };
    let pipeline = args.pipeline.as_deref().map(PipelineId::parse).transpose()?;
    let run = args.run.as_deref().map(RunId::parse).transpose()?;
    Ok(EventFilter { namespace, pipeline, run })
}

/// An event's columns: id, time, kind, what it is about, and its details.
fn event_cells(e: &Event) -> [String; 5] {
    let subject: Vec<String> = [
        e.namespace_id.as_ref().map(ToString::to_string),
        e.pipeline_id.as_ref().map(ToString::to_string),
        e.run_id.map(|r| format!("run {r}")),
        e.task_id.as_ref().map(|t| format!("task {t}")),
    ]
    .into_iter()
    .flatten()
    .collect();
    [e.id.to_string(), time(Some(e.emitted)), e.kind.to_string(), subject.join(" "), e.payload.to_string()]
}

/// One event as a line of `event follow` (a stream has no table to align to).
fn event_line(e: &Event) -> String {
    let [id, time, kind, subject, payload] = event_cells(e);
    format!("{id}  {time}  {kind:<20}  {subject}  {payload}")
}

pub(crate) async fn events(ctx: &Ctx, command: EventCommand) -> Result<(), CliError> {
    match command {
        EventCommand::List { filter } => {
            let f = event_filter(ctx, &filter)?;
            let items = ctx.client.all_events(&f, filter.after.as_ref()).await?;
            emit(ctx, &items, |i| table(["id", "time", "kind", "subject", "details"], i.iter().map(event_cells)));
        }
        EventCommand::Follow { filter } => {
            let f = event_filter(ctx, &filter)?;
            let mut stream = ctx.client.follow_events(&f, filter.after.as_ref()).await?;
            while let Some(event) = stream.next().await {
                let event = event?;
                if ctx.human() {
                    crate::output::print_line(&event_line(&event));
                } else {
                    // One object per line, so a script can read the stream as it comes.
                    crate::output::print_line(&serde_json::to_string(&event).expect("events serialize"));
                }
            }
        }
    }
    Ok(())
}
