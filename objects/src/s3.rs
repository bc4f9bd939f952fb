//! The S3 store (production): aws-sdk-s3 against any S3-compatible server. A body whose length is
//! declared (up to `single_put_max`) streams into one `PutObject`; any other body up to one part
//! goes up in a single `PutObject`, a longer one as a multipart upload of `part_size` parts, up to
//! `concurrency` of them in flight while the body is read on into the next, aborted on any
//! failure so that nothing half-written remains. Reads of objects longer than a part fetch up to
//! `concurrency` ranges ahead. Memory per transfer: at most `(concurrency + 1) × part_size`.

use std::collections::VecDeque;

use aws_sdk_s3::Client;
use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::primitives::ByteStream as S3Body;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use gofer_core::objects::{BodyLength, BoxFuture, ByteStream, Fetched, ObjectStore, ObjectStoreError, Stored};
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};
use tokio::task::{JoinHandle, JoinSet};
use tracing::Instrument;

use crate::S3Settings;

/// S3's smallest part (all parts but the last).
pub const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;

/// How long a streamed `PutObject`'s body may send nothing before the put is refused as stalled:
/// below both S3's own idle limit on a request (about 20 s, `RequestTimeout`) and the SDK's
/// stalled-stream grace period (20 s), so that the client learns its body stalled instead of
/// reading that S3 failed. A body that goes up in parts has no such limit: its parts are sent
/// whole.
pub const STREAMED_PUT_STALL: std::time::Duration = std::time::Duration::from_secs(15);

/// S3's largest single `PutObject`.
pub const MAX_SINGLE_PUT: u64 = 5 * 1024 * 1024 * 1024;

/// Chunks of a streamed `PutObject` queued between the body's reader and the request.
const STREAMED_PUT_CHUNKS: usize = 8;

/// Largest chunk handed to the reader of a prefetched range.
const SEND_SLICE: usize = 256 * 1024;

/// An S3 bucket as an object store.
#[derive(Debug, Clone)]
pub struct S3Store {
    client: Client,
    bucket: String,
    part_size: usize,
    concurrency: usize,
    single_put_max: u64,
    stall_timeout: std::time::Duration,
}

impl S3Store {
    /// A client for `settings` (no request is made yet).
    pub async fn connect(settings: &S3Settings) -> Self {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(settings.region.clone()));
        if let Some(endpoint) = &settings.endpoint {
            loader = loader.endpoint_url(endpoint);
        }
        if let (Some(key), Some(secret)) = (&settings.access_key_id, &settings.secret_access_key) {
            loader = loader.credentials_provider(aws_sdk_s3::config::Credentials::new(
                key.clone(),
                secret.expose_secret().to_owned(),
                None,
                None,
                "gofer-config",
            ));
        }
        let shared = loader.load().await;
        let s3 = aws_sdk_s3::config::Builder::from(&shared)
            .force_path_style(settings.path_style)
            // Checksums only where S3 requires them: S3-compatible servers differ in the rest.
            .request_checksum_calculation(aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(aws_sdk_s3::config::ResponseChecksumValidation::WhenRequired)
            .build();
        let part_size = usize::try_from(settings.part_size_bytes.max(MIN_PART_SIZE)).unwrap_or(usize::MAX);
        Self {
            client: Client::from_conf(s3),
            bucket: settings.bucket.clone(),
            part_size,
            concurrency: settings.part_concurrency.max(1),
            single_put_max: settings.single_put_max_bytes.min(MAX_SINGLE_PUT),
            stall_timeout: STREAMED_PUT_STALL,
        }
    }

    /// The same store with another stall limit on streamed `PutObject` bodies
    /// ([`STREAMED_PUT_STALL`] in service; tests shorten it).
    pub fn with_stall_timeout(self, stall_timeout: std::time::Duration) -> Self {
        Self { stall_timeout, ..self }
    }

    /// The underlying client (the benchmark compares against it).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Creates the bucket unless it exists (tests and first starts against a fresh server).
    pub async fn ensure_bucket(&self) -> Result<(), ObjectStoreError> {
        if self.client.head_bucket().bucket(&self.bucket).send().await.is_ok() {
            return Ok(());
        }
        match self.client.create_bucket().bucket(&self.bucket).send().await {
            Ok(_) => Ok(()),
            Err(e) => {
                let e = e.into_service_error();
                if e.is_bucket_already_owned_by_you() || e.is_bucket_already_exists() {
                    Ok(())
                } else {
                    Err(backend(e))
                }
            }
        }
    }

