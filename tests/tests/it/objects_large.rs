//! A 100 MiB object streams through the API into S3 with bounded memory: with its length declared
//! (`Content-Length`) as one streamed `PutObject`, without (chunked) as a multipart upload whose
//! parts go up concurrently, at most `object_store.part_concurrency` in flight; and a refused upload leaves
//! no multipart upload behind. Alone in its binary so that the memory measured is this test's.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use futures_util::StreamExt;
use gofer_tests::{fresh_database, pipeline_path, spawn_with, test_config, test_s3};
use sha2::{Digest, Sha256};

const MIB: usize = 1024 * 1024;

/// Peak resident memory of this process (server and client), in bytes.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

/// `total` bytes of a repeating pattern, generated as it is sent, in 1 MiB chunks.
fn body(total: usize) -> (reqwest::Body, String) {
    let chunk: Vec<u8> = (0..MIB).map(|i| (i % 251) as u8).collect();
    let mut hasher = Sha256::new();
    for _ in 0..total / MIB {
        hasher.update(&chunk);
    }
    let sha: String = hasher.finalize().iter().map(|b| format!("{b:02x}")).collect();
    let chunks = futures_util::stream::iter(0..total / MIB)
        .map(move |_| Ok::<_, std::io::Error>(bytes::Bytes::from(chunk.clone())));
    (reqwest::Body::wrap_stream(chunks), sha)
}

/// Length and ETag of the pipeline object `key` of `big` in S3; `None` when there is none.
async fn head(store: &gofer_objects::S3Store, bucket: &str, key: &str) -> Option<(i64, String)> {
    let path = format!("tenants/acme/namespaces/builds/pipelines/big/objects/{key}");
    let head = store.client().head_object().bucket(bucket).key(path).send().await.ok()?;
    Some((head.content_length()?, head.e_tag()?.to_owned()))
}

#[tokio::test]
async fn a_100_mib_object_streams_with_bounded_memory_declared_or_chunked_and_a_refused_one_leaves_nothing() {
    let state_dir = tempfile::tempdir().unwrap();
    let mut config = test_config(fresh_database().await, state_dir.path());
    let s3 = gofer_objects::S3Settings { part_size_bytes: 8 * MIB as u64, ..test_s3() };
    config.object_store = gofer_objects::ObjectStoreSettings::S3(s3.clone());
    config.objects.max_object_bytes = 100 * MIB as u64;
    let app = spawn_with(config, state_dir).await;
    let acme = app.tenant("acme").await;
    acme.namespace("builds").await;
    acme.register(
        "builds",
        "big",
        serde_json::json!({"name": "B", "tasks": [{"id": "noop", "image": "debian:12", "command": ["true"]}]}),
    )
    .await;
    let url = format!("{}{}/objects/big.bin", app.address, pipeline_path("builds", "big"));

    // Declared length, up to `object_store.single_put_max_bytes` (100 MiB by default): one PutObject that
    // streams, buffering nothing (S3 gives a multipart object an ETag ending in `-<parts>`).
    assert_eq!(s3.single_put_max_bytes, 100 * MIB as u64);
    let (stream, sha) = body(100 * MIB);
    let before = peak_rss();
    // Through the SDK's call for bodies of known length, as `gofer object put -f <file>` sends.
    let sdk = gofer_sdk::Client::new(app.address.clone(), acme.token.clone());
    let (ns, p) = ("builds".parse().unwrap(), "big".parse().unwrap());
    let key = gofer_core::objects::ObjectKey::parse("big.bin-declared").unwrap();
    let scope = gofer_core::objects::ObjectScope::Pipeline;
    let stored = sdk.put_object_of_length(&ns, &p, scope, &key, stream, 100 * MIB as u64).await.unwrap();
    assert_eq!(stored.sha256, sha);
    let growth = peak_rss().saturating_sub(before);
    eprintln!("100 MiB upload of declared length: peak RSS grew {} MiB", growth / MIB as u64);
    assert!(growth < 24 * MIB as u64, "memory grew {growth} bytes for a streamed 100 MiB upload: something buffers it");
    let store = gofer_objects::S3Store::connect(&s3).await;
    let (length, etag) = head(&store, &s3.bucket, "big.bin-declared").await.unwrap();
    assert_eq!(length, 100 * MIB as i64);
    assert!(!etag.contains('-'), "one PutObject, not in parts: {etag}");

    // Chunked (no declared length): a multipart upload. Hashing the body takes a while in a debug
    // build: a fresh client, so that no pooled connection the server closed meanwhile
    // (keep-alive) is reused.
    let (stream, sha) = body(100 * MIB);
    let http = reqwest::Client::new();
    let before = peak_rss();
    let started = std::time::Instant::now();
    let response = http.put(&url).bearer_auth(&acme.token).body(stream).send().await.unwrap();
    let took = started.elapsed();
    assert_eq!(response.status(), 201);
    let stored: serde_json::Value = response.json().await.unwrap();
    assert_eq!(stored["object"]["size"], 100 * MIB);
    assert_eq!(stored["object"]["sha256"], sha.as_str());
    let growth = peak_rss().saturating_sub(before);
    eprintln!("100 MiB upload in {took:?}; peak RSS grew {} MiB", growth / MIB as u64);
    let (_, etag) = head(&store, &s3.bucket, "big.bin").await.unwrap();
    assert!(etag.ends_with("-13\""), "13 parts of 8 MiB: {etag}");
    // Parts in flight and the one being filled: (part_concurrency + 1) × 8 MiB, plus slack for
    // the client, the HTTP layers and the allocator; well under the 100 MiB object.
    let bound = (s3.part_concurrency as u64 + 1) * s3.part_size_bytes + 24 * MIB as u64;
    assert!(bound < 100 * MIB as u64);
    assert!(growth < bound, "memory grew {growth} bytes (bound {bound}) for a 100 MiB upload: something buffers it");

    // It reads back whole, streamed.
    let response = http.get(&url).bearer_auth(&acme.token).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-length"], (100 * MIB).to_string().as_str());
    let mut hasher = Sha256::new();
    let mut chunks = response.bytes_stream();
    while let Some(chunk) = chunks.next().await {
        hasher.update(chunk.unwrap());
    }
    let read: String = hasher.finalize().iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(read, sha);

    // Past the limit (no Content-Length: refused while streaming) nothing remains, not even an
    // incomplete multipart upload.
    let (stream, _) = body(101 * MIB);
    let refused =
        reqwest::Client::new().put(format!("{url}-too-big")).bearer_auth(&acme.token).body(stream).send().await;
    if let Ok(response) = refused {
        assert_eq!(response.status(), 413);
    }
    // s3s-fs does not implement ListMultipartUploads: look at its directory, where an upload in
    // progress keeps `.upload-<id>` metadata and `.upload_id-<id>.part-<n>` files.
    let data = std::env::var("GOFER_TEST_S3_DATA_DIR").expect("GOFER_TEST_S3_DATA_DIR (set by infra/test.sh)");
    let leftovers: Vec<String> = std::fs::read_dir(&data)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .filter(|name| name.contains(".upload"))
        .collect();
    assert!(leftovers.is_empty(), "the refused upload was aborted: {leftovers:?}");
    assert!(head(&store, &s3.bucket, "big.bin-too-big").await.is_none(), "no object under the refused key");
    let missing = app.http.get(format!("{url}-too-big")).bearer_auth(&acme.token).send().await.unwrap();
    assert_eq!(missing.status(), 404);
}
