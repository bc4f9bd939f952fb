//! The client implements exactly the operations of `docs/openapi.json`: a route added to the
//! server without a client method, or a client method whose route was removed, fails here.

use std::collections::BTreeSet;

#[test]
fn the_client_covers_every_operation_of_the_openapi_document() {
    let text = include_str!("../../docs/openapi.json");
    let document: serde_json::Value = serde_json::from_str(text).expect("docs/openapi.json is JSON");
    let mut documented = BTreeSet::new();
    for (path, operations) in document["paths"].as_object().expect("paths") {
        for method in operations.as_object().expect("operations").keys() {
            documented.insert((method.to_uppercase(), path.clone()));
        }
    }
    let implemented: BTreeSet<(String, String)> =
        gofer_sdk::routes::ALL.iter().map(|r| (r.method.to_owned(), r.path.to_owned())).collect();
    assert_eq!(implemented.len(), gofer_sdk::routes::ALL.len(), "a route is listed twice");
    let missing: Vec<_> = documented.difference(&implemented).collect();
    let extra: Vec<_> = implemented.difference(&documented).collect();
    assert!(missing.is_empty(), "operations without a client method (add them to sdk/src/routes.rs): {missing:#?}");
    assert!(extra.is_empty(), "client routes the API does not document: {extra:#?}");
}
