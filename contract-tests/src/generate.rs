//! Random valid canonical messages of every type, driven by the JSON Schemas themselves
//! (so a new field is covered the day it is added): required properties always, optional
//! ones by coin toss, enums picked, the project's `pattern`s and `format`s produced by hand.
//!
//! Free-text strings are random tokens (`tk` + 12 letters and digits), unique in practice, so a
//! test can ask "does this value appear anywhere in those bytes" and trust the answer.
//! Deterministic per seed: a failing case is reproduced from the seed proptest prints.

use serde_json::{Map, Value, json};

/// SplitMix64: tiny, deterministic, good enough to pick shapes.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }

    pub fn coin(&mut self) -> bool {
        self.next_u64() & 1 == 1
    }

    fn digits(&mut self, n: usize) -> String {
        (0..n)
            .map(|_| char::from(b'0' + (self.below(10) as u8)))
            .collect()
    }

    /// A random token: `tk` + 12 lowercase letters and digits.
    pub fn token(&mut self) -> String {
        const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
        let mut s = String::from("tk");
        for _ in 0..12 {
            let i = self.below(ALPHABET.len() as u64) as usize;
            s.push(char::from(ALPHABET.get(i).copied().unwrap_or(b'a')));
        }
        s
    }
}

/// A value for a string schema: by enum, pattern, format, or a random token.
fn string(schema: &Value, rng: &mut Rng) -> Value {
    if let Some(p) = schema.get("pattern").and_then(Value::as_str) {
        return Value::String(match p {
            "^[0-9]{17}[0-9X]$" => {
                let mut id = rng.digits(17);
                id.push(if rng.coin() { 'X' } else { '7' });
                id
            }
            // Mostly the two cities the example config routes on, sometimes elsewhere.
            "^[0-9]{6}$" => {
                let city = ["3204", "3205", "3201"][rng.below(3) as usize];
                format!("{city}{}", rng.digits(2))
            }
            "^[0-9a-f]{64}$" => (0..64)
                .map(|_| char::from(b"0123456789abcdef"[rng.below(16) as usize]))
                .collect(),
            "^[0-9+ -]{5,20}$" => format!("+86 {}", rng.digits(11)),
            // Identifiers: `^[A-Za-z0-9][A-Za-z0-9._:-]*$`
            _ => format!("id-{}", rng.token()),
        });
    }
    match schema.get("format").and_then(Value::as_str) {
        Some("date") => {
            return json!(format!(
                "20{:02}-{:02}-{:02}",
                rng.below(30),
                1 + rng.below(12),
                1 + rng.below(28)
            ));
        }
        Some("date-time") => {
            return json!(format!(
                "2026-{:02}-{:02}T{:02}:{:02}:{:02}Z",
                1 + rng.below(12),
                1 + rng.below(28),
                rng.below(24),
                rng.below(60),
                rng.below(60)
            ));
        }
        Some("uri") => return json!(format!("https://docs.example.gov.cn/{}", rng.token())),
        _ => {}
    }
    Value::String(rng.token())
}

fn deref<'a>(root: &'a Value, node: &'a Value) -> &'a Value {
    match node
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(|r| r.strip_prefix('#'))
        .and_then(|p| root.pointer(p))
    {
        Some(target) => target,
        None => node,
    }
}

fn value(root: &Value, schema: &Value, rng: &mut Rng, depth: usize) -> Value {
    let schema = deref(root, schema);
    if let Some(options) = schema.get("enum").and_then(Value::as_array) {
        let i = rng.below(options.len() as u64) as usize;
        return options.get(i).cloned().unwrap_or(Value::Null);
    }
    if let Some(c) = schema.get("const") {
        return c.clone();
    }
    match schema.get("type").and_then(Value::as_str) {
        Some("object") => {
            let mut out = Map::new();
            let required: Vec<&str> = schema
                .get("required")
                .and_then(Value::as_array)
                .map(|r| r.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                for (k, v) in props {
                    if (required.contains(&k.as_str()) || rng.coin()) && depth < 8 {
                        let v = if k == "alliance" {
                            // Alliances are routing keys: the example config's two, or another.
                            json!(["ma01", "ma02", "ma03", "ma07"][rng.below(4) as usize])
                        } else {
                            value(root, v, rng, depth + 1)
                        };
                        out.insert(k.clone(), v);
                    }
                }
            }
            Value::Object(out)
        }
        Some("array") => {
            let min = schema.get("minItems").and_then(Value::as_u64).unwrap_or(0);
            let n = min + rng.below(3);
            let items = schema.get("items").cloned().unwrap_or(json!({}));
            Value::Array(
                (0..n)
                    .map(|_| value(root, &items, rng, depth + 1))
                    .collect(),
            )
        }
        Some("integer") => {
            let min = schema.get("minimum").and_then(Value::as_i64).unwrap_or(0);
            let max = schema
                .get("maximum")
                .and_then(Value::as_i64)
                .unwrap_or(min + 100);
            let span = u64::try_from(max - min + 1).unwrap_or(1);
            json!(min + i64::try_from(rng.below(span)).unwrap_or(0))
        }
        Some("boolean") => json!(rng.coin()),
        Some("number") => json!(rng.below(1000)),
        _ => string(schema, rng),
    }
}

/// A random payload valid against `schema` (a payload schema document).
pub fn payload(schema: &Value, rng: &mut Rng) -> Value {
    value(schema, schema, rng, 0)
}

/// A random canonical envelope of `message_type` from `source` (replies get a correlation id).
pub fn envelope(message_type: &str, source: &str, schema: &Value, rng: &mut Rng) -> Value {
    let reply = !matches!(
        message_type,
        "enforcement.material.submit"
            | "telemedicine.consultation.request"
            | "emergency.transfer.request"
            | "referral.handover"
    );
    let mut env = json!({
        "message_id": format!("msg-{}", rng.token()),
        "message_type": message_type,
        "schema_version": "1.0",
        "source": source,
        "sent_at": "2026-11-29T08:30:00Z",
        "payload": payload(schema, rng),
    });
    if reply && let Some(o) = env.as_object_mut() {
        o.insert(
            "correlation_id".into(),
            json!(format!("msg-{}", rng.token())),
        );
    }
    env
}

/// `schemas/v1/<type>.schema.json` of this repository.
pub fn schema_v1(message_type: &str) -> Option<Value> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../schemas/v1")
        .join(format!("{message_type}.schema.json"));
    let text = std::fs::read_to_string(path).ok()?;
    serde_json::from_str(&text).ok()
}
