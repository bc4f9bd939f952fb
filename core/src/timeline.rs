//! A run's timeline: per task, how long it waited in the queue once ready and how long it ran,
//! and the critical path (the chain of tasks that decided when the run ended). Pure: the API
//! gathers the timestamps, this computes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::id::{RunId, TaskId};
use crate::model::{TaskAttempt, TaskExecution};
use crate::state::{RunStatus, TaskState, TaskStatus};

/// One task execution on the run's timeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TaskTimeline {
    /// The task.
    pub task_id: TaskId,
    /// Where it is in its life.
    pub state: TaskState,
    /// How it ended.
    pub status: TaskStatus,
    /// Its parents.
    pub depends_on: Vec<TaskId>,
    /// When it could start: its creation, or its last parent's end.
    #[serde(with = "time::serde::rfc3339::option")]
    pub ready: Option<OffsetDateTime>,
    /// When its first attempt was dispatched.
    #[serde(with = "time::serde::rfc3339::option")]
    pub started: Option<OffsetDateTime>,
    /// When it completed.
    #[serde(with = "time::serde::rfc3339::option")]
    pub ended: Option<OffsetDateTime>,
    /// Seconds from ready to dispatched (waiting for capacity, quota, the scheduler).
    pub queue_wait_s: Option<f64>,
    /// Seconds from dispatched to ended (or to now, while it runs), retries included.
    pub run_s: Option<f64>,
    /// How many attempts it took.
    pub attempts: u32,
    /// Whether it is on the critical path.
    pub critical: bool,
}

/// A run's timeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RunTimeline {
    /// The run.
    pub run_id: RunId,
    /// How it ended (`unknown` until complete).
    pub status: RunStatus,
    /// When the run was created: the origin of the chart.
    #[serde(with = "time::serde::rfc3339")]
    pub created: OffsetDateTime,
    /// When it completed.
    #[serde(with = "time::serde::rfc3339::option")]
    pub ended: Option<OffsetDateTime>,
    /// Seconds from creation to end (or to now).
    pub total_s: f64,
    /// Tasks in dependency order (parents first), then by id.
    pub tasks: Vec<TaskTimeline>,
    /// The critical path, first task first: each task's latest-ending parent, back from the task
    /// that ended last.
    pub critical_path: Vec<TaskId>,
}

/// One task as the timeline needs it.
#[derive(Debug, Clone)]
pub struct TimelineTask {
    /// The execution.
    pub execution: TaskExecution,
    /// Its attempts (empty when it never ran).
    pub attempts: Vec<TaskAttempt>,
    /// Its parents from the run's config version.
    pub depends_on: Vec<TaskId>,
}

fn seconds(from: OffsetDateTime, to: OffsetDateTime) -> f64 {
    (to - from).as_seconds_f64().max(0.0)
}

/// Computes the timeline of a run created at `created` (ended at `ended`), as of `now`.
pub fn timeline(
    run_id: RunId,
    status: RunStatus,
    created: OffsetDateTime,
    ended: Option<OffsetDateTime>,
    tasks: Vec<TimelineTask>,
    now: OffsetDateTime,
) -> RunTimeline {
    let by_id: BTreeMap<TaskId, &TimelineTask> = tasks.iter().map(|t| (t.execution.task_id.clone(), t)).collect();
    let end_of = |id: &TaskId| by_id.get(id).and_then(|t| t.execution.ended);

    // Dependency order: depth (longest chain of parents), then id.
    let mut depth: BTreeMap<TaskId, usize> = BTreeMap::new();
    fn depth_of(id: &TaskId, by_id: &BTreeMap<TaskId, &TimelineTask>, memo: &mut BTreeMap<TaskId, usize>) -> usize {
        if let Some(d) = memo.get(id) {
            return *d;
        }
        // Configs are acyclic (validated), so this terminates; an unknown parent counts as a root.
        memo.insert(id.clone(), 0);
        let d = by_id
            .get(id)
            .map(|t| t.depends_on.iter().map(|p| depth_of(p, by_id, memo) + 1).max().unwrap_or(0))
            .unwrap_or(0);
        memo.insert(id.clone(), d);
        d
    }
    for id in by_id.keys() {
        depth_of(id, &by_id, &mut depth);
    }

    let mut rows: Vec<TaskTimeline> = tasks
        .iter()
        .map(|t| {
            let e = &t.execution;
            let parents_end = t.depends_on.iter().map(end_of).collect::<Option<Vec<_>>>();
            // None while a parent has not ended: not ready yet (or skipped when it ended).
            let ready = parents_end.map(|ends| ends.into_iter().fold(e.created, |a, b| a.max(b)));
            let started = t.attempts.iter().map(|a| a.started).min().or(e.started);
            TaskTimeline {
                task_id: e.task_id.clone(),
                state: e.state,
                status: e.status,
                depends_on: t.depends_on.clone(),
                ready,
                started,
                ended: e.ended,
                queue_wait_s: match (ready, started) {
                    (Some(r), Some(s)) => Some(seconds(r, s)),
                    (Some(r), None) if e.ended.is_none() => Some(seconds(r, now)),
                    _ => None,
                },
                run_s: started.map(|s| seconds(s, e.ended.unwrap_or(now))),
                attempts: t.attempts.len() as u32,
                critical: false,
            }
        })
        .collect();
    rows.sort_by(|a, b| depth[&a.task_id].cmp(&depth[&b.task_id]).then_with(|| a.task_id.cmp(&b.task_id)));

    let critical_path = critical_path(&rows, now);
    for row in &mut rows {
        row.critical = critical_path.contains(&row.task_id);
    }
    RunTimeline {
        run_id,
        status,
        created,
        ended,
        total_s: seconds(created, ended.unwrap_or(now)),
        tasks: rows,
        critical_path,
    }
}

