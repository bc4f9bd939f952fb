//! Pipeline objects and run objects: bodies stream to the object store (never held whole in
//! memory), reads stream back, lists come from the metadata in Postgres.

use actix_web::{HttpRequest, HttpResponse, delete, get, put, web};
use futures_util::StreamExt;
use gofer_core::model::Page;
use gofer_core::objects::{ByteStream, ObjectInfo, ObjectKey, ObjectScope};
use gofer_core::{NamespaceId, PipelineId, RunId};
use gofer_objects::Collection;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::{Read, ReadPipelineObjects, TenantAccess, Write, WriteRunObjects};
use crate::error::ApiError;
use crate::pagination::{PageQuery, page};
use crate::state::AppState;

/// The header carrying an object's SHA-256 on reads.
pub(crate) const SHA256_HEADER: &str = "Gofer-Object-Sha256";

/// Chunks in flight between the request body and the store (each at most a network read).
const BODY_CHANNEL_CHUNKS: usize = 8;

/// One object's metadata.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct ObjectResponse {
    /// The object.
    pub object: ObjectInfo,
}

#[derive(Deserialize)]
pub(crate) struct PipelineObjectsPath {
    namespace: String,
    pipeline: String,
}

#[derive(Deserialize)]
pub(crate) struct PipelineObjectPath {
    namespace: String,
    pipeline: String,
    key: String,
}

#[derive(Deserialize)]
pub(crate) struct RunObjectsPath {
    namespace: String,
    pipeline: String,
    run: String,
}

#[derive(Deserialize)]
pub(crate) struct RunObjectPath {
    namespace: String,
    pipeline: String,
    run: String,
    key: String,
}

fn collection(
    tenant: &gofer_core::TenantId,
    namespace: String,
    pipeline: String,
    run: Option<&str>,
) -> Result<Collection, ApiError> {
    Ok(Collection {
        tenant: tenant.clone(),
        namespace: NamespaceId::parse(namespace)?,
        pipeline: PipelineId::parse(pipeline)?,
        scope: match run {
            None => ObjectScope::Pipeline,
            Some(run) => ObjectScope::Run(RunId::parse(run)?),
        },
    })
}

/// Streams the request body into the store: the body is forwarded chunk by chunk through a small
/// channel (actix's payload is not `Send`; the store's consumer is), so memory stays at a few
/// chunks (for S3: the multipart parts in flight and the one being filled) whatever the object's
/// size.
async fn put_object(
    state: &AppState,
    req: &HttpRequest,
    at: Collection,
    key: String,
    mut payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let key = ObjectKey::parse(key)?;
    let limit = state.objects.limits().max_object_bytes;
    let declared = req
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(ApiError::PayloadTooLarge(usize::try_from(limit).unwrap_or(usize::MAX)));
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(BODY_CHANNEL_CHUNKS);
    let body: ByteStream =
        Box::pin(futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) }));
    let pump = async move {
        while let Some(chunk) = payload.next().await {
            let item = chunk.map_err(|e| std::io::Error::other(e.to_string()));
            let failed = item.is_err();
            // A closed channel means the store stopped reading (refused or failed): stop too.
            if tx.send(item).await.is_err() || failed {
                break;
            }
        }
    };
    let (stored, ()) = futures_util::join!(state.objects.put(&at, &key, body, declared), pump);
    Ok(HttpResponse::Created().json(ObjectResponse { object: stored? }))
}

async fn get_object(state: &AppState, at: Collection, key: String) -> Result<HttpResponse, ApiError> {
    let key = ObjectKey::parse(key)?;
    let (info, fetched) = state.objects.get(&at, &key).await?;
    Ok(HttpResponse::Ok()
        .content_type("application/octet-stream")
        .insert_header((SHA256_HEADER, info.sha256))
        .no_chunking(fetched.size)
        .streaming(fetched.body))
}

async fn delete_object(state: &AppState, at: Collection, key: String) -> Result<HttpResponse, ApiError> {
    let key = ObjectKey::parse(key)?;
    state.objects.delete(&at, &key).await?;
    Ok(HttpResponse::NoContent().finish())
}

