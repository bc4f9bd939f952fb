//! Object throughput: uploads and downloads of large objects (64 MiB by default) as pipeline
//! objects through the API — with the S3 store on a real S3 server (s3s-fs) and with the local
//! store — compared with aws-sdk-s3 talking straight to the same S3 server. The target (issue 8):
//! the API adds under 20% to the direct S3 time.
//!
//! aws-sdk-s3 is measured two ways, as a competent user would use it: `s3 direct 1 req` (one
//! `PutObject`, one `GetObject`) and `s3 direct parts` (what a transfer manager does, with the
//! store's own part size and concurrency: a multipart upload with that many parts in flight, and
//! a download as ranged GETs of one part each with that many in flight). The time the API adds
//! is reckoned against the faster of the two in each direction.
//!
//! Each transfer sends one body of random bytes held in memory and reads answers to the end
//! without keeping them, so the client costs the same in every column; the API numbers include
//! the server's SHA-256 of each upload and its Postgres writes, as in production. Both direct
//! clients compute checksums only where S3 requires them, like the store.

use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use serde::Serialize;

use super::{NAMESPACE, TENANT};
use crate::Options;
use crate::harness::{Database, Replica, TenantClient, operator_token, replica_config};

const PIPELINE: &str = "objects";

/// Where the S3 server is: `--s3-endpoint`, else `GOFER_TEST_S3_ENDPOINT` (as `infra/test.sh`
/// sets it), with `GOFER_TEST_S3_ACCESS_KEY` / `GOFER_TEST_S3_SECRET_KEY`.
#[derive(Debug, Clone)]
pub struct S3Server {
    endpoint: String,
    access_key: String,
    secret_key: String,
}

impl S3Server {
    fn from_options(options: &Options) -> Option<Self> {
        let endpoint = options.s3_endpoint.clone().or_else(|| std::env::var("GOFER_TEST_S3_ENDPOINT").ok())?;
        let env = |k: &str, default: &str| std::env::var(k).unwrap_or_else(|_| default.to_owned());
        Some(Self {
            endpoint,
            access_key: env("GOFER_TEST_S3_ACCESS_KEY", "AKIDTEST"),
            secret_key: env("GOFER_TEST_S3_SECRET_KEY", "SECRETTEST"),
        })
    }
}

/// Throughput of one way of storing objects.
#[derive(Debug, Clone, Serialize)]
pub struct TransferResult {
    /// `api+s3`, `api+local`, `s3 direct 1 req` or `s3 direct parts`.
    pub target: String,
    /// Upload, MiB/s: median over the repeats.
    pub upload_mib_s: f64,
    /// Upload, MiB/s: best repeat.
    pub upload_best_mib_s: f64,
    /// Download, MiB/s: median over the repeats.
    pub download_mib_s: f64,
    /// Download, MiB/s: best repeat.
    pub download_best_mib_s: f64,
    /// Time added to the faster direct S3 transfer, in percent (median against the faster
    /// direct median of each direction), for the API columns when S3 was measured: upload,
    /// download.
    pub overhead_pct: Option<(f64, f64)>,
}

/// What the objects scenario measured.
#[derive(Debug, Clone, Serialize)]
pub struct ObjectsResult {
    /// Object size, MiB.
    pub object_mib: usize,
    /// Transfers of each kind per target.
    pub repeats: usize,
    /// The S3 store's multipart part size, bytes.
    pub part_size_bytes: u64,
    /// The S3 store's parts (and read-ahead ranges) in flight per object.
    pub part_concurrency: usize,
    /// One row per target.
    pub targets: Vec<TransferResult>,
}

fn mib_s(bytes: usize, took: Duration) -> f64 {
    bytes as f64 / (1024.0 * 1024.0) / took.as_secs_f64().max(1e-9)
}

fn median(samples: &mut [Duration]) -> Duration {
    samples.sort_unstable();
    samples[samples.len() / 2]
}

struct Timings {
    uploads: Vec<Duration>,
    downloads: Vec<Duration>,
}

impl Timings {
    fn result(mut self, target: &str, size: usize, direct: Option<(Duration, Duration)>) -> TransferResult {
        let (up, down) = (median(&mut self.uploads), median(&mut self.downloads));
        let pct = |api: Duration, direct: Duration| (api.as_secs_f64() / direct.as_secs_f64() - 1.0) * 100.0;
        TransferResult {
            target: target.to_owned(),
            upload_mib_s: mib_s(size, up),
            upload_best_mib_s: mib_s(size, self.uploads[0]),
            download_mib_s: mib_s(size, down),
            download_best_mib_s: mib_s(size, self.downloads[0]),
            overhead_pct: direct.map(|(du, dd)| (pct(up, du), pct(down, dd))),
        }
    }