    async fn put_inner(
        &self,
        key: &str,
        body: ByteStream,
        declared: Option<u64>,
        max_bytes: u64,
    ) -> Result<Stored, ObjectStoreError> {
        let length = BodyLength::new(declared, max_bytes)?;
        match declared {
            Some(declared) if declared <= self.single_put_max => self.put_streamed(key, body, length, declared).await,
            _ => self.put_in_parts(key, body, length).await,
        }
    }

    /// One `PutObject` of a body whose length is known, streamed as it is read (nothing buffered,
    /// the payload unsigned as for any streamed body). The last chunk is held back until the body
    /// has ended with the declared length, so that S3, which keeps nothing of a put that breaks
    /// off, can never receive a whole body that the check then refuses.
    async fn put_streamed(
        &self,
        key: &str,
        mut body: ByteStream,
        mut length: BodyLength,
        declared: u64,
    ) -> Result<Stored, ObjectStoreError> {
        let (tx, rx) = tokio::sync::mpsc::channel(STREAMED_PUT_CHUNKS);
        let put = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_length(i64::try_from(declared).unwrap_or(i64::MAX))
            .body(S3Body::from_body_1_x(ChannelBody { rx, length: declared }))
            .send();
        // `Err(None)`: S3 stopped reading (its answer says why).
        let stall = self.stall_timeout;
        let forward = async move {
            let mut hasher = Sha256::new();
            let mut held: Option<Bytes> = None;
            let ended = loop {
                let Ok(next) = tokio::time::timeout(stall, body.next()).await else {
                    let stalled = format!("the body stalled: nothing arrived for {} s", stall.as_secs_f32());
                    break Err(Some(ObjectStoreError::Body(stalled)));
                };
                match next {
                    Some(Ok(chunk)) => {
                        if let Err(e) = length.add(chunk.len()) {
                            break Err(Some(e));
                        }
                        hasher.update(&chunk);
                        if let Some(previous) = held.replace(chunk)
                            && tx.send(Ok(previous)).await.is_err()
                        {
                            break Err(None);
                        }
                    }
                    Some(Err(e)) => break Err(Some(ObjectStoreError::Body(e.to_string()))),
                    None => break length.end().map_err(Some),
                }
            };
            match ended {
                Ok(size) => {
                    if let Some(last) = held
                        && tx.send(Ok(last)).await.is_err()
                    {
                        return Err(None);
                    }
                    Ok(Stored { size, sha256: hex::encode(hasher.finalize()) })
                }
                Err(e) => {
                    // Breaks the request off: S3 stores nothing of it.
                    let _ = tx.send(Err(std::io::Error::other("the object body was refused"))).await;
                    Err(e)
                }
            }
        };
        match futures_util::join!(put, forward) {
            (Ok(_), Ok(stored)) => Ok(stored),
            (_, Err(Some(refused))) => Err(refused),
            (Err(e), _) => Err(backend(e)),
            (Ok(_), Err(None)) => Err(ObjectStoreError::Backend("S3 answered before reading the whole body".into())),
        }
    }

