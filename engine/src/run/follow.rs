//! Following a dispatched task execution: after each thing its monitor learns (the job's state, a
//! cancel, what a heartbeat found), what to do next. A pure decision over enums, like
//! `outcome.rs`, so every rule is unit-tested; `monitor.rs` does the waiting, the IO and the log
//! copying, and feeds what it learns here in the order it learns it.

use gofer_core::scheduler::{KillReason, TaskObservation};

/// Something the monitor learned about the task execution it follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Observation {
    /// The run's cancel signal (its NOTIFY) fired while the monitor waited.
    CancelSignalled,
    /// The scheduler's answer about the job (`Pending` when it could not be asked: it is asked
    /// again at the next look).
    Job(TaskObservation),
    /// The job, still not ended after the look, has outlived the task's timeout and grace.
    PastDeadline,
    /// Asking the scheduler to stop the job for the run's cancel failed.
    StopFailed,
    /// The heartbeat renewed the lease, and read whether the run is being stopped (in case its
    /// NOTIFY was missed).
    LeaseRenewed { cancelling: bool },
    /// The heartbeat found the lease gone: another replica owns the task execution now.
    LeaseLost,
}

/// Work to do on the way, in the order given, before [`Next`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Chore {
    /// The job was seen running for the first time: record its start and node.
    RecordStart,
    /// The run is being stopped: ask the scheduler to stop the job (with the stop grace). A
    /// failure is reported back as [`Observation::StopFailed`].
    StopJob,
    /// The task outlived its timeout in the scheduler, which should have stopped it: stop it here.
    StopOverdue,
}

/// Where following goes after an observation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Next {
    /// Wait, then look again.
    KeepFollowing,
    /// The attempt ended this way: copy the rest of its output and conclude it.
    Finish(TaskObservation),
    /// Stop watching without writing anything: the lease's new holder carries on.
    GiveUp,
}

/// The chores an observation calls for, and where following goes after them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Decision {
    pub chores: Vec<Chore>,
    pub next: Next,
}

impl Decision {
    fn keep_following() -> Self {
        Self { chores: Vec::new(), next: Next::KeepFollowing }
    }
}

/// What following has learned so far that changes what it does next.
#[derive(Debug, Default)]
pub(crate) struct Following {
    /// The job was seen running and its start recorded.
    start_recorded: bool,
    /// The run is being stopped (its NOTIFY or a heartbeat said so).
    cancelling: bool,
    /// The job was asked to stop for it, and the request did not fail.
    stop_requested: bool,
}

impl Following {
    /// Whether the job's start (and node) was recorded while it ran; if not, the node is looked
    /// up when the attempt is concluded.
    pub(crate) fn start_recorded(&self) -> bool {
        self.start_recorded
    }

    /// What to do after `observation`.
    pub(crate) fn decide(&mut self, observation: Observation) -> Decision {
        match observation {
            Observation::CancelSignalled => {
                // Acted on after the next look at the job: it may have ended meanwhile.
                self.cancelling = true;
                Decision::keep_following()
            }
            Observation::LeaseRenewed { cancelling } => {
                self.cancelling |= cancelling;
                Decision::keep_following()
            }
            Observation::StopFailed => {
                self.stop_requested = false;
                Decision::keep_following()
            }
            Observation::LeaseLost => Decision { chores: Vec::new(), next: Next::GiveUp },
            Observation::Job(state) => self.after_look(state),
            Observation::PastDeadline => Decision {
                chores: vec![Chore::StopOverdue],
                next: Next::Finish(TaskObservation::Killed { reason: KillReason::Timeout }),
            },
        }
    }

