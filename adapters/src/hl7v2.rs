//! HL7 version 2 messages in their traditional encoding (ER7, "pipe and hat"): a bounded
//! parser into a JSON view and a writer back, for the declared adapters' `hl7v2` codec.
//!
//! Parsing reads the encoding characters from MSH-1 and MSH-2 (field, component, repetition,
//! escape, subcomponent; a fifth truncation character of v2.7+ is accepted and kept literal),
//! splits segments on CR (LF and CRLF are tolerated), and resolves the escape sequences
//! `\F\ \S\ \T\ \R\ \E\` and `\Xhh…\` (bytes, UTF-8); `\.br\` becomes a line break; other
//! escapes (highlighting, character-set switches) are kept as written. The message must be
//! UTF-8 without a byte-order mark. Size, segment count, segment length, field, repetition
//! and component counts are bounded ([`Limits`]); anything malformed is a typed error that
//! never repeats message content.
//!
//! The view keeps HL7's numbering: `segments` is the list of segments in order, each an array
//! whose element 0 is the segment id and element *n* is field *n* (so `MSH[1]` is the field
//! separator and `MSH[2]` the encoding characters, as the standard counts them). A field is
//! an array of repetitions, a repetition an array of components, a component a string — or,
//! when it has subcomponents, an array of strings. An empty field is `[]`.
//!
//! ```text
//! PID|1||320411199000000117^^^CN-ID^NNCHN||Li^Wenjing||19900314|F
//! ["PID", [["1"]], [], [["320411199000000117", "", "", "CN-ID", "NNCHN"]], [], [["Li", "Wenjing"]], [], [["19900314"]], [["F"]]]
//! ```
//!
//! Writing takes the same view and is lenient about depth: a field may also be a string (one
//! value), or an array of strings (the components of one repetition); `null` is empty.
//! The writer always uses the standard encoding characters `|^~\&` and ends every segment
//! with CR.

use serde_json::{Map, Value};

/// Bounds on one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_bytes: usize,
    pub max_segments: usize,
    pub max_segment_bytes: usize,
    pub max_fields: usize,
    pub max_repetitions: usize,
    pub max_components: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_bytes: 1024 * 1024,
            max_segments: 2_000,
            max_segment_bytes: 64 * 1024,
            max_fields: 256,
            max_repetitions: 100,
            max_components: 64,
        }
    }
}

/// Why a message was refused. No variant repeats message content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Hl7Error {
    #[error("message larger than {0} bytes")]
    TooLarge(usize),
    #[error("byte-order mark or encoding other than UTF-8")]
    Encoding,
    #[error("more than {0} segments")]
    TooManySegments(usize),
    #[error("segment {0} longer than {1} bytes")]
    SegmentTooLong(usize, usize),
    #[error("segment {0} has more than {1} fields")]
    TooManyFields(usize, usize),
    #[error("segment {0} has a field with more than {1} repetitions")]
    TooManyRepetitions(usize, usize),
    #[error("segment {0} has a value with more than {1} components")]
    TooManyComponents(usize, usize),
    #[error("not well-formed: {0}")]
    Malformed(String),
}

/// The five encoding characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Delimiters {
    field: char,
    component: char,
    repetition: char,
    escape: char,
    subcomponent: char,
}

const STANDARD: Delimiters = Delimiters {
    field: '|',
    component: '^',
    repetition: '~',
    escape: '\\',
    subcomponent: '&',
};

fn malformed(what: impl Into<String>) -> Hl7Error {
    Hl7Error::Malformed(what.into())
}

fn valid_segment_id(id: &str) -> bool {
    id.len() == 3
        && id
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
        && id.as_bytes()[0].is_ascii_uppercase()
}

