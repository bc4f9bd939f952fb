//! Usage: the metering ledger summed per day or per pipeline, for a tenant and for operators
//! (JSON or CSV).

use actix_web::{HttpResponse, get, web};
use gofer_billing::usage::{GroupBy, UsageQuery};
use gofer_core::TenantId;
use gofer_core::model::{MAX_PAGE_LIMIT, MonthToDate, Page, PageRequest, UsageReport};
use serde::Deserialize;
use time::OffsetDateTime;
use utoipa::IntoParams;

use crate::auth::{Operator, Read, TenantAccess};
use crate::error::ApiError;
use crate::pagination::{PageQuery, page};
use crate::state::AppState;

/// Query of the usage routes.
#[derive(Debug, Deserialize, IntoParams)]
pub struct UsageParams {
    /// Start of the period, inclusive: RFC 3339 or `YYYY-MM-DD` (UTC). Default: the start of this month.
    from: Option<String>,
    /// End of the period, exclusive: RFC 3339 or `YYYY-MM-DD` (UTC). Default: now.
    to: Option<String>,
    /// `day` (default) or `pipeline`.
    #[param(pattern = "^(day|pipeline)$")]
    group_by: Option<String>,
    /// `json` (default) or `csv` (operators' route only: every group after `cursor`, in one file).
    #[param(pattern = "^(json|csv)$")]
    format: Option<String>,
    /// Groups per page, 1 to 500 (default 50).
    limit: Option<String>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
}

fn invalid(detail: impl Into<String>) -> ApiError {
    ApiError::InvalidParameter { code: "invalid_query", detail: detail.into() }
}

/// An instant from RFC 3339 or a UTC date.
fn instant(field: &str, text: &str) -> Result<OffsetDateTime, ApiError> {
    use time::format_description::well_known::Rfc3339;
    if let Ok(t) = OffsetDateTime::parse(text, &Rfc3339) {
        return Ok(t);
    }
    time::Date::parse(text, time::macros::format_description!("[year]-[month]-[day]"))
        .ok()
        .map(|d| d.midnight().assume_utc())
        .ok_or_else(|| invalid(format!("{field}: an RFC 3339 time or a YYYY-MM-DD date")))
}

fn start_of_month(now: OffsetDateTime) -> OffsetDateTime {
    now.date().replace_day(1).map(|d| d.midnight().assume_utc()).unwrap_or(now)
}

impl UsageParams {
    fn query(&self, tenant: TenantId) -> Result<UsageQuery, ApiError> {
        let now = OffsetDateTime::now_utc();
        let from = self.from.as_deref().map(|t| instant("from", t)).transpose()?.unwrap_or(start_of_month(now));
        let to = self.to.as_deref().map(|t| instant("to", t)).transpose()?.unwrap_or(now);
        if to <= from {
            return Err(ApiError::Unprocessable { code: "empty_period", detail: "to: must be after from".into() });
        }
        let group_by = match self.group_by.as_deref() {
            None => GroupBy::Day,
            Some(g) => GroupBy::parse(g).ok_or_else(|| invalid("group_by: day or pipeline"))?,
        };
        Ok(UsageQuery { tenant, from, to, group_by })
    }

    fn csv(&self) -> Result<bool, ApiError> {
        match self.format.as_deref() {
            None | Some("json") => Ok(false),
            Some("csv") => Ok(true),
            Some(_) => Err(invalid("format: json or csv")),
        }
    }
}

async fn report(
    state: &AppState,
    params: &UsageParams,
    tenant: TenantId,
    scoped: bool,
) -> Result<UsageReport, ApiError> {
    let query = params.query(tenant.clone())?;
    let request = PageQuery::from_parts(params.limit.clone(), params.cursor.clone()).parse::<String>()?;
    let groups = state.billing.usage(&query, &request, scoped).await?;
    let Page { items, next_cursor } = page(groups);
    let plan = state.billing.tenant_plan(&tenant).await?;
    let used_ms = state.runs.task_ms_this_month(&tenant).await?;
    Ok(UsageReport {
        items,
        next_cursor,
        from: query.from,
        to: query.to,
        group_by: match query.group_by {
            GroupBy::Day => "day".into(),
            GroupBy::Pipeline => "pipeline".into(),
        },
        this_month: MonthToDate {
            plan: plan.id,
            task_seconds_used: used_ms as f64 / 1000.0,
            task_seconds_allowed: plan.task_seconds_per_month,
        },
    })
}

/// The caller's tenant's usage: finished task attempts summed per UTC day or per pipeline over
/// `[from, to)`, and this month's task-seconds (running tasks included) against the plan.
#[utoipa::path(tag = "usage", params(UsageParams),
    security(("bearer" = [])),
    responses(
        (status = 200, body = UsageReport),
    ))]
#[get("/api/v1/usage")]
pub(crate) async fn tenant_usage(
    access: TenantAccess<Read>,
    state: web::Data<AppState>,
    params: web::Query<UsageParams>,
) -> Result<HttpResponse, ApiError> {
    if params.csv()? {
        return Err(ApiError::Forbidden {
            code: "forbidden",
            detail: "format: csv is for operators (GET /api/v1/tenants/{tenant}/usage)".into(),
        });
    }
    Ok(HttpResponse::Ok().json(report(&state, &params, access.tenant, true).await?))
}

/// A tenant's usage, for operators; `format=csv` answers every group as `text/csv`.
#[utoipa::path(tag = "usage",
    params(("tenant" = String, Path, description = "Tenant id"), UsageParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "JSON, or text/csv with format=csv",
            content((UsageReport = "application/json"), (String = "text/csv"))),
    ))]
#[get("/api/v1/tenants/{tenant}/usage")]
pub(crate) async fn operator_usage(
    _: Operator,
    state: web::Data<AppState>,
    path: web::Path<String>,
    params: web::Query<UsageParams>,
) -> Result<HttpResponse, ApiError> {
    let tenant = TenantId::parse(path.into_inner())?;
    state.tenants.get(&tenant).await?;
    if !params.csv()? {
        return Ok(HttpResponse::Ok().json(report(&state, &params, tenant, false).await?));
    }
    let query = params.query(tenant.clone())?;
    let mut csv = String::from("tenant,group_by,key,attempts,task_seconds,cpu_core_seconds,memory_mb_seconds\n");
    let group_by = if query.group_by == GroupBy::Day { "day" } else { "pipeline" };
    // Every group after the cursor (if any), in pages of the largest size: `limit` is checked
    // like any list's but does not cut the file.
    let asked = PageQuery::from_parts(params.limit.clone(), params.cursor.clone()).parse::<String>()?;
    let mut request = PageRequest::<String> { limit: MAX_PAGE_LIMIT, after: asked.after };
    loop {
        let (groups, next) = state.billing.usage(&query, &request, false).await?;
        for g in &groups {
            // Keys are dates or `namespace/pipeline` ids: never commas or quotes.
            csv.push_str(&format!(
                "{tenant},{group_by},{},{},{:.3},{:.3},{:.3}\n",
                g.key, g.attempts, g.task_seconds, g.cpu_core_seconds, g.memory_mb_seconds
            ));
        }
        match next {
            Some(after) => request.after = Some(after),
            None => break,
        }
    }
    Ok(HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .insert_header(("Content-Disposition", format!("attachment; filename=\"usage-{tenant}.csv\"")))
        .body(csv))
}