    fn after_look(&mut self, state: TaskObservation) -> Decision {
        // An ended job is concluded as it ended, whatever else holds (a cancel, the deadline).
        if state.is_final() {
            return Decision { chores: Vec::new(), next: Next::Finish(state) };
        }
        let mut chores = Vec::new();
        if state == TaskObservation::Running && !self.start_recorded {
            self.start_recorded = true;
            chores.push(Chore::RecordStart);
        }
        if self.cancelling && !self.stop_requested {
            self.stop_requested = true;
            chores.push(Chore::StopJob);
        }
        Decision { chores, next: Next::KeepFollowing }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn look(state: TaskObservation) -> Observation {
        Observation::Job(state)
    }

    fn decision(chores: &[Chore], next: Next) -> Decision {
        Decision { chores: chores.to_vec(), next }
    }

    #[test]
    fn a_pending_job_is_followed_without_chores() {
        let mut following = Following::default();
        assert_eq!(following.decide(look(TaskObservation::Pending)), Decision::keep_following());
        assert!(!following.start_recorded());
    }

    #[test]
    fn a_job_seen_running_has_its_start_recorded_once() {
        let mut following = Following::default();
        let first = following.decide(look(TaskObservation::Running));
        assert_eq!(first, decision(&[Chore::RecordStart], Next::KeepFollowing));
        assert!(following.start_recorded());
        assert_eq!(following.decide(look(TaskObservation::Running)), Decision::keep_following());
    }

    #[test]
    fn an_ended_job_finishes_as_it_ended_even_when_the_run_is_being_stopped() {
        let endings = [
            TaskObservation::Exited { exit_code: 0 },
            TaskObservation::Exited { exit_code: 3 },
            TaskObservation::Killed { reason: KillReason::OutOfMemory },
            TaskObservation::Failed { detail: "bad image".into() },
            TaskObservation::Unknown,
        ];
        for ending in endings {
            let mut following = Following::default();
            following.decide(Observation::CancelSignalled);
            let seen = following.decide(look(ending.clone()));
            assert_eq!(seen, decision(&[], Next::Finish(ending)));
        }
    }

    #[test]
    fn a_cancel_stops_the_job_once_after_the_next_look() {
        let mut following = Following::default();
        assert_eq!(following.decide(Observation::CancelSignalled), Decision::keep_following());
        let look_after = following.decide(look(TaskObservation::Running));
        assert_eq!(look_after, decision(&[Chore::RecordStart, Chore::StopJob], Next::KeepFollowing));
        assert_eq!(following.decide(look(TaskObservation::Running)), Decision::keep_following());
    }

    #[test]
    fn a_stop_that_failed_is_asked_again_after_the_next_look() {
        let mut following = Following::default();
        following.decide(Observation::CancelSignalled);
        assert_eq!(following.decide(look(TaskObservation::Pending)), decision(&[Chore::StopJob], Next::KeepFollowing));
        assert_eq!(following.decide(Observation::StopFailed), Decision::keep_following());
        assert_eq!(following.decide(look(TaskObservation::Pending)), decision(&[Chore::StopJob], Next::KeepFollowing));
    }

    #[test]
    fn a_cancel_read_by_the_heartbeat_stops_the_job_and_a_later_renewal_does_not_forget_it() {
        let mut following = Following::default();
        following.decide(Observation::LeaseRenewed { cancelling: false });
        assert_eq!(following.decide(look(TaskObservation::Pending)), Decision::keep_following());
        following.decide(Observation::LeaseRenewed { cancelling: true });
        following.decide(Observation::LeaseRenewed { cancelling: false });
        assert_eq!(following.decide(look(TaskObservation::Pending)), decision(&[Chore::StopJob], Next::KeepFollowing));
    }

    #[test]
    fn an_overdue_job_is_stopped_and_finishes_killed_by_its_timeout() {
        let mut following = Following::default();
        following.decide(look(TaskObservation::Running));
        let killed = Next::Finish(TaskObservation::Killed { reason: KillReason::Timeout });
        assert_eq!(following.decide(Observation::PastDeadline), decision(&[Chore::StopOverdue], killed));
    }

    #[test]
    fn a_lost_lease_gives_up() {
        let mut following = Following::default();
        following.decide(look(TaskObservation::Running));
        assert_eq!(following.decide(Observation::LeaseLost), decision(&[], Next::GiveUp));
    }
}
