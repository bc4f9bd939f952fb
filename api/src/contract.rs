//! What every operation of the OpenAPI document shares, added in one place so the document says
//! what the server does (issue 29): the answers the middleware and the extractors give on any
//! route (401 and 403 for routes with a token, 403 `ip_blocked` and 429 with its headers on every
//! limited route, 400 for bad parameters, 404 for paths naming a resource, 413 and 415 for bodies,
//! 503 when a store is unavailable), and the real rules of the path parameters that hold ids.
//! A handler's own annotation wins: nothing it declares is replaced.

use utoipa::Modify;
use utoipa::openapi::path::{Operation, Parameter, ParameterIn};
use utoipa::openapi::schema::{Object, SchemaType, Type};
use utoipa::openapi::{Content, HeaderBuilder, OpenApi, Ref, RefOr, Required, Response, ResponseBuilder, Schema};

/// The pattern of every user-chosen identifier (`gofer_core::id::validate_identifier`).
pub const IDENTIFIER_PATTERN: &str = "^[a-z][a-z0-9_-]{0,63}$";

/// Path parameters holding an identifier.
const IDENTIFIER_PARAMETERS: &[&str] = &["namespace", "pipeline", "task", "tenant", "plan"];

/// Path parameters holding a number that starts at 1.
const NUMBER_PARAMETERS: &[&str] = &["run", "deployment", "version", "from", "to"];

/// A secret's key (`gofer_core::secrets::SecretKey`).
const SECRET_KEY_PATTERN: &str = "^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$";

/// An object's key (`gofer_core::objects::ObjectKey`): segments of letters, digits, `.`, `_` and
/// `-` between `/`, none of them `.` or `..`.
const OBJECT_KEY_PATTERN: &str = r"^(?!\.{1,2}(/|$))(?!.*/\.{1,2}(/|$))[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$";

/// An event id as the API hands it out (`gofer_core::id::EventId`).
const EVENT_ID_PATTERN: &str = "^[A-Za-z0-9_-]{22}$";

/// An IPv4 address in dotted decimal, without leading zeros.
const IPV4: &str = r"((25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])";

/// An IPv6 address in any of its hexadecimal forms (full or with `::`; no zone, no dotted tail).
const IPV6: &str = concat!(
    r"(([0-9a-fA-F]{1,4}:){7}[0-9a-fA-F]{1,4}|([0-9a-fA-F]{1,4}:){1,7}:|([0-9a-fA-F]{1,4}:){1,6}:[0-9a-fA-F]{1,4}",
    r"|([0-9a-fA-F]{1,4}:){1,5}(:[0-9a-fA-F]{1,4}){1,2}|([0-9a-fA-F]{1,4}:){1,4}(:[0-9a-fA-F]{1,4}){1,3}",
    r"|([0-9a-fA-F]{1,4}:){1,3}(:[0-9a-fA-F]{1,4}){1,4}|([0-9a-fA-F]{1,4}:){1,2}(:[0-9a-fA-F]{1,4}){1,5}",
    r"|[0-9a-fA-F]{1,4}:(:[0-9a-fA-F]{1,4}){1,6}|:((:[0-9a-fA-F]{1,4}){1,7}|:)",
    // With an IPv4 tail: mapped (`::ffff:192.0.2.1`), translated, embedded, or written in full.
    r"|::([fF]{4}(:0{1,4})?:)?",
    r"((25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])",
    r"|([0-9a-fA-F]{1,4}:){1,4}:",
    r"((25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])",
    r"|([0-9a-fA-F]{1,4}:){6}",
    r"((25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9]))"
);

/// The addresses the API takes (IP blocks): the document's pattern, which the server checks too,
/// so that the two cannot disagree on an edge of the standard library's parser.
pub static IP_ADDRESS: std::sync::LazyLock<regex::Regex> =
    std::sync::LazyLock::new(|| regex::Regex::new(&format!("^({IPV4}|{IPV6})$")).expect("a valid pattern"));

