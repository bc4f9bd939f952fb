//! `pipeline_object{{ key }}` and `run_object{{ key }}` in task env values: replaced, just before
//! the task starts, by the content of the named pipeline object or object of the task's run
//! (small objects only, UTF-8). The secrets resolver (`secret{{ key }}`) sits beside this; the
//! caller runs both where the task's env is built and fails the task, naming the key, on error.

use std::collections::BTreeMap;

use futures_util::StreamExt;
use gofer_core::objects::{ObjectKey, ObjectScope, ObjectStore, object_store_key};

use gofer_core::keys::RunKey;

/// Why a reference could not be resolved; each names the key so the task's reason can say it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ObjectRefError {
    /// `pipeline_object{{ … }}` or `run_object{{ … }}` without a valid key.
    #[error("env {var}: invalid object reference {reference:?}")]
    Invalid {
        /// The variable.
        var: String,
        /// The reference as written.
        reference: String,
    },
    /// No such object (or its content expired).
    #[error("env {var}: {kind} {key} does not exist")]
    Missing {
        /// The variable.
        var: String,
        /// `pipeline_object` or `run_object`.
        kind: &'static str,
        /// The key.
        key: String,
    },
    /// The object is larger than env values may hold, or not UTF-8.
    #[error("env {var}: {kind} {key} is larger than {max} bytes or not UTF-8 text")]
    Unusable {
        /// The variable.
        var: String,
        /// `pipeline_object` or `run_object`.
        kind: &'static str,
        /// The key.
        key: String,
        /// The size limit.
        max: u64,
    },
    /// The store failed (retrying may help).
    #[error("reading {key} from the object store failed: {detail}")]
    Store {
        /// The key.
        key: String,
        /// What failed.
        detail: String,
    },
}

/// One reference found in a value: its byte range, kind and key text.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Reference {
    start: usize,
    end: usize,
    scope: &'static str,
    key: String,
}

const KINDS: [&str; 2] = ["pipeline_object", "run_object"];

/// Finds every `pipeline_object{{ key }}` / `run_object{{ key }}` in `value`, in order.
fn find_references(value: &str) -> Vec<Reference> {
    let mut found = Vec::new();
    let mut from = 0;
    while let Some((start, kind)) =
        KINDS.iter().filter_map(|k| value[from..].find(&format!("{k}{{{{")).map(|i| (from + i, *k))).min()
    {
        let open = start + kind.len() + 2;
        let Some(close) = value[open..].find("}}") else { break };
        found.push(Reference {
            start,
            end: open + close + 2,
            scope: kind,
            key: value[open..open + close].trim().to_owned(),
        });
        from = open + close + 2;
    }
    found
}

/// Whether any env value references an object (the caller can skip the store otherwise).
pub fn has_object_references(env: &BTreeMap<String, String>) -> bool {
    env.values().any(|v| !find_references(v).is_empty())
}

/// Replaces every object reference in `env`'s values with the object's content, reading objects
/// of `run`'s pipeline (and of `run` itself) from `store`, each at most `max_bytes`.
pub async fn resolve_object_references(
    store: &dyn ObjectStore,
    run: &RunKey,
    env: &mut BTreeMap<String, String>,
    max_bytes: u64,
) -> Result<(), ObjectRefError> {
    for (var, value) in env.iter_mut() {
        let references = find_references(value);
        if references.is_empty() {
            continue;
        }
        let mut resolved = String::with_capacity(value.len());
        let mut last = 0;
        for r in references {
            let key = ObjectKey::parse(r.key.as_str()).map_err(|_| ObjectRefError::Invalid {
                var: var.clone(),
                reference: value[r.start..r.end].to_owned(),
            })?;
            let scope = if r.scope == "run_object" { ObjectScope::Run(run.run) } else { ObjectScope::Pipeline };
            let p = &run.pipeline;
            let store_key = object_store_key(&p.tenant, &p.namespace, &p.pipeline, scope, &key);
            let missing = || ObjectRefError::Missing { var: var.clone(), kind: r.scope, key: r.key.clone() };
            let unusable =
                || ObjectRefError::Unusable { var: var.clone(), kind: r.scope, key: r.key.clone(), max: max_bytes };
            let store_error = |e: String| ObjectRefError::Store { key: r.key.clone(), detail: e };
            let mut fetched =
                store.get(&store_key).await.map_err(|e| store_error(e.to_string()))?.ok_or_else(missing)?;
            if fetched.size > max_bytes {
                return Err(unusable());
            }
            let mut content = Vec::new();
            while let Some(chunk) = fetched.body.next().await {
                content.extend_from_slice(&chunk.map_err(|e| store_error(e.to_string()))?);
                if content.len() as u64 > max_bytes {
                    return Err(unusable());
                }
            }
            resolved.push_str(&value[last..r.start]);
            resolved.push_str(&String::from_utf8(content).map_err(|_| unusable())?);
            last = r.end;
        }
        resolved.push_str(&value[last..]);
        *value = resolved;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_found_with_their_kind_and_trimmed_key() {
        let found = find_references("a=pipeline_object{{ cfg/x.json }} b=run_object{{out}} c={{ nope }}");
        let keys: Vec<(&str, &str)> = found.iter().map(|r| (r.scope, r.key.as_str())).collect();
        assert_eq!(keys, [("pipeline_object", "cfg/x.json"), ("run_object", "out")]);
        assert!(find_references("secret{{ key }} and plain").is_empty());
        assert!(find_references("run_object{{ unterminated").is_empty());
    }
}
