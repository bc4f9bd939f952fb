//! Keys of the previous release, read for one more release: the flat `s3_*`, `vault_*` and
//! `secret_keys`/`secret_primary_key` keys and the string forms `object_store = "s3"` and
//! `secret_store = "vault"` become the tagged tables `object_store = { kind = "s3", … }` and
//! `secret_store = { kind = "vault", … }` before the config is extracted. Each one read is
//! reported ([`Deprecated`]), and the server logs it naming its replacement. An old key of a store
//! next to that store's new table is refused, naming both.

use figment::value::{Dict, Value};

/// A store whose flat keys became a tagged table.
struct Store {
    /// The table's key (`object_store`).
    key: &'static str,
    /// The key of the table's tag (`object_store.kind`).
    kind: &'static str,
    /// The kind when neither form names one.
    default_kind: &'static str,
    /// The flat keys.
    fields: &'static [Field],
}

/// A flat key and where it went.
struct Field {
    /// The key of the previous release (`s3_bucket`).
    old: &'static str,
    /// Its replacement (`object_store.bucket`); the part after the dot is the table's field.
    new: &'static str,
    /// The kind of store it configures; with another kind it was ignored, and still is.
    kind: &'static str,
}

impl Field {
    fn field(&self) -> &'static str {
        self.new.split_once('.').map_or(self.new, |(_, field)| field)
    }
}

const STORES: [Store; 2] = [
    Store {
        key: "object_store",
        kind: "object_store.kind",
        default_kind: "local",
        fields: &[
            Field { old: "s3_endpoint", new: "object_store.endpoint", kind: "s3" },
            Field { old: "s3_bucket", new: "object_store.bucket", kind: "s3" },
            Field { old: "s3_region", new: "object_store.region", kind: "s3" },
            Field { old: "s3_path_style", new: "object_store.path_style", kind: "s3" },
            Field { old: "s3_access_key_id", new: "object_store.access_key_id", kind: "s3" },
            Field { old: "s3_secret_access_key", new: "object_store.secret_access_key", kind: "s3" },
            Field { old: "s3_part_size_bytes", new: "object_store.part_size_bytes", kind: "s3" },
            Field { old: "s3_part_concurrency", new: "object_store.part_concurrency", kind: "s3" },
            Field { old: "s3_single_put_max_bytes", new: "object_store.single_put_max_bytes", kind: "s3" },
        ],
    },
    Store {
        key: "secret_store",
        kind: "secret_store.kind",
        default_kind: "postgres",
        fields: &[
            Field { old: "secret_keys", new: "secret_store.keys", kind: "postgres" },
            Field { old: "secret_primary_key", new: "secret_store.primary_key", kind: "postgres" },
            Field { old: "vault_addr", new: "secret_store.addr", kind: "vault" },
            Field { old: "vault_token", new: "secret_store.token", kind: "vault" },
            Field { old: "vault_role_id", new: "secret_store.role_id", kind: "vault" },
            Field { old: "vault_secret_id", new: "secret_store.secret_id", kind: "vault" },
            Field { old: "vault_approle_mount", new: "secret_store.approle_mount", kind: "vault" },
            Field { old: "vault_mount", new: "secret_store.mount", kind: "vault" },
            Field { old: "vault_prefix", new: "secret_store.prefix", kind: "vault" },
        ],
    },
];

/// The top-level keys of the previous release that are read no more under their own name.
pub(super) fn old_top_level_keys() -> impl Iterator<Item = &'static str> {
    STORES.iter().flat_map(|store| store.fields).map(|field| field.old)
}

/// A key of the previous release that a config was written with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deprecated {
    /// The old key (`s3_bucket`; `object_store` for the string form).
    pub old: &'static str,
    /// Its replacement (`object_store.bucket`).
    pub new: &'static str,
    /// Set when the old key configured another kind of store than the one in use, so it was
    /// ignored, as it always was: that kind.
    pub ignored_with: Option<String>,
}

impl std::fmt::Display for Deprecated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (old, new) = (self.old, self.new);
        let (old_env, new_env) = (super::env_var(old), super::env_var(new));
        match &self.ignored_with {
            None => write!(
                f,
                "the configuration key `{old}` ({old_env}) is deprecated and will be read only until the next \
                 release: write `{new}` ({new_env}) instead"
            ),
            Some(kind) => {
                let store = new.split_once('.').map_or(new, |(store, _)| store);
                write!(
                    f,
                    "the configuration key `{old}` ({old_env}) is deprecated, and ignored with {store}.kind = \
                     \"{kind}\": remove it (its replacement is `{new}`, {new_env})"
                )
            }
        }
    }
}