fn delimiters(msh: &str) -> Result<(Delimiters, usize), Hl7Error> {
    let mut chars = msh.chars().skip(3);
    let field = chars.next().ok_or_else(|| malformed("MSH is too short"))?;
    let encoding: String = chars.take_while(|c| *c != field).collect();
    let enc: Vec<char> = encoding.chars().collect();
    if !(4..=5).contains(&enc.len()) {
        return Err(malformed(
            "MSH-2 must hold four or five encoding characters",
        ));
    }
    let d = Delimiters {
        field,
        component: enc[0],
        repetition: enc[1],
        escape: enc[2],
        subcomponent: enc[3],
    };
    let all = [field, enc[0], enc[1], enc[2], enc[3]];
    for (i, c) in all.iter().enumerate() {
        if c.is_alphanumeric() || c.is_whitespace() || all[..i].contains(c) {
            return Err(malformed(
                "the encoding characters must be distinct punctuation",
            ));
        }
    }
    Ok((d, 3 + field.len_utf8() + encoding.len()))
}

/// Resolve escape sequences in one value.
fn unescape(text: &str, d: &Delimiters) -> String {
    if !text.contains(d.escape) {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find(d.escape) {
        out.push_str(&rest[..start]);
        let after = &rest[start + d.escape.len_utf8()..];
        let Some(end) = after.find(d.escape) else {
            // A lone escape character: kept as written.
            out.push_str(&rest[start..]);
            return out;
        };
        let seq = &after[..end];
        match seq {
            "F" => out.push(d.field),
            "S" => out.push(d.component),
            "T" => out.push(d.subcomponent),
            "R" => out.push(d.repetition),
            "E" => out.push(d.escape),
            ".br" => out.push('\n'),
            _ if seq.len() >= 3
                && seq.starts_with('X')
                && seq.len() % 2 == 1
                && seq[1..].bytes().all(|b| b.is_ascii_hexdigit()) =>
            {
                let bytes: Vec<u8> = (1..seq.len())
                    .step_by(2)
                    .filter_map(|i| u8::from_str_radix(&seq[i..i + 2], 16).ok())
                    .collect();
                match String::from_utf8(bytes) {
                    Ok(s) => out.push_str(&s),
                    Err(_) => {
                        out.push(d.escape);
                        out.push_str(seq);
                        out.push(d.escape);
                    }
                }
            }
            _ => {
                out.push(d.escape);
                out.push_str(seq);
                out.push(d.escape);
            }
        }
        rest = &after[end + d.escape.len_utf8()..];
    }
    out.push_str(rest);
    out
}

fn split_value(
    field: &str,
    d: &Delimiters,
    limits: &Limits,
    seg_no: usize,
) -> Result<Value, Hl7Error> {
    if field.is_empty() {
        return Ok(Value::Array(Vec::new()));
    }
    let mut reps = Vec::new();
    for (r, rep) in field.split(d.repetition).enumerate() {
        if r >= limits.max_repetitions {
            return Err(Hl7Error::TooManyRepetitions(seg_no, limits.max_repetitions));
        }
        let mut comps = Vec::new();
        for (c, comp) in rep.split(d.component).enumerate() {
            if c >= limits.max_components {
                return Err(Hl7Error::TooManyComponents(seg_no, limits.max_components));
            }
            if comp.contains(d.subcomponent) {
                let subs: Vec<&str> = comp.split(d.subcomponent).collect();
                if subs.len() > limits.max_components {
                    return Err(Hl7Error::TooManyComponents(seg_no, limits.max_components));
                }
                comps.push(Value::Array(
                    subs.into_iter()
                        .map(|s| Value::String(unescape(s, d)))
                        .collect(),
                ));
            } else {
                comps.push(Value::String(unescape(comp, d)));
            }
        }
        reps.push(Value::Array(comps));
    }
    Ok(Value::Array(reps))
}

/// Parse an ER7 message into its view (`{"segments": [...]}`).
pub fn parse(bytes: &[u8], limits: &Limits) -> Result<Value, Hl7Error> {
    if bytes.len() > limits.max_bytes {
        return Err(Hl7Error::TooLarge(limits.max_bytes));
    }
    if bytes.starts_with(&[0xEF, 0xBB, 0xBF]) {
        return Err(Hl7Error::Encoding);
    }
    let text = std::str::from_utf8(bytes).map_err(|_| Hl7Error::Encoding)?;
    if text.contains('\0') {
        return Err(malformed("NUL character"));
    }
    let mut lines = text
        .split(['\r', '\n'])
        .filter(|l| !l.trim().is_empty())
        .peekable();
    let first = lines
        .peek()
        .copied()
        .ok_or_else(|| malformed("empty message"))?;
    if !first.starts_with("MSH") {
        return Err(malformed("a message starts with an MSH segment"));
    }
    let (d, msh_head) = delimiters(first)?;
    let mut segments = Vec::new();
    for (i, line) in lines.enumerate() {
        let seg_no = i + 1;
        if i >= limits.max_segments {
            return Err(Hl7Error::TooManySegments(limits.max_segments));
        }
        if line.len() > limits.max_segment_bytes {
            return Err(Hl7Error::SegmentTooLong(seg_no, limits.max_segment_bytes));
        }
        let mut out = Vec::new();
        let fields_text = if i == 0 {
            out.push(Value::String("MSH".into()));
            out.push(Value::Array(vec![Value::Array(vec![Value::String(
                d.field.to_string(),
            )])]));
            let enc = &line[3 + d.field.len_utf8()..msh_head];
            out.push(Value::Array(vec![Value::Array(vec![Value::String(
                enc.to_owned(),
            )])]));
            // What follows MSH-2's terminating field separator.
            line.get(msh_head + d.field.len_utf8()..).unwrap_or("")
        } else {
            let id = line.get(..3).unwrap_or(line);
            if !valid_segment_id(id) {
                return Err(malformed(format!(
                    "segment {seg_no} has no valid segment id"
                )));
            }
            if id == "MSH" {
                return Err(malformed("more than one MSH segment"));
            }
            out.push(Value::String(id.to_owned()));
            match line.get(3..) {
                Some("") => "",
                Some(rest) if rest.starts_with(d.field) => &rest[d.field.len_utf8()..],
                _ => {
                    return Err(malformed(format!(
                        "segment {seg_no}: field separator expected after the id"
                    )));
                }
            }
        };
        if i == 0 && line.len() <= msh_head {
            segments.push(Value::Array(out));
            continue;
        }
        for field in fields_text.split(d.field) {
            // `out` holds the segment id and the fields so far.
            if out.len() > limits.max_fields {
                return Err(Hl7Error::TooManyFields(seg_no, limits.max_fields));
            }
            out.push(split_value(field, &d, limits, seg_no)?);
        }
        // Trailing empty fields carry nothing.
        while out.len() > 1
            && out
                .last()
                .is_some_and(|v| v.as_array().is_some_and(Vec::is_empty))
        {
            out.pop();
        }
        segments.push(Value::Array(out));
    }
    let mut view = Map::new();
    view.insert("segments".into(), Value::Array(segments));
    Ok(Value::Object(view))
}

/// Why a view cannot be written. Never repeats values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot write HL7 v2: {0}")]
pub struct WriteError(pub String);

fn escape_into(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '|' => out.push_str("\\F\\"),
            '^' => out.push_str("\\S\\"),
            '&' => out.push_str("\\T\\"),
            '~' => out.push_str("\\R\\"),
            '\\' => out.push_str("\\E\\"),
            '\r' => out.push_str("\\X0D\\"),
            '\n' => out.push_str("\\X0A\\"),
            c => out.push(c),
        }
    }
}

