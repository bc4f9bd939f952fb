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
pub const IDENTIFIER_PATTERN: &str = "^[a-z][a-z0-9_-]{2,63}$";

/// Path parameters holding an identifier.
const IDENTIFIER_PARAMETERS: &[&str] = &["namespace", "pipeline", "task", "tenant", "plan"];

/// Path parameters holding a number that starts at 1.
const NUMBER_PARAMETERS: &[&str] = &["run", "deployment", "version", "from", "to"];

/// A secret's key (`gofer_core::secrets::SecretKey`).
const SECRET_KEY_PATTERN: &str = "^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$";

/// An object's key (`gofer_core::objects::ObjectKey`): segments of letters, digits, `.`, `_` and
/// `-` between `/`, none of them `.` or `..`.
const OBJECT_KEY_PATTERN: &str = r"^(?!\.{1,2}(/|$))(?!.*/\.{1,2}(/|$))[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$";

/// Adds the shared answers and parameter rules to every operation.
pub struct Contract;

impl Modify for Contract {
    fn modify(&self, openapi: &mut OpenApi) {
        for (path, item) in openapi.paths.paths.iter_mut() {
            let probe = path == "/health" || path == "/ready";
            for operation in
                [item.get.as_mut(), item.put.as_mut(), item.post.as_mut(), item.delete.as_mut(), item.patch.as_mut()]
                    .into_iter()
                    .flatten()
            {
                type_parameters(path, operation);
                if !probe {
                    add_shared_answers(operation);
                }
            }
        }
    }
}

fn identifier_schema() -> Schema {
    Schema::Object(
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(SchemaType::Type(Type::String))
            .pattern(Some(IDENTIFIER_PATTERN))
            .min_length(Some(3))
            .max_length(Some(64))
            .build(),
    )
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
            ParameterIn::Query if name == "limit" => page_limit_schema(),
            ParameterIn::Query if IDENTIFIER_PARAMETERS.contains(&name) => identifier_schema(),
            _ => continue,
        };
        parameter.schema = Some(RefOr::T(schema));
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
        let routes = RouteTable::new(&<crate::openapi::ApiDoc as utoipa::OpenApi>::openapi());
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
        let doc = <crate::openapi::ApiDoc as utoipa::OpenApi>::openapi();
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
}
