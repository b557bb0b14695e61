//! The in-process GCRA limiter: one mutex-guarded map of theoretical arrival times.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use super::{Decision, Rate, gcra};

pub struct LocalGcra {
    rate: Rate,
    epoch: Instant,
    state: Mutex<HashMap<String, u64>>,
}

impl LocalGcra {
    pub fn new(rate: Rate) -> LocalGcra {
        LocalGcra {
            rate,
            epoch: Instant::now(),
            state: Mutex::new(HashMap::new()),
        }
    }

    pub fn rate(&self) -> Rate {
        self.rate
    }

    /// Decides for `key`; counts the request only when `consume` is true.
    pub fn check(&self, key: &str, consume: bool) -> Decision {
        self.check_at(key, self.rate, consume)
    }

    /// Decides for `key` at its own `rate` (an API key's limit) instead of the limiter's.
    pub fn check_at(&self, key: &str, rate: Rate, consume: bool) -> Decision {
        let now = self.epoch.elapsed().as_micros() as u64;
        let Ok(mut state) = self.state.lock() else {
            // A poisoned lock means a panic elsewhere; fail open rather than refuse everyone.
            return gcra(rate, now, None).0;
        };
        let (decision, new_tat) = gcra(rate, now, state.get(key).copied());
        if let Some(tat) = new_tat.filter(|_| consume) {
            if state.len() > 100_000 {
                // Expired entries carry no information: a missing key means a full bucket.
                state.retain(|_, tat| *tat > now);
            }
            match state.get_mut(key) {
                Some(slot) => *slot = tat,
                None => {
                    state.insert(key.to_owned(), tat);
                }
            }
        }
        decision
    }
}
