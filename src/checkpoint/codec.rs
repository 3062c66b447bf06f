//! The encoding of state in checkpoints: postcard, decoded only from bytes already read and
//! bounded (a checkpoint file is hostile input: it may be damaged, or forged under a valid
//! checksum).

use serde::de::DeserializeOwned;
use serde::Serialize;

/// The largest checkpoint file read back (checked before it is read into memory). A part
/// holds a worker's operator state, which its memory already held once.
pub const MAX_FILE_BYTES: u64 = 4 << 30;

/// Encodes a state.
pub fn encode<T: Serialize>(state: &T) -> Result<Vec<u8>, String> {
    postcard::to_allocvec(state).map_err(|e| e.to_string())
}

/// Decodes a state that must fill `bytes` exactly. Lengths inside are bounded by the bytes
/// present: every element takes at least one, and serde preallocates at most 1 MiB of a
/// sequence whatever length it claims.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    match postcard::take_from_bytes(bytes) {
        Ok((state, [])) => Ok(state),
        Ok((_, rest)) => Err(format!("{} bytes after the state", rest.len())),
        Err(e) => Err(e.to_string()),
    }
}

/// The configuration of the crate's property tests: proptest's default (which reads
/// `PROPTEST_CASES` and `PROPTEST_RNG_SEED`, as `scripts/fuzz` sets them), with a fixed seed
/// unless one is given, so CI sees the same cases on every run.
#[cfg(test)]
pub(crate) fn proptest_config() -> proptest::test_runner::Config {
    use proptest::test_runner::{Config, RngSeed};
    let mut c = Config::default();
    if c.rng_seed == RngSeed::Random {
        c.rng_seed = RngSeed::Fixed(0x1067_f10e);
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip_and_damage_is_an_error() {
        let state: Vec<(String, Option<i64>, f64)> =
            vec![("a".into(), Some(-3), 0.1), ("b".into(), None, f64::MAX)];
        let bytes = encode(&state).unwrap();
        assert_eq!(
            decode::<Vec<(String, Option<i64>, f64)>>(&bytes).unwrap(),
            state
        );
        // Every truncation and a trailing byte are errors, never a panic.
        for n in 0..bytes.len() {
            assert!(decode::<Vec<(String, Option<i64>, f64)>>(&bytes[..n]).is_err());
        }
        let mut longer = bytes.clone();
        longer.push(0);
        let err = decode::<Vec<(String, Option<i64>, f64)>>(&longer).unwrap_err();
        assert_eq!(err, "1 bytes after the state");
    }

    #[test]
    fn a_huge_length_field_asks_for_no_allocation() {
        // A sequence claiming u64::MAX elements (a varint of ten bytes), then nothing.
        let mut hostile = vec![0xff; 9];
        hostile.push(0x01);
        let started = std::time::Instant::now();
        assert!(decode::<Vec<u64>>(&hostile).is_err());
        assert!(decode::<Vec<String>>(&hostile).is_err());
        assert!(decode::<String>(&hostile).is_err());
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
    }
}
