//! Pipeline commands: register, list, get, versions, diff, deploy, canary, disable, delete.

use gofer_core::diff::ChangeOp;
use gofer_core::model::{ConfigDiff, ConfigSummary, Deployment, Pipeline, PipelineStats, RunWindowStats};
use gofer_core::{DeploymentId, PipelineState, ValidConfig};
use gofer_sdk::{Canary, CreateDeployment, all_pages};

use crate::args::PipelineCommand;
use crate::commands::read_input;
use crate::output::{duration, emit, fields, opt, table, time};
use crate::{CliError, Ctx};

pub(crate) async fn run(ctx: &Ctx, command: PipelineCommand) -> Result<(), CliError> {
    let c = &ctx.client;
    match command {
        PipelineCommand::Register { pipeline, file, no_deploy } => {
            let (ns, p) = ctx.pipeline(&pipeline)?;
            let bytes = read_input(&file)?;
            // The server's own validator: a bad config is a usage error, caught before any request.
            ValidConfig::parse(&bytes).map_err(|e| CliError::Usage(format!("invalid config ({}): {e}", e.code())))?;
            let config: serde_json::Value =
                serde_json::from_slice(&bytes).map_err(|e| CliError::Usage(e.to_string()))?;
            let registered = c.register_config_with(&ns, &p, &config, !no_deploy).await?;
            emit(ctx, &registered, |r| {
                let what = if r.created { "Registered" } else { "Already registered as" };
                format!("{what} {pipeline} version {} ({}), hash {}", r.version, r.state, r.config_hash)
            });
        }
        PipelineCommand::List => {
            let ns = ctx.ns()?;
            let items = all_pages(|page| c.list_pipelines(&ns, page)).await?;
            emit(ctx, &items, |i| pipelines_table(i));
        }
        PipelineCommand::Get { pipeline } => {
            let (ns, p) = ctx.pipeline(&pipeline)?;
            emit(ctx, &c.get_pipeline(&ns, &p).await?, |p| pipelines_table(std::slice::from_ref(p)));
        }
        PipelineCommand::Versions { pipeline } => {
            let (ns, p) = ctx.pipeline(&pipeline)?;
            let items = all_pages(|page| c.list_configs(&ns, &p, page)).await?;
            emit(ctx, &items, |i| versions_table(i));
        }
        PipelineCommand::Config { pipeline, version } => {
            let (ns, p) = ctx.pipeline(&pipeline)?;
            let detail = c.get_config(&ns, &p, version).await?;
            emit(ctx, &detail, |d| {
                let config = serde_json::to_string_pretty(&d.config).unwrap_or_default();
                format!("version {} ({}), hash {}\n{config}", d.version, d.state, d.config_hash)
            });
        }
        PipelineCommand::Diff { pipeline, a, b } => {
            let (ns, p) = ctx.pipeline(&pipeline)?;
            emit(ctx, &c.diff_configs(&ns, &p, a, b).await?, render_diff);
        }
        PipelineCommand::Deploy { pipeline, version } => {
            let (ns, p) = ctx.pipeline(&pipeline)?;
            let body = CreateDeployment { version, ..Default::default() };
            emit(ctx, &c.create_deployment(&ns, &p, &body).await?, deployment_fields);
        }
        PipelineCommand::Canary { pipeline, version, percent, max_failure_rate, min_runs } => {
            let (ns, p) = ctx.pipeline(&pipeline)?;
            let canary = Some(Canary { percent, max_failure_rate, min_runs });
            let body = CreateDeployment { version, canary };
            emit(ctx, &c.create_deployment(&ns, &p, &body).await?, deployment_fields);
        }
        PipelineCommand::Deployments { pipeline } => {
            let (ns, p) = ctx.pipeline(&pipeline)?;
            let items = all_pages(|page| c.list_deployments(&ns, &p, page)).await?;
            emit(ctx, &items, |i| deployments_table(i));
        }
        PipelineCommand::Deployment { pipeline, deployment } => {
            let (ns, p) = ctx.pipeline(&pipeline)?;
            emit(ctx, &c.get_deployment(&ns, &p, DeploymentId::parse(&deployment)?).await?, deployment_fields);
        }
        PipelineCommand::Rollback { pipeline, deployment, reason } => {
            let (ns, p) = ctx.pipeline(&pipeline)?;
            let id = DeploymentId::parse(&deployment)?;
            emit(ctx, &c.rollback_deployment(&ns, &p, id, reason.as_deref()).await?, deployment_fields);
        }
        PipelineCommand::Disable { pipeline } => set_state(ctx, &pipeline, PipelineState::Disabled).await?,
        PipelineCommand::Enable { pipeline } => set_state(ctx, &pipeline, PipelineState::Active).await?,
        PipelineCommand::Stats { pipeline } => {
            let (ns, p) = ctx.pipeline(&pipeline)?;
            emit(ctx, &c.pipeline_stats(&ns, &p).await?, stats_table);
        }
        PipelineCommand::Delete { pipeline, delete_runs, confirm } => {
            let (ns, p) = ctx.pipeline(&pipeline)?;
            crate::confirm::deletion(
                "pipeline",
                &pipeline,
                "its config versions, deployments, secrets and objects",
                &confirm,
            )?;
            c.delete_pipeline(&ns, &p, delete_runs).await?;
            emit(ctx, &serde_json::json!({ "deleted": pipeline }), |_| format!("Deleted pipeline {pipeline}"));
        }
    }
    Ok(())
}

