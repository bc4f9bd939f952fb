//! Pipeline lifecycle: pipeline and config-version states, deployments, and the canary policy
//! (which runs go to the canary version, and when a canary is promoted or rolled back).

use std::ops::RangeInclusive;

use crate::config::ConfigError;
use crate::state::wire_enum;

/// The canary share of new runs a canary may ask for, in percent.
pub const CANARY_PERCENT_RANGE: RangeInclusive<u32> = 1..=99;
/// How many completed canary runs a canary may wait for before it is judged.
pub const MIN_RUNS_RANGE: RangeInclusive<u32> = 1..=1000;

wire_enum!(
    /// Whether a pipeline accepts new runs.
    PipelineState {
        /// New runs may start.
        Active => "active",
        /// Starting a run is refused (`pipeline_disabled`); runs in progress carry on.
        Disabled => "disabled",
    }
);

wire_enum!(
    /// Where a config version is in its life.
    ConfigState {
        /// New runs use it (except the share a canary takes).
        Live => "live",
        /// A canary deployment is sending part of the new runs to it.
        Canary => "canary",
        /// Registered but never made live.
        Unreleased => "unreleased",
        /// Was live (or a canary) and was replaced or rolled back.
        Deprecated => "deprecated",
    }
);

wire_enum!(
    /// How a deployment switches versions.
    DeploymentKind {
        /// The version goes live at once.
        Immediate => "immediate",
        /// Part of the new runs go to the version until enough of them have completed to judge it.
        Canary => "canary",
    }
);

wire_enum!(
    /// Where a deployment is in its life.
    DeploymentState {
        /// A canary is routing runs and waiting for them to complete.
        Running => "running",
        /// Done; `status` says how it went.
        Complete => "complete",
    }
);

wire_enum!(
    /// How a deployment ended; `unknown` while it runs.
    DeploymentStatus {
        /// Still running.
        Unknown => "unknown",
        /// The version went live.
        Successful => "successful",
        /// The deployment could not be carried out (not produced by this version of Gofer).
        Failed => "failed",
        /// The canary was rolled back (by its failure rate or by hand); the live version stayed.
        RolledBack => "rolled_back",
    }
);

/// The rules of one canary deployment, valid by construction.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CanaryPolicy {
    percent: u32,
    max_failure_rate: f64,
    min_runs: u32,
}

/// What a canary's completed runs say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Not enough canary runs completed yet, and the failures so far still allow a pass.
    Continue,
    /// Enough runs completed with few enough failures: make the canary live.
    Promote {
        /// The numbers behind the decision.
        reason: String,
    },
    /// Too many failures (possibly before `min_runs`, once no outcome can pass any more).
    RollBack {
        /// The numbers behind the decision.
        reason: String,
    },
}

/// Formats a fraction as a percentage without useless decimals: 0.5 → `50%`, 1/3 → `33.33%`.
pub fn percent(fraction: f64) -> String {
    let text = format!("{:.2}", fraction * 100.0);
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text}%")
}

/// A canary's failure rate when the request leaves it out: any failed canary run rolls it back.
pub const DEFAULT_MAX_FAILURE_RATE: f64 = 0.0;

/// Completed canary runs needed before promotion when the request leaves it out.
pub const DEFAULT_MIN_RUNS: u32 = 10;

impl CanaryPolicy {
    /// Checks the ranges: percent 1–99, failure rate 0–1, min_runs 1–1000.
    pub fn new(percent: u32, max_failure_rate: f64, min_runs: u32) -> Result<Self, ConfigError> {
        let invalid = |field: &str, reason: String| ConfigError::InvalidField { field: field.into(), reason };
        if !CANARY_PERCENT_RANGE.contains(&percent) {
            let (lo, hi) = (CANARY_PERCENT_RANGE.start(), CANARY_PERCENT_RANGE.end());
            return Err(invalid("canary.percent", format!("must be between {lo} and {hi}")));
        }
        if !(0.0..=1.0).contains(&max_failure_rate) {
            return Err(invalid("canary.max_failure_rate", "must be between 0 and 1".into()));
        }
        if !MIN_RUNS_RANGE.contains(&min_runs) {
            let (lo, hi) = (MIN_RUNS_RANGE.start(), MIN_RUNS_RANGE.end());
            return Err(invalid("canary.min_runs", format!("must be between {lo} and {hi}")));
        }
        Ok(Self { percent, max_failure_rate, min_runs })
    }

    /// Share of new runs that go to the canary, in percent.
    pub fn percent(&self) -> u32 {
        self.percent
    }

    /// Highest failure rate among the canary's runs that still promotes it.
    pub fn max_failure_rate(&self) -> f64 {
        self.max_failure_rate
    }

    /// Completed canary runs needed before promotion.
    pub fn min_runs(&self) -> u32 {
        self.min_runs
    }

    /// Whether the next run goes to the canary, given how many runs were routed since the canary
    /// started and how many of those went to it. The canary takes the run whenever it is behind
    /// its share counting this run, so after every run the canary's count is
    /// `ceil(percent × total / 100)`: deterministic, and never more than one run off the share.
    pub fn routes_to_canary(&self, routed_to_canary: u64, routed_runs: u64) -> bool {
        routed_to_canary.saturating_mul(100) < u64::from(self.percent).saturating_mul(routed_runs.saturating_add(1))
    }