/// The networks the API takes (a token's `allowed_cidrs`): an address and a prefix length.
pub static CIDR: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
    regex::Regex::new(&format!("^({IPV4}/(3[0-2]|[12]?[0-9])|{IPV6}/(12[0-8]|1[01][0-9]|[1-9]?[0-9]))$"))
        .expect("a valid pattern")
});

/// The operations that answer 422 ([`crate::error::ApiError::Unprocessable`], or a pipeline
/// config that breaks its rules): the request matches its schema but breaks a rule no schema
/// can state.
const UNPROCESSABLE: &[(&str, &str, &str)] = &[
    (
        "get",
        "/api/v1/events",
        "`invalid_filter` (pipeline without namespace, run without pipeline), or `invalid_after`/`invalid_cursor`/`invalid_last_event_id`: an id this tenant was never given",
    ),
    ("get", "/api/v1/usage", "`empty_period`: `to` is not after `from`"),
    ("get", "/api/v1/tenants/{tenant}/usage", "`empty_period`: `to` is not after `from`"),
    (
        "post",
        "/api/v1/trial",
        "`challenge_invalid` (not handed out to this address, or expired) or `proof_of_work_invalid`",
    ),
    ("put", "/api/v1/plans/{plan}", "`invalid_field`: the body's `id` is not the plan of the path"),
    (
        "post",
        "/api/v1/namespaces/{namespace}/pipelines/{pipeline}/configs",
        "The config breaks a rule: `invalid_field`, `invalid_identifier`, `invalid_task_count`, `duplicate_task_id`, `unknown_dependency`, `dependency_cycle`; the detail names the field",
    ),
    (
        "post",
        "/api/v1/namespaces/{namespace}/pipelines/{pipeline}/runs",
        "`invalid_field`: a run variable breaks the environment rules (a reserved or loader name)",
    ),
];

/// Adds the shared answers and parameter rules to every operation.
pub struct Contract;

impl Modify for Contract {
    fn modify(&self, openapi: &mut OpenApi) {
        constrain_bodies(openapi);
        if let Some(components) = openapi.components.as_mut() {
            components.schemas.values_mut().for_each(forbid_nul);
        }
        for (method, path, description) in UNPROCESSABLE {
            let item = openapi.paths.paths.get_mut(*path);
            let operation = item.and_then(|item| match *method {
                "get" => item.get.as_mut(),
                "post" => item.post.as_mut(),
                "put" => item.put.as_mut(),
                _ => None,
            });
            if let Some(operation) = operation {
                add(operation, "422", problem(description));
            }
        }
        for (path, item) in openapi.paths.paths.iter_mut() {
            let probe = path == "/health" || path == "/ready";
            for operation in
                [item.get.as_mut(), item.put.as_mut(), item.post.as_mut(), item.delete.as_mut(), item.patch.as_mut()]
                    .into_iter()
                    .flatten()
            {
                type_parameters(path, operation);
                name_uniquely(operation);
                if !probe {
                    add_shared_answers(operation);
                }
            }
        }
    }
}

/// Operation ids must be unique in a document (client generators name methods by them): the
/// handler's name (`list`, `get`) prefixed by its tag in snake case: `namespaces_list`, `ip_blocks_create`.
fn name_uniquely(operation: &mut Operation) {
    let tag = operation.tags.as_ref().and_then(|tags| tags.first());
    if let (Some(tag), Some(id)) = (tag, operation.operation_id.as_mut()) {
        *id = format!("{}_{id}", tag.replace('-', "_"));
    }
}

