//! The pipeline config model: parsing with unknown fields refused, validation, defaults, and a canonical hash.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::dag::{Condition, find_cycle};
use crate::id::{IdError, TaskId, validate_identifier};
use crate::json::{self, JsonError};

/// The longest timeout a task may ask for (plans set lower ceilings).
pub const MAX_TASK_TIMEOUT_S: u32 = 7 * 24 * 3600;
/// The most tasks one pipeline may hold.
pub const MAX_TASKS: usize = 200;
const MAX_NAME_LEN: usize = 128;
const MAX_DESCRIPTION_LEN: usize = 4096;
const MAX_IMAGE_LEN: usize = 512;
const MAX_COMMAND_ARGS: usize = 256;
/// The image a `kind: gofer` task is stored with. The engine runs such tasks with the image the
/// service is configured with (`engine.gofer_cli_image`, by default this same name), so a config
/// does not change its hash when the operator moves the image.
pub const GOFER_CLI_IMAGE: &str = "gofer-cli";
/// The program a `kind: gofer` task runs; its `args` follow.
pub const GOFER_CLI_PROGRAM: &str = "gofer";
const MAX_STRING_LEN: usize = 64 * 1024;
const MAX_ENV_VARS: usize = 256;
/// The most retries a task may ask for.
pub const MAX_RETRIES: u32 = 10;
/// Bounds of a task's CPU request, in millicores.
pub const CPU_RANGE: std::ops::RangeInclusive<u32> = 10..=64_000;
/// Bounds of a task's memory request, in MiB.
pub const MEMORY_MB_RANGE: std::ops::RangeInclusive<u32> = 16..=262_144;

/// A validated pipeline config with defaults filled in: what is stored, hashed and shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    /// Human-readable name.
    pub name: String,
    /// Free text.
    #[serde(default)]
    pub description: String,
    /// The tasks; each becomes one task execution per run.
    pub tasks: Vec<TaskConfig>,
    /// Most runs of this pipeline that may be in progress at once; 0 means no limit. Further
    /// runs wait in the queue (reason `waiting_for_parallelism`).
    #[serde(default)]
    pub parallelism: u32,
    /// Seconds a whole run may take before its remaining tasks are stopped (reason `timeout`);
    /// `null` uses the server's default.
    #[serde(default)]
    pub run_timeout_s: Option<u32>,
}

/// What a task runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum TaskKind {
    /// A command in a container image: `image` and `command`.
    #[default]
    Container,
    /// The gofer CLI with `args`, holding a run token: a pipeline that drives Gofer itself.
    Gofer,
}

impl TaskKind {
    /// Whether this is the default kind (it is then left out of the stored config and its hash).
    pub fn is_container(&self) -> bool {
        *self == TaskKind::Container
    }
}

/// One task of a pipeline: a container command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct TaskConfig {
    /// Unique within the pipeline; `^[a-z][a-z0-9_-]{0,63}$`.
    pub id: TaskId,
    /// Container image, for example `debian:12`. Required for a `container` task; absent from a
    /// `gofer` task as written (validation fills in `gofer-cli`).
    #[serde(default)]
    pub image: String,
    /// The command and its arguments (no shell unless you call one). Required for a `container`
    /// task; absent from a `gofer` task as written (validation fills in `["gofer", …args]`).
    #[serde(default)]
    pub command: Vec<String>,
    /// Environment variables for the task.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Parents and what each must end with before this task runs.
    #[serde(default)]
    pub depends_on: BTreeMap<TaskId, Condition>,
    /// Seconds before the task is stopped and fails with reason `timeout`; `null` uses the
    /// server's default. The server's ceiling applies either way.
    #[serde(default)]
    pub timeout_s: Option<u32>,
    /// Overrides the image's entrypoint.
    #[serde(default)]
    pub entrypoint: Option<Vec<String>>,
    /// CPU in millicores (1000 = one core); `null` uses the server's default.
    #[serde(default)]
    pub cpu: Option<u32>,
    /// Memory in MiB; `null` uses the server's default. The task is stopped when it uses more.
    #[serde(default)]
    pub memory_mb: Option<u32>,
    /// How many times the task is run again after it fails on its own (non-zero exit, timeout).
    /// Infrastructure failures are retried by the engine regardless.
    #[serde(default)]
    pub retries: u32,
    /// Give the task a run token as `GOFER_API_TOKEN`, valid only for this run.
    #[serde(default)]
    pub inject_api_token: bool,
    /// Name of the secret holding registry credentials for a private image.
    #[serde(default)]
    pub registry_auth: Option<String>,
    /// `container` (the default) or `gofer`: the gofer CLI runs with `args` and a run token, in
    /// the service's gofer CLI image. A `gofer` task is given without `image` and `command`;
    /// validation fills them in (`image` `gofer-cli`, `command` `["gofer", …args]`) and sets
    /// `inject_api_token`.
    #[serde(default, skip_serializing_if = "TaskKind::is_container")]
    pub kind: TaskKind,
    /// The gofer CLI's arguments, for `kind: gofer` only, e.g. `["run", "start", "other"]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
}

