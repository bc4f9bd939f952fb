//! Runs that start runs: a run started with a run token (a `kind: gofer` task) records the chain
//! of runs that led to it, and [`admit`] decides, from that chain alone, whether it may start.
//! Without it `A → B → A` pipelines would start each other forever.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{NamespaceId, PipelineId, RunId};

/// One run of a chain: a run whose task started the next one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RunAncestor {
    /// Namespace of the run's pipeline.
    pub namespace_id: NamespaceId,
    /// The run's pipeline.
    pub pipeline_id: PipelineId,
    /// The run's number.
    pub run_id: RunId,
}

impl RunAncestor {
    /// Whether this run is of `namespace`/`pipeline`.
    pub fn is_of(&self, namespace: &NamespaceId, pipeline: &PipelineId) -> bool {
        self.namespace_id == *namespace && self.pipeline_id == *pipeline
    }
}

impl fmt::Display for RunAncestor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}#{}", self.namespace_id, self.pipeline_id, self.run_id)
    }
}

/// Why a run may not start from its chain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainRefusal {
    /// The pipeline already has a run in the chain: starting it would loop.
    #[error("{}: pipeline {namespace}/{pipeline} is already in this chain", shown(chain, namespace, pipeline))]
    Loop {
        /// The chain that led to the start, oldest first.
        chain: Vec<RunAncestor>,
        /// The namespace of the pipeline asked for.
        namespace: NamespaceId,
        /// The pipeline asked for.
        pipeline: PipelineId,
    },
    /// The chain already holds as many runs as runs may nest.
    #[error(
        "{}: the run would have {} runs before it in its chain; at most {max_depth} may be",
        shown(chain, namespace, pipeline),
        chain.len()
    )]
    TooDeep {
        /// The chain that led to the start, oldest first.
        chain: Vec<RunAncestor>,
        /// The namespace of the pipeline asked for.
        namespace: NamespaceId,
        /// The pipeline asked for.
        pipeline: PipelineId,
        /// The limit.
        max_depth: u32,
    },
}

impl ChainRefusal {
    /// The stable code of the problem: `run_chain_loop` or `run_chain_too_deep`.
    pub fn code(&self) -> &'static str {
        match self {
            ChainRefusal::Loop { .. } => "run_chain_loop",
            ChainRefusal::TooDeep { .. } => "run_chain_too_deep",
        }
    }
}

/// `ns/a#3 → ns/b#7 → ns/a`: the chain, then the pipeline asked for.
fn shown(chain: &[RunAncestor], namespace: &NamespaceId, pipeline: &PipelineId) -> String {
    let runs = chain.iter().map(ToString::to_string);
    runs.chain(std::iter::once(format!("{namespace}/{pipeline}"))).collect::<Vec<_>>().join(" → ")
}

/// Decides whether a run of `namespace`/`pipeline` may start, `chain` being the runs that led to
/// it, oldest first (empty when a user started it). It may not when the pipeline already has a
/// run in the chain (its own run starting it included), nor when the chain already holds more
/// than `max_depth` runs: with 5, a user's run may start a run, which may start one, … down to a
/// run with 5 runs before it, which may start no more.
pub fn admit(
    chain: &[RunAncestor],
    namespace: &NamespaceId,
    pipeline: &PipelineId,
    max_depth: u32,
) -> Result<(), ChainRefusal> {
    if chain.iter().any(|run| run.is_of(namespace, pipeline)) {
        return Err(ChainRefusal::Loop {
            chain: chain.to_vec(),
            namespace: namespace.clone(),
            pipeline: pipeline.clone(),
        });
    }
    if chain.len() > usize::try_from(max_depth).unwrap_or(usize::MAX) {
        return Err(ChainRefusal::TooDeep {
            chain: chain.to_vec(),
            namespace: namespace.clone(),
            pipeline: pipeline.clone(),
            max_depth,
        });
    }
    Ok(())
}

