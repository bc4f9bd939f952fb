//! docs/config.md's key table, generated from the settings' schemas (`schemars`: the doc comments,
//! the defaults of `Default`, the tags of the store tables) with the old→new key table of
//! `legacy`. A doc comment's last paragraph `Production: …` fills the production column.
//! `GOFER_BLESS=1 cargo test -p gofer-api config_doc` rewrites the part between the markers.

use serde_json::Value;

/// Where the generated part of docs/config.md begins.
const BEGIN: &str = "<!-- BEGIN generated from the settings' doc comments by \
                     `GOFER_BLESS=1 cargo test -p gofer-api config_doc`; edit those, not this table -->";
/// Where it ends.
const END: &str = "<!-- END generated -->";

/// One key of the table.
struct Row {
    key: String,
    env: String,
    default: String,
    meaning: String,
    production: String,
}

/// The generated part of docs/config.md, markers included.
pub(super) fn generated() -> String {
    let root = serde_json::to_value(schemars::schema_for!(super::Config)).unwrap_or_default();
    let mut rows = Vec::new();
    walk(&root, &root, "", &mut rows);
    let mut out = format!("{BEGIN}\n\n| key | env | default | meaning | production |\n|---|---|---|---|---|\n");
    for row in rows {
        let cells = [format!("`{}`", row.key), format!("`{}`", row.env), row.default, row.meaning, row.production];
        out.push_str(&format!("| {} |\n", cells.map(|cell| cell.replace('|', "\\|")).join(" | ")));
    }
    out.push_str(
        "\n### Keys of the previous release\n\nStill read, until the next release: the server logs a warning \
         for each one it reads, naming its replacement. An old key of a store next to that store's new \
         table is refused, naming both; an old key of another kind of store than the one in use is \
         ignored, as it always was (with a warning).\n\n",
    );
    out.push_str(&super::legacy::markdown_table());
    out.push_str(&format!("\n{END}\n"));
    out
}

/// The definition a `$ref` points at, or the node itself.
fn resolve<'a>(root: &'a Value, node: &'a Value) -> &'a Value {
    node.get("$ref")
        .and_then(Value::as_str)
        .and_then(|reference| reference.strip_prefix("#/$defs/"))
        .and_then(|name| root["$defs"].get(name))
        .unwrap_or(node)
}

/// The rows of the struct `node`'s fields, under `prefix`: nested structs are walked, tagged
/// tables (the stores) get a `kind` row and one row per field of each kind.
fn walk(root: &Value, node: &Value, prefix: &str, rows: &mut Vec<Row>) {
    let Some(properties) = node.get("properties").and_then(Value::as_object) else { return };
    let required = |name: &str| {
        node.get("required").and_then(Value::as_array).is_some_and(|r| r.iter().any(|n| n.as_str() == Some(name)))
    };
    for (name, property) in properties {
        let key = format!("{prefix}{name}");
        let target = resolve(root, property);
        if target.get("properties").is_some() {
            walk(root, target, &format!("{key}."), rows);
        } else if let Some(variants) = tagged_variants(target) {
            tagged(property, &variants, &key, rows);
        } else if name != "kind" {
            rows.push(leaf(property, key, required(name), ""));
        }
    }
}

/// The variants of a tagged table (`{ kind = "…", … }`) by kind, or `None` for any other schema.
fn tagged_variants(node: &Value) -> Option<Vec<(String, &Value)>> {
    let variants = node.get("oneOf")?.as_array()?;
    variants
        .iter()
        .map(|variant| Some((variant.pointer("/properties/kind/const")?.as_str()?.to_owned(), variant)))
        .collect()
}

/// The rows of a tagged table: its `kind`, then each kind's fields.
fn tagged(property: &Value, variants: &[(String, &Value)], key: &str, rows: &mut Vec<Row>) {
    let (meaning, production) = describe(property);
    let kinds: Vec<String> = variants
        .iter()
        .map(|(kind, variant)| format!("`{kind}`: {}", describe(variant).0.trim_end_matches('.')))
        .collect();
    rows.push(Row {
        key: format!("{key}.kind"),
        env: super::env_var(&format!("{key}.kind")),
        default: property.pointer("/default/kind").map_or_else(|| "—".into(), render),
        meaning: format!("{meaning} Kinds: {}.", kinds.join("; ")),
        production,
    });
    for (kind, variant) in variants {
        let Some(fields) = variant.get("properties").and_then(Value::as_object) else { continue };
        let required = |name: &str| {
            variant
                .get("required")
                .and_then(Value::as_array)
                .is_some_and(|r| r.iter().any(|n| n.as_str() == Some(name)))
        };
        for (name, field) in fields.iter().filter(|(name, _)| *name != "kind") {
            rows.push(leaf(field, format!("{key}.{name}"), required(name), &format!("With `kind = \"{kind}\"`: ")));
        }
    }
}

