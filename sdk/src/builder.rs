//! A pipeline builder: write a config in Rust, validate it with the server's own validator
//! ([`gofer_core::ValidConfig::parse`]) and print the JSON that `gofer pipeline register` reads.
//!
//! ```
//! use gofer_sdk::{Condition, Pipeline, Task};
//! let json = Pipeline::new("Build")
//!     .task(Task::new("test", "rust:1").command(["cargo", "test"]))
//!     .task(Task::new("build", "rust:1").command(["cargo", "build"]).depends_on("test", Condition::Success))
//!     .to_json()
//!     .expect("a valid config");
//! assert!(json.contains("\"depends_on\""));
//! ```

use std::collections::BTreeMap;

use gofer_core::{Condition, ConfigError, TaskKind, ValidConfig};
use serde::Serialize;

/// A pipeline config under construction.
#[derive(Debug, Clone, Serialize)]
pub struct Pipeline {
    name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    description: String,
    tasks: Vec<Task>,
    #[serde(skip_serializing_if = "is_zero")]
    parallelism: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    run_timeout_s: Option<u32>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// One task under construction.
#[derive(Debug, Clone, Serialize)]
pub struct Task {
    id: String,
    // `None` for a `gofer` task, which must not have them.
    #[serde(skip_serializing_if = "Option::is_none")]
    image: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    command: Option<Vec<String>>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    env: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    depends_on: BTreeMap<String, Condition>,
    #[serde(skip_serializing_if = "Option::is_none")]
    timeout_s: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    entrypoint: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cpu: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    memory_mb: Option<u32>,
    #[serde(skip_serializing_if = "is_zero")]
    retries: u32,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    inject_api_token: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    registry_auth: Option<String>,
    #[serde(skip_serializing_if = "TaskKind::is_container")]
    kind: TaskKind,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    args: Vec<String>,
}

impl Pipeline {
    /// A pipeline with a display name and no tasks yet.
    pub fn new(name: impl Into<String>) -> Self {
        Self { name: name.into(), description: String::new(), tasks: Vec::new(), parallelism: 0, run_timeout_s: None }
    }

    /// Free text.
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = description.into();
        self
    }

    /// Most runs in progress at once (0: no limit).
    pub fn parallelism(mut self, runs: u32) -> Self {
        self.parallelism = runs;
        self
    }

    /// Seconds a whole run may take.
    pub fn run_timeout_s(mut self, seconds: u32) -> Self {
        self.run_timeout_s = Some(seconds);
        self
    }

    /// Adds a task.
    pub fn task(mut self, task: Task) -> Self {
        self.tasks.push(task);
        self
    }

    /// The config as JSON, unvalidated (what the builder holds).
    pub fn to_value(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("a builder always serializes")
    }

    /// Validates the config exactly as the server will ([`ValidConfig::parse`]): identifiers,
    /// limits, unknown dependencies, cycles.
    pub fn validate(&self) -> Result<ValidConfig, ConfigError> {
        ValidConfig::parse(self.to_value().to_string().as_bytes())
    }

    /// The validated config as pretty JSON, ready for `gofer pipeline register <p> --file -`.
    pub fn to_json(&self) -> Result<String, ConfigError> {
        self.validate()?;
        Ok(serde_json::to_string_pretty(&self.to_value()).expect("a builder always serializes"))
    }
}