/// Rules of request bodies whose patterns are built here (a derive takes only literals).
fn constrain_bodies(openapi: &mut OpenApi) {
    let Some(components) = openapi.components.as_mut() else { return };
    fn property<'a>(
        components: &'a mut utoipa::openapi::Components,
        schema: &str,
        field: &str,
    ) -> Option<&'a mut RefOr<Schema>> {
        match components.schemas.get_mut(schema)? {
            RefOr::T(Schema::Object(object)) => object.properties.get_mut(field),
            _ => None,
        }
    }
    let list = |items: Schema| {
        let items = RefOr::T(items);
        RefOr::T(Schema::Array(utoipa::openapi::schema::ArrayBuilder::new().items(items).max_items(Some(32)).build()))
    };
    if let Some(field) = property(components, "CreateToken", "allowed_cidrs") {
        *field = list(text_schema(CIDR.as_str()));
    }
    for schema in ["CreateToken", "PutGlobalSecret"] {
        if let Some(field) = property(components, schema, "namespaces") {
            *field = list(text_schema(NAMESPACE_GLOB_PATTERN));
        }
    }
    if let Some(field) = property(components, "CreateIpBlock", "address") {
        *field = RefOr::T(text_schema(IP_ADDRESS.as_str()));
    }
}

/// The pattern of free text: anything but NUL, which Postgres text cannot hold (the server
/// refuses it in every body string, `gofer_core::json`).
const TEXT_PATTERN: &str = "^[^\\u0000]*$";

/// Gives every string schema without a pattern the free-text one.
fn forbid_nul(schema: &mut RefOr<Schema>) {
    let RefOr::T(schema) = schema else { return };
    match schema {
        Schema::Object(object) => {
            let is_text = match &object.schema_type {
                SchemaType::Type(Type::String) => true,
                SchemaType::Array(types) => types.contains(&Type::String),
                _ => false,
            };
            if is_text && object.pattern.is_none() && object.enum_values.is_none() && object.format.is_none() {
                object.pattern = Some(TEXT_PATTERN.into());
            }
            object.properties.values_mut().for_each(forbid_nul);
            if let Some(utoipa::openapi::schema::AdditionalProperties::RefOr(extra)) =
                object.additional_properties.as_deref_mut()
            {
                forbid_nul(extra);
                // A map's keys are text too (an env variable's name).
                match object.property_names.as_deref_mut() {
                    Some(Schema::Object(names)) if names.pattern.is_none() => names.pattern = Some(TEXT_PATTERN.into()),
                    Some(_) => {}
                    None => {
                        object.property_names = Some(Box::new(Schema::Object(
                            utoipa::openapi::ObjectBuilder::new()
                                .schema_type(SchemaType::Type(Type::String))
                                .pattern(Some(TEXT_PATTERN))
                                .build(),
                        )))
                    }
                }
            }
        }
        Schema::Array(array) => {
            if let utoipa::openapi::schema::ArrayItems::RefOrSchema(items) = &mut array.items {
                forbid_nul(items);
            }
        }
        Schema::OneOf(one) => one.items.iter_mut().for_each(forbid_nul),
        Schema::AnyOf(any) => any.items.iter_mut().for_each(forbid_nul),
        Schema::AllOf(all) => all.items.iter_mut().for_each(forbid_nul),
        _ => {}
    }
}

/// A token's namespace glob (`gofer_tenants::token::NamespaceGlobs`).
const NAMESPACE_GLOB_PATTERN: &str = "^[a-z0-9_*?-]{1,64}$";

fn identifier_schema() -> Schema {
    Schema::Object(
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(SchemaType::Type(Type::String))
            .pattern(Some(IDENTIFIER_PATTERN))
            .min_length(Some(1))
            .max_length(Some(64))
            .build(),
    )
}

/// A string matching `pattern`.
fn text_schema(pattern: &str) -> Schema {
    Schema::Object(utoipa::openapi::ObjectBuilder::new().schema_type(Type::String).pattern(Some(pattern)).build())
}

fn string_schema(pattern: &str, max_length: usize) -> Schema {
    Schema::Object(
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(SchemaType::Type(Type::String))
            .pattern(Some(pattern))
            .min_length(Some(1))
            .max_length(Some(max_length))
            .build(),
    )
}

