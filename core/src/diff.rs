//! A structured diff of two pipeline configs: what changed, field by field, with tasks matched by id.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::config::PipelineConfig;
use crate::state::wire_enum;

wire_enum!(
    /// What happened at a path.
    ChangeOp {
        /// Only the new config has it.
        Added => "added",
        /// Only the old config has it.
        Removed => "removed",
        /// Both have it, with different values.
        Changed => "changed",
    }
);

/// One difference between two configs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Change {
    /// Dotted path: `name`, `tasks.build`, `tasks.build.command`, `tasks.build.env.TARGET`.
    /// Task ids, env names and dependency names cannot contain dots, so paths are unambiguous.
    pub path: String,
    /// What happened.
    pub op: ChangeOp,
    /// The old value, any JSON (`null` when added).
    #[cfg_attr(feature = "openapi", schema(value_type = Value))]
    pub from: Value,
    /// The new value, any JSON (`null` when removed).
    #[cfg_attr(feature = "openapi", schema(value_type = Value))]
    pub to: Value,
}

/// Everything that differs from `from` to `to`: top-level fields first (by name), then the tasks
/// of `from` in order (removed, or their changed fields by name; maps such as `env` and
/// `depends_on` key by key), then the tasks only `to` has, in its order, and last `tasks` itself
/// when the tasks both have changed their relative order. Equal configs give no changes.
pub fn diff(from: &PipelineConfig, to: &PipelineConfig) -> Vec<Change> {
    let mut changes = Vec::new();
    let (old, new) = (object(from), object(to));
    compare_objects("", &without(&old, "tasks"), &without(&new, "tasks"), &mut changes);

    let task_value = |t: &crate::TaskConfig| without(&object(t), "id");
    for old_task in &from.tasks {
        let path = format!("tasks.{}", old_task.id);
        match to.tasks.iter().find(|t| t.id == old_task.id) {
            None => changes.push(Change {
                path,
                op: ChangeOp::Removed,
                from: Value::Object(object(old_task)),
                to: Value::Null,
            }),
            Some(new_task) => compare_objects(&path, &task_value(old_task), &task_value(new_task), &mut changes),
        }
    }
    for new_task in to.tasks.iter().filter(|t| !from.tasks.iter().any(|o| o.id == t.id)) {
        changes.push(Change {
            path: format!("tasks.{}", new_task.id),
            op: ChangeOp::Added,
            from: Value::Null,
            to: Value::Object(object(new_task)),
        });
    }

    let common = |a: &PipelineConfig, b: &PipelineConfig| -> Vec<String> {
        a.tasks.iter().filter(|t| b.tasks.iter().any(|o| o.id == t.id)).map(|t| t.id.to_string()).collect()
    };
    if common(from, to) != common(to, from) {
        let ids = |c: &PipelineConfig| Value::from(c.tasks.iter().map(|t| t.id.to_string()).collect::<Vec<_>>());
        changes.push(Change { path: "tasks".into(), op: ChangeOp::Changed, from: ids(from), to: ids(to) });
    }
    changes
}

fn object(value: &impl Serialize) -> Map<String, Value> {
    match serde_json::to_value(value) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    }
}