/// An old key of a store set next to that store's new table.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{old}` (deprecated) and the `{store}` table cannot both be set: write `{new}` in the table instead of `{old}`"
)]
pub struct MixedKeys {
    /// The old key.
    pub old: &'static str,
    /// The store's table.
    pub store: &'static str,
    /// The old key's replacement.
    pub new: &'static str,
}

/// `given` (file and environment) with the keys of the previous release moved into the stores'
/// tables (a table without a `kind` is of the default kind), and what was moved or ignored.
pub(super) fn translate(mut given: Dict) -> Result<(Dict, Vec<Deprecated>), MixedKeys> {
    let mut deprecated = Vec::new();
    for store in &STORES {
        let old: Vec<(&Field, Value)> =
            store.fields.iter().filter_map(|field| given.remove(field.old).map(|value| (field, value))).collect();
        let kind = match given.get(store.key) {
            Some(Value::String(_, kind)) => {
                deprecated.push(Deprecated { old: store.key, new: store.kind, ignored_with: None });
                kind.clone()
            }
            Some(Value::Dict(_, table)) => match old.first() {
                Some((field, _)) => return Err(MixedKeys { old: field.old, store: store.key, new: field.new }),
                // A table without a kind is of the default kind (`GOFER_SECRET_STORE__KEYS__K1`).
                None if table.contains_key("kind") => continue,
                None => store.default_kind.to_owned(),
            },
            // Another type: extraction names the key and what it expects.
            Some(_) => continue,
            None if old.is_empty() => continue,
            None => store.default_kind.to_owned(),
        };
        let mut table = match given.remove(store.key) {
            Some(Value::Dict(_, table)) => table,
            _ => Dict::new(),
        };
        for (field, value) in old {
            let ignored_with = (field.kind != kind).then(|| kind.clone());
            if ignored_with.is_none() {
                table.insert(field.field().to_owned(), value);
            }
            deprecated.push(Deprecated { old: field.old, new: field.new, ignored_with });
        }
        table.insert("kind".to_owned(), Value::from(kind.as_str()));
        given.insert(store.key.to_owned(), Value::from(table));
    }
    Ok((given, deprecated))
}