fn uuid_schema() -> Schema {
    Schema::Object(
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(SchemaType::Type(Type::String))
            .format(Some(utoipa::openapi::SchemaFormat::Custom("uuid".into())))
            .build(),
    )
}

fn page_limit_schema() -> Schema {
    Schema::Object(
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(SchemaType::Type(Type::Integer))
            .minimum(Some(1))
            .maximum(Some(gofer_core::model::MAX_PAGE_LIMIT))
            .build(),
    )
}

fn number_schema() -> Schema {
    Schema::Object(
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(SchemaType::Type(Type::Integer))
            .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(utoipa::openapi::KnownFormat::Int64)))
            .minimum(Some(1))
            .build(),
    )
}

/// Gives parameters holding ids, keys and page sizes the schema the server checks them against.
fn type_parameters(path: &str, operation: &mut Operation) {
    for parameter in operation.parameters.iter_mut().flatten() {
        let name = parameter.name.as_str();
        let schema = match parameter.parameter_in {
            ParameterIn::Path if IDENTIFIER_PARAMETERS.contains(&name) => identifier_schema(),
            ParameterIn::Path if NUMBER_PARAMETERS.contains(&name) => number_schema(),
            ParameterIn::Path if name == "key" && path.contains("/objects/") => {
                string_schema(OBJECT_KEY_PATTERN, gofer_core::objects::MAX_OBJECT_KEY_LEN)
            }
            ParameterIn::Path if name == "key" => string_schema(SECRET_KEY_PATTERN, 128),
            ParameterIn::Path if name == "id" && path.starts_with("/api/v1/tokens/") => uuid_schema(),
            ParameterIn::Path if name == "address" => text_schema(IP_ADDRESS.as_str()),
            ParameterIn::Query if name == "limit" => page_limit_schema(),
            ParameterIn::Query if name == "after" => string_schema(EVENT_ID_PATTERN, gofer_core::id::EventId::LEN),
            // Empty is no id: EventSource sends it so before its first event.
            ParameterIn::Header if name == "Last-Event-ID" => text_schema("^([A-Za-z0-9_-]{22})?$"),
            ParameterIn::Query if name == "cursor" => cursor_schema(path),
            // Attach's terminal size (`routes::attach`).
            ParameterIn::Query if name == "cols" || name == "rows" => Schema::Object(
                utoipa::openapi::ObjectBuilder::new()
                    .schema_type(SchemaType::Type(Type::Integer))
                    .minimum(Some(1))
                    .maximum(Some(u16::MAX))
                    .build(),
            ),
            // Attach's argv: each repeated value is one non-empty argument (`routes::attach`).
            ParameterIn::Query if name == "command" => Schema::Array(
                utoipa::openapi::schema::ArrayBuilder::new()
                    .items(
                        utoipa::openapi::ObjectBuilder::new()
                            .schema_type(SchemaType::Type(Type::String))
                            .min_length(Some(1)),
                    )
                    .build(),
            ),
            ParameterIn::Query if IDENTIFIER_PARAMETERS.contains(&name) => identifier_schema(),
            // A usage period's ends: a date or an RFC 3339 time (`routes::usage`).
            ParameterIn::Query if name == "from" || name == "to" => Schema::AnyOf(
                utoipa::openapi::schema::AnyOfBuilder::new()
                    .item(formatted_string(utoipa::openapi::KnownFormat::Date))
                    .item(formatted_string(utoipa::openapi::KnownFormat::DateTime))
                    .build(),
            ),
            ParameterIn::Query => match parameter.schema.as_mut() {
                // A query parameter is absent or has a value: it is never `null`.
                Some(RefOr::T(Schema::Object(object))) => {
                    if let SchemaType::Array(types) = &object.schema_type {
                        let types: Vec<Type> = types.iter().filter(|t| **t != Type::Null).cloned().collect();
                        if let [single] = types.as_slice() {
                            object.schema_type = SchemaType::Type(single.clone());
                        }
                    }
                    continue;
                }
                _ => continue,
            },
            _ => continue,
        };
        parameter.schema = Some(RefOr::T(schema));
    }
}

