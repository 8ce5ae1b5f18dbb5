//! Health probe verdicts: when a DIP leaves the pool and when it comes back.
//!
//! The host agent probes each local DIP every `intervalInSeconds`. `numberOfProbes`
//! consecutive failures take the DIP out of every Mux's pool; one success brings it back
//! (a DIP starts in the pool, as the Muxes assume it healthy until told otherwise).

/// One DIP's probe history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeState {
    threshold: u32,
    failures: u32,
    up: bool,
}

impl ProbeState {
    /// `threshold`: consecutive failures that mark the DIP down (at least 1).
    pub fn new(threshold: u32) -> ProbeState {
        ProbeState {
            threshold: threshold.max(1),
            failures: 0,
            up: true,
        }
    }

    pub fn is_up(&self) -> bool {
        self.up
    }

    /// Records one probe's outcome; returns the new health if it changed.
    pub fn record(&mut self, success: bool) -> Option<bool> {
        if success {
            self.failures = 0;
            if !self.up {
                self.up = true;
                return Some(true);
            }
        } else {
            self.failures = self.failures.saturating_add(1);
            if self.up && self.failures >= self.threshold {
                self.up = false;
                return Some(false);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn down_after_n_failures_up_after_one_success() {
        let mut p = ProbeState::new(2);
        assert!(p.is_up(), "a DIP starts in the pool");
        assert_eq!(p.record(false), None);
        assert_eq!(p.record(true), None, "a success resets the count");
        assert_eq!(p.record(false), None);
        assert_eq!(p.record(false), Some(false));
        assert_eq!(p.record(false), None, "reported once");
        assert!(!p.is_up());
        assert_eq!(p.record(true), Some(true));
    }
}
