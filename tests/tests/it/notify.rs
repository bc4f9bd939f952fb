//! The replica's one shared LISTEN connection (`gofer-notify`) against a real Postgres: each
//! subscription hears only its channels, a dropped connection is announced and comes back, and a
//! whole replica holds exactly one listening backend.

use std::time::Duration;

use gofer_notify::{Notice, Notifications, Subscription};
use gofer_tests::{fresh_database, spawn_app};
use sqlx::PgPool;

async fn next(notices: &mut Subscription) -> Notice {
    tokio::time::timeout(Duration::from_secs(10), notices.recv()).await.expect("a notice within 10 s")
}

async fn notify(pool: &PgPool, channel: &str, payload: &str) {
    sqlx::query("SELECT pg_notify($1, $2)").bind(channel).bind(payload).execute(pool).await.expect("notify");
}

fn message(channel: &'static str, payload: &str) -> Notice {
    Notice::Message { channel, payload: payload.into() }
}

/// The backends listening for anything in this database: their last statement was a LISTEN.
async fn listening_backends(pool: &PgPool) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND query ILIKE 'LISTEN%'",
    )
    .fetch_one(pool)
    .await
    .expect("count listeners")
}

#[tokio::test]
async fn subscriptions_hear_their_channels_and_every_loss_and_return_of_the_connection() {
    let pool = PgPool::connect(&fresh_database().await).await.expect("connect");
    let notifications = Notifications::start(pool.clone(), &["gofer_a", "gofer_b"]);
    let mut a = notifications.subscribe(&["gofer_a"]);
    let mut both = notifications.subscribe(&["gofer_a", "gofer_b"]);
    assert_eq!(next(&mut a).await, Notice::Listening);
    assert_eq!(next(&mut both).await, Notice::Listening);
    assert!(notifications.is_listening());
    assert_eq!(listening_backends(&pool).await, 1, "one connection for every channel");

    notify(&pool, "gofer_a", "x").await;
    notify(&pool, "gofer_b", "y").await;
    notify(&pool, "gofer_a", "z").await;
    assert_eq!(next(&mut a).await, message("gofer_a", "x"));
    assert_eq!(next(&mut a).await, message("gofer_a", "z"), "gofer_b is not a's");
    for expected in [message("gofer_a", "x"), message("gofer_b", "y"), message("gofer_a", "z")] {
        assert_eq!(next(&mut both).await, expected);
    }
    // A subscription opened while the connection listens is told so first.
    let mut late = notifications.subscribe(&["gofer_b"]);
    assert_eq!(next(&mut late).await, Notice::Listening);

    // The connection is killed: every subscription hears that it was lost, then that it is back.
    let killed: i64 = sqlx::query_scalar(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
         WHERE datname = current_database() AND query ILIKE 'LISTEN%'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(killed, 1);
    for notices in [&mut a, &mut both, &mut late] {
        assert_eq!(next(notices).await, Notice::Lost);
        assert_eq!(next(notices).await, Notice::Listening);
    }
    notify(&pool, "gofer_b", "again").await;
    assert_eq!(next(&mut late).await, message("gofer_b", "again"));
    assert_eq!(next(&mut both).await, message("gofer_b", "again"));
    notifications.stop();
}

#[tokio::test]
async fn a_replica_holds_one_listening_connection() {
    let app = spawn_app().await;
    // The engine, the event hub, the IP blocks and both caches are up once the app answers;
    // give the shared listener a moment to subscribe.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while listening_backends(&app.db).await == 0 {
        assert!(std::time::Instant::now() < deadline, "no listening backend");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(listening_backends(&app.db).await, 1);
}
