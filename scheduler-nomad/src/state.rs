//! Nomad allocations and what they mean for a task: client status and task events mapped to
//! [`TaskObservation`]s (driver failures, image pulls, OOM kills, lost nodes, max_run_duration).

use std::collections::HashMap;

use gofer_core::scheduler::{KillReason, TaskObservation};
use serde::Deserialize;

use crate::job::TASK;

/// An allocation (stub or full), the fields read here.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Allocation {
    /// Allocation id.
    #[serde(rename = "ID")]
    pub id: String,
    /// Its job.
    #[serde(rename = "JobID")]
    pub job_id: String,
    /// Its namespace.
    #[serde(rename = "Namespace")]
    pub namespace: String,
    /// The node it was placed on.
    #[serde(rename = "NodeID")]
    pub node_id: String,
    /// The node's name (newer Nomad versions).
    #[serde(rename = "NodeName")]
    pub node_name: String,
    /// `run`, `stop` or `evict`.
    #[serde(rename = "DesiredStatus")]
    pub desired_status: String,
    /// `pending`, `running`, `complete`, `failed`, `lost` or `unknown`.
    #[serde(rename = "ClientStatus")]
    pub client_status: String,
    /// Why the client status is what it is.
    #[serde(rename = "ClientDescription")]
    pub client_description: String,
    /// Per task.
    #[serde(rename = "TaskStates")]
    pub task_states: Option<HashMap<String, TaskState>>,
    /// Raft index of creation.
    #[serde(rename = "CreateIndex")]
    pub create_index: u64,
    /// Raft index of the last change.
    #[serde(rename = "ModifyIndex")]
    pub modify_index: u64,
}

/// A task's state in an allocation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct TaskState {
    /// `pending`, `running` or `dead`.
    #[serde(rename = "State")]
    pub state: String,
    /// Whether it failed.
    #[serde(rename = "Failed")]
    pub failed: bool,
    /// Its events, oldest first.
    #[serde(rename = "Events")]
    pub events: Option<Vec<TaskEvent>>,
}

/// One task event.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct TaskEvent {
    /// `Received`, `Driver`, `Started`, `Terminated`, `Driver Failure`, `Killing`…
    #[serde(rename = "Type")]
    pub kind: String,
    /// Exit code, on `Terminated`.
    #[serde(rename = "ExitCode")]
    pub exit_code: i32,
    /// Human text.
    #[serde(rename = "DisplayMessage")]
    pub display_message: String,
    /// Older field with the same text.
    #[serde(rename = "Message")]
    pub message: String,
    /// Driver error text.
    #[serde(rename = "DriverError")]
    pub driver_error: String,
    /// Driver config validation error.
    #[serde(rename = "ValidationError")]
    pub validation_error: String,
    /// Setup error.
    #[serde(rename = "SetupError")]
    pub setup_error: String,
    /// Artifact download error.
    #[serde(rename = "DownloadError")]
    pub download_error: String,
    /// Free-form details (`oom_killed`, `exit_code`…).
    #[serde(rename = "Details")]
    pub details: Option<HashMap<String, String>>,
}

impl TaskEvent {
    fn text(&self) -> &str {
        [
            &self.driver_error,
            &self.validation_error,
            &self.setup_error,
            &self.download_error,
            &self.display_message,
            &self.message,
        ]
        .into_iter()
        .find(|t| !t.is_empty())
        .map_or("", |t| t.as_str())
    }

    fn oom_killed(&self) -> bool {
        self.details.as_ref().and_then(|d| d.get("oom_killed")).is_some_and(|v| v == "true")
            || self.kind == "OOM Killed"
            || self.message.contains("OOM Killed")
            || self.display_message.contains("OOM Killed")
    }
}

impl Allocation {
    fn events(&self) -> &[TaskEvent] {
        self.task_states.as_ref().and_then(|s| s.get(TASK)).and_then(|s| s.events.as_deref()).unwrap_or_default()
    }

    /// The node's name, else its id; `None` before placement.
    pub fn node(&self) -> Option<String> {
        [&self.node_name, &self.node_id].into_iter().find(|n| !n.is_empty()).cloned()
    }

    /// What the allocation says about the task.
    pub fn observation(&self) -> TaskObservation {
        match self.client_status.as_str() {
            "running" => TaskObservation::Running,
            "complete" | "failed" => self.final_observation(),
            "lost" => TaskObservation::Failed {
                detail: format!(
                    "the Nomad node running the task was lost ({})",
                    self.node().unwrap_or_else(|| "unknown node".into())
                ),
            },
            // `unknown`: the client is disconnected and may come back; `pending` and anything new: wait.
            _ => TaskObservation::Pending,
        }
    }

