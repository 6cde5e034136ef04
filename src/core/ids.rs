//! Event and anonymous ids.
//!
//! UUIDv7 (RFC 9562): 48 bits of Unix milliseconds then random bits, so ids sort by creation
//! time, which keeps the collector's dedup index append-mostly. The caller supplies randomness
//! (`crypto.getRandomValues` in the browser), keeping this module pure and testable.

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Formats a UUIDv7 from a millisecond timestamp and ten random bytes.
pub fn uuid_v7(unix_ms: u64, random: [u8; 10]) -> String {
    let mut bytes = [0u8; 16];
    bytes[..6].copy_from_slice(&unix_ms.to_be_bytes()[2..]);
    bytes[6..].copy_from_slice(&random);
    bytes[6] = (bytes[6] & 0x0f) | 0x70; // version 7
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
        let id = uuid_v7(0x0190_d4c2_1234, [0xff; 10]);
        assert_eq!(id, "0190d4c2-1234-7fff-bfff-ffffffffffff");
    }

    #[test]
    fn sorts_by_time() {
        assert!(uuid_v7(1_700_000_000_000, [9; 10]) < uuid_v7(1_700_000_000_001, [0; 10]));
    }
}