    fn medians(&self) -> (Duration, Duration) {
        let (mut up, mut down) = (self.uploads.clone(), self.downloads.clone());
        (median(&mut up), median(&mut down))
    }
}

/// Runs the objects scenario: direct S3 and API+S3 when an S3 server is given, API+local always.
pub async fn run(options: &Options) -> anyhow::Result<ObjectsResult> {
    let size = options.object_mib * 1024 * 1024;
    let repeats = options.object_repeats.max(1);
    let body = Bytes::from(random_bytes(size));
    let s3 = S3Server::from_options(options);
    if s3.is_none() {
        eprintln!("objects: no S3 server (--s3-endpoint or GOFER_TEST_S3_ENDPOINT): measuring the local store only");
    }
    let defaults = gofer_objects::S3Settings::default();
    let (part_size, concurrency) = (defaults.part_size_bytes, defaults.part_concurrency);
    let parts = usize::try_from(part_size).unwrap_or(usize::MAX).max(1);
    let mut targets = Vec::new();
    let mut direct_best = None;
    if let Some(server) = &s3 {
        let single = direct_s3(server, &body, repeats, None).await?;
        let in_parts = direct_s3(server, &body, repeats, Some((parts, concurrency))).await?;
        let ((su, sd), (pu, pd)) = (single.medians(), in_parts.medians());
        direct_best = Some((su.min(pu), sd.min(pd)));
        targets.push(single.result("s3 direct 1 req", size, None));
        targets.push(in_parts.result("s3 direct parts", size, None));
        let timings = through_api(options, Some(server), &body, repeats).await?;
        targets.push(timings.result("api+s3", size, direct_best));
    }
    let timings = through_api(options, None, &body, repeats).await?;
    targets.push(timings.result("api+local", size, direct_best));
    Ok(ObjectsResult {
        object_mib: options.object_mib,
        repeats,
        part_size_bytes: part_size,
        part_concurrency: concurrency,
        targets,
    })
}

/// Not cryptographic: incompressible enough that nothing on the way can shortcut it.
fn random_bytes(n: usize) -> Vec<u8> {
    let mut state = 0x9E37_79B9_7F4A_7C15_u64 ^ u64::try_from(n).unwrap_or(0);
    let mut out = Vec::with_capacity(n + 8);
    while out.len() < n {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(n);
    out
}

fn bucket_name() -> String {
    format!("gofer-bench-{}", &uuid::Uuid::new_v4().simple().to_string()[..16])
}

/// aws-sdk-s3 straight to the server: one request each way, or (`parts`: part size, parts in
/// flight) a multipart upload and ranged GETs.
async fn direct_s3(
    server: &S3Server,
    body: &Bytes,
    repeats: usize,
    parts: Option<(usize, usize)>,
) -> anyhow::Result<Timings> {
    let credentials =
        aws_sdk_s3::config::Credentials::new(&server.access_key, &server.secret_key, None, None, "gofer-bench");
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(&server.endpoint)
        .credentials_provider(credentials)
        .load()
        .await;
    let client = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&config)
            .force_path_style(true)
            .request_checksum_calculation(aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(aws_sdk_s3::config::ResponseChecksumValidation::WhenRequired)
            .build(),
    );
    let bucket = bucket_name();
    client.create_bucket().bucket(&bucket).send().await.context("creating the bucket")?;
    let mut timings = Timings { uploads: Vec::new(), downloads: Vec::new() };
    for i in 0..repeats + 1 {
        let key = format!("direct-{i}");
        let started = Instant::now();
        match parts {
            None => {
                client.put_object().bucket(&bucket).key(&key).body(ByteStream::from(body.clone())).send().await?;
            }
            Some((part, concurrency)) => upload_parts(&client, &bucket, &key, body, part, concurrency).await?,
        }
        let uploaded = started.elapsed();
        let started = Instant::now();
        let read = match parts {
            None => read_all(client.get_object().bucket(&bucket).key(&key).send().await?.body).await?,
            Some((part, concurrency)) => download_ranges(&client, &bucket, &key, part, concurrency).await?,
        };
        let downloaded = started.elapsed();
        ensure!(read == body.len(), "direct S3 read {read} of {} bytes", body.len());
        // The first round warms connections up and is not counted.
        if i > 0 {
            timings.uploads.push(uploaded);
            timings.downloads.push(downloaded);
        }
        client.delete_object().bucket(&bucket).key(&key).send().await?;
    }
    let _ = client.delete_bucket().bucket(&bucket).send().await;
    Ok(timings)
}

async fn read_all(mut body: ByteStream) -> anyhow::Result<usize> {
    let mut read = 0;
    while let Some(chunk) = body.next().await {
        read += chunk?.len();
    }
    Ok(read)
}

