//! The summation engine: `sum(n) = 1 + 2 + ... + n`, exact and O(1).

use std::fmt;

/// The largest input accepted: `sum(MAX_N)` is the largest triangular number the
/// pipeline promises to store in a signed 64-bit column.
pub const MAX_N: u64 = 4_294_967_295;

/// Input outside `0..=MAX_N`; a value, never a panic or a wrap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutOfRange(pub i128);

impl fmt::Display for OutOfRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "add_up_to must be between 0 and {MAX_N}, got {}", self.0)
    }
}

impl std::error::Error for OutOfRange {}

/// Checks that `n` is a valid `add_up_to`.
pub fn validate(n: i128) -> Result<u64, OutOfRange> {
    if (0..=MAX_N as i128).contains(&n) {
        Ok(n as u64)
    } else {
        Err(OutOfRange(n))
    }
}

/// `1 + 2 + ... + n` by Gauss' formula. Computed in u128 so the intermediate product
/// cannot overflow; the result for `MAX_N` is 9_223_372_034_707_292_160 < i64::MAX.
pub fn sum(n: i128) -> Result<i64, OutOfRange> {
    let n = validate(n)? as u128;
    let total = n * (n + 1) / 2;
    i64::try_from(total).map_err(|_| OutOfRange(n as i128))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(n: u64) -> i64 {
        (1..=n as i64).sum()
    }

    #[test]
    fn matches_the_naive_sum_for_small_inputs() {
        for n in 0..=2000u64 {
            assert_eq!(sum(n as i128), Ok(naive(n)), "n = {n}");
        }
    }

    #[test]
    fn handles_the_edges() {
        assert_eq!(sum(0), Ok(0));
        assert_eq!(sum(1), Ok(1));
        assert_eq!(sum(4), Ok(10));
        assert_eq!(sum(MAX_N as i128), Ok(9_223_372_034_707_292_160));
    }

    #[test]
    fn rejects_out_of_range_without_panicking() {
        assert_eq!(sum(-1), Err(OutOfRange(-1)));
        assert_eq!(sum(MAX_N as i128 + 1), Err(OutOfRange(MAX_N as i128 + 1)));
        assert_eq!(sum(i128::MAX), Err(OutOfRange(i128::MAX)));
        assert!(sum(-5).unwrap_err().to_string().contains("between 0 and"));
    }
}
