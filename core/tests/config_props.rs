//! Property tests of the pipeline config validator: whatever bytes or near-valid configs it is
//! given, it never panics; it refuses with a structured error (a stable code and a message), and
//! what it accepts is canonical (parsing its own output gives the same config and hash).

use gofer_core::ConfigError;
use gofer_core::config::ValidConfig;
use proptest::prelude::*;
use serde_json::{Value, json};

const CODES: &[&str] = &[
    "invalid_json",
    "unknown_field",
    "missing_field",
    "invalid_field",
    "invalid_identifier",
    "invalid_task_count",
    "duplicate_task_id",
    "unknown_dependency",
    "dependency_cycle",
];

fn check(body: &[u8]) {
    match ValidConfig::parse(body) {
        Ok(valid) => {
            let again = serde_json::to_vec(valid.config()).expect("serializes");
            let reparsed = ValidConfig::parse(&again).expect("its own output is valid");
            assert_eq!(reparsed, valid);
            assert_eq!(reparsed.canonical_hash(), valid.canonical_hash());
        }
        Err(err) => assert_structured(&err),
    }
}

fn assert_structured(err: &ConfigError) {
    assert!(CODES.contains(&err.code()), "unexpected code {:?} for {err}", err.code());
    assert!(!err.to_string().is_empty());
}

/// Strings that break rules: ids, lengths, NUL, whitespace, traversal, SQL.
fn nasty_string() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z][a-z0-9_-]{2,10}",
        ".{0,20}",
        Just(String::new()),
        Just("a\0b".to_owned()),
        Just("../../etc/passwd".to_owned()),
        Just("'; DROP TABLE runs;--".to_owned()),
        Just(" ".to_owned()),
        Just("GOFER_TOKEN".to_owned()),
        (1usize..70_000).prop_map(|n| "x".repeat(n)),
    ]
}

fn number() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!(0)),
        Just(json!(1)),
        Just(json!(-1)),
        Just(json!(u64::MAX)),
        Just(json!(4_294_967_296u64)),
        Just(json!(1.5)),
        Just(json!(null)),
        Just(json!("1")),
        any::<u32>().prop_map(|n| json!(n)),
    ]
}

fn task(ids: Vec<String>) -> impl Strategy<Value = Value> {
    let pick = proptest::sample::select(ids);
    (
        nasty_string(),
        nasty_string(),
        proptest::collection::vec(nasty_string(), 0..3),
        proptest::collection::btree_map(nasty_string(), nasty_string(), 0..3),
        proptest::collection::btree_map(
            pick,
            prop_oneof![Just("success"), Just("failure"), Just("any"), Just("x")],
            0..3,
        ),
        (number(), number(), number(), number()),
        proptest::option::of(nasty_string()),
        any::<bool>(),
    )
        .prop_map(
            |(id, image, command, env, depends_on, (timeout_s, cpu, memory_mb, retries), registry_auth, extra)| {
                let mut task = json!({"id": id, "image": image, "command": command, "env": env,
                "depends_on": depends_on, "timeout_s": timeout_s, "cpu": cpu, "memory_mb": memory_mb,
                "retries": retries, "registry_auth": registry_auth});
                if extra {
                    task["surprise"] = json!(1);
                }
                task
            },
        )
}

fn config() -> impl Strategy<Value = Value> {
    let ids = vec!["build".to_owned(), "test".to_owned(), "ship".to_owned(), "nope".to_owned(), "B!".to_owned()];
    (nasty_string(), proptest::collection::vec(task(ids), 0..4), number(), number()).prop_map(
        |(name, mut tasks, parallelism, run_timeout_s)| {
            // Give tasks the ids depends_on names, often enough to get past the id checks.
            for (task, id) in tasks.iter_mut().zip(["build", "test", "ship"]) {
                if task["id"].as_str().is_some_and(|s| s.len() % 3 != 0) {
                    task["id"] = json!(id);
                }
            }
            json!({"name": name, "tasks": tasks, "parallelism": parallelism, "run_timeout_s": run_timeout_s})
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..512)) {
        check(&body);
    }

    #[test]
    fn near_valid_configs_are_accepted_canonically_or_refused_with_a_code(config in config()) {
        check(config.to_string().as_bytes());
    }

    #[test]
    fn a_mangled_valid_config_never_panics(cut in 0usize..200, byte in any::<u8>()) {
        let mut body = br#"{"name":"Two","tasks":[{"id":"build","image":"debian:12","command":["echo","hi"]},{"id":"test","image":"debian:12","command":["true"],"depends_on":{"build":"success"},"timeout_s":30}]}"#.to_vec();
        let at = cut.min(body.len() - 1);
        body[at] = byte;
        check(&body);
        check(&body[..at]);
    }
}

#[test]
fn deep_nesting_is_refused_not_a_stack_overflow() {
    for body in [
        "[".repeat(100_000),
        "{\"name\":".repeat(50_000),
        format!("{{\"name\":\"n\",\"tasks\":{}", "[".repeat(100_000)),
    ] {
        let err = ValidConfig::parse(body.as_bytes()).expect_err("refused");
        assert_structured(&err);
    }
}

#[test]
fn a_name_with_nul_is_refused() {
    let body = json!({"name": "a\u{0}b", "tasks": [{"id": "build", "image": "debian:12", "command": ["true"]}]});
    let err = ValidConfig::parse(body.to_string().as_bytes()).expect_err("NUL cannot be stored");
    assert_eq!(err.code(), "invalid_field", "{err}");
}