/// Back from the task that ended last (a running task counts as ending now), through each task's
/// latest-ending parent. Tasks that never ran are not on it.
fn critical_path(rows: &[TaskTimeline], now: OffsetDateTime) -> Vec<TaskId> {
    let finish = |r: &TaskTimeline| r.started.map(|_| r.ended.unwrap_or(now));
    let by_id: BTreeMap<&TaskId, &TaskTimeline> = rows.iter().map(|r| (&r.task_id, r)).collect();
    let last = rows
        .iter()
        .filter_map(|r| finish(r).map(|f| (f, r)))
        .max_by(|a, b| a.0.cmp(&b.0).then_with(|| b.1.task_id.cmp(&a.1.task_id)));
    let mut path = Vec::new();
    let mut current = last.map(|(_, r)| r);
    while let Some(row) = current {
        path.push(row.task_id.clone());
        current = row
            .depends_on
            .iter()
            .filter_map(|p| by_id.get(p).copied())
            .filter_map(|p| finish(p).map(|f| (f, p)))
            .max_by(|a, b| a.0.cmp(&b.0).then_with(|| b.1.task_id.cmp(&a.1.task_id)))
            .map(|(_, p)| p);
    }
    path.reverse();
    path
}

#[cfg(test)]
mod tests {
    use time::Duration;

    use super::*;
    use crate::model::TaskExecution;

    fn at(s: i64) -> OffsetDateTime {
        OffsetDateTime::UNIX_EPOCH + Duration::seconds(1_000_000 + s)
    }

    fn task(id: &str, parents: &[&str], started: Option<i64>, ended: Option<i64>) -> TimelineTask {
        let id = TaskId::parse(id).expect("id");
        let attempts = started
            .map(|s| TaskAttempt {
                attempt: 1,
                scheduler_id: format!("job-{id}"),
                node: None,
                state: if ended.is_some() { TaskState::Complete } else { TaskState::Running },
                status: TaskStatus::Unknown,
                status_reason: None,
                exit_code: None,
                retried: false,
                started: at(s),
                ended: ended.map(at),
            })
            .into_iter()
            .collect();
        TimelineTask {
            execution: TaskExecution {
                run_id: RunId::from_i64(1),
                task_id: id,
                image: "x".into(),
                attempt: 1,
                state: if ended.is_some() { TaskState::Complete } else { TaskState::Running },
                waiting_reason: None,
                status: if ended.is_some() { TaskStatus::Successful } else { TaskStatus::Unknown },
                status_reason: None,
                exit_code: None,
                scheduler_id: None,
                node: None,
                deadline: None,
                created: at(0),
                started: started.map(at),
                ended: ended.map(at),
            },
            attempts,
            depends_on: parents.iter().map(|p| TaskId::parse(*p).expect("parent")).collect(),
        }
    }

    #[test]
    fn queue_wait_counts_from_the_last_parent_end_and_the_slowest_chain_is_critical() {
        // lint (0-2) and test (1-10) feed build (queued until 13, runs to 20); docs (0-5) is alone.
        let tasks = vec![
            task("build", &["lint", "test"], Some(13), Some(20)),
            task("docs", &[], Some(0), Some(5)),
            task("lint", &[], Some(0), Some(2)),
            task("test", &[], Some(1), Some(10)),
        ];
        let t = timeline(RunId::from_i64(1), RunStatus::Successful, at(0), Some(at(20)), tasks, at(30));
        assert_eq!(t.critical_path, ["test", "build"].map(|i| TaskId::parse(i).expect("id")).to_vec());
        let build = t.tasks.iter().find(|r| r.task_id.as_str() == "build").expect("build");
        assert_eq!((build.ready, build.queue_wait_s, build.run_s), (Some(at(10)), Some(3.0), Some(7.0)));
        assert!(build.critical);
        let test = t.tasks.iter().find(|r| r.task_id.as_str() == "test").expect("test");
        assert_eq!((test.queue_wait_s, test.run_s), (Some(1.0), Some(9.0)));
        assert_eq!(t.total_s, 20.0);
        // Parents come before their children.
        assert_eq!(t.tasks.last().map(|r| r.task_id.as_str()), Some("build"));
    }

    #[test]
    fn a_running_task_counts_until_now_and_a_waiting_child_is_not_ready() {
        let tasks = vec![task("slow", &[], Some(2), None), task("after", &["slow"], None, None)];
        let t = timeline(RunId::from_i64(1), RunStatus::Unknown, at(0), None, tasks, at(12));
        assert_eq!(t.critical_path, vec![TaskId::parse("slow").expect("id")]);
        let slow = t.tasks.iter().find(|r| r.task_id.as_str() == "slow").expect("slow");
        assert_eq!((slow.queue_wait_s, slow.run_s), (Some(2.0), Some(10.0)));
        let after = t.tasks.iter().find(|r| r.task_id.as_str() == "after").expect("after");
        assert_eq!((after.ready, after.queue_wait_s, after.run_s), (None, None, None));
        assert_eq!(t.total_s, 12.0);
    }
}
