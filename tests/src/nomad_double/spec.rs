//! Test code only: checks requests against Nomad's OpenAPI spec (`tests/specs/nomad-openapi.yaml`, vendored with its
//! provenance and licence in `tests/specs/SOURCES.md`,
//! loaded at test time) — path, method, query parameters and every JSON body field, recursively.
//!
//! The spec is from the deprecated `hashicorp/nomad-openapi` (about Nomad 1.4). What newer Nomad
//! has and the spec lacks is listed here, and only that is let through beside the spec:
//! - `GET /v1/event/stream` (query `topic`, `namespace`, `index`) — Nomad 1.0+, docs `api-docs/events`.
//! - `GET /v1/client/fs/logs/{allocID}` (query `task`, `type`, `follow`, `offset`, `origin`, `plain`)
//!   — docs `api-docs/client#stream-logs`.
//! - `GET /v1/client/allocation/{allocID}/exec` (query `task`, `command`, `tty`, `ws_handshake`,
//!   `namespace`), a websocket — docs `api-docs/allocations#exec-allocation`; its frames are
//!   checked by [`check_exec_frame`] against protocols.md §1.6.
//! - `Job.NodePool` (Nomad 1.6+) and `TaskGroup.MaxRunDuration` (Nomad 2.0.3+).

use serde_json::Value;

/// Request fields newer than the spec: (schema name, field).
const NEWER_FIELDS: &[(&str, &str)] = &[("Job", "NodePool"), ("TaskGroup", "MaxRunDuration")];

/// Endpoints newer than the spec: (method, path template, query parameters).
const NEWER_ENDPOINTS: &[(&str, &str, &[&str])] = &[
    ("GET", "/event/stream", &["topic", "namespace", "index", "region"]),
    ("GET", "/client/fs/logs/{allocID}", &["task", "type", "follow", "offset", "origin", "plain", "region"]),
    ("GET", "/client/allocation/{allocID}/exec", &["task", "command", "tty", "ws_handshake", "namespace", "region"]),
];

/// Checks one client → Nomad exec frame: `{"stdin":{"data":"<b64>"}}`, `{"stdin":{"close":true}}`,
/// `{"tty_size":{"height":H,"width":W}}` or the heartbeat `{}`; nothing else.
pub fn check_exec_frame(frame: &Value) -> Result<(), String> {
    let object = frame.as_object().ok_or_else(|| format!("exec frame is not an object: {frame}"))?;
    let ok = match object.iter().collect::<Vec<_>>().as_slice() {
        [] => true,
        [(key, inner)] if key.as_str() == "stdin" => match inner.as_object() {
            Some(o) if o.len() == 1 => {
                o.get("data").is_some_and(Value::is_string) || o.get("close").is_some_and(Value::is_boolean)
            }
            _ => false,
        },
        [(key, inner)] if key.as_str() == "tty_size" => {
            inner.as_object().is_some_and(|o| o.len() == 2 && o["height"].is_u64() && o["width"].is_u64())
        }
        _ => false,
    };
    if ok { Ok(()) } else { Err(format!("unknown exec frame {frame}")) }
}

/// The loaded spec.
pub struct Spec {
    doc: Value,
}

