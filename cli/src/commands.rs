//! Command dispatch, and the tenancy commands: login, whoami, tenants, namespaces, tokens, plans.

use std::io::Read;

use gofer_core::model::{Namespace, Plan, Tenant, TokenMetadata};
use gofer_core::{NamespaceId, TenantId};
use gofer_sdk::{CreateToken, PageOptions, UpdateNamespace, all_pages};

use crate::args::{Command, NamespaceCommand, PlanCommand, TenantCommand, TokenCommand};
use crate::output::{emit, fields, opt, table, time};
use crate::settings::Settings;
use crate::{CliError, Ctx};

mod billing;
mod debug;
mod pipelines;
mod runs;
mod storage;

pub(crate) use runs::task_reason;

pub(crate) async fn dispatch(ctx: &Ctx, command: Command) -> Result<(), CliError> {
    match command {
        Command::Service { .. } | Command::Login | Command::Completion { .. } => {
            Err(CliError::Usage("this command is handled before connecting".into()))
        }
        Command::Whoami => {
            let me = ctx.client.whoami().await?;
            emit(ctx, &me, |w| {
                fields(&[
                    ("kind", w.kind.clone()),
                    ("token", w.token_id.clone()),
                    ("tenant", opt(w.tenant_id.as_ref())),
                    ("role", w.role.clone()),
                    ("namespaces", globs(&w.namespaces)),
                ])
            });
            Ok(())
        }
        Command::Tenant(c) => tenant(ctx, c).await,
        Command::Namespace(c) => namespace(ctx, c).await,
        Command::Token(c) => token(ctx, c).await,
        Command::Plan(c) => plan(ctx, c).await,
        Command::Pipeline(c) => pipelines::run(ctx, c).await,
        Command::Run(c) => runs::run(ctx, c).await,
        Command::Task(c) => runs::task(ctx, c).await,
        Command::Logs { pipeline, run, task, follow, attempt } => {
            runs::logs(ctx, &pipeline, &run, &task, follow, attempt).await
        }
        Command::Attach { pipeline, run, task, no_tty, command } => {
            crate::attach::attach(ctx, &pipeline, &run, &task, command, no_tty).await
        }
        Command::Event(c) => runs::events(ctx, c).await,
        Command::Debug(c) => debug::run(ctx, c).await,
        Command::Secret(c) => storage::secret(ctx, c).await,
        Command::Object(c) => storage::object(ctx, c).await,
        Command::Usage { from, to, group_by, tenant, csv } => {
            billing::usage(ctx, from, to, group_by, tenant, csv).await
        }
        Command::IpBlock(c) => billing::ip_block(ctx, c).await,
        Command::Trial => billing::trial(ctx).await,
    }
}

/// `gofer login`: checks the token against the server, then saves the settings.
pub(crate) async fn login(settings: &Settings, global: &crate::args::Global) -> Result<(), CliError> {
    let me = settings.client()?.whoami().await?;
    let path = settings.save()?;
    let ctx = Ctx { client: settings.client()?, namespace: settings.namespace.clone(), output: global.output };
    emit(&ctx, &me, |w| {
        format!("Logged in as {} token {} ({}); saved to {}", w.kind, w.token_id, w.role, path.display())
    });
    Ok(())
}

/// Reads a file, or stdin for `-`.
pub(crate) fn read_input(file: &str) -> Result<Vec<u8>, CliError> {
    if file == "-" {
        let mut bytes = Vec::new();
        std::io::stdin().read_to_end(&mut bytes).map_err(|e| CliError::Io(format!("reading stdin: {e}")))?;
        Ok(bytes)
    } else {
        std::fs::read(file).map_err(|e| CliError::Io(format!("reading {file}: {e}")))
    }
}

fn globs(list: &[String]) -> String {
    if list.is_empty() { "*".into() } else { list.join(",") }
}

fn tenants_table(items: &[Tenant]) -> String {
    table(
        ["id", "name", "created", "suspended"],
        items.iter().map(|t| [t.id.to_string(), t.name.clone(), time(Some(t.created)), time(t.suspended)]),
    )
}

async fn tenant(ctx: &Ctx, command: TenantCommand) -> Result<(), CliError> {
    let c = &ctx.client;
    let one = |t: &Tenant| tenants_table(std::slice::from_ref(t));
    match command {
        TenantCommand::List => {
            let items = all_pages(|page| c.list_tenants(page)).await?;
            emit(ctx, &items, |i| tenants_table(i));
        }
        TenantCommand::Get { tenant } => emit(ctx, &c.get_tenant(&TenantId::parse(tenant)?).await?, one),
        TenantCommand::Create { tenant, name } => {
            let id = TenantId::parse(&tenant)?;
            let created = c.create_tenant(&id, name.as_deref().unwrap_or(&tenant)).await?;
            emit(ctx, &created, |t| {
                format!("Created tenant {}. Its admin token (shown once):\n{}", t.tenant.id, t.token)
            });
        }
        TenantCommand::Delete { tenant, confirm } => {
            crate::confirm::deletion(
                "tenant",
                &tenant,
                "every namespace, pipeline, run, log, secret and object of it",
                &confirm,
            )?;
            c.delete_tenant(&TenantId::parse(&tenant)?).await?;
            emit(ctx, &serde_json::json!({ "deleted": tenant }), |_| format!("Deleted tenant {tenant}"));
        }
        TenantCommand::Suspend { tenant } => emit(ctx, &c.suspend_tenant(&TenantId::parse(tenant)?).await?, one),
        TenantCommand::Resume { tenant } => emit(ctx, &c.resume_tenant(&TenantId::parse(tenant)?).await?, one),
        TenantCommand::Convert { tenant, plan } => {
            emit(ctx, &c.convert_tenant(&TenantId::parse(tenant)?, &plan).await?, one)
        }
        TenantCommand::SetPlan { tenant, plan } => {
            let plan = c.assign_plan(&TenantId::parse(tenant)?, &plan).await?;
            emit(ctx, &plan, |p| plans_table(std::slice::from_ref(p)));
        }
    }
    Ok(())
}