    /// A body of unknown length (or past `single_put_max`): buffered a part at a time; a body of
    /// at most one part goes up in one `PutObject`, a longer one as a multipart upload.
    async fn put_in_parts(
        &self,
        key: &str,
        mut body: ByteStream,
        mut length: BodyLength,
    ) -> Result<Stored, ObjectStoreError> {
        let mut hasher = Sha256::new();
        // Grows up to one part for the first; later parts are allocated whole.
        let mut part = BytesMut::new();
        let mut upload: Option<Multipart> = None;
        let read: Result<u64, ObjectStoreError> = async {
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|e| ObjectStoreError::Body(e.to_string()))?;
                length.add(chunk.len())?;
                hasher.update(&chunk);
                let mut rest = &chunk[..];
                while !rest.is_empty() {
                    // A full part goes up only once more bytes follow it: a body of exactly one
                    // part stays a single PutObject.
                    if part.len() == self.part_size {
                        let full = std::mem::replace(&mut part, BytesMut::with_capacity(self.part_size)).freeze();
                        if upload.is_none() {
                            upload = Some(self.start_multipart(key).await?);
                        }
                        if let Some(upload) = upload.as_mut() {
                            upload.send(full).await?;
                        }
                    }
                    let take = rest.len().min(self.part_size - part.len());
                    part.extend_from_slice(&rest[..take]);
                    rest = &rest[take..];
                }
            }
            length.end()
        }
        .await;
        let result = match (read, upload) {
            (Ok(size), None) => self
                .client
                .put_object()
                .bucket(&self.bucket)
                .key(key)
                .body(S3Body::from(part.freeze()))
                .send()
                .await
                .map(|_| size)
                .map_err(backend),
            (Ok(size), Some(mut upload)) => {
                let finished = async {
                    if !part.is_empty() {
                        upload.send(part.freeze()).await?;
                    }
                    upload.complete().await
                }
                .await;
                if finished.is_err() {
                    upload.abort().await;
                }
                finished.map(|()| size)
            }
            (Err(e), Some(mut upload)) => {
                upload.abort().await;
                Err(e)
            }
            (Err(e), None) => Err(e),
        };
        result.map(|size| Stored { size, sha256: hex::encode(hasher.finalize()) })
    }

    async fn start_multipart(&self, key: &str) -> Result<Multipart, ObjectStoreError> {
        let created =
            self.client.create_multipart_upload().bucket(&self.bucket).key(key).send().await.map_err(backend)?;
        let id = created.upload_id().ok_or_else(|| ObjectStoreError::Backend("no upload id".into()))?.to_owned();
        Ok(Multipart {
            client: self.client.clone(),
            bucket: self.bucket.clone(),
            key: key.to_owned(),
            id,
            concurrency: self.concurrency,
            next_number: 1,
            in_flight: JoinSet::new(),
            done: Vec::new(),
            open: true,
        })
    }

    /// Opens `key` for reading. Objects longer than one part are read as ranged GETs of one part
    /// each, up to `concurrency` ahead of the one being sent (each held whole once fetched, and
    /// all pinned to the first answer's ETag so that a replacement meanwhile fails the read
    /// rather than mixing two objects); the first range streams straight through.
    async fn get_inner(&self, key: &str) -> Result<Option<Fetched>, ObjectStoreError> {
        let part = self.part_size as u64;
        let first = self.client.get_object().bucket(&self.bucket).key(key).range(format!("bytes=0-{}", part - 1));
        let object = match first.send().await {
            Ok(object) => object,
            Err(e) => {
                let e = e.into_service_error();
                return if e.is_no_such_key() {
                    Ok(None)
                } else if e.code() == Some("InvalidRange") {
                    // An empty object has no byte 0.
                    self.get_whole(key).await
                } else {
                    Err(backend(e))
                };
            }
        };
        let length = object.content_length().and_then(|n| u64::try_from(n).ok()).unwrap_or(0);
        let total = object.content_range().and_then(|r| r.rsplit('/').next()?.parse::<u64>().ok());
        let etag = object.e_tag().map(str::to_owned);
        let (total, etag) = match (total, etag) {
            // The server ignored the range and sent everything.
            (None, _) => return Ok(Some(Fetched { size: length, body: sdk_stream(object.body) })),
            (Some(total), _) if total <= length => {
                return Ok(Some(Fetched { size: total, body: sdk_stream(object.body) }));
            }
            (Some(total), Some(etag)) => (total, etag),
            // Without an ETag the ranges could not be pinned to one version: read it whole.
            (Some(_), None) => return self.get_whole(key).await,
        };
        let mut ahead = Prefetch {
            client: self.client.clone(),
            bucket: self.bucket.clone(),
            key: key.to_owned(),
            etag,
            next: length,
            total,
            part,
            concurrency: self.concurrency,
            ahead: VecDeque::new(),
            failed: false,
        };
        ahead.fill();
        let rest = futures_util::stream::unfold(ahead, |mut ahead| async move {
            if ahead.failed {
                return None;
            }
            let fetched = match ahead.ahead.pop_front()?.await {
                Ok(Ok(bytes)) => Ok(bytes),
                Ok(Err(e)) => Err(e),
                Err(e) => Err(std::io::Error::other(e)),
            };
            ahead.failed = fetched.is_err();
            ahead.fill();
            Some((fetched, ahead))
        })
        .flat_map(|fetched| futures_util::stream::iter(slices(fetched)));
        Ok(Some(Fetched { size: total, body: Box::pin(sdk_stream(object.body).chain(rest)) }))
    }

    async fn get_whole(&self, key: &str) -> Result<Option<Fetched>, ObjectStoreError> {
        let object = match self.client.get_object().bucket(&self.bucket).key(key).send().await {
            Ok(object) => object,
            Err(e) => {
                let e = e.into_service_error();
                return if e.is_no_such_key() { Ok(None) } else { Err(backend(e)) };
            }
        };
        let size = object.content_length().and_then(|n| u64::try_from(n).ok()).unwrap_or(0);
        Ok(Some(Fetched { size, body: sdk_stream(object.body) }))
    }

    async fn delete_prefix_inner(&self, prefix: &str) -> Result<u64, ObjectStoreError> {
        let mut deleted = 0;
        loop {
            // Listing again from the start after deleting a page: no continuation token to go stale.
            let page =
                self.client.list_objects_v2().bucket(&self.bucket).prefix(prefix).send().await.map_err(backend)?;
            let keys: Vec<String> = page.contents().iter().filter_map(|o| o.key().map(str::to_owned)).collect();
            if keys.is_empty() {
                return Ok(deleted);
            }
            for key in keys {
                self.client.delete_object().bucket(&self.bucket).key(&key).send().await.map_err(backend)?;
                deleted += 1;
            }
        }
    }
}