async fn set_state(ctx: &Ctx, pipeline: &str, state: PipelineState) -> Result<(), CliError> {
    let (ns, p) = ctx.pipeline(pipeline)?;
    let updated = ctx.client.set_pipeline_state(&ns, &p, state).await?;
    emit(ctx, &updated, |p| pipelines_table(std::slice::from_ref(p)));
    Ok(())
}

fn pipelines_table(items: &[Pipeline]) -> String {
    table(
        ["id", "state", "live", "latest", "modified"],
        items.iter().map(|p| {
            [p.id.to_string(), p.state.to_string(), opt(p.live_version), opt(p.latest_version), time(Some(p.modified))]
        }),
    )
}

fn versions_table(items: &[ConfigSummary]) -> String {
    table(
        ["version", "state", "registered", "deprecated", "hash"],
        items.iter().map(|v| {
            let hash: String = v.config_hash.chars().take(12).collect();
            [v.version.to_string(), v.state.to_string(), time(Some(v.registered)), time(v.deprecated), hash]
        }),
    )
}

fn deployments_table(items: &[Deployment]) -> String {
    table(
        ["id", "type", "from", "to", "state", "status", "started", "ended"],
        items.iter().map(|d| {
            [
                d.id.to_string(),
                d.kind.to_string(),
                opt(d.from_version),
                d.to_version.to_string(),
                d.state.to_string(),
                d.status.to_string(),
                time(Some(d.started)),
                time(d.ended),
            ]
        }),
    )
}

fn stats_table(s: &PipelineStats) -> String {
    let row = |window: &str, w: &RunWindowStats| {
        let secs = |v: Option<f64>| v.map(duration).unwrap_or_else(|| "-".into());
        [
            window.to_owned(),
            w.runs.to_string(),
            w.successful.to_string(),
            w.failed.to_string(),
            w.cancelled.to_string(),
            w.success_rate.map(|r| format!("{:.1}%", r * 100.0)).unwrap_or_else(|| "-".into()),
            secs(w.duration_mean_s),
            secs(w.duration_p50_s),
            secs(w.duration_p95_s),
            secs(w.duration_max_s),
        ]
    };
    table(
        ["window", "runs", "successful", "failed", "cancelled", "success", "mean", "p50", "p95", "max"],
        [row("7 days", &s.last_7_days), row("30 days", &s.last_30_days)],
    )
}

fn deployment_fields(d: &Deployment) -> String {
    let mut out = fields(&[
        ("deployment", d.id.to_string()),
        ("type", d.kind.to_string()),
        ("versions", format!("{} -> {}", opt(d.from_version), d.to_version)),
        ("state", d.state.to_string()),
        ("status", d.status.to_string()),
        ("reason", opt(d.status_reason.as_ref())),
        ("canary", d.canary_percent.map(|p| format!("{p}% of new runs")).unwrap_or_else(|| "-".into())),
        ("canary runs", format!("{} ({} failed)", d.canary_runs, d.canary_failures)),
    ]);
    for entry in &d.log {
        out.push_str(&format!("  {}  {}\n", time(Some(entry.time)), entry.message));
    }
    out
}

/// A diff as one line per change: `+` added, `-` removed, `~` changed (old → new).
pub(crate) fn render_diff(diff: &ConfigDiff) -> String {
    let mut out = format!("version {} -> {}: ", diff.from, diff.to);
    if diff.changes.is_empty() {
        out.push_str("no changes\n");
        return out;
    }
    out.push_str(&format!("{} change{}\n", diff.changes.len(), if diff.changes.len() == 1 { "" } else { "s" }));
    for change in &diff.changes {
        let line = match change.op {
            ChangeOp::Added => format!("+ {}: {}", change.path, change.to),
            ChangeOp::Removed => format!("- {}: {}", change.path, change.from),
            ChangeOp::Changed => format!("~ {}: {} -> {}", change.path, change.from, change.to),
        };
        out.push_str(&line);
        out.push('\n');
    }
    out
}
