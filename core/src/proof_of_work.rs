//! The proof of work a trial sign-up pays (`POST /api/v1/trial`): find a `nonce` such that
//! SHA-256 of `"{challenge}:{nonce}"` starts with at least `bits` zero bits. Finding one takes
//! about 2^`bits` hashes; checking one takes one. The server and the clients (SDK, CLI) share this
//! one definition.

use sha2::{Digest, Sha256};

/// The name of the scheme, as the server's challenge answer states it.
pub const ALGORITHM: &str = "sha256-leading-zero-bits";

/// The most bits a challenge may ask for: beyond this a client would work for hours.
pub const MAX_BITS: u8 = 40;

/// How many leading zero bits `digest` has.
fn leading_zero_bits(digest: &[u8]) -> u32 {
    let mut bits = 0;
    for byte in digest {
        bits += byte.leading_zeros();
        if *byte != 0 {
            break;
        }
    }
    bits
}

/// Whether `nonce` solves `challenge` at `bits`.
pub fn meets(challenge: &str, nonce: u64, bits: u8) -> bool {
    let digest = Sha256::new().chain_update(challenge.as_bytes()).chain_update(format!(":{nonce}")).finalize();
    leading_zero_bits(&digest) >= u32::from(bits)
}

/// Finds the smallest nonce that solves `challenge` at `bits`. `progress` is called every
/// 65,536 attempts with the attempts so far; answering `false` gives up (`None`).
pub fn solve(challenge: &str, bits: u8, mut progress: impl FnMut(u64) -> bool) -> Option<u64> {
    // The challenge's part of the hash is the same for every nonce: hash it once.
    let prefix = Sha256::new().chain_update(challenge.as_bytes()).chain_update(b":");
    let mut text = itoa_buffer();
    for nonce in 0..u64::MAX {
        if nonce % 65_536 == 0 && nonce > 0 && !progress(nonce) {
            return None;
        }
        let digest = prefix.clone().chain_update(decimal(nonce, &mut text)).finalize();
        if leading_zero_bits(&digest) >= u32::from(bits) {
            return Some(nonce);
        }
    }
    None
}

fn itoa_buffer() -> [u8; 20] {
    [0; 20]
}

/// `n` in decimal, written into `buffer` (no allocation in the solving loop).
fn decimal(mut n: u64, buffer: &mut [u8; 20]) -> &[u8] {
    let mut start = buffer.len();
    loop {
        start -= 1;
        buffer[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buffer[start..];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_solution_meets_its_challenge_and_no_other() {
        let nonce = solve("challenge-a", 12, |_| true).expect("a solution");
        assert!(meets("challenge-a", nonce, 12));
        // The smallest one: every smaller nonce fails.
        assert!((0..nonce).all(|n| !meets("challenge-a", n, 12)));
        // Bound to its challenge (true for another only by a 1-in-4096 chance: not for this one).
        assert!(!meets("challenge-b", nonce, 12));
    }

    #[test]
    fn zero_bits_is_met_by_anything_and_leading_zeros_are_counted_across_bytes() {
        assert!(meets("x", 0, 0));
        assert_eq!(leading_zero_bits(&[0, 0, 0b0001_0000, 0xff]), 19);
        assert_eq!(leading_zero_bits(&[0x80]), 0);
        assert_eq!(leading_zero_bits(&[0, 0]), 16);
    }

    #[test]
    fn decimal_matches_the_standard_formatting() {
        let mut buffer = itoa_buffer();
        for n in [0, 7, 10, 65_536, 1_234_567_890, u64::MAX] {
            assert_eq!(decimal(n, &mut buffer), n.to_string().as_bytes());
        }
    }

    #[test]
    fn solving_can_be_given_up() {
        let mut calls = 0;
        assert_eq!(
            solve("never", 64, |_| {
                calls += 1;
                calls < 3
            }),
            None
        );
        assert_eq!(calls, 3);
    }
}
