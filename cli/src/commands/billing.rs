//! Usage, IP block and trial commands.

use gofer_core::TenantId;
use gofer_core::model::IpBlock;
use gofer_sdk::{PageOptions, UsageGroupBy, UsageQuery, UsageReport, all_pages};

use crate::args::{GroupBy, IpBlockCommand};
use crate::output::{duration, emit, fields, table, time};
use crate::{CliError, Ctx};

/// `gofer usage`: every page of the report, merged into one.
pub(crate) async fn usage(
    ctx: &Ctx,
    from: Option<String>,
    to: Option<String>,
    group_by: GroupBy,
    tenant: Option<String>,
    csv: bool,
) -> Result<(), CliError> {
    let c = &ctx.client;
    let group_by = match group_by {
        GroupBy::Day => UsageGroupBy::Day,
        GroupBy::Pipeline => UsageGroupBy::Pipeline,
    };
    let query = UsageQuery { from, to, group_by };
    let tenant = tenant.map(TenantId::parse).transpose()?;
    if csv {
        let tenant = tenant.ok_or_else(|| CliError::Usage("--csv needs --tenant".into()))?;
        crate::output::write_stdout(c.tenant_usage_csv(&tenant, &query).await?.as_bytes());
        return Ok(());
    }
    let mut page = PageOptions::default();
    let mut report: Option<UsageReport> = None;
    loop {
        let next = match &tenant {
            Some(t) => c.tenant_usage(t, &query, page.clone()).await?,
            None => c.usage(&query, page.clone()).await?,
        };
        let cursor = next.next_cursor.clone();
        match &mut report {
            Some(r) => r.items.extend(next.items),
            None => report = Some(next),
        }
        match cursor {
            Some(cursor) => page.cursor = Some(cursor),
            None => break,
        }
    }
    let mut report = report.expect("one page at least");
    report.next_cursor = None;
    emit(ctx, &report, |r| {
        let month = &r.this_month;
        let header = fields(&[
            ("period", format!("{} to {}", time(Some(r.from)), time(Some(r.to)))),
            ("plan", month.plan.clone()),
            ("this month", format!("{:.0} of {} task-seconds", month.task_seconds_used, month.task_seconds_allowed)),
        ]);
        let groups = table(
            [r.group_by.as_str(), "attempts", "task time", "cpu core-s", "memory MiB-s"],
            r.items.iter().map(|g| {
                [
                    g.key.clone(),
                    g.attempts.to_string(),
                    duration(g.task_seconds),
                    format!("{:.1}", g.cpu_core_seconds),
                    format!("{:.0}", g.memory_mb_seconds),
                ]
            }),
        );
        format!("{header}\n{groups}")
    });
    Ok(())
}

fn blocks_table(items: &[IpBlock]) -> String {
    table(
        ["address", "scope", "reason", "created", "expires"],
        items.iter().map(|b| {
            [
                b.address.clone(),
                b.scope.as_str().to_owned(),
                b.reason.clone(),
                time(Some(b.created)),
                time(Some(b.expires)),
            ]
        }),
    )
}

pub(crate) async fn ip_block(ctx: &Ctx, command: IpBlockCommand) -> Result<(), CliError> {
    let c = &ctx.client;
    match command {
        IpBlockCommand::List => {
            let items = all_pages(|page| c.list_ip_blocks(page)).await?;
            emit(ctx, &items, |i| blocks_table(i));
        }
        IpBlockCommand::Add { address, duration, reason, scope } => {
            let scope = gofer_sdk::core::model::BlockScope::parse(&scope).unwrap_or_default();
            let block = c.create_ip_block(&address, duration, reason.as_deref(), scope).await?;
            emit(ctx, &block, |b| blocks_table(std::slice::from_ref(b)));
        }
        IpBlockCommand::Remove { address } => {
            c.delete_ip_block(&address).await?;
            emit(ctx, &serde_json::json!({ "deleted": address }), |_| format!("Unblocked {address}"));
        }
    }
    Ok(())
}

/// `gofer trial`: a new trial tenant and its token.
pub(crate) async fn trial(ctx: &Ctx) -> Result<(), CliError> {
    // The service asks a sign-up to pay with a proof of work (about a second of one core).
    let challenge = ctx.client.trial_challenge().await?;
    let spinner = crate::progress::Spinner::new(
        ctx,
        format!("Solving the sign-up's proof of work ({} bits, about 2^{} hashes)", challenge.bits, challenge.bits),
    );
    let proof = gofer_sdk::solve_trial_challenge(challenge).await?;
    drop(spinner);
    let created = ctx.client.start_trial_with(&proof).await?;
    emit(ctx, &created, |t| format!("Started trial tenant {}. Its token (shown once):\n{}", t.tenant.id, t.token));
    Ok(())
}