/// A config as a user sends it: ids are plain strings here so a bad one is reported as
/// `invalid_identifier` with its path, not as a generic JSON error.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    name: String,
    #[serde(default)]
    description: String,
    tasks: Vec<RawTask>,
    #[serde(default)]
    parallelism: u32,
    #[serde(default)]
    run_timeout_s: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTask {
    id: String,
    #[serde(default)]
    image: Option<String>,
    #[serde(default)]
    command: Option<Vec<String>>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    depends_on: BTreeMap<String, Condition>,
    timeout_s: Option<u32>,
    #[serde(default)]
    entrypoint: Option<Vec<String>>,
    #[serde(default)]
    cpu: Option<u32>,
    #[serde(default)]
    memory_mb: Option<u32>,
    #[serde(default)]
    retries: u32,
    #[serde(default)]
    inject_api_token: bool,
    #[serde(default)]
    registry_auth: Option<String>,
    #[serde(default)]
    kind: TaskKind,
    #[serde(default)]
    args: Option<Vec<String>>,
}

/// Why a config was refused. Each variant has a stable [`ConfigError::code`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The body is not JSON of the right shape (unknown field, missing field, wrong type, bad syntax).
    #[error(transparent)]
    Json(#[from] JsonError),
    /// An identifier breaks the identifier rule.
    #[error("{field}: {source}")]
    InvalidIdentifier {
        /// Where it is, e.g. `tasks[1].id`.
        field: String,
        /// What is wrong with it.
        source: IdError,
    },
    /// The pipeline has no tasks, or too many.
    #[error("a pipeline needs between 1 and {MAX_TASKS} tasks, this one has {0}")]
    TaskCount(usize),
    /// Two tasks share an id.
    #[error("task id {0:?} is used more than once")]
    DuplicateTaskId(String),
    /// depends_on names a task that does not exist.
    #[error("task {task:?} depends on {dependency:?}, which is not a task of this pipeline")]
    UnknownDependency {
        /// The dependant.
        task: String,
        /// The missing parent.
        dependency: String,
    },
    /// depends_on forms a cycle.
    #[error("dependency cycle: {}", .0.join(" -> "))]
    Cycle(Vec<String>),
    /// A field has a value outside its rules.
    #[error("{field}: {reason}")]
    InvalidField {
        /// Where it is, e.g. `tasks[0].timeout_s`.
        field: String,
        /// What the rule is.
        reason: String,
    },
}

impl ConfigError {
    /// The stable machine-readable code for this error.
    pub fn code(&self) -> &'static str {
        match self {
            ConfigError::Json(e) => e.code,
            ConfigError::InvalidIdentifier { .. } => "invalid_identifier",
            ConfigError::TaskCount(_) => "invalid_task_count",
            ConfigError::DuplicateTaskId(_) => "duplicate_task_id",
            ConfigError::UnknownDependency { .. } => "unknown_dependency",
            ConfigError::Cycle(_) => "dependency_cycle",
            ConfigError::InvalidField { .. } => "invalid_field",
        }
    }
}

