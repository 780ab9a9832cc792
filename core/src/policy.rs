//! Field policies: data minimisation per destination.
//!
//! A destination lists, per message type, the payload fields it may receive, as dotted paths
//! (`person.person_id`; a path into an array of objects applies to each element:
//! `documents.uri`). Naming an object keeps all of it; `*` keeps the whole payload. Everything
//! not listed is cut before the adapter sees the message: deny by default. Envelope header
//! fields (ids, type, version, source, timestamps, correlation) always pass.
//!
//! Two rules hold whatever an operator writes (checked when the config is compiled):
//! - clinical fields ([`CLINICAL_FIELDS`]) go only to adapters that carry clinical data
//!   (`health`, `rehab`);
//! - `medical_justification` goes only to those and to `police` (whose adapter writes it only
//!   for material types that require it).

use std::collections::BTreeMap;

use serde_json::{Map, Value};

/// Payload fields that hold clinical or substance-use detail, at any depth.
pub const CLINICAL_FIELDS: [&str; 5] = [
    "substance_history",
    "clinical_summary",
    "diagnoses",
    "medications",
    "findings",
];

/// Adapters allowed to carry [`CLINICAL_FIELDS`].
pub const CLINICAL_ADAPTERS: [&str; 2] = ["health", "rehab"];

/// The field the police may receive for `outside_medical_treatment` materials only.
pub const MEDICAL_JUSTIFICATION: &str = "medical_justification";

/// Which part of a payload a destination may receive for one message type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// The whole payload (`*`).
    All,
    /// Only these fields (a tree of names; a leaf keeps the whole value).
    Fields(FieldTree),
}

/// Selected field names; `None` keeps the field's whole value, `Some` selects inside it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FieldTree(pub BTreeMap<String, Option<FieldTree>>);

impl FieldTree {
    /// Add one dotted path. A shorter path that keeps a whole object wins over a longer one.
    pub fn insert(&mut self, path: &str) {
        let mut node = self;
        let mut parts = path.split('.').peekable();
        while let Some(part) = parts.next() {
            let last = parts.peek().is_none();
            let entry = node.0.entry(part.to_owned());
            if last {
                entry.insert_entry(None);
                return;
            }
            let slot = entry.or_insert_with(|| Some(FieldTree::default()));
            match slot {
                Some(child) => node = child,
                None => return, // the whole object is already kept
            }
        }
    }

    /// Cut an object to this tree; `cut` is set when anything was left out.
    fn apply_object(&self, obj: &Map<String, Value>, cut: &mut bool) -> Map<String, Value> {
        let mut out = Map::new();
        let mut kept = 0;
        for (k, sub) in &self.0 {
            let Some(v) = obj.get(k) else { continue };
            kept += 1;
            match sub {
                None => {
                    out.insert(k.clone(), v.clone());
                }
                Some(tree) => match tree.apply_value(v, cut) {
                    Some(inner) => {
                        out.insert(k.clone(), inner);
                    }
                    None => *cut = true,
                },
            }
        }
        if kept < obj.len() {
            *cut = true;
        }
        out
    }

    /// Cut a value to this tree: objects keep the selected keys, arrays cut each element.
    /// A scalar where an object was expected is dropped (it cannot hold the selected fields).
    fn apply_value(&self, v: &Value, cut: &mut bool) -> Option<Value> {
        match v {
            Value::Object(o) => Some(Value::Object(self.apply_object(o, cut))),
            Value::Array(items) => {
                let kept: Vec<Value> = items
                    .iter()
                    .filter_map(|i| self.apply_value(i, cut))
                    .collect();
                if kept.len() < items.len() {
                    *cut = true;
                }
                Some(Value::Array(kept))
            }
            _ => None,
        }
    }

    /// Every dotted leaf path in the tree.
    pub fn paths(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (k, sub) in &self.0 {
            match sub {
                None => out.push(k.clone()),
                Some(t) => out.extend(t.paths().into_iter().map(|p| format!("{k}.{p}"))),
            }
        }
        out
    }
}

impl Selection {
    /// Parse a policy list: `["*"]` or dotted paths.
    pub fn from_paths<S: AsRef<str>>(paths: &[S]) -> Self {
        if paths.iter().any(|p| p.as_ref() == "*") {
            return Self::All;
        }
        let mut tree = FieldTree::default();
        for p in paths {
            tree.insert(p.as_ref());
        }
        Self::Fields(tree)
    }

    /// The payload this selection lets through, or `None` when it is the payload unchanged
    /// (so the exact accepted bytes may be forwarded).
    pub fn apply(&self, payload: &Value) -> Option<Value> {
        match self {
            Self::All => None,
            Self::Fields(tree) => {
                let mut cut = false;
                let kept = match payload {
                    Value::Object(o) => Value::Object(tree.apply_object(o, &mut cut)),
                    _ => {
                        cut = true;
                        Value::Object(Map::new())
                    }
                };
                cut.then_some(kept)
            }
        }
    }

