//! A delay that doubles each time it is used up, to a ceiling: how a monitor paces its looks at a
//! task, its starts retried through a scheduler outage, and its last copies of a finished task's
//! output.

use std::time::Duration;

/// A delay that doubles after each wait, never past its ceiling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DoublingDelay {
    current: Duration,
    ceiling: Duration,
}

impl DoublingDelay {
    /// Starts at `first` (kept as given, even above the ceiling: the first wait is the caller's
    /// choice) and doubles up to `ceiling`.
    pub(crate) fn new(first: Duration, ceiling: Duration) -> Self {
        Self { current: first, ceiling }
    }

    /// How long the next wait is.
    pub(crate) fn current(&self) -> Duration {
        self.current
    }

    /// Doubles the delay for the wait after, up to the ceiling.
    pub(crate) fn double(&mut self) {
        self.current = (self.current * 2).min(self.ceiling);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_delay_doubles_up_to_its_ceiling_and_stays_there() {
        let mut delay = DoublingDelay::new(Duration::from_millis(100), Duration::from_millis(350));
        let mut seen = vec![delay.current()];
        for _ in 0..4 {
            delay.double();
            seen.push(delay.current());
        }
        let ms = |n| Duration::from_millis(n);
        assert_eq!(seen, [ms(100), ms(200), ms(350), ms(350), ms(350)]);
    }

    #[test]
    fn a_first_delay_above_the_ceiling_is_used_once_then_capped() {
        let mut delay = DoublingDelay::new(Duration::from_millis(50), Duration::from_millis(10));
        assert_eq!(delay.current(), Duration::from_millis(50));
        delay.double();
        assert_eq!(delay.current(), Duration::from_millis(10));
    }
}
