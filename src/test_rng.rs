//! Seeded pseudo-random numbers for the unit tests' random operation
//! sequences: the same seed gives the same sequence, so a failure replays.

/// xorshift64: small, fast and good enough to pick operations and sizes.
pub(crate) struct TestRng(u64);

impl TestRng {
    /// `seed` must not be 0.
    pub(crate) fn new(seed: u64) -> Self {
        assert_ne!(seed, 0, "xorshift never leaves 0");
        TestRng(seed)
    }

    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}