impl Task {
    /// A task running in `image`, with no command yet (the image's default).
    pub fn new(id: impl Into<String>, image: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            image: Some(image.into()),
            command: Some(Vec::new()),
            env: BTreeMap::new(),
            depends_on: BTreeMap::new(),
            timeout_s: None,
            entrypoint: None,
            cpu: None,
            memory_mb: None,
            retries: 0,
            inject_api_token: false,
            registry_auth: None,
            kind: TaskKind::Container,
            args: Vec::new(),
        }
    }

    /// A task of kind `gofer`: the gofer CLI with `args` (e.g. `["run", "start", "deploy"]`),
    /// connected to the service with the run's token. It takes no image, command or entrypoint.
    pub fn gofer<I, S>(id: impl Into<String>, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            image: None,
            command: None,
            kind: TaskKind::Gofer,
            args: args.into_iter().map(Into::into).collect(),
            ..Self::new(id, "")
        }
    }

    /// The command and its arguments (no shell unless you call one).
    pub fn command<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.command = Some(args.into_iter().map(Into::into).collect());
        self
    }

    /// A shell script, run as `sh -c <script>`.
    pub fn script(self, script: impl Into<String>) -> Self {
        self.command(["sh".to_owned(), "-c".to_owned(), script.into()])
    }

    /// An environment variable.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.insert(key.into(), value.into());
        self
    }

    /// Runs after `parent`, when `condition` holds for how it ended.
    pub fn depends_on(mut self, parent: impl Into<String>, condition: Condition) -> Self {
        self.depends_on.insert(parent.into(), condition);
        self
    }

    /// Seconds before the task is stopped (reason `timeout`).
    pub fn timeout_s(mut self, seconds: u32) -> Self {
        self.timeout_s = Some(seconds);
        self
    }

    /// Overrides the image's entrypoint.
    pub fn entrypoint<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.entrypoint = Some(args.into_iter().map(Into::into).collect());
        self
    }

    /// CPU in millicores.
    pub fn cpu(mut self, millicores: u32) -> Self {
        self.cpu = Some(millicores);
        self
    }

    /// Memory in MiB.
    pub fn memory_mb(mut self, mib: u32) -> Self {
        self.memory_mb = Some(mib);
        self
    }

    /// Runs again up to `n` times after failing on its own.
    pub fn retries(mut self, n: u32) -> Self {
        self.retries = n;
        self
    }

    /// Gives the task a run token as `GOFER_API_TOKEN`.
    pub fn inject_api_token(mut self) -> Self {
        self.inject_api_token = true;
        self
    }

    /// The secret holding registry credentials for a private image.
    pub fn registry_auth(mut self, secret: impl Into<String>) -> Self {
        self.registry_auth = Some(secret.into());
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_built_pipeline_is_validated_like_the_server_does() {
        let ok = Pipeline::new("CI")
            .task(Task::new("test", "rust:1").command(["cargo", "test"]).env("RUST_LOG", "info"))
            .task(Task::new("build", "rust:1").script("cargo build").depends_on("test", Condition::Success));
        let valid = ok.validate().expect("valid");
        assert_eq!(valid.config().tasks.len(), 2);
        let json: serde_json::Value = serde_json::from_str(&ok.to_json().expect("json")).expect("parse");
        assert_eq!(json["tasks"][1]["depends_on"]["test"], "success");

        let cycle = Pipeline::new("CI")
            .task(Task::new("aaa", "x").command(["true"]).depends_on("bbb", Condition::Any))
            .task(Task::new("bbb", "x").command(["true"]).depends_on("aaa", Condition::Any));
        assert_eq!(cycle.validate().unwrap_err().code(), "dependency_cycle");
        let trigger = Pipeline::new("CD")
            .task(Task::new("build", "rust:1").script("cargo build"))
            .task(Task::gofer("deploy", ["run", "start", "ship"]).depends_on("build", Condition::Success));
        let valid = trigger.validate().expect("valid");
        assert_eq!(valid.config().tasks[1].command, ["gofer", "run", "start", "ship"]);
        assert_eq!(
            trigger.to_value()["tasks"][1],
            serde_json::json!({"id": "deploy", "kind": "gofer",
            "args": ["run", "start", "ship"], "depends_on": {"build": "success"}})
        );
        let bad_id = Pipeline::new("CI").task(Task::new("B!", "x").command(["true"]));
        assert_eq!(bad_id.to_json().unwrap_err().code(), "invalid_identifier");
    }
}