/// Whether `key` may name an environment variable set by a user.
/// `GOFER_` is reserved for the variables Gofer injects.
pub fn check_env_key(field: &str, key: &str) -> Result<(), ConfigError> {
    let invalid = |reason: &str| ConfigError::InvalidField { field: field.to_owned(), reason: reason.to_owned() };
    let mut chars = key.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if !first_ok || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') || key.len() > 128 {
        return Err(invalid("environment variable names match ^[A-Za-z_][A-Za-z0-9_]{0,127}$"));
    }
    if key.to_ascii_uppercase().starts_with("GOFER_") {
        return Err(invalid("the GOFER_ prefix is reserved for variables Gofer sets"));
    }
    if is_loader_variable(key) {
        return Err(invalid(&format!(
            "{key} makes the C library load or configure code in every process it reaches, so it is refused \
             (the dynamic loader's LD_* family, MALLOC_*, GCONV_PATH, GLIBC_TUNABLES and the like; \
             LD_LIBRARY_PATH and LD_RUN_PATH are allowed)"
        )));
    }
    Ok(())
}

/// Variables the C library reads to load code or change how it runs, in any process (glibc's
/// `UNSECURE_ENVVARS`, the list it drops for setuid programs, minus the ordinary `TMPDIR` and
/// `TZDIR`). A task's environment must never reach a host-side process; refusing these at the API
/// is the second line, so a mistake there cannot become code run on the host.
const LOADER_VARIABLES: &[&str] = &[
    "GCONV_PATH",
    "GETCONF_DIR",
    "GLIBC_TUNABLES",
    "HOSTALIASES",
    "LOCALDOMAIN",
    "LOCPATH",
    "NIS_PATH",
    "NLSPATH",
    "RESOLV_HOST_CONF",
    "RES_OPTIONS",
];

/// `LD_*` variables that are build settings, not loader hooks: `LD_LIBRARY_PATH` (as common in
/// builds as GitHub Actions allows it) and the linker's `LD_RUN_PATH`.
const ALLOWED_LD_VARIABLES: &[&str] = &["LD_LIBRARY_PATH", "LD_RUN_PATH"];

/// Whether `key` belongs to the dynamic-loader family that user configs may not set (compared
/// without case: nothing legitimate differs from these by case alone).
pub fn is_loader_variable(key: &str) -> bool {
    let key = key.to_ascii_uppercase();
    (key.starts_with("LD_") && !ALLOWED_LD_VARIABLES.contains(&key.as_str()))
        || key.starts_with("MALLOC_")
        || LOADER_VARIABLES.contains(&key.as_str())
}

/// Checks a map of environment variables (task env or run variables).
pub fn check_env(field: &str, env: &BTreeMap<String, String>) -> Result<(), ConfigError> {
    if env.len() > MAX_ENV_VARS {
        return Err(ConfigError::InvalidField {
            field: field.to_owned(),
            reason: format!("at most {MAX_ENV_VARS} variables"),
        });
    }
    for (key, value) in env {
        check_env_key(&format!("{field}.{key}"), key)?;
        check_len(&format!("{field}.{key}"), value, MAX_STRING_LEN)?;
    }
    Ok(())
}

/// Checks the name of a secret: `^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`.
pub fn check_secret_name(field: &str, name: &str) -> Result<(), ConfigError> {
    crate::secrets::SecretKey::parse(name).map(drop).map_err(|_| ConfigError::InvalidField {
        field: field.to_owned(),
        reason: "secret names match ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$".into(),
    })
}

/// Checks a string's length, and that it holds no NUL: Postgres text and JSONB cannot store one,
/// so it would otherwise fail at insert time as a server error.
fn check_len(field: &str, value: &str, max: usize) -> Result<(), ConfigError> {
    if value.len() > max {
        return Err(ConfigError::InvalidField { field: field.to_owned(), reason: format!("at most {max} bytes") });
    }
    if value.contains('\0') {
        return Err(ConfigError::InvalidField { field: field.to_owned(), reason: "must not contain NUL".into() });
    }
    Ok(())
}