    /// Whether the field at a dotted path (array elements share their array's path) passes.
    pub fn allows(&self, path: &str) -> bool {
        let Self::Fields(tree) = self else {
            return true;
        };
        let mut node = tree;
        for part in path.split('.') {
            match node.0.get(part) {
                None => return false,
                Some(None) => return true,
                Some(Some(child)) => node = child,
            }
        }
        // The path names an object whose fields are selected one by one: the object itself
        // passes (cut down), so as a container it is allowed.
        true
    }

    /// Whether a field with this name can pass, at any depth.
    pub fn may_carry(&self, name: &str) -> bool {
        fn walk(t: &FieldTree, name: &str) -> bool {
            t.0.iter()
                .any(|(k, sub)| k == name || sub.as_ref().is_some_and(|s| walk(s, name)))
        }
        match self {
            Self::All => true,
            Self::Fields(t) => walk(t, name),
        }
    }
}

/// Resolve a local `$ref` (`#/$defs/name`) against the schema document's root.
fn deref<'a>(root: &'a Value, node: &'a Value) -> &'a Value {
    let mut node = node;
    for _ in 0..16 {
        match node.get("$ref").and_then(Value::as_str) {
            Some(r) => match r.strip_prefix('#').and_then(|p| root.pointer(p)) {
                Some(target) => node = target,
                None => return node,
            },
            None => return node,
        }
    }
    node
}

/// Whether a dotted path names a field the payload schema defines (through `$ref`s into
/// `$defs` and through arrays' `items`).
pub fn schema_has_path(schema: &Value, path: &str) -> bool {
    let mut node = deref(schema, schema);
    for part in path.split('.') {
        // Step through arrays to their items.
        for _ in 0..4 {
            if node.get("properties").is_none() {
                match node.get("items") {
                    Some(items) => node = deref(schema, items),
                    None => break,
                }
            }
        }
        match node.get("properties").and_then(|p| p.get(part)) {
            Some(child) => node = deref(schema, child),
            None => return false,
        }
    }
    true
}

/// Every field name that appears anywhere in a payload schema (for "may this destination
/// carry a clinical field" checks against `*`).
pub fn schema_field_names(schema: &Value) -> Vec<String> {
    fn walk(root: &Value, node: &Value, depth: usize, out: &mut Vec<String>) {
        if depth > 16 {
            return;
        }
        let node = deref(root, node);
        if let Some(props) = node.get("properties").and_then(Value::as_object) {
            for (k, v) in props {
                out.push(k.clone());
                walk(root, v, depth + 1, out);
            }
        }
        if let Some(items) = node.get("items") {
            walk(root, items, depth + 1, out);
        }
    }
    let mut out = Vec::new();
    walk(schema, schema, 0, &mut out);
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn handover() -> Value {
        json!({
            "referral_id": "r-1",
            "person": {"person_id": "32041119850312001X", "name": "张三", "gender": "male"},
            "substance_history": [{"substance": "heroin", "since": "2019-01-01"}],
            "documents": [{"uri": "https://x/1", "sha256": "ab", "title": "t"}, {"uri": "https://x/2", "sha256": "cd", "title": "u"}],
            "clinical_summary": "x"
        })
    }

    #[test]
    fn cuts_to_the_listed_fields() {
        let sel = Selection::from_paths(&["referral_id", "person.person_id", "documents.uri"]);
        let cut = sel.apply(&handover()).expect("changed");
        assert_eq!(
            cut,
            json!({
                "referral_id": "r-1",
                "person": {"person_id": "32041119850312001X"},
                "documents": [{"uri": "https://x/1"}, {"uri": "https://x/2"}]
            })
        );
        assert!(!sel.may_carry("substance_history"));
        assert!(sel.allows("person.person_id"));
        assert!(!sel.allows("person.name"));
        assert!(sel.allows("documents.uri"));
        assert!(!sel.allows("documents.sha256"));
        assert!(!sel.allows("clinical_summary"));
        assert!(sel.may_carry("person_id"));
    }

    #[test]
    fn whole_object_and_star() {
        let sel = Selection::from_paths(&["person", "person.name", "referral_id"]);
        let cut = sel.apply(&handover()).expect("changed");
        assert_eq!(cut["person"], handover()["person"]);
        assert_eq!(Selection::from_paths(&["*"]).apply(&handover()), None);
        let everything = Selection::from_paths(&[
            "referral_id",
            "person",
            "substance_history",
            "documents",
            "clinical_summary",
        ]);
        assert_eq!(
            everything.apply(&handover()),
            None,
            "unchanged → forward bytes"
        );
    }

    #[test]
    fn schema_paths() {
        let schema = json!({
            "$defs": {"person": {"type": "object", "properties": {"person_id": {"type": "string"}}}},
            "type": "object",
            "properties": {
                "person": {"$ref": "#/$defs/person"},
                "documents": {"type": "array", "items": {"type": "object", "properties": {"uri": {"type": "string"}}}}
            }
        });
        assert!(schema_has_path(&schema, "person"));
        assert!(schema_has_path(&schema, "person.person_id"));
        assert!(schema_has_path(&schema, "documents.uri"));
        assert!(!schema_has_path(&schema, "person.nope"));
        assert!(!schema_has_path(&schema, "nope"));
        assert_eq!(
            schema_field_names(&schema),
            vec!["documents", "person", "person_id", "uri"]
        );
    }
}