async fn list_objects(state: &AppState, at: Collection, query: &PageQuery) -> Result<Page<ObjectInfo>, ApiError> {
    let request = query.parse::<ObjectKey>()?;
    Ok(page(state.objects.list(&at, &request).await?))
}

/// Stores a pipeline object (the request body, any bytes), replacing one with the same key.
///
/// Pipeline objects are kept until deleted. Past the tenant's plan limits — `max_pipeline_objects`
/// and `max_pipeline_object_bytes` per pipeline, `object_storage_bytes` over all its pipeline
/// objects — the oldest are evicted (an `object_evicted` event each, naming the limit). Keys: 1–256 bytes of letters, digits, `.`, `_`,
/// `-`, in segments separated by `/`.
#[utoipa::path(tag = "objects",
    params(("namespace" = String, Path, description = "Namespace id"), ("pipeline" = String, Path, description = "Pipeline id"), ("key" = String, Path, description = "Object key")),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    security(("bearer" = [])),
    responses(
        (status = 201, body = ObjectResponse),
    ))]
#[put("/api/v1/namespaces/{namespace}/pipelines/{pipeline}/objects/{key:.+}")]
pub(crate) async fn put_pipeline_object(
    access: TenantAccess<Write>,
    state: web::Data<AppState>,
    path: web::Path<PipelineObjectPath>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let PipelineObjectPath { namespace, pipeline, key } = path.into_inner();
    let at = collection(&access.tenant, namespace, pipeline, None)?;
    put_object(&state, &req, at, key, payload).await
}

/// Reads a pipeline object (run tokens may read their own pipeline's objects).
#[utoipa::path(tag = "objects",
    params(("namespace" = String, Path, description = "Namespace id"), ("pipeline" = String, Path, description = "Pipeline id"), ("key" = String, Path, description = "Object key")),
    security(("bearer" = [])),
    responses(
        (status = 200, body = Vec<u8>, content_type = "application/octet-stream",
            headers(("Gofer-Object-Sha256" = String, description = "SHA-256 of the content, hex"))),
    ))]
#[get("/api/v1/namespaces/{namespace}/pipelines/{pipeline}/objects/{key:.+}")]
pub(crate) async fn get_pipeline_object(
    access: TenantAccess<ReadPipelineObjects>,
    state: web::Data<AppState>,
    path: web::Path<PipelineObjectPath>,
) -> Result<HttpResponse, ApiError> {
    let PipelineObjectPath { namespace, pipeline, key } = path.into_inner();
    get_object(&state, collection(&access.tenant, namespace, pipeline, None)?, key).await
}

/// Deletes a pipeline object.
#[utoipa::path(tag = "objects",
    params(("namespace" = String, Path, description = "Namespace id"), ("pipeline" = String, Path, description = "Pipeline id"), ("key" = String, Path, description = "Object key")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "deleted"),
    ))]
#[delete("/api/v1/namespaces/{namespace}/pipelines/{pipeline}/objects/{key:.+}")]
pub(crate) async fn delete_pipeline_object(
    access: TenantAccess<Write>,
    state: web::Data<AppState>,
    path: web::Path<PipelineObjectPath>,
) -> Result<HttpResponse, ApiError> {
    let PipelineObjectPath { namespace, pipeline, key } = path.into_inner();
    delete_object(&state, collection(&access.tenant, namespace, pipeline, None)?, key).await
}

/// Lists a pipeline's objects in key order.
#[utoipa::path(tag = "objects",
    params(("namespace" = String, Path, description = "Namespace id"), ("pipeline" = String, Path, description = "Pipeline id"), PageQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, body = Page<ObjectInfo>),
    ))]
#[get("/api/v1/namespaces/{namespace}/pipelines/{pipeline}/objects")]
pub(crate) async fn list_pipeline_objects(
    access: TenantAccess<ReadPipelineObjects>,
    state: web::Data<AppState>,
    path: web::Path<PipelineObjectsPath>,
    query: web::Query<PageQuery>,
) -> Result<web::Json<Page<ObjectInfo>>, ApiError> {
    let PipelineObjectsPath { namespace, pipeline } = path.into_inner();
    Ok(web::Json(list_objects(&state, collection(&access.tenant, namespace, pipeline, None)?, &query).await?))
}

