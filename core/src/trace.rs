//! W3C Trace Context (<https://www.w3.org/TR/trace-context/>): the `traceparent` header read
//! from upstream and written to partners. Pure: the shell draws the random ids.
//!
//! A header that does not parse is ignored (never refused): the message starts a new trace.

/// The longest `tracestate` passed through (the W3C limit is 32 members of at most 256
/// characters; 512 characters is what the recommendation asks every vendor to propagate).
pub const TRACESTATE_MAX: usize = 512;

/// Where a step stands in a trace: the trace and the span that is the parent of what follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceContext {
    pub trace_id: [u8; 16],
    /// The span this context points at (the parent of the next step).
    pub span_id: [u8; 8],
    /// The `sampled` flag: the caller may have recorded its span.
    pub sampled: bool,
}

impl TraceContext {
    /// Read a `traceparent` value. Version `00` exactly; a later version is read by its first
    /// four fields, as the recommendation asks; `ff`, upper-case hex, all-zero ids → `None`.
    pub fn parse(value: &str) -> Option<Self> {
        let v = value.trim_matches([' ', '\t']).as_bytes();
        if v.len() < 55 {
            return None;
        }
        let version = hex_byte(&v[0..2])?;
        if version == 0xff
            || (version == 0 && v.len() != 55)
            || (version > 0 && v.len() > 55 && v[55] != b'-')
        {
            return None;
        }
        if v[2] != b'-' || v[35] != b'-' || v[52] != b'-' {
            return None;
        }
        let mut trace_id = [0u8; 16];
        for (i, b) in trace_id.iter_mut().enumerate() {
            *b = hex_byte(&v[3 + 2 * i..5 + 2 * i])?;
        }
        let mut span_id = [0u8; 8];
        for (i, b) in span_id.iter_mut().enumerate() {
            *b = hex_byte(&v[36 + 2 * i..38 + 2 * i])?;
        }
        let flags = hex_byte(&v[53..55])?;
        if trace_id == [0; 16] || span_id == [0; 8] {
            return None;
        }
        Some(Self {
            trace_id,
            span_id,
            sampled: flags & 1 == 1,
        })
    }

    /// The `traceparent` value naming this context (version `00`).
    pub fn header(&self) -> String {
        let mut s = String::with_capacity(55);
        s.push_str("00-");
        push_hex(&mut s, &self.trace_id);
        s.push('-');
        push_hex(&mut s, &self.span_id);
        s.push_str(if self.sampled { "-01" } else { "-00" });
        s
    }

    /// The trace id as 32 lower-case hex digits (as the audit record keeps it).
    pub fn trace_id_hex(&self) -> String {
        let mut s = String::with_capacity(32);
        push_hex(&mut s, &self.trace_id);
        s
    }

    /// The same trace, pointing at another span.
    pub fn child(&self, span_id: [u8; 8]) -> Self {
        Self { span_id, ..*self }
    }
}

/// A `tracestate` worth passing on: printable ASCII, bounded; anything else is dropped.
pub fn tracestate(value: &str) -> Option<&str> {
    let v = value.trim_matches([' ', '\t']);
    (!v.is_empty() && v.len() <= TRACESTATE_MAX && v.bytes().all(|b| (0x20..0x7f).contains(&b)))
        .then_some(v)
}

fn hex_byte(two: &[u8]) -> Option<u8> {
    let d = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    Some(d(two[0])? << 4 | d(two[1])?)
}

fn push_hex(s: &mut String, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        s.push(HEX[usize::from(b >> 4)] as char);
        s.push(HEX[usize::from(b & 15)] as char);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn the_recommendations_example_reads_and_writes_back() {
        let cx = TraceContext::parse(EXAMPLE).expect("valid");
        assert_eq!(cx.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(cx.span_id, [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]);
        assert!(cx.sampled);
        assert_eq!(cx.header(), EXAMPLE);
        let unsampled = TraceContext::parse(&EXAMPLE.replace("-01", "-00")).expect("valid");
        assert!(!unsampled.sampled);
        assert!(unsampled.header().ends_with("-00"));
    }

    #[test]
    fn malformed_values_are_ignored() {
        for bad in [
            "",
            "garbage",
            // upper case
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            // all-zero ids
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            // version ff, and version 00 with a tail
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-xyz",
            // wrong separators, short fields
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
            "0ö-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceContext::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_later_version_is_read_by_its_known_fields() {
        let later = "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future-holds";
        let cx = TraceContext::parse(later).expect("valid");
        assert_eq!(cx.header(), EXAMPLE);
        assert_eq!(TraceContext::parse(&later.replace("-01-", "-01x")), None);
    }

    #[test]
    fn tracestate_is_passed_on_only_when_printable_and_bounded() {
        assert_eq!(tracestate(" congo=t61rcWkgMzE "), Some("congo=t61rcWkgMzE"));
        assert_eq!(tracestate(""), None);
        assert_eq!(tracestate("a=\u{7}"), None);
        assert_eq!(tracestate(&"a".repeat(TRACESTATE_MAX + 1)), None);
    }
}