fn scalar(v: &Value, at: &str) -> Result<Option<String>, WriteError> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s.clone())),
        Value::Number(n) => Ok(Some(n.to_string())),
        Value::Bool(b) => Ok(Some(if *b { "Y" } else { "N" }.to_owned())),
        _ => Err(WriteError(format!("{at}: expected a value"))),
    }
}

fn write_component(out: &mut String, v: &Value, at: &str) -> Result<(), WriteError> {
    match v {
        Value::Array(subs) => {
            for (i, s) in subs.iter().enumerate() {
                if i > 0 {
                    out.push(STANDARD.subcomponent);
                }
                if let Some(t) = scalar(s, at)? {
                    escape_into(out, &t);
                }
            }
            Ok(())
        }
        other => {
            if let Some(t) = scalar(other, at)? {
                escape_into(out, &t);
            }
            Ok(())
        }
    }
}

fn write_repetition(out: &mut String, comps: &[Value], at: &str) -> Result<(), WriteError> {
    for (i, c) in comps.iter().enumerate() {
        if i > 0 {
            out.push(STANDARD.component);
        }
        write_component(out, c, at)?;
    }
    Ok(())
}

fn write_field(out: &mut String, v: &Value, at: &str) -> Result<(), WriteError> {
    match v {
        Value::Array(items) if !items.is_empty() && items.iter().all(Value::is_array) => {
            for (i, rep) in items.iter().enumerate() {
                if i > 0 {
                    out.push(STANDARD.repetition);
                }
                if let Value::Array(comps) = rep {
                    write_repetition(out, comps, at)?;
                }
            }
            Ok(())
        }
        Value::Array(comps) => write_repetition(out, comps, at),
        other => write_component(out, other, at),
    }
}

