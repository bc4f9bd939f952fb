//! References in a task's env values, resolved just before the task starts: `secret{{ KEY }}`
//! (the pipeline's secret, else a global secret granted to its namespace). A value may hold
//! several references among plain text (`Bearer secret{{ TOKEN }}`). Resolved values go only into
//! the spec handed to the scheduler — never into Postgres rows or events — and every resolved
//! secret is masked in the task's logs.
//!
//! Adding a kind of reference (`pipeline_object{{ key }}`, …) means one arm in
//! [`Resolvers::resolve_one`]: parsing is shared, and a kind nobody resolves stays literal text.

use std::collections::BTreeMap;
use std::sync::Arc;

use gofer_core::model::Reason;
use gofer_core::scheduler::RegistryAuth;
use gofer_core::secrets::{ResolveError, SecretKey, SecretResolver};
use gofer_core::{NamespaceId, PipelineId, StatusReason, TenantId};

/// One `kind{{ argument }}` occurrence in a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reference<'a> {
    /// The word before `{{` (`secret`).
    pub kind: &'a str,
    /// What is between the braces, trimmed.
    pub argument: &'a str,
    /// Byte range of the whole reference in the value.
    pub span: std::ops::Range<usize>,
}

/// Finds every `kind{{ argument }}` in `value`, in order. `kind` is a run of `a-z` and `_`
/// right before `{{`; the argument runs to the next `}}`.
pub(crate) fn find_references(value: &str) -> Vec<Reference<'_>> {
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(open) = value[from..].find("{{").map(|i| i + from) {
        let kind_start = value[..open]
            .char_indices()
            .rev()
            .take_while(|(_, c)| c.is_ascii_lowercase() || *c == '_')
            .last()
            .map_or(open, |(i, _)| i);
        let Some(close) = value[open + 2..].find("}}").map(|i| i + open + 2) else { break };
        if kind_start < open {
            found.push(Reference {
                kind: &value[kind_start..open],
                argument: value[open + 2..close].trim(),
                span: kind_start..close + 2,
            });
        }
        from = close + 2;
    }
    found
}

/// The task whose env is resolved.
pub(crate) struct Context<'a> {
    pub tenant: &'a TenantId,
    pub namespace: &'a NamespaceId,
    pub pipeline: &'a PipelineId,
}

/// A resolved reference.
struct Resolution {
    value: String,
    /// Whether the value must be masked in logs.
    secret: bool,
}

/// Why the env could not be resolved.
#[derive(Debug)]
pub(crate) enum ReferenceError {
    /// The task cannot start as configured (missing or ungranted secret, malformed reference):
    /// it fails without retries, with this reason.
    Unresolvable(Reason),
    /// A store was unavailable; an infrastructure failure, retried.
    Unavailable(String),
}

/// What resolves each kind of reference.
#[derive(Clone, Default)]
pub(crate) struct Resolvers {
    pub secrets: Option<Arc<dyn SecretResolver>>,
}

fn unresolvable(description: String) -> ReferenceError {
    ReferenceError::Unresolvable(Reason { reason: StatusReason::SecretUnavailable, description })
}

impl Resolvers {
    /// Resolves one reference; `None` for a kind this engine does not know (left as text).
    async fn resolve_one(
        &self,
        reference: &Reference<'_>,
        ctx: &Context<'_>,
    ) -> Option<Result<Resolution, ReferenceError>> {
        match reference.kind {
            "secret" => Some(self.secret(reference.argument, ctx).await),
            _ => None,
        }
    }

    async fn secret(&self, argument: &str, ctx: &Context<'_>) -> Result<Resolution, ReferenceError> {
        let key = SecretKey::parse(argument)
            .map_err(|e| unresolvable(format!("secret reference secret{{{{ {argument} }}}}: {e}")))?;
        let Some(resolver) = &self.secrets else {
            return Err(ReferenceError::Unavailable(format!("secret {key}: this engine has no secret store")));
        };
        match resolver.resolve(ctx.tenant, ctx.namespace, ctx.pipeline, &key).await {
            Ok(value) => Ok(Resolution { value: value.expose().to_owned(), secret: true }),
            Err(e @ ResolveError::NotFound { .. }) => Err(unresolvable(e.to_string())),
            Err(ResolveError::Unavailable(detail)) => {
                Err(ReferenceError::Unavailable(format!("resolving secret {key}: {detail}")))
            }
        }
    }

