//! The latency floor of the HTTP stack on this machine (docs/benchmarks.md, issue 10): a server
//! that answers every request with the same 654-byte JSON body (the size of a run), with no
//! routing, no middleware, no auth and no database, built on either
//!
//! - `actix`: actix-web, as the replica (one worker per core, each its own single-thread runtime);
//! - `hyper`: hyper 1 on tokio's multi-thread, work-stealing runtime (2 threads).
//!
//! `bench/floor.sh` runs wrk against both, round after round, for comparison with the replica's
//! figures from `bench/http.sh`.

use std::convert::Infallible;

use actix_web::{App, HttpResponse, HttpServer, web};
use anyhow::Context;
use bytes::Bytes;
use clap::{Parser, ValueEnum};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

const BODY: &str = r#"{"run":{"id":60,"pipeline":"hello","namespace":"builds","state":"complete","status":"successful","started":"2026-11-26T08:00:00Z","ended":"2026-11-26T08:00:01Z","initiator":{"kind":"token","id":"tok_0123456789abcdef0123456789abcdef"},"variables":{},"version":1,"reason":null,"tasks":{"say":"successful"},"config_hash":"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef","links":{"self":"/api/v1/namespaces/builds/pipelines/hello/runs/60","tasks":"/api/v1/namespaces/builds/pipelines/hello/runs/60/tasks","events":"/api/v1/namespaces/builds/pipelines/hello/runs/60/events"},"pad":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}}"#;

#[derive(Clone, Copy, ValueEnum)]
enum Server {
    Actix,
    Hyper,
}

#[derive(Parser)]
#[command(about = "A minimal HTTP server: the latency floor of the HTTP stack on this machine")]
struct Args {
    #[arg(long, value_enum)]
    server: Server,
    #[arg(long, default_value = "127.0.0.1:24480")]
    listen: String,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    match args.server {
        Server::Actix => actix(&args.listen),
        Server::Hyper => hyper(&args.listen),
    }
}

fn actix(listen: &str) -> anyhow::Result<()> {
    actix_web::rt::System::new().block_on(async {
        HttpServer::new(|| {
            App::new()
                .default_service(web::to(|| async { HttpResponse::Ok().content_type("application/json").body(BODY) }))
        })
        .bind(listen)
        .with_context(|| format!("binding {listen}"))?
        .run()
        .await
        .context("serving")
    })
}

fn hyper(listen: &str) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("binding {listen}"))?;
        loop {
            let (stream, _) = listener.accept().await?;
            stream.set_nodelay(true)?;
            tokio::spawn(async move {
                let answer = service_fn(|_request| async {
                    let mut response = hyper::Response::new(Full::new(Bytes::from_static(BODY.as_bytes())));
                    response
                        .headers_mut()
                        .insert("content-type", hyper::header::HeaderValue::from_static("application/json"));
                    Ok::<_, Infallible>(response)
                });
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), answer).await;
            });
        }
    })
}
