//! Objects of a pipeline (kept until deleted) and of a run (expiring with old runs). Contents go
//! up and down as raw bytes; the server streams both ways, so large objects can be sent from a
//! stream ([`reqwest::Body::wrap_stream`]) and read as one ([`Client::get_object_stream`]).

use futures_util::StreamExt;
use gofer_core::model::Page;
use gofer_core::objects::{ObjectInfo, ObjectKey, ObjectScope};
use gofer_core::{NamespaceId, PipelineId};

use crate::routes::*;
use crate::stream::ByteStream;
use crate::{Bytes, Client, Error, PageOptions, page_query};

/// The header carrying an object's SHA-256 (lowercase hex) on reads.
pub const SHA256_HEADER: &str = "Gofer-Object-Sha256";

/// An object being read: [`Client::download_object`].
pub struct ObjectDownload {
    /// The content's SHA-256 (lowercase hex), when the server sent [`SHA256_HEADER`].
    pub sha256: Option<String>,
    /// The content's size, when the answer has a `Content-Length`.
    pub size: Option<u64>,
    /// The content.
    pub chunks: ByteStream,
}

impl Client {
    /// A request for the pipeline route or the run route of an object operation, by `scope`;
    /// `key` is `None` for the lists.
    fn object_request(
        &self,
        (pipeline_route, run_route): (Route, Route),
        ns: &NamespaceId,
        p: &PipelineId,
        scope: ObjectScope,
        key: Option<&ObjectKey>,
    ) -> reqwest::RequestBuilder {
        match (scope, key) {
            (ObjectScope::Pipeline, Some(key)) => self.request(pipeline_route, &[ns, p, key]),
            (ObjectScope::Pipeline, None) => self.request(pipeline_route, &[ns, p]),
            (ObjectScope::Run(run), Some(key)) => self.request(run_route, &[ns, p, &run, key]),
            (ObjectScope::Run(run), None) => self.request(run_route, &[ns, p, &run]),
        }
    }

    /// `PUT …/objects/{key}` (pipeline or run object, by `scope`): writes the object, replacing
    /// any previous content. `body` may be bytes, a `String`, a file or a stream
    /// ([`reqwest::Body::wrap_stream`]); bodies of known length are refused early when too large
    /// (413 `payload_too_large`).
    pub async fn put_object(
        &self,
        ns: &NamespaceId,
        p: &PipelineId,
        scope: ObjectScope,
        key: &ObjectKey,
        body: impl Into<reqwest::Body>,
    ) -> Result<ObjectInfo, Error> {
        self.put(ns, p, scope, key, body.into(), None).await
    }

    /// [`Self::put_object`] for a body of known length (a file), sent with that `Content-Length`
    /// even when the body is a stream: the server then refuses it at once when too large, and
    /// over S3 it goes up as one streamed `PutObject` (up to the server's
    /// `object_store.single_put_max_bytes`) instead of a multipart upload. A body that turns out to have
    /// another length is refused, and nothing is stored.
    pub async fn put_object_of_length(
        &self,
        ns: &NamespaceId,
        p: &PipelineId,
        scope: ObjectScope,
        key: &ObjectKey,
        body: impl Into<reqwest::Body>,
        length: u64,
    ) -> Result<ObjectInfo, Error> {
        self.put(ns, p, scope, key, body.into(), Some(length)).await
    }

    async fn put(
        &self,
        ns: &NamespaceId,
        p: &PipelineId,
        scope: ObjectScope,
        key: &ObjectKey,
        body: reqwest::Body,
        length: Option<u64>,
    ) -> Result<ObjectInfo, Error> {
        let mut request = self
            .object_request((PUT_PIPELINE_OBJECT, PUT_RUN_OBJECT), ns, p, scope, Some(key))
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream");
        if let Some(length) = length {
            request = request.header(reqwest::header::CONTENT_LENGTH, length);
        }
        self.one(request.body(body), "object").await
    }

    /// `GET …/objects/{key}`: the whole content. An expired run object answers 410
    /// `object_expired`.
    pub async fn get_object(
        &self,
        ns: &NamespaceId,
        p: &PipelineId,
        scope: ObjectScope,
        key: &ObjectKey,
    ) -> Result<Bytes, Error> {
        let request = self.object_request((GET_PIPELINE_OBJECT, GET_RUN_OBJECT), ns, p, scope, Some(key));
        Ok(self.raw(request).await?.bytes().await?)
    }

    /// `GET …/objects/{key}` as a stream of chunks, with the content's SHA-256 from the
    /// [`SHA256_HEADER`] when the server sent it.
    pub async fn get_object_stream(
        &self,
        ns: &NamespaceId,
        p: &PipelineId,
        scope: ObjectScope,
        key: &ObjectKey,
    ) -> Result<(Option<String>, ByteStream), Error> {
        let download = self.download_object(ns, p, scope, key).await?;
        Ok((download.sha256, download.chunks))
    }

    /// `GET …/objects/{key}` as a stream of chunks, with what the headers say about the content
    /// (for progress: its size).
    pub async fn download_object(
        &self,
        ns: &NamespaceId,
        p: &PipelineId,
        scope: ObjectScope,
        key: &ObjectKey,
    ) -> Result<ObjectDownload, Error> {
        let request = self.object_request((GET_PIPELINE_OBJECT, GET_RUN_OBJECT), ns, p, scope, Some(key));
        let response = self.raw(request).await?;
        let sha256 = response.headers().get(SHA256_HEADER).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let size = response.content_length();
        let chunks = Box::pin(response.bytes_stream().map(|chunk| chunk.map_err(Error::Transport)));
        Ok(ObjectDownload { sha256, size, chunks })
    }

    /// `DELETE …/objects/{key}`.
    pub async fn delete_object(
        &self,
        ns: &NamespaceId,
        p: &PipelineId,
        scope: ObjectScope,
        key: &ObjectKey,
    ) -> Result<(), Error> {
        self.empty(self.object_request((DELETE_PIPELINE_OBJECT, DELETE_RUN_OBJECT), ns, p, scope, Some(key))).await
    }

    /// `GET …/objects`, one page of metadata, by key.
    pub async fn list_objects(
        &self,
        ns: &NamespaceId,
        p: &PipelineId,
        scope: ObjectScope,
        page: PageOptions,
    ) -> Result<Page<ObjectInfo>, Error> {
        let request = self.object_request((LIST_PIPELINE_OBJECTS, LIST_RUN_OBJECTS), ns, p, scope, None);
        self.send(request.query(&page_query(&page))).await
    }
}