/// The row of one key; a key without a default must be set.
fn leaf(property: &Value, key: String, required: bool, lead: &str) -> Row {
    let (meaning, production) = describe(property);
    // A map of secrets by id takes one variable per id.
    let map = property.get("additionalProperties").is_some_and(Value::is_object);
    let env = if map { format!("{}__<ID>", super::env_var(&key)) } else { super::env_var(&key) };
    let default = match property.get("default") {
        Some(default) => with_size(&key, render(default), default),
        None if required => "— (required)".into(),
        None => "unset".into(),
    };
    Row { key, env, default, meaning: format!("{lead}{meaning}"), production }
}

/// A doc comment as the meaning and the production note (its last paragraph `Production: …`).
fn describe(node: &Value) -> (String, String) {
    let text = node.get("description").and_then(Value::as_str).unwrap_or_default();
    let (meaning, production) = match text.rsplit_once("\n\nProduction: ") {
        Some((meaning, production)) => (meaning, production),
        None => (text, ""),
    };
    let flat = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    (flat(meaning), flat(production))
}

/// A default as written in TOML.
fn render(value: &Value) -> String {
    match value {
        Value::Null => "unset".into(),
        Value::String(s) if s.is_empty() => "`\"\"`".into(),
        Value::String(s) => format!("`{s}`"),
        Value::Array(a) if a.is_empty() => "`[]`".into(),
        Value::Object(o) if o.is_empty() => "`{}`".into(),
        other => format!("`{other}`"),
    }
}

/// A default in bytes with its size in KiB, MiB or GiB (`10485760` (10 MiB)).
fn with_size(key: &str, rendered: String, value: &Value) -> String {
    let Some(n) = value.as_u64().filter(|_| key.contains("bytes")) else { return rendered };
    let unit = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")]
        .into_iter()
        .find(|(size, _)| n >= *size && n % size == 0);
    match unit {
        Some((size, name)) => format!("{rendered} ({} {name})", n / size),
        None => rendered,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// docs/config.md's generated part must be exactly what the settings say. Regenerate with
    /// `GOFER_BLESS=1 cargo test -p gofer-api config_doc`.
    #[test]
    fn config_doc_matches_the_settings() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/config.md");
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        let (Some(begin), Some(end)) = (committed.find(BEGIN), committed.find(END)) else {
            panic!("docs/config.md has lost its markers:\n{BEGIN}\n…\n{END}\nput them back around the key table");
        };
        let expected = format!("{}{}{}", &committed[..begin], generated(), &committed[end + END.len() + 1..]);
        if std::env::var_os("GOFER_BLESS").is_some() {
            std::fs::write(&path, &expected).expect("write docs/config.md");
            return;
        }
        assert!(
            committed == expected,
            "docs/config.md's key table is out of date: the settings' doc comments or defaults changed. \
             Run GOFER_BLESS=1 cargo test -p gofer-api config_doc and commit docs/config.md"
        );
    }

    #[test]
    fn config_doc_lists_every_key_once_and_marks_required_ones() {
        let text = generated();
        let keys: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("| `")?.split('`').next()).collect();
        let mut unique = keys.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), keys.len(), "a key appears twice");
        for key in ["state_dir", "engine.lease_s", "object_store.kind", "object_store.bucket", "secret_store.addr"] {
            assert!(keys.contains(&key), "{key} is missing");
        }
        let state_dir = text.lines().find(|l| l.starts_with("| `state_dir`")).unwrap_or_default();
        assert!(state_dir.contains("**required**"), "{state_dir}");
        assert!(text.contains("| `vault_addr` (GOFER_VAULT_ADDR) | `secret_store.addr` (GOFER_SECRET_STORE__ADDR) |"));
    }
}
