//! depends_on conditions and the DAG: when a waiting task may start, must be skipped, or keeps waiting.

use std::collections::{BTreeMap, BTreeSet};

use crate::TaskId;
use crate::state::{TaskState, TaskStatus};

crate::state::wire_enum!(
    /// What a task requires of one parent before it runs.
    Condition {
        /// The parent must end `successful`.
        Success => "success",
        /// The parent must end `failed`.
        Failure => "failure",
        /// The parent must finish, whatever its status.
        Any => "any",
    }
);

impl Condition {
    /// Whether a parent that finished with `status` satisfies this condition.
    pub fn holds_for(self, status: TaskStatus) -> bool {
        match self {
            Condition::Success => status == TaskStatus::Successful,
            Condition::Failure => status == TaskStatus::Failed,
            Condition::Any => status != TaskStatus::Unknown,
        }
    }
}

/// What to do with a waiting task, given its parents' states.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    /// Some parent is not complete yet.
    Wait,
    /// Every condition holds: queue it.
    Ready,
    /// A condition can never hold: skip it, saying which parent and why.
    Skip {
        /// The parent whose outcome broke the condition.
        parent: TaskId,
        /// What was required of it.
        required: Condition,
        /// What it ended with.
        actual: TaskStatus,
    },
}

/// Decides a waiting task's fate. `parent` looks up a parent's (state, status);
/// a parent it cannot find counts as not complete (config validation rules that out).
pub fn readiness(
    depends_on: &BTreeMap<TaskId, Condition>,
    parent: impl Fn(&TaskId) -> Option<(TaskState, TaskStatus)>,
) -> Readiness {
    let mut all_complete = true;
    for (parent_id, condition) in depends_on {
        match parent(parent_id) {
            Some((TaskState::Complete, status)) => {
                if !condition.holds_for(status) {
                    return Readiness::Skip { parent: parent_id.clone(), required: *condition, actual: status };
                }
            }
            _ => all_complete = false,
        }
    }
    if all_complete { Readiness::Ready } else { Readiness::Wait }
}

/// Finds a dependency cycle, returning the task ids on it in order, or `None` for a DAG.
pub fn find_cycle(edges: &BTreeMap<TaskId, Vec<TaskId>>) -> Option<Vec<TaskId>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Visiting,
        Done,
    }
    fn visit(
        node: &TaskId,
        edges: &BTreeMap<TaskId, Vec<TaskId>>,
        marks: &mut BTreeMap<TaskId, Mark>,
        stack: &mut Vec<TaskId>,
    ) -> Option<Vec<TaskId>> {
        match marks.get(node) {
            Some(Mark::Done) => return None,
            Some(Mark::Visiting) => {
                let start = stack.iter().position(|n| n == node).unwrap_or(0);
                let mut cycle = stack[start..].to_vec();
                cycle.push(node.clone());
                return Some(cycle);
            }
            None => {}
        }
        marks.insert(node.clone(), Mark::Visiting);
        stack.push(node.clone());
        for next in edges.get(node).map(Vec::as_slice).unwrap_or(&[]) {
            if let Some(cycle) = visit(next, edges, marks, stack) {
                return Some(cycle);
            }
        }
        stack.pop();
        marks.insert(node.clone(), Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    let mut stack = Vec::new();
    let nodes: BTreeSet<&TaskId> = edges.keys().collect();
    for node in nodes {
        if let Some(cycle) = visit(node, edges, &mut marks, &mut stack) {
            return Some(cycle);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> TaskId {
        TaskId::parse(s).unwrap()
    }

    #[test]
    fn conditions() {
        assert!(Condition::Success.holds_for(TaskStatus::Successful));
        assert!(!Condition::Success.holds_for(TaskStatus::Failed));
        assert!(!Condition::Success.holds_for(TaskStatus::Skipped));
        assert!(Condition::Failure.holds_for(TaskStatus::Failed));
        assert!(!Condition::Failure.holds_for(TaskStatus::Successful));
        assert!(Condition::Any.holds_for(TaskStatus::Skipped));
        assert!(Condition::Any.holds_for(TaskStatus::Failed));
    }

    #[test]
    fn readiness_waits_then_decides() {
        let deps = BTreeMap::from([(id("aaa"), Condition::Success), (id("bbb"), Condition::Any)]);
        let waiting =
            readiness(&deps, |p| (p.as_str() == "aaa").then_some((TaskState::Complete, TaskStatus::Successful)));
        assert_eq!(waiting, Readiness::Wait);
        let ready = readiness(&deps, |_| Some((TaskState::Complete, TaskStatus::Successful)));
        assert_eq!(ready, Readiness::Ready);
        let skipped = readiness(&deps, |p| {
            Some((TaskState::Complete, if p.as_str() == "aaa" { TaskStatus::Failed } else { TaskStatus::Successful }))
        });
        assert_eq!(
            skipped,
            Readiness::Skip { parent: id("aaa"), required: Condition::Success, actual: TaskStatus::Failed }
        );
        // A broken condition skips at once, without waiting for the other parents.
        let early = readiness(&deps, |p| (p.as_str() == "aaa").then_some((TaskState::Complete, TaskStatus::Failed)));
        assert!(matches!(early, Readiness::Skip { .. }));
    }

    #[test]
    fn cycles_are_found() {
        let dag = BTreeMap::from([
            (id("aaa"), vec![]),
            (id("bbb"), vec![id("aaa")]),
            (id("ccc"), vec![id("aaa"), id("bbb")]),
        ]);
        assert_eq!(find_cycle(&dag), None);
        let cyclic =
            BTreeMap::from([(id("aaa"), vec![id("ccc")]), (id("bbb"), vec![id("aaa")]), (id("ccc"), vec![id("bbb")])]);
        let cycle = find_cycle(&cyclic).unwrap();
        assert_eq!(cycle.first(), cycle.last());
        assert_eq!(cycle.len(), 4);
        let self_loop = BTreeMap::from([(id("aaa"), vec![id("aaa")])]);
        assert_eq!(find_cycle(&self_loop).unwrap(), vec![id("aaa"), id("aaa")]);
    }
}
