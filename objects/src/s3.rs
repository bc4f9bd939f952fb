//! The S3 store (production): aws-sdk-s3 against any S3-compatible server. Bodies up to one part
//! go up in a single `PutObject`; longer ones as a multipart upload of `part_size` parts, aborted
//! on any failure so that nothing half-written remains. Memory per upload is one part.

use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream as S3Body;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use gofer_core::objects::{BoxFuture, ByteStream, Fetched, ObjectStore, ObjectStoreError, Stored};
use sha2::{Digest, Sha256};

/// S3's smallest part (all parts but the last).
pub const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;

/// Where and how to reach S3.
#[derive(Debug, Clone)]
pub struct S3Config {
    /// Endpoint URL (`http://127.0.0.1:9000`); `None`: AWS's own for the region.
    pub endpoint: Option<String>,
    /// Bucket.
    pub bucket: String,
    /// Region.
    pub region: String,
    /// Path-style addressing (`<endpoint>/<bucket>/<key>`), which most non-AWS servers need.
    pub path_style: bool,
    /// Static credentials; `None`: the default AWS chain (environment, profile, instance role).
    pub credentials: Option<(String, String)>,
    /// Multipart part size in bytes (at least 5 MiB).
    pub part_size: u64,
}

/// An S3 bucket as an object store.
#[derive(Debug, Clone)]
pub struct S3Store {
    client: Client,
    bucket: String,
    part_size: usize,
}

impl S3Store {
    /// A client for `config` (no request is made yet).
    pub async fn connect(config: &S3Config) -> Self {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(config.region.clone()));
        if let Some(endpoint) = &config.endpoint {
            loader = loader.endpoint_url(endpoint);
        }
        if let Some((key, secret)) = &config.credentials {
            loader = loader.credentials_provider(aws_sdk_s3::config::Credentials::new(
                key.clone(),
                secret.clone(),
                None,
                None,
                "gofer-config",
            ));
        }
        let shared = loader.load().await;
        let s3 = aws_sdk_s3::config::Builder::from(&shared)
            .force_path_style(config.path_style)
            // Checksums only where S3 requires them: S3-compatible servers differ in the rest.
            .request_checksum_calculation(aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(aws_sdk_s3::config::ResponseChecksumValidation::WhenRequired)
            .build();
        let part_size = usize::try_from(config.part_size.max(MIN_PART_SIZE)).unwrap_or(usize::MAX);
        Self { client: Client::from_conf(s3), bucket: config.bucket.clone(), part_size }
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

    async fn put_inner(&self, key: &str, mut body: ByteStream, max_bytes: u64) -> Result<Stored, ObjectStoreError> {
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let mut buffer = BytesMut::new();
        let mut upload: Option<Multipart> = None;
        let result: Result<(), ObjectStoreError> = async {
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|e| ObjectStoreError::Body(e.to_string()))?;
                size += chunk.len() as u64;
                if size > max_bytes {
                    return Err(ObjectStoreError::TooLarge(max_bytes));
                }
                hasher.update(&chunk);
                buffer.extend_from_slice(&chunk);
                while buffer.len() >= self.part_size {
                    let part = buffer.split_to(self.part_size).freeze();
                    if upload.is_none() {
                        upload = Some(self.start_multipart(key).await?);
                    }
                    if let Some(upload) = upload.as_mut() {
                        self.upload_part(key, upload, part).await?;
                    }
                }
            }
            Ok(())
        }
        .await;
        let result = match (result, upload) {
            (Ok(()), None) => self
                .client
                .put_object()
                .bucket(&self.bucket)
                .key(key)
                .body(S3Body::from(buffer.freeze()))
                .send()
                .await
                .map(drop)
                .map_err(backend),
            (Ok(()), Some(mut upload)) => {
                let finished = async {
                    if !buffer.is_empty() {
                        self.upload_part(key, &mut upload, buffer.freeze()).await?;
                    }
                    self.client
                        .complete_multipart_upload()
                        .bucket(&self.bucket)
                        .key(key)
                        .upload_id(&upload.id)
                        .multipart_upload(
                            CompletedMultipartUpload::builder().set_parts(Some(upload.parts.clone())).build(),
                        )
                        .send()
                        .await
                        .map(drop)
                        .map_err(backend)
                }
                .await;
                if finished.is_err() {
                    self.abort(key, &upload.id).await;
                }
                finished
            }
            (Err(e), Some(upload)) => {
                self.abort(key, &upload.id).await;
                Err(e)
            }
            (Err(e), None) => Err(e),
        };
        result.map(|()| Stored { size, sha256: hex::encode(hasher.finalize()) })
    }

    async fn start_multipart(&self, key: &str) -> Result<Multipart, ObjectStoreError> {
        let created =
            self.client.create_multipart_upload().bucket(&self.bucket).key(key).send().await.map_err(backend)?;
        let id = created.upload_id().ok_or_else(|| ObjectStoreError::Backend("no upload id".into()))?.to_owned();
        Ok(Multipart { id, parts: Vec::new() })
    }

    async fn upload_part(&self, key: &str, upload: &mut Multipart, part: Bytes) -> Result<(), ObjectStoreError> {
        let number = i32::try_from(upload.parts.len() + 1).unwrap_or(i32::MAX);
        let sent = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(&upload.id)
            .part_number(number)
            .body(S3Body::from(part))
            .send()
            .await
            .map_err(backend)?;
        upload
            .parts
            .push(CompletedPart::builder().set_e_tag(sent.e_tag().map(str::to_owned)).part_number(number).build());
        Ok(())
    }

    async fn abort(&self, key: &str, id: &str) {
        if let Err(e) = self.client.abort_multipart_upload().bucket(&self.bucket).key(key).upload_id(id).send().await {
            tracing::warn!(key, error = %backend(e), "aborting a multipart upload failed");
        }
    }

    async fn get_inner(&self, key: &str) -> Result<Option<Fetched>, ObjectStoreError> {
        let object = match self.client.get_object().bucket(&self.bucket).key(key).send().await {
            Ok(object) => object,
            Err(e) => {
                let e = e.into_service_error();
                return if e.is_no_such_key() { Ok(None) } else { Err(backend(e)) };
            }
        };
        let size = object.content_length().and_then(|n| u64::try_from(n).ok()).unwrap_or(0);
        let body: ByteStream = Box::pin(futures_util::stream::unfold(object.body, |mut body| async move {
            match body.next().await? {
                Ok(bytes) => Some((Ok(bytes), body)),
                Err(e) => Some((Err(std::io::Error::other(e)), body)),
            }
        }));
        Ok(Some(Fetched { size, body }))
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

struct Multipart {
    id: String,
    parts: Vec<CompletedPart>,
}

impl ObjectStore for S3Store {
    fn name(&self) -> &'static str {
        "s3"
    }

    fn put<'a>(
        &'a self,
        key: &'a str,
        body: ByteStream,
        max_bytes: u64,
    ) -> BoxFuture<'a, Result<Stored, ObjectStoreError>> {
        Box::pin(self.put_inner(key, body, max_bytes))
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
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    ObjectStoreError::Backend(text)
}