/// The image and command a task runs: as given for a `container` task; for a `gofer` task the
/// CLI image and `gofer` followed by its `args`, which it must be given instead.
fn program(i: usize, task: &RawTask) -> Result<(String, Vec<String>), ConfigError> {
    let at = |f: &str| format!("tasks[{i}].{f}");
    let invalid = |field: String, reason: String| ConfigError::InvalidField { field, reason };
    match task.kind {
        TaskKind::Container => {
            if task.args.is_some() {
                return Err(invalid(
                    at("args"),
                    "only a task of kind gofer takes args; give this task a command".into(),
                ));
            }
            let missing =
                |field: &str| invalid(at(field), "required for a task of kind container (the default kind)".into());
            let image = task.image.clone().ok_or_else(|| missing("image"))?;
            let command = task.command.clone().ok_or_else(|| missing("command"))?;
            if image.trim().is_empty() || image.chars().any(char::is_whitespace) {
                return Err(invalid(at("image"), "must be a non-empty image reference without spaces".into()));
            }
            check_len(&at("image"), &image, MAX_IMAGE_LEN)?;
            if command.is_empty() || command.len() > MAX_COMMAND_ARGS {
                return Err(invalid(at("command"), format!("needs between 1 and {MAX_COMMAND_ARGS} arguments")));
            }
            for (j, arg) in command.iter().enumerate() {
                check_len(&format!("tasks[{i}].command[{j}]"), arg, MAX_STRING_LEN)?;
            }
            Ok((image, command))
        }
        TaskKind::Gofer => {
            let given = [
                ("image", task.image.is_some()),
                ("command", task.command.is_some()),
                ("entrypoint", task.entrypoint.is_some()),
                ("registry_auth", task.registry_auth.is_some()),
            ];
            if let Some((field, _)) = given.iter().find(|(_, given)| *given) {
                return Err(invalid(
                    at(field),
                    "must be absent in a task of kind gofer: it runs the service's gofer CLI image with `args`".into(),
                ));
            }
            let args = task.args.as_deref().unwrap_or_default();
            if args.is_empty() || args.len() >= MAX_COMMAND_ARGS {
                return Err(invalid(
                    at("args"),
                    format!(
                        "a task of kind gofer needs the CLI's arguments (1 to {}), e.g. [\"run\", \"start\", \"other\"]",
                        MAX_COMMAND_ARGS - 1
                    ),
                ));
            }
            for (j, arg) in args.iter().enumerate() {
                check_len(&format!("tasks[{i}].args[{j}]"), arg, MAX_STRING_LEN)?;
            }
            let command = std::iter::once(GOFER_CLI_PROGRAM.to_owned()).chain(args.iter().cloned()).collect();
            Ok((GOFER_CLI_IMAGE.to_owned(), command))
        }
    }
}

/// A config that passed validation; only [`ValidConfig::parse`] makes one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidConfig(PipelineConfig);

impl ValidConfig {
    /// Parses and validates a JSON body.
    pub fn parse(body: &[u8]) -> Result<Self, ConfigError> {
        let raw: RawConfig = json::from_slice(body)?;
        Self::validate(raw)
    }