/// Stores a run object (run tokens may write their own run's objects). Run objects of a
/// pipeline's last `objects.keep_run_objects_for_runs` runs are kept; older ones expire (reads
/// then answer 410 `object_expired`).
#[utoipa::path(tag = "objects",
    params(("namespace" = String, Path, description = "Namespace id"), ("pipeline" = String, Path, description = "Pipeline id"), ("run" = i64, Path, description = "Run number"), ("key" = String, Path, description = "Object key")),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    security(("bearer" = [])),
    responses(
        (status = 201, body = ObjectResponse),
    ))]
#[put("/api/v1/namespaces/{namespace}/pipelines/{pipeline}/runs/{run}/objects/{key:.+}")]
pub(crate) async fn put_run_object(
    access: TenantAccess<WriteRunObjects>,
    state: web::Data<AppState>,
    path: web::Path<RunObjectPath>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let RunObjectPath { namespace, pipeline, run, key } = path.into_inner();
    let at = collection(&access.tenant, namespace, pipeline, Some(&run))?;
    put_object(&state, &req, at, key, payload).await
}

/// Reads a run object (run tokens may read their own run's objects).
#[utoipa::path(tag = "objects",
    params(("namespace" = String, Path, description = "Namespace id"), ("pipeline" = String, Path, description = "Pipeline id"), ("run" = i64, Path, description = "Run number"), ("key" = String, Path, description = "Object key")),
    security(("bearer" = [])),
    responses(
        (status = 200, body = Vec<u8>, content_type = "application/octet-stream",
            headers(("Gofer-Object-Sha256" = String, description = "SHA-256 of the content, hex"))),
        (status = 410, description = "`object_expired`", body = crate::error::Problem, content_type = "application/problem+json"),
    ))]
#[get("/api/v1/namespaces/{namespace}/pipelines/{pipeline}/runs/{run}/objects/{key:.+}")]
pub(crate) async fn get_run_object(
    access: TenantAccess<Read>,
    state: web::Data<AppState>,
    path: web::Path<RunObjectPath>,
) -> Result<HttpResponse, ApiError> {
    let RunObjectPath { namespace, pipeline, run, key } = path.into_inner();
    get_object(&state, collection(&access.tenant, namespace, pipeline, Some(&run))?, key).await
}

/// Deletes a run object.
#[utoipa::path(tag = "objects",
    params(("namespace" = String, Path, description = "Namespace id"), ("pipeline" = String, Path, description = "Pipeline id"), ("run" = i64, Path, description = "Run number"), ("key" = String, Path, description = "Object key")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "deleted"),
    ))]
#[delete("/api/v1/namespaces/{namespace}/pipelines/{pipeline}/runs/{run}/objects/{key:.+}")]
pub(crate) async fn delete_run_object(
    access: TenantAccess<Write>,
    state: web::Data<AppState>,
    path: web::Path<RunObjectPath>,
) -> Result<HttpResponse, ApiError> {
    let RunObjectPath { namespace, pipeline, run, key } = path.into_inner();
    delete_object(&state, collection(&access.tenant, namespace, pipeline, Some(&run))?, key).await
}

/// Lists a run's objects in key order (expired ones too, marked `expired`).
#[utoipa::path(tag = "objects",
    params(("namespace" = String, Path, description = "Namespace id"), ("pipeline" = String, Path, description = "Pipeline id"), ("run" = i64, Path, description = "Run number"), PageQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, body = Page<ObjectInfo>),
    ))]
#[get("/api/v1/namespaces/{namespace}/pipelines/{pipeline}/runs/{run}/objects")]
pub(crate) async fn list_run_objects(
    access: TenantAccess<Read>,
    state: web::Data<AppState>,
    path: web::Path<RunObjectsPath>,
    query: web::Query<PageQuery>,
) -> Result<web::Json<Page<ObjectInfo>>, ApiError> {
    let RunObjectsPath { namespace, pipeline, run } = path.into_inner();
    Ok(web::Json(list_objects(&state, collection(&access.tenant, namespace, pipeline, Some(&run))?, &query).await?))
}