fn namespaces_table(items: &[Namespace]) -> String {
    table(
        ["id", "name", "description", "created"],
        items.iter().map(|n| [n.id.to_string(), n.name.clone(), n.description.clone(), time(Some(n.created))]),
    )
}

async fn namespace(ctx: &Ctx, command: NamespaceCommand) -> Result<(), CliError> {
    let c = &ctx.client;
    let one = |n: &Namespace| namespaces_table(std::slice::from_ref(n));
    match command {
        NamespaceCommand::List => {
            let items =
                all_pages(
                    |page: PageOptions| async move { c.list_namespaces(page.limit, page.cursor.as_deref()).await },
                )
                .await?;
            emit(ctx, &items, |i| namespaces_table(i));
        }
        NamespaceCommand::Get { namespace } => emit(ctx, &c.get_namespace(&NamespaceId::parse(namespace)?).await?, one),
        NamespaceCommand::Create { namespace, name, description } => {
            let id = NamespaceId::parse(&namespace)?;
            emit(ctx, &c.create_namespace(&id, name.as_deref().unwrap_or(&namespace), &description).await?, one);
        }
        NamespaceCommand::Update { namespace, name, description } => {
            let update = UpdateNamespace { name, description };
            emit(ctx, &c.update_namespace(&NamespaceId::parse(namespace)?, &update).await?, one);
        }
        NamespaceCommand::Delete { namespace, force, confirm } => {
            crate::confirm::deletion(
                "namespace",
                &namespace,
                "every pipeline, run, log, secret and object in it",
                &confirm,
            )?;
            c.delete_namespace(&NamespaceId::parse(&namespace)?, force).await?;
            emit(ctx, &serde_json::json!({ "deleted": namespace }), |_| format!("Deleted namespace {namespace}"));
        }
    }
    Ok(())
}

fn tokens_table(items: &[TokenMetadata]) -> String {
    table(
        ["id", "kind", "role", "namespaces", "description", "expires", "revoked"],
        items.iter().map(|t| {
            [
                t.id.clone(),
                t.kind.clone(),
                t.role.clone(),
                globs(&t.namespaces),
                t.description.clone(),
                time(t.expires),
                time(t.revoked),
            ]
        }),
    )
}

async fn token(ctx: &Ctx, command: TokenCommand) -> Result<(), CliError> {
    let c = &ctx.client;
    let one = |t: &TokenMetadata| tokens_table(std::slice::from_ref(t));
    match command {
        TokenCommand::List => {
            let items = all_pages(|page| c.list_tokens(page)).await?;
            emit(ctx, &items, |i| tokens_table(i));
        }
        TokenCommand::Get { id } => emit(ctx, &c.get_token(&id).await?, one),
        TokenCommand::Create { kind, role, namespaces, allowed_cidrs, description, expires_in_days } => {
            let body = CreateToken { kind, role, namespaces, allowed_cidrs, description, expires_in_days };
            let created = c.create_token(&body).await?;
            emit(ctx, &created, |t| format!("{}Secret (shown once):\n{}", one(&t.metadata), t.token));
        }
        TokenCommand::Revoke { id } => emit(ctx, &c.revoke_token(&id).await?, one),
    }
    Ok(())
}

fn plans_table(items: &[Plan]) -> String {
    table(
        [
            "id",
            "name",
            "tasks",
            "task timeout",
            "run duration",
            "cpu",
            "memory",
            "disk",
            "task-s/month",
            "req/min",
            "streams",
            "objects",
            "pipeline objects",
        ],
        items.iter().map(|p| {
            [
                p.id.clone(),
                p.name.clone(),
                p.max_concurrent_tasks.to_string(),
                format!("{}s", p.max_task_timeout_s),
                format!("{}s", p.max_run_duration_s),
                format!("{}m", p.max_cpu_millis),
                format!("{}MiB", p.max_memory_mb),
                format!("{}MiB", p.max_disk_mb),
                p.task_seconds_per_month.to_string(),
                p.requests_per_minute.to_string(),
                p.max_concurrent_streams.to_string(),
                format!("{}B", p.object_storage_bytes),
                format!("{} / {}B", p.max_pipeline_objects, p.max_pipeline_object_bytes),
            ]
        }),
    )
}

fn plan_file(file: &str) -> Result<Plan, CliError> {
    serde_json::from_slice(&read_input(file)?).map_err(|e| CliError::Usage(format!("{file}: not a plan: {e}")))
}

async fn plan(ctx: &Ctx, command: PlanCommand) -> Result<(), CliError> {
    let c = &ctx.client;
    let one = |p: &Plan| plans_table(std::slice::from_ref(p));
    match command {
        PlanCommand::List => {
            let items = all_pages(|page| c.list_plans(page)).await?;
            emit(ctx, &items, |i| plans_table(i));
        }
        PlanCommand::Get { plan } => emit(ctx, &c.get_plan(&plan).await?, one),
        PlanCommand::Create { file } => emit(ctx, &c.create_plan(&plan_file(&file)?).await?, one),
        PlanCommand::Update { file } => emit(ctx, &c.update_plan(&plan_file(&file)?).await?, one),
        PlanCommand::Delete { plan } => {
            c.delete_plan(&plan).await?;
            emit(ctx, &serde_json::json!({ "deleted": plan }), |_| format!("Deleted plan {plan}"));
        }
    }
    Ok(())
}
