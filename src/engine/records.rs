//! Where a TLS byte stream stands between records: fed every byte of
//! ciphertext that arrives, it knows whether the stream is at a record
//! boundary. rustls keeps a cut record to itself; this tells a connection
//! that ended in the middle of one (a message cut short, whatever the
//! plaintext shows so far) from one that ended between records.

/// A TLS record header is 5 bytes: type, version (2), length (2).
const HEADER: usize = 5;

/// The position in the record framing of a TLS stream.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct RecordCursor {
    /// Header bytes seen of the record under way (0..5).
    header: [u8; HEADER],
    have: usize,
    /// Body bytes still to come once the header is whole.
    body_left: usize,
}

impl RecordCursor {
    /// Follows `bytes`, the next ciphertext of the stream.
    pub(crate) fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.body_left > 0 {
                let n = self.body_left.min(bytes.len());
                self.body_left -= n;
                bytes = &bytes[n..];
                continue;
            }
            let n = (HEADER - self.have).min(bytes.len());
            self.header[self.have..self.have + n].copy_from_slice(&bytes[..n]);
            self.have += n;
            bytes = &bytes[n..];
            if self.have == HEADER {
                self.body_left = u16::from_be_bytes([self.header[3], self.header[4]]) as usize;
                self.have = 0;
            }
        }
    }

    /// `true` between two records (or before the first).
    pub(crate) fn at_boundary(&self) -> bool {
        self.have == 0 && self.body_left == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(len: u16) -> Vec<u8> {
        let mut r = vec![0x17, 0x03, 0x03];
        r.extend_from_slice(&len.to_be_bytes());
        r.resize(5 + len as usize, 0xaa);
        r
    }

    #[test]
    fn whole_records_in_any_pieces_end_at_a_boundary_and_cuts_do_not() {
        let mut stream = record(0);
        stream.extend(record(1));
        stream.extend(record(300));
        stream.extend(record(16_401));
        for piece in [1, 2, 4, 5, 7, 100, 70_000] {
            let mut cursor = RecordCursor::default();
            let mut fed = 0;
            let mut boundaries = Vec::new();
            for chunk in stream.chunks(piece) {
                cursor.feed(chunk);
                fed += chunk.len();
                if cursor.at_boundary() {
                    boundaries.push(fed);
                }
            }
            assert!(cursor.at_boundary(), "piece {piece}");
            // Only ever at the ends of records.
            let ends = [5, 11, 316, stream.len()];
            assert!(
                boundaries.iter().all(|b| ends.contains(b)),
                "{piece}: {boundaries:?}"
            );
        }
        for cut in 1..stream.len() {
            let mut cursor = RecordCursor::default();
            cursor.feed(&stream[..cut]);
            assert_eq!(
                cursor.at_boundary(),
                [5, 11, 316].contains(&cut),
                "cut at {cut}"
            );
        }
    }
}
