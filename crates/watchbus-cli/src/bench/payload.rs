//! The bench payload: what the publisher stamps into each event and the tiny
//! scanner the subscribers use to read it back without a JSON parser.
//!
//! A payload is the JSON object
//! `{"_wb":[run,sent_unix_nanos,seq,publisher,key,warmup],"pad":"xxx…"}`.
//! The scanner looks for `"_wb"` anywhere in the event data, so it works on
//! the raw payload (nchan, `format=raw`) and inside a watchbus envelope alike,
//! and tolerates whitespace a server may add when it re-serialises JSON.

use std::io::Write as _;

const MARKER: &[u8] = b"\"_wb\"";

/// What one event carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stamp {
    /// Identifies the bench run, so events of an earlier run are told apart.
    pub(crate) run: u64,
    /// Unix time in nanoseconds when the publisher sent it, or, for a
    /// send more than `publisher::ON_TIME` late, when it was due: the
    /// time its latency counts from.
    pub(crate) sent_ns: u64,
    /// Sequence number per (publisher, key), from 0.
    pub(crate) seq: u64,
    pub(crate) publisher: u32,
    pub(crate) key: u32,
    /// Published during the warm-up: checked for loss, not measured.
    pub(crate) warmup: bool,
}

/// Writes the payload of `stamp` into `out` (cleared first), padded so that
/// it is about `size` bytes long.
pub(crate) fn build(out: &mut Vec<u8>, stamp: &Stamp, size: usize) {
    out.clear();
    // Writing into a Vec cannot fail.
    let _ = write!(
        out,
        "{{\"_wb\":[{},{},{},{},{},{}]",
        stamp.run,
        stamp.sent_ns,
        stamp.seq,
        stamp.publisher,
        stamp.key,
        u8::from(stamp.warmup)
    );
    const PAD_OVERHEAD: usize = ",\"pad\":\"\"}".len();
    if size > out.len() + PAD_OVERHEAD {
        let pad = size - out.len() - PAD_OVERHEAD;
        out.extend_from_slice(b",\"pad\":\"");
        out.resize(out.len() + pad, b'x');
        out.extend_from_slice(b"\"}");
    } else {
        out.push(b'}');
    }
}

/// Finds and reads the stamp in event data. `None` when there is none or it
/// is malformed.
pub(crate) fn scan(data: &[u8]) -> Option<Stamp> {
    let start = memchr::memmem::find(data, MARKER)? + MARKER.len();
    let mut s = Scanner { data, pos: start };
    s.skip_ws();
    s.expect(b':')?;
    s.skip_ws();
    s.expect(b'[')?;
    s.skip_ws();
    let run = s.number()?;
    s.comma()?;
    let sent_ns = s.number()?;
    s.comma()?;
    let seq = s.number()?;
    s.comma()?;
    let publisher = u32::try_from(s.number()?).ok()?;
    s.comma()?;
    let key = u32::try_from(s.number()?).ok()?;
    s.comma()?;
    let warmup = s.number()? != 0;
    s.skip_ws();
    s.expect(b']')?;
    Some(Stamp {
        run,
        sent_ns,
        seq,
        publisher,
        key,
        warmup,
    })
}

struct Scanner<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Scanner<'_> {
    fn peek(&self) -> Option<u8> {
        self.data.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn expect(&mut self, b: u8) -> Option<()> {
        if self.peek() == Some(b) {
            self.pos += 1;
            Some(())
        } else {
            None
        }
    }

    fn comma(&mut self) -> Option<()> {
        self.skip_ws();
        self.expect(b',')?;
        self.skip_ws();
        Some(())
    }

    fn number(&mut self) -> Option<u64> {
        let mut n: u64 = 0;
        let mut digits = 0;
        while let Some(b @ b'0'..=b'9') = self.peek() {
            n = n.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
            self.pos += 1;
            digits += 1;
        }
        (digits > 0).then_some(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp() -> Stamp {
        Stamp {
            run: 77,
            sent_ns: 1_780_000_000_123_456_789,
            seq: 42,
            publisher: 3,
            key: 9999,
            warmup: true,
        }
    }

    #[test]
    fn roundtrip_and_size() {
        let mut buf = Vec::new();
        for size in [0, 10, 60, 64, 128, 1000, 4096] {
            build(&mut buf, &stamp(), size);
            assert_eq!(scan(&buf), Some(stamp()), "size {size}");
            assert!(serde_json::from_slice::<serde_json::Value>(&buf).is_ok());
            if size >= 80 {
                assert_eq!(buf.len(), size);
            }
        }
    }

    #[test]
    fn inside_an_envelope_with_whitespace() {
        let env = br#"{"id":"0000000000000007","key":"bench-1","time":"2026-01-01T00:00:00.000Z","data":{"_wb" : [ 1 , 2 ,3,4,5, 0 ],"pad":"xx"}}"#;
        assert_eq!(
            scan(env),
            Some(Stamp {
                run: 1,
                sent_ns: 2,
                seq: 3,
                publisher: 4,
                key: 5,
                warmup: false
            })
        );
        // Keys sorted by a server: the pad may come first.
        let sorted = br#"{"data":{"pad":"xxxx","_wb":[1,2,3,4,5,1]}}"#;
        assert_eq!(scan(sorted).map(|s| s.warmup), Some(true));
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            &b""[..],
            b"{\"other\":1}",
            b"{\"_wb\":[1,2,3,4,5]}",
            b"{\"_wb\":[1,2,3,4,5,0",
            b"{\"_wb\":[1,2,-3,4,5,0]}",
            b"{\"_wb\":[1,2,3,4,99999999999,0]}",
            b"{\"_wb\":[99999999999999999999999,2,3,4,5,0]}",
            b"{\"_wb\":{}}",
            b"{\"bookmark\":\"0001\"}",
        ] {
            assert_eq!(scan(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    /// Any stamp at any size reads back from its payload, also inside an
    /// envelope; no bytes make the scanner panic.
    mod props {
        use proptest::collection::vec;
        use proptest::prelude::*;

        use super::*;

        fn any_stamp() -> impl Strategy<Value = Stamp> {
            (
                any::<u64>(),
                any::<u64>(),
                any::<u64>(),
                any::<u32>(),
                any::<u32>(),
                any::<bool>(),
            )
                .prop_map(|(run, sent_ns, seq, publisher, key, warmup)| Stamp {
                    run,
                    sent_ns,
                    seq,
                    publisher,
                    key,
                    warmup,
                })
        }

        proptest! {
            #[test]
            fn a_stamp_reads_back_from_its_payload(stamp in any_stamp(), size in 0usize..2048) {
                let mut payload = Vec::new();
                build(&mut payload, &stamp, size);
                prop_assert_eq!(scan(&payload), Some(stamp));
                let envelope = [&br#"{"id":"1-1","key":"k","data":"#[..], &payload, b"}"].concat();
                prop_assert_eq!(scan(&envelope), Some(stamp));
            }

            #[test]
            fn no_bytes_panic_the_scanner(bytes in vec(any::<u8>(), 0..256)) {
                let marked = [&b"{\"_wb\":"[..], &bytes].concat();
                let _ = scan(&bytes);
                let _ = scan(&marked);
            }
        }
    }
}