/// A multipart upload in progress: up to `concurrency` parts go up at once (each its own task,
/// so they progress while the body is read on), and a failure or a drop aborts the upload once
/// the parts in flight have ended, so that no part lands after the abort.
struct Multipart {
    client: Client,
    bucket: String,
    key: String,
    id: String,
    concurrency: usize,
    next_number: i32,
    in_flight: JoinSet<Result<CompletedPart, ObjectStoreError>>,
    done: Vec<CompletedPart>,
    /// Neither completed nor aborted yet.
    open: bool,
}

impl Multipart {
    /// Starts uploading `part` as the next part once fewer than `concurrency` are in flight;
    /// answers a failure of any part that ended meanwhile.
    async fn send(&mut self, part: Bytes) -> Result<(), ObjectStoreError> {
        while let Some(ended) = self.in_flight.try_join_next() {
            self.done.push(part_result(ended)?);
        }
        while self.in_flight.len() >= self.concurrency.max(1) {
            match self.in_flight.join_next().await {
                Some(ended) => self.done.push(part_result(ended)?),
                None => break,
            }
        }
        let number = self.next_number;
        self.next_number += 1;
        let request = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(&self.key)
            .upload_id(&self.id)
            .part_number(number)
            .body(S3Body::from(part));
        self.in_flight.spawn(
            async move {
                let sent = request.send().await.map_err(backend)?;
                Ok(CompletedPart::builder().set_e_tag(sent.e_tag().map(str::to_owned)).part_number(number).build())
            }
            .instrument(tracing::Span::current()),
        );
        Ok(())
    }

    /// Waits for the parts in flight and completes the upload, parts in order.
    async fn complete(&mut self) -> Result<(), ObjectStoreError> {
        while let Some(ended) = self.in_flight.join_next().await {
            self.done.push(part_result(ended)?);
        }
        self.done.sort_by_key(|p| p.part_number());
        self.client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(&self.key)
            .upload_id(&self.id)
            .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(self.done.clone())).build())
            .send()
            .await
            .map_err(backend)?;
        self.open = false;
        Ok(())
    }

    /// Lets the parts in flight end, then aborts the upload.
    async fn abort(&mut self) {
        self.open = false;
        abort_after(std::mem::take(&mut self.in_flight), self.client.clone(), &self.bucket, &self.key, &self.id).await;
    }
}