fn formatted_string(format: utoipa::openapi::KnownFormat) -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(SchemaType::Type(Type::String))
        .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(format)))
        .build()
}

/// A list's cursor is the key of its items (`pagination`): the schema of that key, by the
/// collection the path ends in. Lists keyed by free text (plans, IP blocks, usage groups) take any
/// text without NUL; a list missing here fails `every_cursor_is_typed_as_its_lists_key`.
fn cursor_schema(path: &str) -> Schema {
    let collection = path.rsplit('/').next().unwrap_or_default();
    match collection {
        "namespaces" | "pipelines" | "tasks" | "tenants" | "plans" => identifier_schema(),
        "runs" | "configs" | "deployments" => number_schema(),
        "objects" => string_schema(OBJECT_KEY_PATTERN, gofer_core::objects::MAX_OBJECT_KEY_LEN),
        "secrets" => string_schema(SECRET_KEY_PATTERN, 128),
        "tokens" => uuid_schema(),
        "events" => string_schema(EVENT_ID_PATTERN, gofer_core::id::EventId::LEN),
        "ip-blocks" => text_schema(IP_ADDRESS.as_str()),
        // A day (`2026-12-01`) or a pipeline (`namespace/pipeline`): any text without NUL.
        "usage" => text_schema(TEXT_PATTERN),
        _ => Schema::Object(utoipa::openapi::ObjectBuilder::new().description(Some("UNTYPED")).build()),
    }
}

fn problem(description: &str) -> Response {
    ResponseBuilder::new()
        .description(description)
        .content("application/problem+json", Content::new(Some(Ref::from_schema_name("Problem"))))
        .build()
}

fn rate_limited() -> Response {
    let integer = || Object::with_type(Type::Integer);
    let mut response =
        problem("`rate_limited`: over the request rate limit, or too many failed authentications from this address");
    for (name, description) in [
        ("Retry-After", "Seconds until a request can pass"),
        ("RateLimit-Limit", "Requests per window"),
        ("RateLimit-Remaining", "Requests left now"),
        ("RateLimit-Reset", "Seconds until the bucket is full again"),
    ] {
        response
            .headers
            .insert(name.into(), HeaderBuilder::new().schema(integer()).description(Some(description)).build());
    }
    response
}

fn has(operation: &Operation, status: &str) -> bool {
    operation.responses.responses.contains_key(status)
}

fn add(operation: &mut Operation, status: &str, response: Response) {
    if !has(operation, status) {
        operation.responses.responses.insert(status.into(), RefOr::T(response));
    }
}

fn add_shared_answers(operation: &mut Operation) {
    let secured = operation.security.as_ref().is_some_and(|s| !s.is_empty());
    let parameters: Vec<&Parameter> = operation.parameters.iter().flatten().collect();
    let names_a_resource = parameters.iter().any(|p| p.parameter_in == ParameterIn::Path);
    let takes_parameters = !parameters.is_empty();
    let takes_json = operation.request_body.as_ref().is_some_and(|b| b.content.contains_key("application/json"));
    let body_required = operation.request_body.as_ref().is_some_and(|b| b.required == Some(Required::True));
    if takes_parameters || takes_json {
        add(operation, "400", problem("A parameter or the body breaks a rule; the detail names the field"));
    }
    if secured {
        add(operation, "401", problem("`unauthorized`: no token, or one that is unknown, revoked or expired"));
    }
    add(
        operation,
        "403",
        problem(
            "The token lacks the permission (`forbidden`, `namespace_forbidden`), the tenant is suspended \
             (`tenant_suspended`), or the client address is blocked (`ip_blocked`)",
        ),
    );
    if names_a_resource {
        add(operation, "404", problem("A resource of the path does not exist (or belongs to another tenant)"));
    }
    if takes_json || body_required {
        add(operation, "413", problem("`payload_too_large`: the body is over the size limit"));
        add(operation, "415", problem("`unsupported_media_type`: the body is not `application/json`"));
    }
    add(operation, "429", rate_limited());
    add(operation, "503", problem("`unavailable`: a store the answer needs is unavailable; try again"));
}