    fn final_observation(&self) -> TaskObservation {
        let events = self.events();
        if self.client_description.contains("max_run_duration") {
            return TaskObservation::Killed { reason: KillReason::Timeout };
        }
        if events.iter().any(TaskEvent::oom_killed) {
            return TaskObservation::Killed { reason: KillReason::OutOfMemory };
        }
        for event in events {
            let detail = match event.kind.as_str() {
                "Driver Failure" => {
                    let text = event.text();
                    let lower = text.to_ascii_lowercase();
                    if lower.contains("pull") || lower.contains("image") || lower.contains("manifest") {
                        format!("the image could not be pulled: {text}")
                    } else {
                        format!("the task driver failed: {text}")
                    }
                }
                "Failed Validation" => format!("Nomad refused the task's driver config: {}", event.text()),
                "Setup Failure" | "Task hook failed" => format!("the task could not be set up: {}", event.text()),
                "Failed Artifact Download" => format!("an artifact could not be downloaded: {}", event.text()),
                _ => continue,
            };
            return TaskObservation::Failed { detail };
        }
        let killed = events.iter().any(|e| matches!(e.kind.as_str(), "Killing" | "Killed"));
        if self.desired_status != "run" && (killed || !events.iter().any(|e| e.kind == "Terminated")) {
            return TaskObservation::Killed { reason: KillReason::Stopped };
        }
        if let Some(exit) = events.iter().rev().find(|e| e.kind == "Terminated") {
            return TaskObservation::Exited { exit_code: exit.exit_code };
        }
        if self.client_status == "failed" {
            let detail =
                if self.client_description.is_empty() { "the allocation failed" } else { &self.client_description };
            return TaskObservation::Failed { detail: format!("Nomad: {detail}") };
        }
        TaskObservation::Exited { exit_code: 0 }
    }
}

/// The allocation that stands for the job: the newest one.
pub fn latest(allocs: Vec<Allocation>) -> Option<Allocation> {
    allocs.into_iter().max_by_key(|a| a.create_index)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::json;

    use super::*;

    fn alloc(client: &str, desired: &str, events: serde_json::Value) -> Allocation {
        serde_json::from_value(json!({
            "ID": "a1", "JobID": "j", "Namespace": "gofer-acme", "NodeID": "n1", "NodeName": "worker-1",
            "DesiredStatus": desired, "ClientStatus": client, "CreateIndex": 5, "ModifyIndex": 9,
            "TaskStates": {"main": {"State": "dead", "Failed": client == "failed", "Events": events}},
        }))
        .unwrap()
    }

    #[test]
    fn states_map_to_observations() {
        assert_eq!(alloc("pending", "run", json!([])).observation(), TaskObservation::Pending);
        assert_eq!(alloc("running", "run", json!([])).observation(), TaskObservation::Running);
        assert_eq!(alloc("unknown", "run", json!([])).observation(), TaskObservation::Pending);
        let ok = alloc("complete", "run", json!([{"Type": "Started"}, {"Type": "Terminated", "ExitCode": 0}]));
        assert_eq!(ok.observation(), TaskObservation::Exited { exit_code: 0 });
        let failed = alloc(
            "failed",
            "run",
            json!([{"Type": "Terminated", "ExitCode": 3}, {"Type": "Not Restarting", "DisplayMessage": "Policy allows no restarts"}]),
        );
        assert_eq!(failed.observation(), TaskObservation::Exited { exit_code: 3 });
        assert_eq!(ok.node().as_deref(), Some("worker-1"));
    }

    #[test]
    fn failures_oom_stops_timeouts_and_lost_nodes_say_what_happened() {
        let pull = alloc(
            "failed",
            "run",
            json!([{"Type": "Driver Failure", "DriverError": "Failed to pull `nope:1`: manifest unknown"}]),
        );
        assert!(
            matches!(pull.observation(), TaskObservation::Failed { detail } if detail.starts_with("the image could not be pulled") && detail.contains("manifest unknown"))
        );
        let driver = alloc("failed", "run", json!([{"Type": "Driver Failure", "DriverError": "rootless daemon gone"}]));
        assert!(matches!(driver.observation(), TaskObservation::Failed { detail } if detail.contains("driver failed")));
        let oom =
            alloc("failed", "run", json!([{"Type": "Terminated", "ExitCode": 137, "Details": {"oom_killed": "true"}}]));
        assert_eq!(oom.observation(), TaskObservation::Killed { reason: KillReason::OutOfMemory });
        let stopped = alloc(
            "complete",
            "stop",
            json!([{"Type": "Started"}, {"Type": "Killing"}, {"Type": "Terminated", "ExitCode": 143}, {"Type": "Killed"}]),
        );
        assert_eq!(stopped.observation(), TaskObservation::Killed { reason: KillReason::Stopped });
        let mut timeout = alloc("complete", "run", json!([{"Type": "Killed"}]));
        timeout.client_description = "allocation exceeded max_run_duration".into();
        assert_eq!(timeout.observation(), TaskObservation::Killed { reason: KillReason::Timeout });
        let lost = alloc("lost", "stop", json!([]));
        assert!(matches!(lost.observation(), TaskObservation::Failed { detail } if detail.contains("lost (worker-1)")));
    }

    #[test]
    fn the_newest_allocation_stands_for_the_job() {
        let mut old = alloc("failed", "run", json!([]));
        old.create_index = 1;
        let new = alloc("running", "run", json!([]));
        assert_eq!(latest(vec![new.clone(), old]).unwrap(), new);
        assert!(latest(vec![]).is_none());
    }
}