    /// Resolves a task's `registry_auth` secret (looked up exactly like `secret{{ KEY }}`) into
    /// pull credentials. The value is `{"username": …, "password": …}` (JSON) or `username:password`
    /// (split at the first `:`); anything else fails the task like a missing secret. The password
    /// is also answered for masking: the scheduler may hand it to the task.
    pub(crate) async fn registry_auth(
        &self,
        name: &str,
        ctx: &Context<'_>,
    ) -> Result<(RegistryAuth, String), ReferenceError> {
        let value = self.secret(name, ctx).await?.value;
        let auth = parse_registry_auth(&value).ok_or_else(|| {
            unresolvable(format!(
                "registry_auth secret {name} is neither {{\"username\",\"password\"}} JSON nor username:password"
            ))
        })?;
        let password = auth.password.clone();
        Ok((auth, password))
    }

    /// Replaces every reference in the env's values (Gofer's own `GOFER_*` variables excepted),
    /// and answers the secret values used, for masking. Each distinct reference is resolved once.
    pub(crate) async fn resolve_env(
        &self,
        env: &mut BTreeMap<String, String>,
        ctx: &Context<'_>,
    ) -> Result<Vec<String>, ReferenceError> {
        let mut resolved: BTreeMap<(String, String), Option<String>> = BTreeMap::new();
        let mut secrets = Vec::new();
        for (name, value) in env.iter_mut() {
            if name.starts_with("GOFER_") {
                continue;
            }
            let references = find_references(value);
            if references.is_empty() {
                continue;
            }
            let mut out = String::with_capacity(value.len());
            let mut last = 0;
            for reference in &references {
                let id = (reference.kind.to_owned(), reference.argument.to_owned());
                let replacement = match resolved.get(&id) {
                    Some(r) => r.clone(),
                    None => {
                        let r = match self.resolve_one(reference, ctx).await {
                            None => None,
                            Some(Ok(resolution)) => {
                                if resolution.secret {
                                    secrets.push(resolution.value.clone());
                                }
                                Some(resolution.value)
                            }
                            Some(Err(e)) => return Err(e),
                        };
                        resolved.insert(id, r.clone());
                        r
                    }
                };
                out.push_str(&value[last..reference.span.start]);
                match replacement {
                    Some(text) => out.push_str(&text),
                    None => out.push_str(&value[reference.span.clone()]),
                }
                last = reference.span.end;
            }
            out.push_str(&value[last..]);
            *value = out;
        }
        Ok(secrets)
    }
}

/// `{"username","password"}` JSON, or `username:password`; both parts non-empty.
fn parse_registry_auth(value: &str) -> Option<RegistryAuth> {
    #[derive(serde::Deserialize)]
    struct Json {
        username: String,
        password: String,
    }
    let (username, password) = match serde_json::from_str::<Json>(value.trim()) {
        Ok(j) => (j.username, j.password),
        Err(_) if value.trim_start().starts_with('{') => return None,
        Err(_) => {
            let (u, p) = value.split_once(':')?;
            (u.to_owned(), p.trim_end_matches(['\r', '\n']).to_owned())
        }
    };
    (!username.is_empty() && !password.is_empty()).then_some(RegistryAuth { username, password })
}

#[cfg(test)]
mod tests {
    use super::*;
    use gofer_core::scheduler::BoxFuture;
    use gofer_core::secrets::SecretValue;

    #[test]
    fn references_are_found_among_text() {
        let refs = find_references("Bearer secret{{ TOKEN }} and secret{{B}}; {{ x }} run_object{{ a.txt }}");
        let got: Vec<_> = refs.iter().map(|r| (r.kind, r.argument)).collect();
        assert_eq!(got, vec![("secret", "TOKEN"), ("secret", "B"), ("run_object", "a.txt")]);
        assert_eq!(&"Bearer secret{{ TOKEN }}"[refs[0].span.clone()], "secret{{ TOKEN }}");
        assert!(find_references("no refs {{ here").is_empty());
    }