/// The routes of the document, to answer a known path asked with another method: 405 with
/// `Allow` instead of 404 (built once at start from the document, so it cannot drift).
pub struct RouteTable {
    /// Each path's matcher, how many parameters it has, and its methods.
    routes: Vec<(regex::Regex, usize, Vec<&'static str>)>,
}

impl RouteTable {
    /// The routes of `openapi`.
    pub fn new(openapi: &OpenApi) -> Self {
        let routes = openapi
            .paths
            .paths
            .iter()
            .filter_map(|(path, item)| {
                // `{name}` matches one path segment; everything else is literal.
                let mut pattern = String::from("^");
                for (i, part) in path.split('{').enumerate() {
                    let literal = if i == 0 {
                        part
                    } else {
                        pattern.push_str("[^/]+");
                        part.split_once('}').map_or("", |(_, rest)| rest)
                    };
                    pattern.push_str(&regex::escape(literal));
                }
                pattern.push('$');
                let methods: Vec<&'static str> = [
                    ("GET", item.get.is_some()),
                    ("PUT", item.put.is_some()),
                    ("POST", item.post.is_some()),
                    ("DELETE", item.delete.is_some()),
                    ("PATCH", item.patch.is_some()),
                ]
                .into_iter()
                .filter_map(|(method, present)| present.then_some(method))
                .collect();
                Some((regex::Regex::new(&pattern).ok()?, path.matches('{').count(), methods))
            })
            .collect();
        Self { routes }
    }

    /// The methods of `path`, when the document has it. A path matched by several templates is
    /// the most literal one's (`/runs/cancel-all` is not `/runs/{run}`).
    pub fn methods(&self, path: &str) -> Option<Vec<&'static str>> {
        let matching = || self.routes.iter().filter(|(re, _, _)| re.is_match(path));
        let fewest = matching().map(|(_, parameters, _)| *parameters).min()?;
        let mut methods: Vec<&'static str> = matching()
            .filter(|(_, parameters, _)| *parameters == fewest)
            .flat_map(|(_, _, methods)| methods.iter().copied())
            .collect();
        methods.sort_unstable();
        methods.dedup();
        (!methods.is_empty()).then_some(methods)
    }
}

