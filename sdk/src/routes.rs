//! Every API operation the client implements, as (method, path template). The client builds each
//! URL from these constants, and a test compares [`ALL`] with `docs/openapi.json`, so a route
//! added to the server without a client method (or the other way round) fails the build's tests.

/// One API operation: an HTTP method and a path template whose `{placeholders}` are filled in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// `GET`, `POST`, `PUT`, `PATCH` or `DELETE`.
    pub method: &'static str,
    /// The path as `docs/openapi.json` writes it.
    pub path: &'static str,
}

macro_rules! routes {
    ($($(#[$doc:meta])* $name:ident = $method:literal $path:literal;)+) => {
        $($(#[$doc])* pub const $name: Route = Route { method: $method, path: $path };)+
        /// Every operation, in the order above.
        pub const ALL: &[Route] = &[$($name),+];
    };
}

routes! {
    /// Liveness.
    HEALTH = "GET" "/health";
    /// Readiness (database reachable).
    READY = "GET" "/ready";
    /// Prometheus metrics of the replica (operator).
    METRICS = "GET" "/metrics";
    /// The OpenAPI document.
    OPENAPI = "GET" "/api/v1/openapi.json";
    /// Events of the tenant, as a page or a live stream.
    LIST_EVENTS = "GET" "/api/v1/events";

    /// Tenants (operator).
    LIST_TENANTS = "GET" "/api/v1/tenants";
    /// Create a tenant and its first admin token.
    CREATE_TENANT = "POST" "/api/v1/tenants";
    /// One tenant.
    GET_TENANT = "GET" "/api/v1/tenants/{tenant}";
    /// Delete a tenant and everything it owns.
    DELETE_TENANT = "DELETE" "/api/v1/tenants/{tenant}";
    /// Give a tenant a plan.
    ASSIGN_PLAN = "PUT" "/api/v1/tenants/{tenant}/plan";
    /// Resume a suspended tenant.
    RESUME_TENANT = "POST" "/api/v1/tenants/{tenant}/resume";
    /// Suspend a tenant.
    SUSPEND_TENANT = "POST" "/api/v1/tenants/{tenant}/suspend";

    /// Tokens visible to the caller.
    LIST_TOKENS = "GET" "/api/v1/tokens";
    /// Create a token.
    CREATE_TOKEN = "POST" "/api/v1/tokens";
    /// The caller's own token.
    WHOAMI = "GET" "/api/v1/tokens/whoami";
    /// One token.
    GET_TOKEN = "GET" "/api/v1/tokens/{id}";
    /// Revoke a token.
    REVOKE_TOKEN = "POST" "/api/v1/tokens/{id}/revoke";

    /// Plans (operator).
    LIST_PLANS = "GET" "/api/v1/plans";
    /// Create a plan.
    CREATE_PLAN = "POST" "/api/v1/plans";
    /// One plan.
    GET_PLAN = "GET" "/api/v1/plans/{plan}";
    /// Replace a plan.
    UPDATE_PLAN = "PUT" "/api/v1/plans/{plan}";
    /// Delete a plan.
    DELETE_PLAN = "DELETE" "/api/v1/plans/{plan}";

    /// Namespaces.
    LIST_NAMESPACES = "GET" "/api/v1/namespaces";
    /// Create a namespace.
    CREATE_NAMESPACE = "POST" "/api/v1/namespaces";
    /// One namespace.
    GET_NAMESPACE = "GET" "/api/v1/namespaces/{namespace}";
    /// Delete a namespace.
    DELETE_NAMESPACE = "DELETE" "/api/v1/namespaces/{namespace}";
    /// Rename or describe a namespace.
    UPDATE_NAMESPACE = "PATCH" "/api/v1/namespaces/{namespace}";

    /// Pipelines of a namespace.
    LIST_PIPELINES = "GET" "/api/v1/namespaces/{namespace}/pipelines";
    /// One pipeline.
    GET_PIPELINE = "GET" "/api/v1/namespaces/{namespace}/pipelines/{pipeline}";
    /// Delete a pipeline.
    DELETE_PIPELINE = "DELETE" "/api/v1/namespaces/{namespace}/pipelines/{pipeline}";
    /// Disable or enable a pipeline.
    UPDATE_PIPELINE = "PATCH" "/api/v1/namespaces/{namespace}/pipelines/{pipeline}";
    /// Config versions.
    LIST_CONFIGS = "GET" "/api/v1/namespaces/{namespace}/pipelines/{pipeline}/configs";
    /// Register a config.
    REGISTER_CONFIG = "POST" "/api/v1/namespaces/{namespace}/pipelines/{pipeline}/configs";
    /// Diff of two config versions.
    DIFF_CONFIGS = "GET" "/api/v1/namespaces/{namespace}/pipelines/{pipeline}/configs/{from}/diff/{to}";
    /// One config version.
    GET_CONFIG = "GET" "/api/v1/namespaces/{namespace}/pipelines/{pipeline}/configs/{version}";
    /// Deployments.
    LIST_DEPLOYMENTS = "GET" "/api/v1/namespaces/{namespace}/pipelines/{pipeline}/deployments";
    /// Deploy a version (immediately or as a canary).
    CREATE_DEPLOYMENT = "POST" "/api/v1/namespaces/{namespace}/pipelines/{pipeline}/deployments";
    /// One deployment.
    GET_DEPLOYMENT = "GET" "/api/v1/namespaces/{namespace}/pipelines/{pipeline}/deployments/{deployment}";
    /// Roll a canary back.
    ROLLBACK_DEPLOYMENT = "POST" "/api/v1/namespaces/{namespace}/pipelines/{pipeline}/deployments/{deployment}/rollback";

    /// Runs of a pipeline.
    LIST_RUNS = "GET" "/api/v1/namespaces/{namespace}/pipelines/{pipeline}/runs";
    /// Start a run.
    START_RUN = "POST" "/api/v1/namespaces/{namespace}/pipelines/{pipeline}/runs";
    /// Cancel every unfinished run.
    CANCEL_ALL_RUNS = "POST" "/api/v1/namespaces/{namespace}/pipelines/{pipeline}/runs/cancel-all";
    /// One run.
    GET_RUN = "GET" "/api/v1/namespaces/{namespace}/pipelines/{pipeline}/runs/{run}";
    /// Cancel a run.
    CANCEL_RUN = "POST" "/api/v1/namespaces/{namespace}/pipelines/{pipeline}/runs/{run}/cancel";
    /// Everything stored about a run that helps debug it.
    RUN_DEBUG = "GET" "/api/v1/namespaces/{namespace}/pipelines/{pipeline}/runs/{run}/debug";
    /// Queue wait and run time per task, and the critical path.
    RUN_TIMELINE = "GET" "/api/v1/namespaces/{namespace}/pipelines/{pipeline}/runs/{run}/timeline";
    /// Task executions of a run.
    LIST_TASKS = "GET" "/api/v1/namespaces/{namespace}/pipelines/{pipeline}/runs/{run}/tasks";
    /// One task execution.
    GET_TASK = "GET" "/api/v1/namespaces/{namespace}/pipelines/{pipeline}/runs/{run}/tasks/{task}";
    /// Every attempt of a task execution.
    LIST_ATTEMPTS = "GET" "/api/v1/namespaces/{namespace}/pipelines/{pipeline}/runs/{run}/tasks/{task}/attempts";
    /// A task execution's log, whole or followed.
    TASK_LOGS = "GET" "/api/v1/namespaces/{namespace}/pipelines/{pipeline}/runs/{run}/tasks/{task}/logs";
    /// Run a command inside a running task (websocket).
    ATTACH_TASK = "GET" "/api/v1/namespaces/{namespace}/pipelines/{pipeline}/runs/{run}/tasks/{task}/attach";

    /// Success rate and durations of a pipeline's runs over the last 7 and 30 days.
    PIPELINE_STATS = "GET" "/api/v1/namespaces/{namespace}/pipelines/{pipeline}/stats";

    /// Secrets of a pipeline (metadata only).
    LIST_PIPELINE_SECRETS = "GET" "/api/v1/namespaces/{namespace}/pipelines/{pipeline}/secrets";
    /// One pipeline secret's metadata.
    GET_PIPELINE_SECRET = "GET" "/api/v1/namespaces/{namespace}/pipelines/{pipeline}/secrets/{key}";
    /// Create or replace a pipeline secret.
    PUT_PIPELINE_SECRET = "PUT" "/api/v1/namespaces/{namespace}/pipelines/{pipeline}/secrets/{key}";
    /// Delete a pipeline secret.
    DELETE_PIPELINE_SECRET = "DELETE" "/api/v1/namespaces/{namespace}/pipelines/{pipeline}/secrets/{key}";
    /// Global secrets of the tenant (metadata only).
    LIST_GLOBAL_SECRETS = "GET" "/api/v1/secrets";
    /// One global secret's metadata.
    GET_GLOBAL_SECRET = "GET" "/api/v1/secrets/{key}";
    /// Create or replace a global secret and its namespace grants.
    PUT_GLOBAL_SECRET = "PUT" "/api/v1/secrets/{key}";
    /// Delete a global secret.
    DELETE_GLOBAL_SECRET = "DELETE" "/api/v1/secrets/{key}";

    /// Objects of a pipeline (metadata).
    LIST_PIPELINE_OBJECTS = "GET" "/api/v1/namespaces/{namespace}/pipelines/{pipeline}/objects";
    /// A pipeline object's content.
    GET_PIPELINE_OBJECT = "GET" "/api/v1/namespaces/{namespace}/pipelines/{pipeline}/objects/{key}";
    /// Write a pipeline object.
    PUT_PIPELINE_OBJECT = "PUT" "/api/v1/namespaces/{namespace}/pipelines/{pipeline}/objects/{key}";
    /// Delete a pipeline object.
    DELETE_PIPELINE_OBJECT = "DELETE" "/api/v1/namespaces/{namespace}/pipelines/{pipeline}/objects/{key}";
    /// Objects of a run (metadata).
    LIST_RUN_OBJECTS = "GET" "/api/v1/namespaces/{namespace}/pipelines/{pipeline}/runs/{run}/objects";
    /// A run object's content.
    GET_RUN_OBJECT = "GET" "/api/v1/namespaces/{namespace}/pipelines/{pipeline}/runs/{run}/objects/{key}";
    /// Write a run object.
    PUT_RUN_OBJECT = "PUT" "/api/v1/namespaces/{namespace}/pipelines/{pipeline}/runs/{run}/objects/{key}";
    /// Delete a run object.
    DELETE_RUN_OBJECT = "DELETE" "/api/v1/namespaces/{namespace}/pipelines/{pipeline}/runs/{run}/objects/{key}";

    /// The caller's tenant's usage.
    USAGE = "GET" "/api/v1/usage";
    /// A tenant's usage, JSON or CSV (operator).
    TENANT_USAGE = "GET" "/api/v1/tenants/{tenant}/usage";
    /// A proof-of-work challenge for a trial sign-up.
    TRIAL_CHALLENGE = "POST" "/api/v1/trial/challenges";
    /// Start an anonymous trial.
    START_TRIAL = "POST" "/api/v1/trial";
    /// Move a trial tenant to a paid plan (operator).
    CONVERT_TENANT = "POST" "/api/v1/tenants/{tenant}/convert";
    /// Blocked client addresses (operator).
    LIST_IP_BLOCKS = "GET" "/api/v1/ip-blocks";
    /// Block a client address.
    CREATE_IP_BLOCK = "POST" "/api/v1/ip-blocks";
    /// Lift a block.
    DELETE_IP_BLOCK = "DELETE" "/api/v1/ip-blocks/{address}";
}

impl Route {
    /// The path with its placeholders replaced by `args`, in order.
    ///
    /// # Panics
    /// When the number of arguments differs from the number of placeholders: a bug in the client.
    pub fn fill(&self, args: &[&dyn std::fmt::Display]) -> String {
        let mut out = String::with_capacity(self.path.len() + 32);
        let mut rest = self.path;
        let mut args = args.iter();
        while let Some(open) = rest.find('{') {
            out.push_str(&rest[..open]);
            let close = rest[open..].find('}').map(|c| open + c).unwrap_or(rest.len() - 1);
            let arg = args.next().unwrap_or_else(|| panic!("{}: too few arguments", self.path));
            out.push_str(&arg.to_string());
            rest = &rest[close + 1..];
        }
        out.push_str(rest);
        assert!(args.next().is_none(), "{}: too many arguments", self.path);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_route_is_filled_in_order() {
        assert_eq!(GET_TASK.fill(&[&"ns", &"p", &7, &"build"]), "/api/v1/namespaces/ns/pipelines/p/runs/7/tasks/build");
        assert_eq!(HEALTH.fill(&[]), "/health");
    }
}