    struct Fixed;
    impl SecretResolver for Fixed {
        fn resolve<'a>(
            &'a self,
            _: &'a TenantId,
            namespace: &'a NamespaceId,
            _: &'a PipelineId,
            key: &'a SecretKey,
        ) -> BoxFuture<'a, Result<SecretValue, ResolveError>> {
            Box::pin(async move {
                match key.as_str() {
                    "TOKEN" => Ok(SecretValue::new("hunter2")),
                    "REG_JSON" => Ok(SecretValue::new(r#"{"username":"robot","password":"pa:ss"}"#)),
                    "REG_PLAIN" => Ok(SecretValue::new("robot:pa:ss\n")),
                    "REG_BAD" => Ok(SecretValue::new("no-colon")),
                    "DOWN" => Err(ResolveError::Unavailable("vault down".into())),
                    _ => Err(ResolveError::NotFound { key: key.clone(), namespace: namespace.clone() }),
                }
            })
        }
    }

    async fn resolve(env: &[(&str, &str)]) -> (BTreeMap<String, String>, Result<Vec<String>, ReferenceError>) {
        let tenant = TenantId::parse("acme").unwrap();
        let namespace = NamespaceId::parse("team-a").unwrap();
        let pipeline = PipelineId::parse("build").unwrap();
        let ctx = Context { tenant: &tenant, namespace: &namespace, pipeline: &pipeline };
        let resolvers = Resolvers { secrets: Some(Arc::new(Fixed)) };
        let mut env: BTreeMap<String, String> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let result = resolvers.resolve_env(&mut env, &ctx).await;
        (env, result)
    }

    #[tokio::test]
    async fn secrets_replace_their_references_and_are_reported_for_masking() {
        let (env, masks) = resolve(&[
            ("AUTH", "Bearer secret{{ TOKEN }}"),
            ("AGAIN", "secret{{TOKEN}}"),
            ("OTHER", "pipeline_object{{ x }}"),
            ("GOFER_X", "secret{{ MISSING }}"),
        ])
        .await;
        assert_eq!(masks.unwrap(), vec!["hunter2".to_owned()]);
        assert_eq!(env["AUTH"], "Bearer hunter2");
        assert_eq!(env["AGAIN"], "hunter2");
        assert_eq!(env["OTHER"], "pipeline_object{{ x }}");
        assert_eq!(env["GOFER_X"], "secret{{ MISSING }}");
    }

    #[tokio::test]
    async fn a_missing_secret_fails_naming_its_key_and_an_outage_is_retryable() {
        let (_, result) = resolve(&[("A", "secret{{ NOPE }}")]).await;
        match result {
            Err(ReferenceError::Unresolvable(reason)) => {
                assert_eq!(reason.reason, StatusReason::SecretUnavailable);
                assert!(reason.description.contains("NOPE") && reason.description.contains("team-a"), "{reason:?}");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(resolve(&[("A", "secret{{ DOWN }}")]).await.1, Err(ReferenceError::Unavailable(_))));
        assert!(matches!(resolve(&[("A", "secret{{ -bad }}")]).await.1, Err(ReferenceError::Unresolvable(_))));
    }

    #[tokio::test]
    async fn registry_auth_resolves_like_a_secret_reference() {
        let tenant = TenantId::parse("acme").unwrap();
        let namespace = NamespaceId::parse("team-a").unwrap();
        let pipeline = PipelineId::parse("build").unwrap();
        let ctx = Context { tenant: &tenant, namespace: &namespace, pipeline: &pipeline };
        let resolvers = Resolvers { secrets: Some(Arc::new(Fixed)) };
        for key in ["REG_JSON", "REG_PLAIN"] {
            let (auth, mask) = resolvers.registry_auth(key, &ctx).await.unwrap();
            assert_eq!((auth.username.as_str(), auth.password.as_str(), mask.as_str()), ("robot", "pa:ss", "pa:ss"));
        }
        for key in ["REG_BAD", "NOPE"] {
            match resolvers.registry_auth(key, &ctx).await {
                Err(ReferenceError::Unresolvable(reason)) => {
                    assert_eq!(reason.reason, StatusReason::SecretUnavailable);
                    assert!(reason.description.contains(key), "{reason:?}");
                }
                other => panic!("{other:?}"),
            }
        }
        assert!(matches!(resolvers.registry_auth("DOWN", &ctx).await, Err(ReferenceError::Unavailable(_))));
    }
}