    fn validate(raw: RawConfig) -> Result<Self, ConfigError> {
        let invalid =
            |field: &str, reason: &str| ConfigError::InvalidField { field: field.into(), reason: reason.into() };
        if raw.name.trim().is_empty() {
            return Err(invalid("name", "must not be empty"));
        }
        check_len("name", &raw.name, MAX_NAME_LEN)?;
        check_len("description", &raw.description, MAX_DESCRIPTION_LEN)?;
        if raw.tasks.is_empty() || raw.tasks.len() > MAX_TASKS {
            return Err(ConfigError::TaskCount(raw.tasks.len()));
        }

        let mut seen: BTreeSet<String> = BTreeSet::new();
        for (i, task) in raw.tasks.iter().enumerate() {
            validate_identifier("task", &task.id)
                .map_err(|source| ConfigError::InvalidIdentifier { field: format!("tasks[{i}].id"), source })?;
            if !seen.insert(task.id.clone()) {
                return Err(ConfigError::DuplicateTaskId(task.id.clone()));
            }
        }

        let mut tasks = Vec::with_capacity(raw.tasks.len());
        for (i, task) in raw.tasks.into_iter().enumerate() {
            let at = |f: &str| format!("tasks[{i}].{f}");
            let (image, command) = program(i, &task)?;
            check_env(&at("env"), &task.env)?;
            let timeout_s = task.timeout_s;
            if timeout_s.is_some_and(|t| t == 0 || t > MAX_TASK_TIMEOUT_S) {
                return Err(invalid(&at("timeout_s"), &format!("must be between 1 and {MAX_TASK_TIMEOUT_S}")));
            }
            if let Some(entrypoint) = &task.entrypoint {
                if entrypoint.is_empty() || entrypoint.len() > MAX_COMMAND_ARGS {
                    return Err(invalid(
                        &at("entrypoint"),
                        &format!("needs between 1 and {MAX_COMMAND_ARGS} arguments"),
                    ));
                }
                for (j, arg) in entrypoint.iter().enumerate() {
                    check_len(&format!("tasks[{i}].entrypoint[{j}]"), arg, MAX_STRING_LEN)?;
                }
            }
            if task.cpu.is_some_and(|c| !CPU_RANGE.contains(&c)) {
                return Err(invalid(
                    &at("cpu"),
                    &format!("millicores between {} and {}", CPU_RANGE.start(), CPU_RANGE.end()),
                ));
            }
            if task.memory_mb.is_some_and(|m| !MEMORY_MB_RANGE.contains(&m)) {
                return Err(invalid(
                    &at("memory_mb"),
                    &format!("MiB between {} and {}", MEMORY_MB_RANGE.start(), MEMORY_MB_RANGE.end()),
                ));
            }
            if task.retries > MAX_RETRIES {
                return Err(invalid(&at("retries"), &format!("at most {MAX_RETRIES}")));
            }
            if let Some(name) = &task.registry_auth {
                check_secret_name(&at("registry_auth"), name)?;
            }
            let mut depends_on = BTreeMap::new();
            for (parent, condition) in task.depends_on {
                if !seen.contains(&parent) {
                    return Err(ConfigError::UnknownDependency { task: task.id.clone(), dependency: parent });
                }
                // Known task ids were validated above, so this cannot fail.
                let parent = TaskId::parse(parent)
                    .map_err(|source| ConfigError::InvalidIdentifier { field: at("depends_on"), source })?;
                depends_on.insert(parent, condition);
            }
            let id =
                TaskId::parse(task.id).map_err(|source| ConfigError::InvalidIdentifier { field: at("id"), source })?;
            tasks.push(TaskConfig {
                id,
                image,
                command,
                env: task.env,
                depends_on,
                timeout_s,
                entrypoint: task.entrypoint,
                cpu: task.cpu,
                memory_mb: task.memory_mb,
                retries: task.retries,
                inject_api_token: task.inject_api_token || task.kind == TaskKind::Gofer,
                registry_auth: task.registry_auth,
                kind: task.kind,
                args: task.args.unwrap_or_default(),
            });
        }

        let edges = tasks.iter().map(|t| (t.id.clone(), t.depends_on.keys().cloned().collect())).collect();
        if let Some(cycle) = find_cycle(&edges) {
            return Err(ConfigError::Cycle(cycle.into_iter().map(|t| t.to_string()).collect()));
        }

        if raw.run_timeout_s.is_some_and(|t| t == 0 || t > MAX_TASK_TIMEOUT_S) {
            return Err(invalid("run_timeout_s", &format!("must be between 1 and {MAX_TASK_TIMEOUT_S}")));
        }
        Ok(ValidConfig(PipelineConfig {
            name: raw.name,
            description: raw.description,
            tasks,
            parallelism: raw.parallelism,
            run_timeout_s: raw.run_timeout_s,
        }))
    }

    /// Re-validates a config read back from storage (it was valid when written). A `gofer` task
    /// is stored expanded (image and command filled in), so it goes back through the validator
    /// as its user wrote it.
    pub fn from_stored(config: PipelineConfig) -> Result<Self, ConfigError> {
        let tasks = config
            .tasks
            .into_iter()
            .map(|t| {
                let gofer = t.kind == TaskKind::Gofer;
                RawTask {
                    id: t.id.to_string(),
                    image: (!gofer).then_some(t.image),
                    command: (!gofer).then_some(t.command),
                    env: t.env,
                    depends_on: t.depends_on.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
                    timeout_s: t.timeout_s,
                    entrypoint: t.entrypoint,
                    cpu: t.cpu,
                    memory_mb: t.memory_mb,
                    retries: t.retries,
                    inject_api_token: t.inject_api_token,
                    registry_auth: t.registry_auth,
                    kind: t.kind,
                    args: gofer.then_some(t.args),
                }
            })
            .collect();
        Self::validate(RawConfig {
            name: config.name,
            description: config.description,
            tasks,
            parallelism: config.parallelism,
            run_timeout_s: config.run_timeout_s,
        })
    }

    /// The validated config.
    pub fn config(&self) -> &PipelineConfig {
        &self.0
    }

    /// Consumes the wrapper.
    pub fn into_inner(self) -> PipelineConfig {
        self.0
    }