/// The old→new table of docs/config.md.
#[cfg(test)]
pub(super) fn markdown_table() -> String {
    let mut out = String::from("| old key | new key | note |\n|---|---|---|\n");
    for store in &STORES {
        out.push_str(&format!(
            "| `{key} = \"<kind>\"` (a string) | `{key} = {{ kind = \"<kind>\" }}` (`{kind}`) | |\n",
            key = store.key,
            kind = store.kind,
        ));
        for field in store.fields {
            out.push_str(&format!(
                "| `{}` ({}) | `{}` ({}) | only with `kind = \"{}\"` |\n",
                field.old,
                super::env_var(field.old),
                field.new,
                super::env_var(field.new),
                field.kind
            ));
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::result_large_err, clippy::unwrap_used)] // figment's Jail closures return its own large error
mod tests {
    use std::path::Path;

    use crate::config::{Config, ConfigError, Loaded};

    fn load(file: &str) -> Result<Loaded, ConfigError> {
        Config::load(Some(Path::new(file)))
    }

    /// Everything a config holds, secrets included, to compare two.
    fn exposed(config: &Config) -> serde_json::Value {
        serde_json::to_value(config).unwrap()
    }

    const OLD: &str = r#"
        object_store = "s3"
        s3_endpoint = "http://127.0.0.1:9000"
        s3_bucket = "artifacts"
        s3_access_key_id = "AKID"
        s3_secret_access_key = "s3-sentinel"
        s3_part_concurrency = 8
        secret_store = "vault"
        vault_addr = "https://vault.internal:8200"
        vault_role_id = "role"
        vault_secret_id = "vault-sentinel"
        vault_prefix = "team/"
    "#;

    const NEW: &str = r#"
        [object_store]
        kind = "s3"
        endpoint = "http://127.0.0.1:9000"
        bucket = "artifacts"
        access_key_id = "AKID"
        secret_access_key = "s3-sentinel"
        part_concurrency = 8
        [secret_store]
        kind = "vault"
        addr = "https://vault.internal:8200"
        role_id = "role"
        secret_id = "vault-sentinel"
        prefix = "team/"
    "#;

    #[test]
    fn a_file_with_the_old_keys_loads_as_the_new_form_and_names_each_replacement() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("old.toml", OLD)?;
            jail.create_file("new.toml", NEW)?;
            let old = load("old.toml").unwrap();
            let new = load("new.toml").unwrap();
            assert_eq!(exposed(&old.config), exposed(&new.config));
            assert!(new.deprecated.is_empty(), "{:?}", new.deprecated);
            let warnings: Vec<String> = old.deprecated.iter().map(ToString::to_string).collect();
            assert_eq!(warnings.len(), 11, "{warnings:#?}");
            for (old, new) in [
                ("object_store", "object_store.kind"),
                ("s3_bucket", "object_store.bucket"),
                ("s3_secret_access_key", "object_store.secret_access_key"),
                ("vault_addr", "secret_store.addr"),
                ("vault_secret_id", "secret_store.secret_id"),
            ] {
                let warning = warnings.iter().find(|w| w.contains(&format!("`{old}`"))).unwrap();
                assert!(warning.contains(&format!("write `{new}`")), "{warning}");
            }
            assert!(!warnings.concat().contains("sentinel"), "no value is echoed: {warnings:#?}");
            Ok(())
        });
    }

    #[test]
    fn old_variables_load_as_the_new_nested_ones() {
        figment::Jail::expect_with(|jail| {
            for (var, value) in [
                ("GOFER_OBJECT_STORE", "s3"),
                ("GOFER_S3_BUCKET", "artifacts"),
                ("GOFER_S3_PATH_STYLE", "false"),
                ("GOFER_S3_SECRET_ACCESS_KEY", "s3-secret"),
                ("GOFER_S3_ACCESS_KEY_ID", "AKID"),
                ("GOFER_SECRET_KEYS__S1", "c2VjcmV0"),
                ("GOFER_SECRET_PRIMARY_KEY", "s1"),
            ] {
                jail.set_env(var, value);
            }
            jail.create_file("empty.toml", "")?;
            let old = load("empty.toml").unwrap();
            jail.clear_env();
            for (var, value) in [
                ("GOFER_OBJECT_STORE__KIND", "s3"),
                ("GOFER_OBJECT_STORE__BUCKET", "artifacts"),
                ("GOFER_OBJECT_STORE__PATH_STYLE", "false"),
                ("GOFER_OBJECT_STORE__SECRET_ACCESS_KEY", "s3-secret"),
                ("GOFER_OBJECT_STORE__ACCESS_KEY_ID", "AKID"),
                ("GOFER_SECRET_STORE__KEYS__S1", "c2VjcmV0"),
                ("GOFER_SECRET_STORE__PRIMARY_KEY", "s1"),
            ] {
                jail.set_env(var, value);
            }
            let new = load("empty.toml").unwrap();
            assert_eq!(exposed(&old.config), exposed(&new.config));
            let warning = old.deprecated.iter().find(|d| d.old == "secret_keys").unwrap().to_string();
            assert!(warning.contains("GOFER_SECRET_KEYS") && warning.contains("GOFER_SECRET_STORE__KEYS"), "{warning}");
            Ok(())
        });
    }

    #[test]
    fn an_old_key_of_another_kind_of_store_is_ignored_as_before_with_a_warning() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("old.toml", "vault_token = \"t\"\ns3_bucket = \"b\"\n")?;
            let loaded = load("old.toml").unwrap();
            assert!(matches!(loaded.config.object_store, gofer_objects::ObjectStoreSettings::Local {}));
            assert!(matches!(loaded.config.secret_store, gofer_secrets::SecretStoreSettings::Postgres(_)));
            let warnings: Vec<String> = loaded.deprecated.iter().map(ToString::to_string).collect();
            assert!(warnings.iter().any(|w| w.contains("`vault_token`") && w.contains("ignored with secret_store.kind = \"postgres\"")), "{warnings:#?}");
            assert!(
                warnings
                    .iter()
                    .any(|w| w.contains("`s3_bucket`") && w.contains("ignored with object_store.kind = \"local\"")),
                "{warnings:#?}"
            );
            Ok(())
        });
    }

    #[test]
    fn an_old_key_next_to_its_stores_new_table_is_refused_naming_both() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("mixed.toml", "[object_store]\nkind = \"s3\"\nbucket = \"b\"\n")?;
            jail.set_env("GOFER_S3_REGION", "eu-west-1");
            let err = load("mixed.toml").unwrap_err().to_string();
            assert!(err.contains("`s3_region`") && err.contains("`object_store.region`"), "{err}");
            jail.clear_env();
            jail.create_file(
                "mixed.toml",
                "vault_addr = \"http://v\"\n[secret_store]\nkind = \"vault\"\naddr = \"http://v\"\ntoken = \"t\"\n",
            )?;
            let err = load("mixed.toml").unwrap_err().to_string();
            assert!(err.contains("`vault_addr`") && err.contains("`secret_store.addr`"), "{err}");
            Ok(())
        });
    }
}