fn without(map: &Map<String, Value>, key: &str) -> Map<String, Value> {
    map.iter().filter(|(k, _)| k.as_str() != key).map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// Compares two objects key by key, in key order whatever serde_json's map keeps; nested objects
/// (maps like `env`) recurse, anything else (lists, scalars, `null`) is compared whole.
fn compare_objects(prefix: &str, old: &Map<String, Value>, new: &Map<String, Value>, out: &mut Vec<Change>) {
    let mut keys: Vec<&String> = old.keys().chain(new.keys()).collect();
    keys.sort();
    keys.dedup();
    for key in keys {
        let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
        match (old.get(key), new.get(key)) {
            (Some(a), Some(b)) if a == b => {}
            (Some(Value::Object(a)), Some(Value::Object(b))) => compare_objects(&path, a, b, out),
            (Some(a), Some(b)) => out.push(Change { path, op: ChangeOp::Changed, from: a.clone(), to: b.clone() }),
            (Some(a), None) => out.push(Change { path, op: ChangeOp::Removed, from: a.clone(), to: Value::Null }),
            (None, Some(b)) => out.push(Change { path, op: ChangeOp::Added, from: Value::Null, to: b.clone() }),
            (None, None) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ValidConfig;
    use serde_json::json;

    fn config(value: Value) -> PipelineConfig {
        ValidConfig::parse(value.to_string().as_bytes()).unwrap().into_inner()
    }

    fn summary(changes: &[Change]) -> Vec<String> {
        changes.iter().map(|c| format!("{} {}", c.op, c.path)).collect()
    }

    #[test]
    fn equal_configs_have_no_changes() {
        let a = config(json!({"name": "A", "tasks": [{"id": "build", "image": "i", "command": ["true"]}]}));
        assert!(diff(&a, &a).is_empty());
    }

    #[test]
    fn tasks_are_matched_by_id_and_compared_field_by_field() {
        let old = config(json!({"name": "Old", "tasks": [
            {"id": "build", "image": "debian:12", "command": ["make"], "env": {"A": "1", "B": "2"}},
            {"id": "test", "image": "debian:12", "command": ["make", "test"], "depends_on": {"build": "success"}},
            {"id": "lint", "image": "debian:12", "command": ["lint"]}
        ]}));
        let new = config(json!({"name": "New", "parallelism": 2, "tasks": [
            {"id": "deploy", "image": "debian:12", "command": ["ship"], "depends_on": {"build": "success"}},
            {"id": "lint", "image": "debian:12", "command": ["lint"]},
            {"id": "build", "image": "debian:13", "command": ["make", "all"], "env": {"A": "1", "B": "3", "C": "4"},
             "timeout_s": 60, "cpu": 500}
        ]}));
        let changes = diff(&old, &new);
        assert_eq!(
            summary(&changes),
            [
                "changed name",
                "changed parallelism",
                "changed tasks.build.command",
                "changed tasks.build.cpu",
                "changed tasks.build.env.B",
                "added tasks.build.env.C",
                "changed tasks.build.image",
                "changed tasks.build.timeout_s",
                "removed tasks.test",
                "added tasks.deploy",
                "changed tasks",
            ]
        );
        let command = &changes[2];
        assert_eq!((&command.from, &command.to), (&json!(["make"]), &json!(["make", "all"])));
        assert_eq!((&changes[3].from, &changes[3].to), (&Value::Null, &json!(500)));
        assert_eq!((&changes[5].from, &changes[5].to), (&Value::Null, &json!("4")));
        assert_eq!(changes[8].from["command"], json!(["make", "test"]));
        assert_eq!(changes[8].to, Value::Null);
        assert_eq!(changes[9].to["id"], "deploy");
        assert_eq!(changes[10].from, json!(["build", "test", "lint"]));
        assert_eq!(changes[10].to, json!(["deploy", "lint", "build"]));
    }

    #[test]
    fn task_order_alone_is_a_change_of_tasks_only() {
        let a = config(json!({"name": "A", "tasks": [
            {"id": "one", "image": "i", "command": ["true"]}, {"id": "two", "image": "i", "command": ["true"]}]}));
        let b = config(json!({"name": "A", "tasks": [
            {"id": "two", "image": "i", "command": ["true"]}, {"id": "one", "image": "i", "command": ["true"]}]}));
        assert_eq!(summary(&diff(&a, &b)), ["changed tasks"]);
        let c = config(json!({"name": "A", "tasks": [{"id": "two", "image": "i", "command": ["true"]}]}));
        assert_eq!(summary(&diff(&a, &c)), ["removed tasks.one"], "a removal alone is no reordering");
    }

    #[test]
    fn removed_map_entries_and_dependencies_are_reported() {
        let a = config(json!({"name": "A", "description": "d", "tasks": [
            {"id": "one", "image": "i", "command": ["true"]},
            {"id": "two", "image": "i", "command": ["true"], "env": {"X": "1"}, "depends_on": {"one": "success"}}]}));
        let b = config(json!({"name": "A", "tasks": [
            {"id": "one", "image": "i", "command": ["true"]},
            {"id": "two", "image": "i", "command": ["true"], "depends_on": {"one": "any"}}]}));
        let changes = diff(&a, &b);
        assert_eq!(
            summary(&changes),
            ["changed description", "changed tasks.two.depends_on.one", "removed tasks.two.env.X"]
        );
        assert_eq!((&changes[1].from, &changes[1].to), (&json!("success"), &json!("any")));
    }
}