/// The answer for a request no route took: 405 with `Allow` on a known path, else 404.
pub fn no_route(routes: &RouteTable, method: &str, path: &str) -> crate::error::ApiError {
    match routes.methods(path) {
        Some(methods) => {
            crate::error::ApiError::MethodNotAllowed { method: method.to_owned(), allow: methods.join(", ") }
        }
        None => crate::error::ApiError::NotFound { code: "route_not_found", detail: "no such route".into() },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_known_path_with_another_method_lists_its_methods_and_others_are_not_found() {
        let routes = RouteTable::new(crate::openapi::document());
        assert_eq!(routes.methods("/api/v1/namespaces"), Some(vec!["GET", "POST"]));
        assert!(
            routes.methods("/api/v1/namespaces/builds").is_some_and(|m| m.contains(&"GET") && !m.contains(&"POST"))
        );
        let answer = no_route(&routes, "PATCH", "/api/v1/namespaces");
        assert!(
            matches!(&answer, crate::error::ApiError::MethodNotAllowed { allow, .. } if allow == "GET, POST"),
            "{answer:?}"
        );
        assert!(matches!(no_route(&routes, "GET", "/api/v1/nothing/here"), crate::error::ApiError::NotFound { .. }));
        assert!(routes.methods("/api/v1/namespaces/a/b").is_none(), "a segment too many is no path of the document");
        // The literal path wins over the template that also matches it.
        assert_eq!(routes.methods("/api/v1/tokens/whoami"), Some(vec!["GET"]));
        assert_eq!(routes.methods("/api/v1/namespaces/a00/pipelines/a00/runs/cancel-all"), Some(vec!["POST"]));
    }

    #[test]
    fn every_operation_but_the_probes_documents_the_shared_answers() {
        let doc = crate::openapi::document().clone();
        for (path, item) in &doc.paths.paths {
            for operation in [&item.get, &item.put, &item.post, &item.delete].into_iter().flatten() {
                let statuses = &operation.responses.responses;
                if path == "/health" || path == "/ready" {
                    continue;
                }
                for status in ["403", "429", "503"] {
                    assert!(statuses.contains_key(status), "{path} lacks {status}");
                }
                if operation.security.as_ref().is_some_and(|s| !s.is_empty()) {
                    assert!(statuses.contains_key("401"), "{path} needs a token and lacks 401");
                }
            }
        }
    }

    #[test]
    fn every_cursor_is_typed_as_its_lists_key() {
        let doc = crate::openapi::document().clone();
        let mut lists = 0;
        for (path, item) in &doc.paths.paths {
            for operation in [&item.get, &item.put, &item.post, &item.delete].into_iter().flatten() {
                for parameter in operation.parameters.iter().flatten().filter(|p| p.name == "cursor") {
                    let schema = serde_json::to_string(&parameter.schema).unwrap();
                    assert!(!schema.contains("UNTYPED") && !schema.contains("null"), "{path}: {schema}");
                    lists += 1;
                }
            }
        }
        assert!(lists >= 17, "{lists} lists");
    }

    #[test]
    fn every_operation_answering_422_is_in_the_document() {
        let doc = crate::openapi::document().clone();
        for (method, path, _) in UNPROCESSABLE {
            let item = doc.paths.paths.get(*path).unwrap_or_else(|| panic!("{path} is not in the document"));
            let operation = match *method {
                "get" => item.get.as_ref(),
                "post" => item.post.as_ref(),
                _ => item.put.as_ref(),
            };
            let operation = operation.unwrap_or_else(|| panic!("{method} {path} is not in the document"));
            assert!(operation.responses.responses.contains_key("422"), "{method} {path}");
        }
    }

    #[test]
    fn the_address_patterns_take_what_the_server_takes_and_nothing_it_refuses() {
        for address in [
            "192.0.2.1",
            "0.0.0.0",
            "::",
            "::1",
            "2001:db8::1",
            "fe80::1:2",
            "::ffff:127.0.0.6",
            "::ffff:0:1.2.3.4",
            "64:ff9b::192.0.2.33",
            "1:2:3:4:5:6:1.2.3.4",
            "1:2:3:4:5:6:7:8",
            "1::",
        ] {
            assert!(IP_ADDRESS.is_match(address), "{address}");
            assert!(address.parse::<std::net::IpAddr>().is_ok(), "{address}");
        }
        for bad in ["", "01.2.3.4", "256.1.1.1", "1.2.3", ":::", "1:2:3:4:5:6:7:8:9", "::g", "fe80::1%eth0", " ::1"] {
            assert!(!IP_ADDRESS.is_match(bad), "{bad}");
        }
        for net in ["10.0.0.0/8", "0.0.0.0/0", "::/0", "2001:db8::/32", "::ffff:10.0.0.0/104"] {
            assert!(CIDR.is_match(net) && net.parse::<ipnet::IpNet>().is_ok(), "{net}");
        }
        for bad in ["10.0.0.0", "10.0.0.0/33", "::/129", "10.0.0.0/08", "/8"] {
            assert!(!CIDR.is_match(bad), "{bad}");
        }
    }
}
