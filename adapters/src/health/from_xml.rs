//! FHIR XML → the `serde_json::Value` shape of FHIR JSON, so one mapping reads both.
//!
//! Without the FHIR schema the converter cannot know which elements repeat: an element that
//! occurs once becomes a single value, one that occurs more than once an array, and the
//! decoder's accessors accept either. Primitives (`<x value="v"/>`) become strings (numbers
//! and booleans too), an extension's `url` attribute becomes its `url` member, a resource
//! wrapper (`<resource>`, `<contained>`, …: an element whose child is named by a resource
//! type) becomes that resource with `resourceType`. Elements outside the FHIR namespace
//! (the XHTML narrative `div`) are dropped. Depth is bounded by the XML parser's limit.

use serde_json::{Map, Value, map::Entry};

use super::FHIR_NS;
use crate::AdapterError;
use crate::xml::Element;

fn fhir(el: &Element) -> bool {
    el.ns.as_deref() == Some(FHIR_NS)
}

fn is_resource_name(name: &str) -> bool {
    name.as_bytes().first().is_some_and(u8::is_ascii_uppercase)
}

/// The root element as a FHIR JSON resource.
pub(super) fn to_value(root: &Element) -> Result<Value, AdapterError> {
    if !fhir(root) || !is_resource_name(&root.name) {
        return Err(AdapterError::unmappable(
            "not a FHIR resource (root element outside the FHIR namespace)",
        ));
    }
    Ok(resource(root))
}

fn resource(el: &Element) -> Value {
    let mut m = Map::new();
    m.insert("resourceType".into(), Value::String(el.name.to_string()));
    fill(&mut m, el);
    Value::Object(m)
}

fn fill(m: &mut Map<String, Value>, el: &Element) {
    for child in el.children.iter().filter(|c| fhir(c)) {
        let v = element(child);
        match m.entry(&*child.name) {
            Entry::Vacant(e) => {
                e.insert(v);
            }
            Entry::Occupied(mut e) => match e.get_mut() {
                Value::Array(a) => a.push(v),
                old => {
                    let first = old.take();
                    *old = Value::Array(vec![first, v]);
                }
            },
        }
    }
    if let Some(url) = el.attr("url") {
        m.entry("url")
            .or_insert_with(|| Value::String(url.to_owned()));
    }
}

fn element(el: &Element) -> Value {
    if let Some(v) = el.attr("value") {
        return Value::String(v.to_owned());
    }
    if let Some(inner) = el
        .children
        .iter()
        .find(|c| fhir(c) && is_resource_name(&c.name))
    {
        return resource(inner);
    }
    let mut m = Map::new();
    fill(&mut m, el);
    Value::Object(m)
}
