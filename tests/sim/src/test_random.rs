//! A small deterministic random generator for tests that act at random
//! moments (kills, delays): seeded from the clock and printed, so a failing
//! run can be repeated exactly with `VMI_TEST_SEED=<seed>`.

/// An xorshift generator; not for anything but test timing.
#[derive(Debug)]
pub struct TestRandom(u64);

impl TestRandom {
    /// Seeded from `VMI_TEST_SEED`, or the clock; the seed is printed on
    /// stderr.
    pub fn from_env_or_clock() -> TestRandom {
        let seed = std::env::var("VMI_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(7)
            });
        eprintln!("VMI_TEST_SEED={seed}");
        TestRandom(seed | 1)
    }

    /// A number in `0..bound` (`bound` must not be 0).
    pub fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % bound.max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_stay_below_the_bound_and_vary() {
        let mut random = TestRandom(12345);
        let drawn: Vec<u64> = (0..100).map(|_| random.below(10)).collect();
        assert!(drawn.iter().all(|n| *n < 10));
        assert!(
            drawn
                .iter()
                .collect::<std::collections::BTreeSet<_>>()
                .len()
                > 5
        );
    }
}