/// The chain of a run started by `parent`, whose own chain is `parent_chain`.
pub fn extended(parent_chain: &[RunAncestor], parent: RunAncestor) -> Vec<RunAncestor> {
    let mut chain = Vec::with_capacity(parent_chain.len() + 1);
    chain.extend_from_slice(parent_chain);
    chain.push(parent);
    chain
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns() -> NamespaceId {
        NamespaceId::parse("builds").unwrap()
    }

    fn p(id: &str) -> PipelineId {
        PipelineId::parse(id).unwrap()
    }

    fn run(pipeline: &str, n: i64) -> RunAncestor {
        RunAncestor { namespace_id: ns(), pipeline_id: p(pipeline), run_id: RunId::from_i64(n) }
    }

    #[test]
    fn a_run_started_by_a_user_is_admitted_whatever_the_limit() {
        assert_eq!(admit(&[], &ns(), &p("alpha"), 5), Ok(()));
        assert_eq!(admit(&[], &ns(), &p("alpha"), 0), Ok(()));
    }

    #[test]
    fn a_pipeline_may_not_start_itself() {
        let refused = admit(&[run("alpha", 3)], &ns(), &p("alpha"), 5).unwrap_err();
        assert_eq!(refused.code(), "run_chain_loop");
        assert_eq!(
            refused.to_string(),
            "builds/alpha#3 → builds/alpha: pipeline builds/alpha is already in this chain"
        );
    }

    #[test]
    fn a_pipeline_anywhere_in_the_chain_is_a_loop_and_the_detail_names_the_chain() {
        let chain = [run("alpha", 3), run("beta", 7)];
        let refused = admit(&chain, &ns(), &p("alpha"), 5).unwrap_err();
        assert_eq!(refused.code(), "run_chain_loop");
        assert_eq!(
            refused.to_string(),
            "builds/alpha#3 → builds/beta#7 → builds/alpha: pipeline builds/alpha is already in this chain"
        );
        assert_eq!(admit(&chain, &ns(), &p("gamma"), 5), Ok(()), "a pipeline not in it is admitted");
    }

    #[test]
    fn the_same_pipeline_name_in_another_namespace_is_not_a_loop() {
        let other = NamespaceId::parse("other").unwrap();
        assert_eq!(admit(&[run("alpha", 1)], &other, &p("alpha"), 5), Ok(()));
    }

    #[test]
    fn a_chain_may_hold_up_to_the_limit_and_not_one_more() {
        let pipelines = ["step1", "step2", "step3", "step4", "step5", "step6"];
        let chain: Vec<_> = pipelines.iter().zip(1..).map(|(name, n)| run(name, n)).collect();
        assert_eq!(admit(&chain[..5], &ns(), &p("next"), 5), Ok(()), "five before it: admitted");
        let refused = admit(&chain, &ns(), &p("next"), 5).unwrap_err();
        assert_eq!(refused.code(), "run_chain_too_deep");
        assert_eq!(
            refused.to_string(),
            "builds/step1#1 → builds/step2#2 → builds/step3#3 → builds/step4#4 → builds/step5#5 → builds/step6#6 → \
             builds/next: the run would have 6 runs before it in its chain; at most 5 may be"
        );
    }

    #[test]
    fn a_limit_of_zero_lets_no_run_start_a_run() {
        assert_eq!(admit(&[run("alpha", 1)], &ns(), &p("beta"), 0).unwrap_err().code(), "run_chain_too_deep");
    }

    #[test]
    fn a_loop_is_named_before_the_depth() {
        let chain = [run("alpha", 1), run("beta", 1), run("gamma", 1)];
        assert_eq!(admit(&chain, &ns(), &p("beta"), 1).unwrap_err().code(), "run_chain_loop");
    }

    #[test]
    fn the_chain_of_a_started_run_is_its_parents_chain_then_its_parent() {
        assert_eq!(extended(&[run("alpha", 3)], run("beta", 7)), vec![run("alpha", 3), run("beta", 7)]);
        assert_eq!(extended(&[], run("alpha", 1)), vec![run("alpha", 1)]);
    }

    #[test]
    fn an_ancestor_reads_and_writes_as_the_runs_fields_name_it() {
        let json = serde_json::to_value(run("alpha", 3)).unwrap();
        assert_eq!(json, serde_json::json!({"namespace_id": "builds", "pipeline_id": "alpha", "run_id": 3}));
        assert_eq!(serde_json::from_value::<RunAncestor>(json).unwrap(), run("alpha", 3));
    }
}
