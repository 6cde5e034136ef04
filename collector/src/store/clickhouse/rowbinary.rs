//! ClickHouse's RowBinary format, for the few column types the store uses: length-prefixed
//! strings and little-endian integers. Binary both ways, so nothing is escaped or parsed as text.

use crate::store::StoreError;

/// An answer that does not parse means the server is not what the store expects; it is
/// reported like any other storage failure (503, details logged).
fn malformed(what: &str) -> StoreError {
    StoreError::Unavailable(format!("ClickHouse's RowBinary answer {what}"))
}

pub fn put_str(out: &mut Vec<u8>, s: &str) {
    put_bytes(out, s.as_bytes());
}

/// A `String` of any bytes (ClickHouse's strings need not be UTF-8): the per-user rollup's
/// packed columns.
pub fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_len(out, bytes.len());
    out.extend_from_slice(bytes);
}

/// An `Array(String)`: its length, then each string.
pub fn put_strs<'a>(out: &mut Vec<u8>, items: impl ExactSizeIterator<Item = &'a str>) {
    put_len(out, items.len());
    for s in items {
        put_str(out, s);
    }
}

/// A length (of a string or an array) as an unsigned LEB128 varint.
pub fn put_len(out: &mut Vec<u8>, n: usize) {
    let mut n = n as u64;
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            break;
        }
        out.push(byte | 0x80);
    }
}

pub fn put_i64(out: &mut Vec<u8>, v: i64) {
    out.extend_from_slice(&v.to_le_bytes());
}

pub fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

/// Reads rows back; every method fails on truncated input instead of panicking.
pub struct Reader<'a> {
    buf: &'a [u8],
    /// Whether a read failed because the input ended: a row read from a streamed answer's
    /// first chunks may continue in the next one.
    ran_out: bool,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf, ran_out: false }
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.buf.len()
    }

    pub fn ran_out(&self) -> bool {
        self.ran_out
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], StoreError> {
        if self.buf.len() < n {
            self.ran_out = true;
            return Err(malformed("ends mid-row"));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    pub fn str(&mut self) -> Result<String, StoreError> {
        self.str_ref().map(str::to_owned)
    }

    /// A string borrowed from the answer: for values compared or looked up before (if ever)
    /// being kept.
    pub fn str_ref(&mut self) -> Result<&'a str, StoreError> {
        std::str::from_utf8(self.bytes()?).map_err(|_| malformed("has a string that is not UTF-8"))
    }

    /// A string's bytes, not checked as UTF-8: for values skipped or checked only when used.
    pub fn bytes(&mut self) -> Result<&'a [u8], StoreError> {
        let len = self.length()?;
        self.take(len)
    }

    /// A length (of a string or an array) as an unsigned LEB128 varint.
    pub fn length(&mut self) -> Result<usize, StoreError> {
        let mut len = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.take(1)?[0];
            len |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(len as usize);
            }
        }
        Err(malformed("has a length that overflows"))
    }

    fn eight(&mut self) -> Result<[u8; 8], StoreError> {
        let mut b = [0u8; 8];
        b.copy_from_slice(self.take(8)?);
        Ok(b)
    }

    pub fn i64(&mut self) -> Result<i64, StoreError> {
        Ok(i64::from_le_bytes(self.eight()?))
    }

    pub fn u8(&mut self) -> Result<u8, StoreError> {
        Ok(self.take(1)?[0])
    }

    pub fn u64(&mut self) -> Result<u64, StoreError> {
        Ok(u64::from_le_bytes(self.eight()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_long_strings_and_integers() {
        let long = "é".repeat(200);
        let mut out = Vec::new();
        put_str(&mut out, &long);
        put_i64(&mut out, -5);
        put_str(&mut out, "");
        let mut r = Reader::new(&out);
        assert_eq!(r.str().ok().as_deref(), Some(long.as_str()));
        assert_eq!(r.i64().ok(), Some(-5));
        assert_eq!(r.str().ok().as_deref(), Some(""));
        assert!(r.is_empty());
        let mut cut = Reader::new(&out[..3]);
        assert!(cut.str().is_err(), "truncated input is an error");
        assert!(cut.ran_out(), "and is told apart from a malformed one");
        let mut bad = Reader::new(&[1, 0xff]);
        assert!(bad.str().is_err() && !bad.ran_out(), "a string that is not UTF-8 is malformed, not short");
    }
}
