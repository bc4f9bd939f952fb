//! Secret and object commands.

use futures_util::StreamExt;
use gofer_core::RunId;
use gofer_core::objects::{ObjectInfo, ObjectKey, ObjectScope};
use gofer_core::secrets::{SecretKey, SecretMetadata, SecretValue};
use gofer_sdk::all_pages;
use tokio::io::AsyncWriteExt;

use crate::args::{ObjectCommand, SecretCommand, SecretScopeArgs};
use crate::commands::read_input;
use crate::output::{emit, opt, table, time};
use crate::progress::{Transfer, counted_file};
use crate::{CliError, Ctx};

fn secrets_table(items: &[SecretMetadata]) -> String {
    table(
        ["key", "pipeline", "namespaces", "updated", "updated by"],
        items.iter().map(|s| {
            let pipeline = match (&s.namespace_id, &s.pipeline_id) {
                (Some(ns), Some(p)) => format!("{ns}/{p}"),
                _ => "(global)".into(),
            };
            [s.key.to_string(), pipeline, s.namespaces.join(","), time(Some(s.updated)), opt(s.updated_by.as_ref())]
        }),
    )
}

/// The value of `secret set`: `--value`, or stdin without one trailing newline.
fn secret_value(value: Option<String>) -> Result<SecretValue, CliError> {
    let value = match value {
        Some(v) => v,
        None => {
            let bytes = read_input("-")?;
            let text = String::from_utf8(bytes).map_err(|_| CliError::Usage("the secret value is not UTF-8".into()))?;
            let text = text.strip_suffix('\n').map(|t| t.strip_suffix('\r').unwrap_or(t)).unwrap_or(&text);
            text.to_owned()
        }
    };
    if value.is_empty() {
        return Err(CliError::Usage("empty secret value: pass --value or write it to stdin".into()));
    }
    Ok(SecretValue::new(value))
}

pub(crate) async fn secret(ctx: &Ctx, command: SecretCommand) -> Result<(), CliError> {
    let c = &ctx.client;
    let one = |s: &SecretMetadata| secrets_table(std::slice::from_ref(s));
    let pipeline = |scope: &SecretScopeArgs| scope.pipeline.as_deref().map(|p| ctx.pipeline(p)).transpose();
    match command {
        SecretCommand::Set { key, scope, value, namespaces } => {
            let key = SecretKey::parse(key)?;
            let secret = match pipeline(&scope)? {
                Some(_) if !namespaces.is_empty() => {
                    return Err(CliError::Usage("--namespace-glob is for global secrets (no --pipeline)".into()));
                }
                Some((ns, p)) => c.put_pipeline_secret(&ns, &p, &key, &secret_value(value)?).await?,
                None => {
                    let secret = c.put_global_secret(&key, &secret_value(value)?, &namespaces).await?;
                    if namespaces.is_empty() {
                        eprintln!(
                            "warning: no namespace may use global secret {key}: grant some with --namespace-glob \
                             (repeatable), e.g. --namespace-glob 'team-*'"
                        );
                    }
                    secret
                }
            };
            emit(ctx, &secret, one);
        }
        SecretCommand::Get { key, scope } => {
            let key = SecretKey::parse(key)?;
            let secret = match pipeline(&scope)? {
                Some((ns, p)) => c.get_pipeline_secret(&ns, &p, &key).await?,
                None => c.get_global_secret(&key).await?,
            };
            emit(ctx, &secret, one);
        }
        SecretCommand::List { scope } => {
            let items = match pipeline(&scope)? {
                Some((ns, p)) => all_pages(|page| c.list_pipeline_secrets(&ns, &p, page)).await?,
                None => all_pages(|page| c.list_global_secrets(page)).await?,
            };
            emit(ctx, &items, |i| secrets_table(i));
        }
        SecretCommand::Delete { key, scope } => {
            let parsed = SecretKey::parse(&key)?;
            match pipeline(&scope)? {
                Some((ns, p)) => c.delete_pipeline_secret(&ns, &p, &parsed).await?,
                None => c.delete_global_secret(&parsed).await?,
            }
            emit(ctx, &serde_json::json!({ "deleted": key }), |_| format!("Deleted secret {key}"));
        }
    }
    Ok(())
}