    /// SHA-256 (hex) of the canonical JSON: keys sorted (every map is a BTreeMap and struct
    /// fields serialize in a fixed order), defaults filled in, no whitespace. Two configs that
    /// mean the same thing hash the same.
    pub fn canonical_hash(&self) -> String {
        let value = serde_json::to_value(&self.0).unwrap_or(serde_json::Value::Null);
        hex::encode(Sha256::digest(value.to_string().as_bytes()))
    }

    /// Looks a task up by id.
    pub fn task(&self, id: &TaskId) -> Option<&TaskConfig> {
        self.0.tasks.iter().find(|t| &t.id == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<ValidConfig, ConfigError> {
        ValidConfig::parse(json.as_bytes())
    }

    const TWO_TASKS: &str = r#"{"name":"Two","tasks":[
        {"id":"build","image":"debian:12","command":["echo","hi"]},
        {"id":"test","image":"debian:12","command":["true"],"depends_on":{"build":"success"},"timeout_s":30}]}"#;

    #[test]
    fn a_valid_config_gets_defaults() {
        let cfg = parse(TWO_TASKS).unwrap();
        assert_eq!(cfg.config().tasks[0].timeout_s, None);
        assert_eq!(cfg.config().tasks[1].timeout_s, Some(30));
        assert_eq!(cfg.config().description, "");
        let task = &cfg.config().tasks[0];
        assert_eq!((task.retries, task.inject_api_token, task.cpu, task.memory_mb), (0, false, None, None));
        assert_eq!(cfg.config().parallelism, 0);
    }

