//! What a task execution's job looks like to the scheduler: its [`TaskSpec`] (image, command,
//! environment, resources, timeout) built from the task's config and the engine's defaults,
//! before the placement and references the monitor adds.

use std::collections::BTreeMap;
use std::time::Duration;

use gofer_core::scheduler::TaskSpec;
use gofer_core::{TaskConfig, TaskKind};

use super::context::EngineConfig;
use gofer_core::keys::TaskKey;

/// The environment a task sees: system values, overridden by the task's env, overridden by run
/// variables; Gofer's own `GOFER_*` variables last, so nothing can shadow them (config validation
/// already refuses the prefix).
pub(crate) fn task_env(
    api_url: &str,
    key: &TaskKey,
    attempt: u32,
    task: &TaskConfig,
    run_variables: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut env = task.env.clone();
    env.extend(run_variables.iter().map(|(k, v)| (k.clone(), v.clone())));
    env.insert("GOFER_API_URL".into(), api_url.to_owned());
    env.insert("GOFER_NAMESPACE_ID".into(), key.run.pipeline.namespace.to_string());
    env.insert("GOFER_PIPELINE_ID".into(), key.run.pipeline.pipeline.to_string());
    env.insert("GOFER_RUN_ID".into(), key.run.run.to_string());
    env.insert("GOFER_TASK_ID".into(), key.task.to_string());
    env.insert("GOFER_TASK_IMAGE".into(), task.image.clone());
    env.insert("GOFER_TASK_ATTEMPT".into(), attempt.to_string());
    env
}

/// How long a task may run: its own `timeout_s` or the default, at most the ceiling.
pub(crate) fn task_timeout(config: &EngineConfig, task: &TaskConfig) -> Duration {
    task.timeout_s
        .map(|t| Duration::from_secs(u64::from(t)))
        .unwrap_or(config.settings.default_task_timeout())
        .min(config.settings.max_task_timeout())
}

/// The job's spec as the task's config and the engine's defaults make it; the monitor adds the
/// plan's placement and what the env's references resolve to.
pub(super) fn build_spec(
    config: &EngineConfig,
    key: &TaskKey,
    attempt: i32,
    task: &TaskConfig,
    variables: &BTreeMap<String, String>,
) -> TaskSpec {
    let p = &key.run.pipeline;
    let attempt = u32::try_from(attempt).unwrap_or(1);
    let timeout = task_timeout(config, task);
    let image = task_image(config, task).to_owned();
    let mut env = task_env(&config.api_url, key, attempt, task, variables);
    env.insert("GOFER_TASK_IMAGE".into(), image.clone());
    TaskSpec {
        job_id: TaskSpec::job_id_for(&p.tenant, &p.namespace, &p.pipeline, key.run.run, &key.task, attempt),
        tenant: p.tenant.clone(),
        namespace: p.namespace.clone(),
        pipeline: p.pipeline.clone(),
        run: key.run.run,
        task: key.task.clone(),
        attempt,
        image,
        command: task.command.clone(),
        entrypoint: task.entrypoint.clone(),
        env,
        timeout,
        cpu_millis: task.cpu.unwrap_or(config.settings.default_cpu_millis),
        memory_mb: task.memory_mb.unwrap_or(config.settings.default_memory_mb),
        // The plan's, set with the placement when the monitor prepares.
        disk_mb: gofer_core::model::DEFAULT_MAX_DISK_MB,
        // Resolved from the task's `registry_auth` secret when the monitor prepares, with the env's references.
        registry_auth: None,
        allow_network: true,
        untrusted: false,
        node_pool: None,
        gofer_cli: task.kind == TaskKind::Gofer,
    }
}

/// The image a task runs: its own, or for a `kind: gofer` task the service's gofer CLI image
/// (the stored config holds a placeholder, so moving the image changes no config's hash).
pub(crate) fn task_image<'a>(config: &'a EngineConfig, task: &'a TaskConfig) -> &'a str {
    match task.kind {
        TaskKind::Gofer => &config.settings.gofer_cli_image,
        TaskKind::Container => &task.image,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn a_gofer_task_runs_in_the_configured_cli_image_and_others_in_their_own() {
        let config = gofer_core::ValidConfig::parse(
            br#"{"name":"x","tasks":[{"id":"abc","kind":"gofer","args":["run","list","x"]},
                {"id":"def","image":"debian:12","command":["true"]}]}"#,
        )
        .unwrap();
        let settings =
            crate::EngineSettings { gofer_cli_image: "registry.example/gofer-cli:1".into(), ..Default::default() };
        let engine = EngineConfig { settings, ..Default::default() };
        assert_eq!(task_image(&engine, &config.config().tasks[0]), "registry.example/gofer-cli:1");
        assert_eq!(task_image(&engine, &config.config().tasks[1]), "debian:12");
    }
}
