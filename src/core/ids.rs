//! Event and anonymous ids.
//!
//! UUIDv7 (RFC 9562): 48 bits of Unix milliseconds, a 12-bit counter, then random bits. Ids
//! sort by creation time, which keeps the collector's dedup index append-mostly, and the counter
//! (RFC 9562 §6.2, method 1) keeps events made in the same millisecond in the order they were
//! made, so "signed up" then "created a project" in one click stay in that order. The caller supplies randomness
//! (`crypto.getRandomValues` in the browser), keeping this module pure and testable.

use alloc::string::String;

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Formats a UUIDv7 from a millisecond timestamp, a 12-bit counter and eight random bytes.
pub fn uuid_v7(unix_ms: u64, counter: u16, random: [u8; 8]) -> String {
    let mut bytes = [0u8; 16];
    bytes[..6].copy_from_slice(&unix_ms.to_be_bytes()[2..]);
    bytes[6..8].copy_from_slice(&(0x7000 | (counter & 0x0fff)).to_be_bytes()); // version 7
    bytes[8..].copy_from_slice(&random);
    bytes[8] = (bytes[8] & 0x3f) | 0x80; // RFC 4122 variant
    let mut out = String::with_capacity(36);
    for (i, b) in bytes.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out.push('-');
        }
        out.push(HEX[(b >> 4) as usize] as char);
        out.push(HEX[(b & 0xf) as usize] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_version_and_variant() {
        let id = uuid_v7(0x0190_d4c2_1234, 0xabc, [0xff; 8]);
        assert_eq!(id, "0190d4c2-1234-7abc-bfff-ffffffffffff");
    }

    #[test]
    fn sorts_by_time() {
        assert!(uuid_v7(1_700_000_000_000, 9, [9; 8]) < uuid_v7(1_700_000_000_001, 0, [0; 8]));
        assert!(uuid_v7(1_700_000_000_000, 1, [9; 8]) < uuid_v7(1_700_000_000_000, 2, [0; 8]));
    }
}