/// Write a view (`{"segments": [...]}`) as ER7.
pub fn write(view: &Value) -> Result<Vec<u8>, WriteError> {
    let segments = view
        .get("segments")
        .and_then(Value::as_array)
        .ok_or_else(|| WriteError("expected an object with a segments array".into()))?;
    let mut out = String::new();
    for (i, seg) in segments.iter().enumerate() {
        let fields = seg
            .as_array()
            .ok_or_else(|| WriteError(format!("segment {} is not an array", i + 1)))?;
        let id = fields
            .first()
            .and_then(Value::as_str)
            .filter(|id| valid_segment_id(id))
            .ok_or_else(|| WriteError(format!("segment {} has no valid segment id", i + 1)))?;
        if (i == 0) != (id == "MSH") {
            return Err(WriteError(
                "a message starts with its one MSH segment".into(),
            ));
        }
        out.push_str(id);
        let first_field = if id == "MSH" {
            out.push_str("|^~\\&");
            3
        } else {
            1
        };
        let mut last = fields.len();
        while last > first_field && fields[last - 1].is_null() {
            last -= 1;
        }
        for (n, f) in fields.iter().enumerate().take(last).skip(first_field) {
            out.push(STANDARD.field);
            write_field(&mut out, f, &format!("{id}-{n}"))?;
        }
        out.push('\r');
    }
    Ok(out.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse_ok(text: &str) -> Value {
        parse(text.as_bytes(), &Limits::default()).expect("parses")
    }

    #[test]
    fn numbering_components_repetitions_and_escapes() {
        let v = parse_ok(
            "MSH|^~\\&|APP|FAC|||20261129||ORU^R01|MSG1|P|2.5\rPID|1||1234^^^CN~5678||Li^Wen\\S\\jing&x||\\F\\\\E\\\\XE4B8AD\\\\.br\\\\H\\\r",
        );
        let segs = v["segments"].as_array().expect("segments");
        assert_eq!(segs[0][0], "MSH");
        assert_eq!(segs[0][1], json!([["|"]]));
        assert_eq!(segs[0][2], json!([["^~\\&"]]));
        assert_eq!(segs[0][3], json!([["APP"]]));
        assert_eq!(segs[0][9], json!([["ORU", "R01"]]));
        assert_eq!(segs[0][12], json!([["2.5"]]));
        assert_eq!(segs[1][0], "PID");
        assert_eq!(segs[1][2], json!([]));
        assert_eq!(segs[1][3], json!([["1234", "", "", "CN"], ["5678"]]));
        assert_eq!(segs[1][5], json!([["Li", ["Wen^jing", "x"]]]));
        assert_eq!(segs[1][7], json!([["|\\中\n\\H\\"]]));
    }

    /// The encoding characters are the message's own (MSH-1 and MSH-2), not assumed: the same
    /// message written with `#$*@%` reads as it does with `|^~\&`, and its escapes name its
    /// own delimiters.
    #[test]
    fn encoding_characters_are_read_from_msh() {
        let standard = parse_ok(
            "MSH|^~\\&|APP|FAC|||20261129||ORU^R01|MSG1|P|2.5\rPID|1||1234^^^CN~5678||Li^Wen&x",
        );
        let own = parse_ok(
            "MSH#$*@%#APP#FAC###20261129##ORU$R01#MSG1#P#2.5\rPID#1##1234$$$CN*5678##Li$Wen%x",
        );
        let (s, o) = (&standard["segments"], &own["segments"]);
        assert_eq!(o[0][1], json!([["#"]]));
        assert_eq!(o[0][2], json!([["$*@%"]]));
        for field in 3..=12 {
            assert_eq!(o[0][field], s[0][field], "MSH-{field}");
        }
        assert_eq!(o[1], s[1]);
        assert_eq!(o[1][3], json!([["1234", "", "", "CN"], ["5678"]]));
        // Escapes are the message's own: @S@ is its component separator, @F@ its field one;
        // a `|` or `^` in its values is plain text.
        let escaped = parse_ok("MSH#$*@%#APP\rNTE#1##a@S@b@F@c|d^e@E@f");
        assert_eq!(escaped["segments"][1][3], json!([["a$b#c|d^e@f"]]));
        // Encoding characters that are not distinct punctuation are refused.
        for bad in ["MSH#$*@$#APP", "MSH#$*a%#APP", "MSH#$*@"] {
            assert!(
                matches!(
                    parse(bad.as_bytes(), &Limits::default()),
                    Err(Hl7Error::Malformed(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn segment_length_and_component_bounds_hold() {
        let l = Limits::default();
        let long = format!("MSH|^~\\&|a\rNTE|1||{}", "x".repeat(64 * 1024));
        assert_eq!(
            parse(long.as_bytes(), &l),
            Err(Hl7Error::SegmentTooLong(2, 64 * 1024))
        );
        let just = format!("MSH|^~\\&|a\rNTE|{}", "x".repeat(64 * 1024 - 4));
        assert!(parse(just.as_bytes(), &l).is_ok(), "a segment at the bound");
        let comps = format!("MSH|^~\\&|a\rNTE|{}", "x^".repeat(70));
        assert_eq!(
            parse(comps.as_bytes(), &l),
            Err(Hl7Error::TooManyComponents(2, 64))
        );
        let subs = format!("MSH|^~\\&|a\rNTE|{}", "x&".repeat(70));
        assert_eq!(
            parse(subs.as_bytes(), &l),
            Err(Hl7Error::TooManyComponents(2, 64))
        );
        // No refusal repeats the message's content.
        for bytes in [long, comps, subs] {
            let e = parse(bytes.as_bytes(), &l).expect_err("refused");
            assert!(!e.to_string().contains("xx"), "{e}");
        }
    }

    #[test]
    fn written_messages_read_back() {
        let view = json!({"segments": [
            ["MSH", null, null, "wingspan", "centre", "his", "hospital", "20261129100000", null,
             ["OMG", "O19", "OMG_O19"], "msg-1", "P", "2.5"],
            ["PID", "1", null, [["320411199000000117", "", "", "CN-ID"]], null, ["Li", "Wenjing"]],
            ["NTE", "1", null, "a | b ^ c & d ~ e \\ f\r\ng"],
        ]});
        let bytes = write(&view).expect("writes");
        let text = String::from_utf8(bytes.clone()).expect("utf-8");
        assert!(text.starts_with(
            "MSH|^~\\&|wingspan|centre|his|hospital|20261129100000||OMG^O19^OMG_O19|msg-1|P|2.5\r"
        ));
        let back = parse(&bytes, &Limits::default()).expect("reads");
        assert_eq!(back["segments"][1][5], json!([["Li", "Wenjing"]]));
        assert_eq!(
            back["segments"][2][3],
            json!([["a | b ^ c & d ~ e \\ f\r\ng"]])
        );
        // What it reads it writes the same.
        assert_eq!(write(&back).expect("again"), bytes);
    }

    #[test]
    fn malformed_and_hostile_messages_are_typed_errors() {
        let l = Limits::default();
        let cases: [(&[u8], &str); 9] = [
            (b"", "empty"),
            (b"PID|1", "MSH"),
            (b"MSH", "short"),
            (b"MSH|^~", "encoding"),
            (b"MSH|^^\\&|", "distinct"),
            (b"MSH|^~\\&|a\rpid|1", "segment id"),
            (b"MSH|^~\\&|a\rMSH|^~\\&|b", "more than one"),
            (b"\xEF\xBB\xBFMSH|^~\\&|a", "UTF-8"),
            (b"MSH|^~\\&|\xff", "UTF-8"),
        ];
        for (bytes, why) in cases {
            let e = parse(bytes, &l).expect_err(why);
            assert!(
                e.to_string().contains(why)
                    || e.to_string().to_lowercase().contains(&why.to_lowercase()),
                "{why}: {e}"
            );
        }
        let many = format!("MSH|^~\\&|a{}", "\rNTE|1".repeat(3000));
        assert_eq!(
            parse(many.as_bytes(), &l),
            Err(Hl7Error::TooManySegments(2000))
        );
        let wide = format!("MSH|^~\\&|a\rNTE{}", "|x".repeat(300));
        assert!(matches!(
            parse(wide.as_bytes(), &l),
            Err(Hl7Error::TooManyFields(2, 256))
        ));
        // The bound is on fields, each counted once: 256 pass, 257 do not.
        let widest = format!("MSH|^~\\&|a\rNTE{}", "|x".repeat(256));
        let v = parse(widest.as_bytes(), &l).expect("256 fields are allowed");
        assert_eq!(v["segments"][1].as_array().map(Vec::len), Some(257));
        let over = format!("MSH|^~\\&|a\rNTE{}", "|x".repeat(257));
        assert!(matches!(
            parse(over.as_bytes(), &l),
            Err(Hl7Error::TooManyFields(2, 256))
        ));
        let reps = format!("MSH|^~\\&|a\rNTE|{}", "x~".repeat(200));
        assert!(matches!(
            parse(reps.as_bytes(), &l),
            Err(Hl7Error::TooManyRepetitions(2, 100))
        ));
        let big = vec![b'x'; 2 * 1024 * 1024];
        assert_eq!(parse(&big, &l), Err(Hl7Error::TooLarge(1024 * 1024)));
    }

    #[test]
    fn the_published_samples_parse() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus/hl7v2");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            panic!("{}: the HL7 v2 corpus is missing", dir.display());
        };
        let mut n = 0;
        for e in entries.flatten() {
            let bytes = std::fs::read(e.path()).expect("read");
            let body = bytes
                .strip_prefix(&[0xEF, 0xBB, 0xBF][..])
                .unwrap_or(&bytes);
            let v = parse(body, &Limits::default())
                .unwrap_or_else(|err| panic!("{}: {err}", e.path().display()));
            let segs = v["segments"].as_array().expect("segments");
            assert_eq!(segs[0][0], "MSH");
            assert!(segs.len() > 1);
            // Written and read again, the view is unchanged.
            let again = parse(&write(&v).expect("writes"), &Limits::default()).expect("reads");
            assert_eq!(again, v, "{}", e.path().display());
            n += 1;
        }
        assert!(n >= 10);
    }
}
