//! Key-binding helpers: a tenant-scoped key binds its columns in one call, in the order every
//! query numbers them (tenant, namespace, pipeline, then run, task or deployment), instead of a
//! hand-written chain of five `.bind`s per query.

use gofer_core::keys::{DeploymentKey, PipelineKey, RunKey, TaskKey};
use sqlx::postgres::PgArguments;
use sqlx::query::{Query, QueryAs, QueryScalar};
use sqlx::{Encode, Postgres, Type};

/// A key whose columns a query binds together: the next parameters, in this order.
pub trait KeyColumns {
    /// Binds the key's columns as the query's next parameters.
    fn bind_columns<'q, Q: BindKey<'q>>(&'q self, query: Q) -> Q;
}

/// A Postgres query that takes parameters: sqlx's `Query`, `QueryAs` and `QueryScalar`.
pub trait BindKey<'q>: Sized {
    /// Binds one value as the next parameter (the query's own `bind`).
    fn bind_value<T: 'q + Encode<'q, Postgres> + Type<Postgres>>(self, value: T) -> Self;

    /// Binds a key's columns as the next parameters (`$1`..`$3` for a pipeline, `$1`..`$4` for a
    /// run, `$1`..`$5` for a task when it comes first).
    fn bind_key<K: KeyColumns + ?Sized>(self, key: &'q K) -> Self {
        key.bind_columns(self)
    }
}

impl<'q> BindKey<'q> for Query<'q, Postgres, PgArguments> {
    fn bind_value<T: 'q + Encode<'q, Postgres> + Type<Postgres>>(self, value: T) -> Self {
        self.bind(value)
    }
}

impl<'q, O> BindKey<'q> for QueryAs<'q, Postgres, O, PgArguments> {
    fn bind_value<T: 'q + Encode<'q, Postgres> + Type<Postgres>>(self, value: T) -> Self {
        self.bind(value)
    }
}

impl<'q, O> BindKey<'q> for QueryScalar<'q, Postgres, O, PgArguments> {
    fn bind_value<T: 'q + Encode<'q, Postgres> + Type<Postgres>>(self, value: T) -> Self {
        self.bind(value)
    }
}

impl KeyColumns for PipelineKey {
    fn bind_columns<'q, Q: BindKey<'q>>(&'q self, query: Q) -> Q {
        query.bind_value(self.tenant.as_str()).bind_value(self.namespace.as_str()).bind_value(self.pipeline.as_str())
    }
}

impl KeyColumns for RunKey {
    fn bind_columns<'q, Q: BindKey<'q>>(&'q self, query: Q) -> Q {
        query.bind_key(&self.pipeline).bind_value(self.run.get())
    }
}

impl KeyColumns for TaskKey {
    fn bind_columns<'q, Q: BindKey<'q>>(&'q self, query: Q) -> Q {
        query.bind_key(&self.run).bind_value(self.task.as_str())
    }
}

impl KeyColumns for DeploymentKey {
    fn bind_columns<'q, Q: BindKey<'q>>(&'q self, query: Q) -> Q {
        query.bind_key(&self.pipeline).bind_value(self.deployment.get())
    }
}