/// A multipart upload of `part`-byte slices of `body` (no copies), `concurrency` in flight.
async fn upload_parts(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    body: &Bytes,
    part: usize,
    concurrency: usize,
) -> anyhow::Result<()> {
    let created = client.create_multipart_upload().bucket(bucket).key(key).send().await?;
    let id = created.upload_id().context("no upload id")?.to_owned();
    let requests = (0..body.len()).step_by(part).zip(1..).map(|(at, number)| {
        let request = client
            .upload_part()
            .bucket(bucket)
            .key(key)
            .upload_id(&id)
            .part_number(number)
            .body(ByteStream::from(body.slice(at..(at + part).min(body.len()))));
        async move {
            let sent = request.send().await?;
            anyhow::Ok(CompletedPart::builder().set_e_tag(sent.e_tag().map(str::to_owned)).part_number(number).build())
        }
    });
    let completed: Vec<CompletedPart> =
        futures_util::stream::iter(requests).buffered(concurrency.max(1)).try_collect().await?;
    client
        .complete_multipart_upload()
        .bucket(bucket)
        .key(key)
        .upload_id(&id)
        .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(completed)).build())
        .send()
        .await?;
    Ok(())
}

/// Ranged GETs of `part` bytes: the first says how long the object is; while it is read the
/// others go `concurrency` at a time.
async fn download_ranges(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    part: usize,
    concurrency: usize,
) -> anyhow::Result<usize> {
    let first = client.get_object().bucket(bucket).key(key).range(format!("bytes=0-{}", part - 1)).send().await?;
    let total: usize = first
        .content_range()
        .and_then(|r| r.rsplit('/').next()?.parse().ok())
        .context("no Content-Range on a ranged GET")?;
    let rest = (part..total).step_by(part).map(|at| {
        let request =
            client.get_object().bucket(bucket).key(key).range(format!("bytes={at}-{}", (at + part).min(total) - 1));
        async move { read_all(request.send().await?.body).await }
    });
    let rest = futures_util::stream::iter(rest)
        .buffered(concurrency.max(1))
        .try_fold(0, |sum, n| async move { anyhow::Ok(sum + n) });
    let (first, rest) = futures_util::try_join!(read_all(first.body), rest)?;
    Ok(first + rest)
}

async fn through_api(
    options: &Options,
    s3: Option<&S3Server>,
    body: &Bytes,
    repeats: usize,
) -> anyhow::Result<Timings> {
    let database = Database::create(&options.database_url).await?;
    let operator = operator_token();
    let replica = Replica::start(None, |dir| {
        let mut config = replica_config(&database.url, dir, &operator, None, None);
        config.objects.max_object_bytes = config.objects.max_object_bytes.max(body.len() as u64 * 2);
        if let Some(server) = s3 {
            config.object_store = gofer_objects::ObjectStoreSettings::S3(gofer_objects::S3Settings {
                endpoint: Some(server.endpoint.clone()),
                bucket: bucket_name(),
                access_key_id: Some(server.access_key.clone()),
                secret_access_key: Some(server.secret_key.clone().into()),
                path_style: true,
                ..Default::default()
            });
        }
        config
    })
    .await;
    let replica = match replica {
        Ok(replica) => replica,
        Err(e) => {
            database.drop_now().await?;
            return Err(e);
        }
    };
    let measured = async {
        let client = TenantClient::create(&replica.address, &operator, TENANT).await?;
        client.namespace(NAMESPACE).await?;
        client.pipeline(NAMESPACE, PIPELINE, 1, &["true"]).await?;
        let http = reqwest::Client::new();
        let mut timings = Timings { uploads: Vec::new(), downloads: Vec::new() };
        for i in 0..repeats + 1 {
            let url = format!("{}/api/v1/namespaces/{NAMESPACE}/pipelines/{PIPELINE}/objects/big-{i}", replica.address);
            let started = Instant::now();
            let answer = http.put(&url).bearer_auth(client.token()).body(body.clone()).send().await?;
            let status = answer.status();
            let text = answer.text().await?;
            if !status.is_success() {
                bail!("PUT {url} answered {status}: {text}");
            }
            let uploaded = started.elapsed();
            let started = Instant::now();
            let answer = http.get(&url).bearer_auth(client.token()).send().await?.error_for_status()?;
            let mut stream = answer.bytes_stream();
            let mut read = 0;
            while let Some(chunk) = stream.next().await {
                read += chunk?.len();
            }
            let downloaded = started.elapsed();
            ensure!(read == body.len(), "the API answered {read} of {} bytes", body.len());
            if i > 0 {
                timings.uploads.push(uploaded);
                timings.downloads.push(downloaded);
            }
            http.delete(&url).bearer_auth(client.token()).send().await?.error_for_status()?;
        }
        anyhow::Ok(timings)
    }
    .await;
    replica.stop().await?;
    database.drop_now().await?;
    measured
}