impl Spec {
    /// Loads `tests/specs/nomad-openapi.yaml`, vendored in the repository.
    pub fn load() -> Spec {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("specs/nomad-openapi.yaml");
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("the Nomad double needs {}: {e}", path.display()));
        let yaml: serde_yaml::Value = serde_yaml::from_str(&text).expect("the Nomad spec parses");
        Spec { doc: serde_json::to_value(yaml).expect("the Nomad spec converts to JSON") }
    }

    fn resolve<'a>(&'a self, mut v: &'a Value) -> &'a Value {
        while let Some(r) = v.get("$ref").and_then(Value::as_str) {
            let mut target = &self.doc;
            for part in r.trim_start_matches("#/").split('/') {
                target = &target[part];
            }
            v = target;
        }
        v
    }

    /// Checks one request; `Err` says what the spec does not know.
    pub fn check(
        &self,
        method: &str,
        path: &str,
        query: &[(String, String)],
        body: Option<&Value>,
    ) -> Result<(), String> {
        let Some(rest) = path.strip_prefix("/v1") else {
            return Err(format!("{path}: not under /v1"));
        };
        for (m, template, params) in NEWER_ENDPOINTS {
            if *m == method && matches(template, rest) {
                return match query.iter().find(|(k, _)| !params.contains(&k.as_str())) {
                    Some((k, _)) => Err(format!("{method} {path}: unknown query parameter {k}")),
                    None => Ok(()),
                };
            }
        }
        let paths = self.doc["paths"].as_object().ok_or("the spec has no paths")?;
        let (template, item) = paths
            .iter()
            .find(|(template, _)| matches(template, rest))
            .ok_or_else(|| format!("{method} {path}: no such path in the spec"))?;
        let operation = item
            .get(method.to_ascii_lowercase())
            .ok_or_else(|| format!("{method} {path}: the spec has no {method} on {template}"))?;
        let known: Vec<String> = operation["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| self.resolve(p))
            .filter(|p| p["in"] == "query")
            .filter_map(|p| p["name"].as_str().map(str::to_owned))
            .collect();
        if let Some((k, _)) = query.iter().find(|(k, _)| !known.contains(k)) {
            return Err(format!("{method} {path}: unknown query parameter {k} (known: {})", known.join(", ")));
        }
        let schema = operation.pointer("/requestBody/content/application~1json/schema");
        match (schema, body) {
            (Some(schema), Some(body)) => self.check_value(schema, body, "body"),
            (None, Some(_)) => Err(format!("{method} {path}: the spec takes no body here")),
            _ => Ok(()),
        }
    }

    fn check_value(&self, schema: &Value, value: &Value, at: &str) -> Result<(), String> {
        let name = schema.get("$ref").and_then(Value::as_str).and_then(|r| r.rsplit('/').next()).unwrap_or("");
        let schema = self.resolve(schema);
        // `{}` (a free-form value, such as a driver's `Config` entries like `auth`) accepts anything.
        if value.is_null() || schema.as_object().is_some_and(|o| o.is_empty()) {
            return Ok(());
        }
        let kind = schema["type"].as_str().unwrap_or(if schema.get("properties").is_some() { "object" } else { "" });
        let ok = match kind {
            "object" => value.is_object(),
            "array" => value.is_array(),
            "string" => value.is_string(),
            "integer" => value.is_i64() || value.is_u64(),
            "number" => value.is_number(),
            "boolean" => value.is_boolean(),
            _ => true,
        };
        if !ok {
            return Err(format!("{at}: expected {kind}, got {value}"));
        }
        if let (Some(min), Some(v)) = (schema["minimum"].as_f64(), value.as_f64())
            && v < min
        {
            return Err(format!("{at}: {v} is below the minimum {min}"));
        }
        match value {
            Value::Object(map) => {
                let properties = schema["properties"].as_object();
                for (key, v) in map {
                    let here = format!("{at}.{key}");
                    match properties.and_then(|p| p.get(key)) {
                        Some(s) => self.check_value(s, v, &here)?,
                        None if NEWER_FIELDS.contains(&(name, key.as_str())) => {}
                        None => match schema.get("additionalProperties") {
                            Some(extra) if extra.is_object() => self.check_value(extra, v, &here)?,
                            Some(Value::Bool(true)) => {}
                            _ => return Err(format!("{here}: the spec's {name} has no such field")),
                        },
                    }
                }
                Ok(())
            }
            Value::Array(items) => match schema.get("items") {
                Some(item) => {
                    items.iter().enumerate().try_for_each(|(i, v)| self.check_value(item, v, &format!("{at}[{i}]")))
                }
                None => Ok(()),
            },
            _ => Ok(()),
        }
    }
}

/// Whether a path matches a template; a last `{path}` parameter takes the rest (variables).
fn matches(template: &str, path: &str) -> bool {
    let t: Vec<&str> = template.trim_matches('/').split('/').collect();
    let p: Vec<&str> = path.trim_matches('/').split('/').collect();
    if t.last() == Some(&"{path}") && p.len() >= t.len() {
        return t[..t.len() - 1].iter().zip(&p).all(|(t, p)| t == p || (t.starts_with('{') && !p.is_empty()));
    }
    t.len() == p.len() && t.iter().zip(&p).all(|(t, p)| t == p || (t.starts_with('{') && !p.is_empty()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_spec_knows_what_we_send_and_refuses_the_rest() {
        let spec = Spec::load();
        let q = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Vec<_>>();
        let job = json!({"Job": {"ID": "x", "Type": "batch", "NodePool": "p",
                                 "TaskGroups": [{"Name": "g", "MaxRunDuration": 5, "Tasks": [{"Name": "t", "Config": {"image": "a"}}]}]},
                         "EnforceIndex": true, "JobModifyIndex": 0});
        spec.check("POST", "/v1/jobs", &q(&[("namespace", "n")]), Some(&job)).unwrap();
        let bad = json!({"Job": {"ID": "x", "Sneaky": 1}});
        assert!(spec.check("POST", "/v1/jobs", &[], Some(&bad)).unwrap_err().contains("Sneaky"));
        let bad_group = json!({"Job": {"TaskGroups": [{"Name": "g", "Privileged": true}]}});
        assert!(spec.check("POST", "/v1/jobs", &[], Some(&bad_group)).is_err());
        assert!(spec.check("GET", "/v1/nope", &[], None).is_err());
        assert!(spec.check("PATCH", "/v1/jobs", &[], None).is_err());
        assert!(spec.check("GET", "/v1/jobs", &q(&[("bogus", "1")]), None).is_err());
        spec.check("DELETE", "/v1/job/abc", &q(&[("namespace", "n"), ("purge", "true")]), None).unwrap();
        spec.check(
            "PUT",
            "/v1/var/nomad/jobs/abc",
            &q(&[("namespace", "n")]),
            Some(&json!({"Path": "nomad/jobs/abc", "Items": {"a": "b"}})),
        )
        .unwrap();
        spec.check("GET", "/v1/event/stream", &q(&[("topic", "Allocation"), ("index", "3")]), None).unwrap();
        spec.check("GET", "/v1/client/fs/logs/a1", &q(&[("task", "main"), ("type", "stdout")]), None).unwrap();
    }
}