impl Drop for Multipart {
    fn drop(&mut self) {
        // The put was dropped midway (its caller went away): abort in the background.
        if !self.open {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        let (in_flight, client) = (std::mem::take(&mut self.in_flight), self.client.clone());
        let (bucket, key, id) = (self.bucket.clone(), self.key.clone(), self.id.clone());
        runtime.spawn(async move { abort_after(in_flight, client, &bucket, &key, &id).await });
    }
}

async fn abort_after(
    mut in_flight: JoinSet<Result<CompletedPart, ObjectStoreError>>,
    client: Client,
    bucket: &str,
    key: &str,
    id: &str,
) {
    while in_flight.join_next().await.is_some() {}
    if let Err(e) = client.abort_multipart_upload().bucket(bucket).key(key).upload_id(id).send().await {
        tracing::warn!(key, error = %backend(e), "aborting a multipart upload failed");
    }
}

fn part_result(
    ended: Result<Result<CompletedPart, ObjectStoreError>, tokio::task::JoinError>,
) -> Result<CompletedPart, ObjectStoreError> {
    ended.map_err(|e| ObjectStoreError::Backend(format!("a part upload ended abnormally: {e}")))?
}

/// Ranges of an object being read ahead of the one the reader is at.
struct Prefetch {
    client: Client,
    bucket: String,
    key: String,
    etag: String,
    /// First byte not yet asked for.
    next: u64,
    total: u64,
    part: u64,
    concurrency: usize,
    ahead: VecDeque<JoinHandle<std::io::Result<Bytes>>>,
    failed: bool,
}

impl Prefetch {
    /// Asks for further ranges until `concurrency` are fetched or fetching.
    fn fill(&mut self) {
        while !self.failed && self.ahead.len() < self.concurrency.max(1) && self.next < self.total {
            let end = (self.next + self.part).min(self.total);
            let request = self
                .client
                .get_object()
                .bucket(&self.bucket)
                .key(&self.key)
                .range(format!("bytes={}-{}", self.next, end - 1))
                .if_match(&self.etag);
            let expected = end - self.next;
            self.ahead.push_back(tokio::spawn(
                async move {
                    let object = request.send().await.map_err(|e| std::io::Error::other(backend(e).to_string()))?;
                    let mut bytes = BytesMut::with_capacity(usize::try_from(expected).unwrap_or(0));
                    let mut body = object.body;
                    while let Some(chunk) = body.next().await {
                        bytes.extend_from_slice(&chunk.map_err(std::io::Error::other)?);
                    }
                    if bytes.len() as u64 != expected {
                        return Err(std::io::Error::other(format!(
                            "a ranged read answered {} of {expected} bytes",
                            bytes.len()
                        )));
                    }
                    Ok(bytes.freeze())
                }
                .instrument(tracing::Span::current()),
            ));
            self.next = end;
        }
    }
}

impl Drop for Prefetch {
    fn drop(&mut self) {
        // The reader went away: stop fetching what nobody will read.
        for handle in &self.ahead {
            handle.abort();
        }
    }
}

/// A fetched part in slices of [`SEND_SLICE`] (no copy), so that the HTTP layer's write buffer
/// stays small; an error as it is.
fn slices(fetched: std::io::Result<Bytes>) -> Vec<std::io::Result<Bytes>> {
    match fetched {
        Ok(bytes) => (0..bytes.len())
            .step_by(SEND_SLICE)
            .map(|at| Ok(bytes.slice(at..(at + SEND_SLICE).min(bytes.len()))))
            .collect(),
        Err(e) => vec![Err(e)],
    }
}

/// The body of a streamed `PutObject`: chunks from a channel, with the length declared up front
/// (the SDK sends it as `Content-Length`).
struct ChannelBody {
    rx: tokio::sync::mpsc::Receiver<std::io::Result<Bytes>>,
    length: u64,
}

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        self.rx.poll_recv(cx).map(|item| item.map(|chunk| chunk.map(http_body::Frame::data)))
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.length)
    }
}

/// An SDK body as a stream of chunks.
fn sdk_stream(body: S3Body) -> ByteStream {
    Box::pin(futures_util::stream::unfold(body, |mut body| async move {
        match body.next().await? {
            Ok(bytes) => Some((Ok(bytes), body)),
            Err(e) => Some((Err(std::io::Error::other(e)), body)),
        }
    }))
}

impl ObjectStore for S3Store {
    fn name(&self) -> &'static str {
        "s3"
    }

    fn put<'a>(
        &'a self,
        key: &'a str,
        body: ByteStream,
        length: Option<u64>,
        max_bytes: u64,
    ) -> BoxFuture<'a, Result<Stored, ObjectStoreError>> {
        Box::pin(self.put_inner(key, body, length, max_bytes))
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Fetched>, ObjectStoreError>> {
        Box::pin(self.get_inner(key))
    }

    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), ObjectStoreError>> {
        Box::pin(async move {
            self.client.delete_object().bucket(&self.bucket).key(key).send().await.map(drop).map_err(backend)
        })
    }

    fn delete_prefix<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<u64, ObjectStoreError>> {
        Box::pin(self.delete_prefix_inner(prefix))
    }
}

fn backend(e: impl std::error::Error) -> ObjectStoreError {
    // The display of SDK errors is terse ("service error"); the source chain says what happened.
    ObjectStoreError::Backend(gofer_core::with_sources(&e))
}