    #[test]
    fn every_task_field_is_kept() {
        let cfg = parse(r#"{"name":"x","parallelism":2,"run_timeout_s":900,"tasks":[{"id":"abc","image":"i","command":["c"],
            "entrypoint":["/bin/sh","-c"],"cpu":500,"memory_mb":256,"retries":2,"inject_api_token":true,"registry_auth":"docker-hub"}]}"#).unwrap();
        let task = &cfg.config().tasks[0];
        assert_eq!(task.entrypoint.as_deref(), Some(&["/bin/sh".to_owned(), "-c".to_owned()][..]));
        assert_eq!((task.cpu, task.memory_mb, task.retries, task.inject_api_token), (Some(500), Some(256), 2, true));
        assert_eq!(task.registry_auth.as_deref(), Some("docker-hub"));
        assert_eq!((cfg.config().parallelism, cfg.config().run_timeout_s), (2, Some(900)));
    }

    #[test]
    fn loader_variables_are_refused_by_name_and_build_settings_are_not() {
        for key in [
            "LD_PRELOAD",
            "LD_AUDIT",
            "ld_preload",
            "LD_DEBUG_OUTPUT",
            "GCONV_PATH",
            "GLIBC_TUNABLES",
            "MALLOC_CHECK_",
            "MALLOC_TRACE",
            "LOCPATH",
            "NLSPATH",
            "HOSTALIASES",
        ] {
            let env = BTreeMap::from([(key.to_owned(), "/job/x.so".to_owned())]);
            let err = check_env("tasks[0].env", &env).unwrap_err();
            let ConfigError::InvalidField { field, reason } = &err else { panic!("{err:?}") };
            assert_eq!(field, &format!("tasks[0].env.{key}"));
            assert!(reason.contains(key) && reason.contains("refused"), "{reason}");
        }
        for key in ["LD_LIBRARY_PATH", "LD_RUN_PATH", "LDFLAGS", "TMPDIR", "TZ", "LANG", "MALLOCATOR"] {
            let env = BTreeMap::from([(key.to_owned(), "x".to_owned())]);
            assert!(check_env("variables", &env).is_ok(), "{key}");
        }
    }

    #[test]
    fn each_refusal_has_its_code() {
        let cases = [
            (r#"{"name":"x","tasks":[],"extra":1}"#, "unknown_field"),
            (r#"{"name":"x","tasks":[{"id":"abc","image":"i","command":["c"],"bogus":true}]}"#, "unknown_field"),
            (r#"{"tasks":[]}"#, "missing_field"),
            (r#"{"name":"x","tasks":[]}"#, "invalid_task_count"),
            (r#"{"name":"x","tasks":[{"id":"Bad","image":"i","command":["c"]}]}"#, "invalid_identifier"),
            (
                r#"{"name":"x","tasks":[{"id":"abc","image":"i","command":["c"]},{"id":"abc","image":"i","command":["c"]}]}"#,
                "duplicate_task_id",
            ),
            (
                r#"{"name":"x","tasks":[{"id":"abc","image":"i","command":["c"],"depends_on":{"nope":"success"}}]}"#,
                "unknown_dependency",
            ),
            (
                r#"{"name":"x","tasks":[{"id":"abc","image":"i","command":["c"],"depends_on":{"def":"success"}},{"id":"def","image":"i","command":["c"],"depends_on":{"abc":"any"}}]}"#,
                "dependency_cycle",
            ),
            (
                r#"{"name":"x","tasks":[{"id":"abc","image":"i","command":["c"],"depends_on":{"abc":"any"}}]}"#,
                "dependency_cycle",
            ),
            (
                r#"{"name":"x","tasks":[{"id":"abc","image":"i","command":["c"],"depends_on":{"abc":"sometimes"}}]}"#,
                "invalid_field",
            ),
            (r#"{"name":"x","tasks":[{"id":"abc","image":"i","command":[]}]}"#, "invalid_field"),
            (r#"{"name":"x","tasks":[{"id":"abc","image":"i","command":["c"],"timeout_s":0}]}"#, "invalid_field"),
            (
                r#"{"name":"x","tasks":[{"id":"abc","image":"i","command":["c"],"env":{"GOFER_X":"1"}}]}"#,
                "invalid_field",
            ),
            (r#"{"name":"x","tasks":[{"id":"abc","image":"i","command":["c"],"env":{"1X":"1"}}]}"#, "invalid_field"),
            (r#"{"name":"","tasks":[{"id":"abc","image":"i","command":["c"]}]}"#, "invalid_field"),
            (r#"{"name":"x","tasks":[{"id":"abc","image":"has space","command":["c"]}]}"#, "invalid_field"),
            (r#"not json"#, "invalid_json"),
            (r#"{"name":"x","tasks":[{"id":"abc","image":"i","command":["c"],"cpu":1}]}"#, "invalid_field"),
            (r#"{"name":"x","tasks":[{"id":"abc","image":"i","command":["c"],"memory_mb":1}]}"#, "invalid_field"),
            (r#"{"name":"x","tasks":[{"id":"abc","image":"i","command":["c"],"retries":11}]}"#, "invalid_field"),
            (r#"{"name":"x","tasks":[{"id":"abc","image":"i","command":["c"],"entrypoint":[]}]}"#, "invalid_field"),
            (
                r#"{"name":"x","tasks":[{"id":"abc","image":"i","command":["c"],"registry_auth":"../x"}]}"#,
                "invalid_field",
            ),
            (r#"{"name":"x","run_timeout_s":0,"tasks":[{"id":"abc","image":"i","command":["c"]}]}"#, "invalid_field"),
        ];
        for (json, code) in cases {
            let err = parse(json).expect_err(json);
            assert_eq!(err.code(), code, "{json}: {err}");
        }
    }

    #[test]
    fn errors_name_the_problem() {
        let err = parse(r#"{"name":"x","tasks":[{"id":"abc","image":"i","command":["c"]},{"id":"Nope","image":"i","command":["c"]}]}"#).unwrap_err();
        assert!(err.to_string().contains("tasks[1].id"), "{err}");
        let err = parse(r#"{"name":"x","tasks":[{"id":"abc","image":"i","command":["c"],"depends_on":{"def":"any"}},{"id":"def","image":"i","command":["c"],"depends_on":{"abc":"any"}}]}"#).unwrap_err();
        assert!(err.to_string().contains("abc -> def -> abc"), "{err}");
    }

    #[test]
    fn the_hash_ignores_key_order_and_explicit_defaults() {
        let a = parse(TWO_TASKS).unwrap();
        let b = parse(r#"{"tasks":[
            {"command":["echo","hi"],"image":"debian:12","id":"build","retries":0,"env":{}},
            {"depends_on":{"build":"success"},"id":"test","image":"debian:12","command":["true"],"timeout_s":30}],"name":"Two","description":""}"#).unwrap();
        assert_eq!(a.canonical_hash(), b.canonical_hash());
        let c = parse(&TWO_TASKS.replace("\"hi\"", "\"ho\"")).unwrap();
        assert_ne!(a.canonical_hash(), c.canonical_hash());
        assert_eq!(a.canonical_hash().len(), 64);
    }

    #[test]
    fn a_gofer_task_runs_the_cli_with_its_args_and_a_run_token() {
        let cfg =
            parse(r#"{"name":"x","tasks":[{"id":"trigger","kind":"gofer","args":["run","start","other"]}]}"#).unwrap();
        let task = &cfg.config().tasks[0];
        assert_eq!(task.kind, TaskKind::Gofer);
        assert_eq!(task.image, GOFER_CLI_IMAGE);
        assert_eq!(task.command, ["gofer", "run", "start", "other"]);
        assert!(task.inject_api_token);
        assert_eq!(task.args, ["run", "start", "other"]);
        let stored = serde_json::to_value(cfg.config()).unwrap();
        assert_eq!(stored["tasks"][0]["kind"], "gofer");
        assert_eq!(ValidConfig::from_stored(cfg.config().clone()).unwrap(), cfg, "stored gofer tasks re-validate");
        let explicit = parse(
            r#"{"name":"x","tasks":[{"id":"trigger","kind":"gofer","args":["run","start","other"],"inject_api_token":true}]}"#,
        )
        .unwrap();
        assert_eq!(explicit.canonical_hash(), cfg.canonical_hash());
    }

    #[test]
    fn a_gofer_task_names_what_it_must_not_have_and_needs_args() {
        let cases = [
            (
                r#"{"id":"abc","kind":"gofer","image":"debian:12","args":["run","list","x"]}"#,
                "tasks[0].image",
                "must be absent",
            ),
            (
                r#"{"id":"abc","kind":"gofer","command":["gofer"],"args":["run","list","x"]}"#,
                "tasks[0].command",
                "must be absent",
            ),
            (
                r#"{"id":"abc","kind":"gofer","entrypoint":["sh"],"args":["x"]}"#,
                "tasks[0].entrypoint",
                "must be absent",
            ),
            (r#"{"id":"abc","kind":"gofer"}"#, "tasks[0].args", "needs the CLI's arguments"),
            (r#"{"id":"abc","kind":"gofer","args":[]}"#, "tasks[0].args", "needs the CLI's arguments"),
            (r#"{"id":"abc","image":"i","command":["c"],"args":["x"]}"#, "tasks[0].args", "only a task of kind gofer"),
        ];
        for (task, field, reason) in cases {
            let err = parse(&format!(r#"{{"name":"x","tasks":[{task}]}}"#)).expect_err(task);
            assert_eq!(err.code(), "invalid_field", "{task}: {err}");
            assert!(err.to_string().starts_with(field) && err.to_string().contains(reason), "{task}: {err}");
        }
        let err = parse(r#"{"name":"x","tasks":[{"id":"abc","kind":"shell","args":["x"]}]}"#).unwrap_err();
        assert_eq!(err.code(), "invalid_field", "{err}");
        for (missing, field) in
            [(r#"{"id":"abc","command":["c"]}"#, "image"), (r#"{"id":"abc","image":"i"}"#, "command")]
        {
            let err = parse(&format!(r#"{{"name":"x","tasks":[{missing}]}}"#)).unwrap_err();
            assert_eq!(err.code(), "invalid_field", "{missing}: {err}");
            assert!(err.to_string().starts_with(&format!("tasks[0].{field}: required")), "{err}");
        }
    }

    #[test]
    fn configs_without_the_new_fields_keep_their_hash() {
        // The SHA-256 of the canonical JSON of the fields that existed before `kind` and `args`
        // (computed apart from this code): stored versions must keep deduplicating.
        let a = parse(TWO_TASKS).unwrap();
        assert_eq!(a.canonical_hash(), TWO_TASKS_HASH);
        let explicit = TWO_TASKS.replace(r#""id":"build","#, r#""id":"build","kind":"container","#);
        assert_eq!(parse(&explicit).unwrap().canonical_hash(), TWO_TASKS_HASH);
        assert!(!serde_json::to_string(a.config()).unwrap().contains("kind"));
    }

    const TWO_TASKS_HASH: &str = "2f779da1c0dc1fbece02602e234d456fef87361458f5b54c424ab6d0e82f12b9";

    #[test]
    fn stored_configs_round_trip() {
        let a = parse(TWO_TASKS).unwrap();
        let back = ValidConfig::from_stored(a.config().clone()).unwrap();
        assert_eq!(a, back);
    }
}