    /// Judges the canary after `runs` of its runs completed, `failures` of them failed.
    /// It is rolled back as soon as the failures alone exceed what `min_runs` runs may hold
    /// (later successes could not bring the rate back under the bar), and promoted once
    /// `min_runs` runs completed without that.
    pub fn verdict(&self, runs: u64, failures: u64) -> Verdict {
        let min_runs = u64::from(self.min_runs);
        let allowed = self.max_failure_rate * self.min_runs as f64;
        let bar = percent(self.max_failure_rate);
        let rate = |n: u64| if n == 0 { 0.0 } else { failures as f64 / n as f64 };
        // A small tolerance so that, e.g., 0.3 × 10 failures still counts as exactly 3.
        if failures as f64 > allowed + 1e-9 {
            let reason = if runs < min_runs {
                format!(
                    "{failures} of {runs} canary runs failed before {min_runs} completed: over {min_runs} runs the \
                     failure rate would be at least {}, above the allowed {bar}",
                    percent(failures as f64 / min_runs as f64)
                )
            } else {
                format!("{failures} of {runs} canary runs failed ({}), above the allowed {bar}", percent(rate(runs)))
            };
            return Verdict::RollBack { reason };
        }
        if runs >= min_runs {
            let reason =
                format!("{failures} of {runs} canary runs failed ({}), within the allowed {bar}", percent(rate(runs)));
            return Verdict::Promote { reason };
        }
        Verdict::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_checked() {
        assert!(CanaryPolicy::new(1, 0.0, 1).is_ok());
        assert!(CanaryPolicy::new(99, 1.0, 1000).is_ok());
        for (percent, rate, min_runs, field) in [
            (0, 0.5, 5, "canary.percent"),
            (100, 0.5, 5, "canary.percent"),
            (10, -0.1, 5, "canary.max_failure_rate"),
            (10, 1.01, 5, "canary.max_failure_rate"),
            (10, f64::NAN, 5, "canary.max_failure_rate"),
            (10, 0.5, 0, "canary.min_runs"),
            (10, 0.5, 1001, "canary.min_runs"),
        ] {
            let err = CanaryPolicy::new(percent, rate, min_runs).unwrap_err();
            assert!(err.to_string().starts_with(field), "{err}");
            assert_eq!(err.code(), "invalid_field");
        }
    }

    /// Routes `n` runs and answers which went to the canary.
    fn route(percent: u32, n: u64) -> Vec<bool> {
        let policy = CanaryPolicy::new(percent, 0.5, 5).unwrap();
        let (mut canary, mut out) = (0, Vec::new());
        for total in 0..n {
            let to_canary = policy.routes_to_canary(canary, total);
            canary += u64::from(to_canary);
            out.push(to_canary);
        }
        out
    }

    #[test]
    fn routing_tracks_the_percentage_exactly() {
        assert_eq!(route(50, 6), [true, false, true, false, true, false]);
        assert_eq!(route(10, 10).iter().filter(|c| **c).count(), 1);
        for percent in 1..=99u32 {
            let routed = route(percent, 300);
            for n in 1..=300u64 {
                let canary = routed[..n as usize].iter().filter(|c| **c).count() as u64;
                assert_eq!(canary, (u64::from(percent) * n).div_ceil(100), "{percent}% after {n} runs");
            }
        }
    }

    #[test]
    fn a_canary_is_promoted_once_enough_runs_pass() {
        let policy = CanaryPolicy::new(50, 0.5, 4).unwrap();
        assert_eq!(policy.verdict(0, 0), Verdict::Continue);
        assert_eq!(policy.verdict(3, 2), Verdict::Continue);
        let Verdict::Promote { reason } = policy.verdict(4, 2) else { panic!("promotes") };
        assert_eq!(reason, "2 of 4 canary runs failed (50%), within the allowed 50%");
        let strict = CanaryPolicy::new(50, 0.0, 2).unwrap();
        assert!(matches!(strict.verdict(2, 0), Verdict::Promote { .. }));
    }

    #[test]
    fn a_canary_is_rolled_back_as_soon_as_it_cannot_pass() {
        let policy = CanaryPolicy::new(50, 0.5, 3).unwrap();
        assert_eq!(policy.verdict(1, 1), Verdict::Continue, "1 of 3 may still fail");
        let Verdict::RollBack { reason } = policy.verdict(2, 2) else { panic!("rolls back early") };
        assert_eq!(
            reason,
            "2 of 2 canary runs failed before 3 completed: over 3 runs the failure rate would be at least \
             66.67%, above the allowed 50%"
        );
        let strict = CanaryPolicy::new(50, 0.0, 5).unwrap();
        assert!(matches!(strict.verdict(1, 1), Verdict::RollBack { .. }), "no failure allowed");
        let exact = CanaryPolicy::new(50, 0.3, 10).unwrap();
        assert_eq!(exact.verdict(9, 3), Verdict::Continue, "3 of 10 is exactly the bar");
        assert!(matches!(exact.verdict(10, 3), Verdict::Promote { .. }));
        assert!(matches!(exact.verdict(9, 4), Verdict::RollBack { .. }));
    }
}