fn objects_table(items: &[ObjectInfo]) -> String {
    table(
        ["key", "size", "sha256", "created", "expired"],
        items.iter().map(|o| {
            [o.key.to_string(), o.size.to_string(), o.sha256.clone(), time(Some(o.created)), o.expired.to_string()]
        }),
    )
}

fn object_key(key: &str) -> Result<ObjectKey, CliError> {
    ObjectKey::parse(key).map_err(|e| CliError::Usage(e.to_string()))
}

fn object_scope(run: Option<&str>) -> Result<ObjectScope, CliError> {
    Ok(match run {
        Some(run) => ObjectScope::Run(RunId::parse(run)?),
        None => ObjectScope::Pipeline,
    })
}

pub(crate) async fn object(ctx: &Ctx, command: ObjectCommand) -> Result<(), CliError> {
    let c = &ctx.client;
    match command {
        ObjectCommand::Put { pipeline, key, file, run } => {
            let (ns, p) = ctx.pipeline(&pipeline)?;
            let (key, scope) = (object_key(&key)?, object_scope(run.as_deref())?);
            let info = if file == "-" {
                c.put_object(&ns, &p, scope, &key, read_input("-")?).await?
            } else {
                let f = tokio::fs::File::open(&file).await.map_err(|e| CliError::Io(format!("reading {file}: {e}")))?;
                let size = f.metadata().await.ok().map(|m| m.len());
                let progress = Transfer::new(ctx, format!("uploading {key}"), size);
                // Streamed so the bar follows the bytes as they leave.
                let body =
                    if progress.is_drawn() { reqwest::Body::wrap_stream(counted_file(f, &progress)) } else { f.into() };
                match size {
                    // Its length declared: refused at once when too large, one PutObject over S3.
                    Some(size) => c.put_object_of_length(&ns, &p, scope, &key, body, size).await?,
                    None => c.put_object(&ns, &p, scope, &key, body).await?,
                }
            };
            emit(ctx, &info, |o| objects_table(std::slice::from_ref(o)));
        }
        ObjectCommand::Get { pipeline, key, file, run } => {
            let (ns, p) = ctx.pipeline(&pipeline)?;
            let (key, scope) = (object_key(&key)?, object_scope(run.as_deref())?);
            let mut download = c.download_object(&ns, &p, scope, &key).await?;
            let io = |e: std::io::Error| CliError::Io(format!("writing {file}: {e}"));
            let (mut out, progress): (Box<dyn tokio::io::AsyncWrite + Unpin>, _) = if file == "-" {
                // The content goes to stdout: no bar in the middle of it.
                (Box::new(tokio::io::stdout()), None)
            } else {
                let out = tokio::fs::File::create(&file).await.map_err(io)?;
                (Box::new(out), Some(Transfer::new(ctx, format!("downloading {key}"), download.size)))
            };
            while let Some(chunk) = download.chunks.next().await {
                let chunk = chunk?;
                out.write_all(&chunk).await.map_err(io)?;
                if let Some(progress) = &progress {
                    progress.advance(chunk.len() as u64);
                }
            }
            out.flush().await.map_err(io)?;
        }
        ObjectCommand::List { pipeline, run } => {
            let (ns, p) = ctx.pipeline(&pipeline)?;
            let scope = object_scope(run.as_deref())?;
            let items = all_pages(|page| c.list_objects(&ns, &p, scope, page)).await?;
            emit(ctx, &items, |i| objects_table(i));
        }
        ObjectCommand::Delete { pipeline, key, run } => {
            let (ns, p) = ctx.pipeline(&pipeline)?;
            let scope = object_scope(run.as_deref())?;
            c.delete_object(&ns, &p, scope, &object_key(&key)?).await?;
            emit(ctx, &serde_json::json!({ "deleted": key }), |_| format!("Deleted object {key}"));
        }
    }
    Ok(())
}
