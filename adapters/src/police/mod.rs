//! The police exchange document (XML, namespace [`NS`], schema `schemas/police/exchange-1.xsd`):
//! law-enforcement materials out (`enforcement.material.submit`), decisions back
//! (`enforcement.material.decision`).
//!
//! ```xml
//! <ExchangeDocument xmlns="urn:wingspan:police:exchange:1">
//!   <Header><DocumentId/><DocumentType/><SchemaVersion/><SentAt/><InReplyTo/>?</Header>
//!   <MaterialSubmission>…</MaterialSubmission> | <MaterialDecision>…</MaterialDecision>
//! </ExchangeDocument>
//! ```
//!
//! Data minimisation held here whatever the field policy lets through: `medical_justification`
//! is written only for `outside_medical_treatment` materials (for other types it is dropped, so
//! their round trip excludes it), and the centre's medical alliance is never written.
//!
//! Decoding: namespaces are resolved (any prefix, or the default namespace); elements and
//! attributes in other namespaces are ignored wherever they appear (the extension point);
//! an element of our namespace that the document kind does not define is unmappable, and a
//! repeated single-valued element is refused (two readers could pick different ones). Order
//! is not checked. Identifiers, codes and dates are read trimmed; free text exactly as sent.
//!
//! Encoding uses [`crate::xml::Writer`] (carriage returns are written as `&#13;`, so they
//! survive XML line-end normalisation) and refuses text with characters XML 1.0 cannot carry
//! (control characters): the partner would receive a document that is not well-formed.

#[cfg(test)]
mod tests;

use serde_json::{Map, Value};
use wingspan_core::Envelope;

use crate::json_partners::tables::GENDER;
use crate::xml::{self, Element, XmlError};
use crate::{Adapter, AdapterError, Canonical, Encoded, Inbound};

/// The exchange document's namespace.
pub const NS: &str = "urn:wingspan:police:exchange:1";
/// The message types the police adapter speaks.
pub const MESSAGE_TYPES: &[&str] = &[SUBMIT, DECISION];

const SUBMIT: &str = "enforcement.material.submit";
const DECISION: &str = "enforcement.material.decision";
const FORMAT: &str = "police XML";
const CONTENT_TYPES: &[&str] = &["application/xml"];
const OUTSIDE_MEDICAL: &str = "outside_medical_treatment";

const MATERIAL_TYPES: &[(&str, &str)] = &[
    ("admission_receipt", "AdmissionReceipt"),
    ("release_notice", "ReleaseNotice"),
    ("term_extension_request", "TermExtensionRequest"),
    ("early_release_request", "EarlyReleaseRequest"),
    (OUTSIDE_MEDICAL, "OutsideMedicalTreatment"),
];
const DECISIONS: &[(&str, &str)] = &[
    ("approved", "Approved"),
    ("rejected", "Rejected"),
    ("more_material_needed", "MoreMaterialNeeded"),
];

/// The police adapter.
#[derive(Debug, Clone, Copy)]
pub struct Police;

impl Adapter for Police {
    fn clearance(&self) -> wingspan_core::adapter::Clearance {
        wingspan_core::adapter::Clearance::MedicalJustification
    }

    fn name(&self) -> &str {
        "police"
    }

    fn content_types(&self) -> &[&'static str] {
        CONTENT_TYPES
    }

    fn message_types(&self) -> Vec<&str> {
        MESSAGE_TYPES.to_vec()
    }

    fn decode(&self, input: Inbound<'_>) -> Result<Envelope, AdapterError> {
        crate::check_content_type(self, input.content_type)?;
        decode_document(input.bytes, input.source)
    }

    fn encode<'a>(
        &self,
        message: Canonical<'a>,
        content_type: Option<&str>,
    ) -> Result<Encoded<'a>, AdapterError> {
        crate::check_content_type(self, content_type)?;
        Ok(Encoded {
            content_type: "application/xml",
            body: encode_document(message.envelope)?.into(),
        })
    }
}

fn to_partner(codes: &[(&str, &'static str)], canonical: &str) -> Option<&'static str> {
    codes.iter().find(|(c, _)| *c == canonical).map(|(_, p)| *p)
}

fn to_canonical(codes: &[(&'static str, &str)], partner: &str) -> Option<&'static str> {
    codes.iter().find(|(_, p)| *p == partner).map(|(c, _)| *c)
}

// ── Encoding ─────────────────────────────────────────────────────────────────────────────────

fn encode_error(what: impl Into<String>) -> AdapterError {
    AdapterError::Encode(what.into())
}

/// Whether XML 1.0 can carry `c` at all (Char production).
fn xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

/// The exchange document being written: [`xml::Writer`] (which escapes markup and carriage
/// returns), after refusing characters XML 1.0 cannot carry at all.
struct Out {
    w: xml::Writer,
}

impl Out {
    fn new() -> Self {
        let mut w = xml::Writer::new();
        w.start("ExchangeDocument", &[("xmlns", NS)]);
        Self { w }
    }

    fn start(&mut self, name: &str) {
        self.w.start(name, &[]);
    }

    fn end(&mut self, name: &str) {
        self.w.end(name);
    }

    fn text(&mut self, name: &str, value: &str) -> Result<(), AdapterError> {
        if !value.chars().all(xml_char) {
            return Err(encode_error(format!(
                "{name} contains a character XML 1.0 cannot carry"
            )));
        }
        self.w.text_element(name, value);
        Ok(())
    }

    fn opt_text(&mut self, name: &str, value: Option<&str>) -> Result<(), AdapterError> {
        value.map_or(Ok(()), |v| self.text(name, v))
    }

    fn date(&mut self, name: &str, value: &str) -> Result<(), AdapterError> {
        if !xs_date(value) {
            return Err(encode_error(format!("{name} is not an XML Schema date")));
        }
        self.text(name, value)
    }

    fn date_time(&mut self, name: &str, value: &str) -> Result<(), AdapterError> {
        if !xs_date_time(value) {
            return Err(encode_error(format!(
                "{name} is not an XML Schema dateTime"
            )));
        }
        self.text(name, value)
    }

    fn finish(mut self) -> Vec<u8> {
        self.w.end("ExchangeDocument");
        self.w.finish()
    }
}

fn two(s: &str, at: std::ops::Range<usize>) -> Option<u32> {
    let part = s.get(at)?;
    if part.bytes().all(|b| b.is_ascii_digit()) {
        part.parse().ok()
    } else {
        None
    }
}

/// `YYYY-MM-DD` that both RFC 3339 `full-date` and `xs:date` accept (a real day, year ≥ 1).
fn xs_date(s: &str) -> bool {
    if s.len() != 10 || s.get(4..5) != Some("-") || s.get(7..8) != Some("-") {
        return false;
    }
    let (Some(y), Some(m), Some(d)) = (two(s, 0..4), two(s, 5..7), two(s, 8..10)) else {
        return false;
    };
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    y >= 1 && (1..=days).contains(&d)
}

/// RFC 3339 `date-time` in the form `xs:dateTime` also accepts: `T` and `Z` upper case, no leap
/// second, offsets within ±14:00.
fn xs_date_time(s: &str) -> bool {
    let Some((date, time)) = s.split_once('T') else {
        return false;
    };
    if !xs_date(date) || time.get(2..3) != Some(":") || time.get(5..6) != Some(":") {
        return false;
    }
    let (Some(h), Some(m), Some(sec)) = (two(time, 0..2), two(time, 3..5), two(time, 6..8)) else {
        return false;
    };
    if h > 23 || m > 59 || sec > 59 {
        return false;
    }
    let mut rest = time.get(8..).unwrap_or("");
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return false;
        }
        rest = frac.get(digits..).unwrap_or("");
    }
    if rest == "Z" {
        return true;
    }
    let Some(offset) = rest.strip_prefix('+').or_else(|| rest.strip_prefix('-')) else {
        return false;
    };
    if offset.len() != 5 || offset.get(2..3) != Some(":") {
        return false;
    }
    let (Some(oh), Some(om)) = (two(offset, 0..2), two(offset, 3..5)) else {
        return false;
    };
    om <= 59 && (oh < 14 || (oh == 14 && om == 0))
}

/// A canonical payload object, read for encoding; `at` prefixes field names in errors.
#[derive(Clone, Copy)]
struct Obj<'a> {
    map: &'a Map<String, Value>,
    at: &'static str,
}

impl<'a> Obj<'a> {
    fn text(&self, key: &str) -> Result<Option<&'a str>, AdapterError> {
        match self.map.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(encode_error(format!("{}{key} has the wrong type", self.at))),
        }
    }

    fn req_text(&self, key: &str) -> Result<&'a str, AdapterError> {
        self.text(key)?.ok_or_else(|| {
            encode_error(format!(
                "{}{key} is required by the police document",
                self.at
            ))
        })
    }

    fn req_object(&self, key: &str, at: &'static str) -> Result<Obj<'a>, AdapterError> {
        match self.map.get(key) {
            Some(Value::Object(map)) => Ok(Obj { map, at }),
            None => Err(encode_error(format!(
                "{}{key} is required by the police document",
                self.at
            ))),
            Some(_) => Err(encode_error(format!("{}{key} has the wrong type", self.at))),
        }
    }

    fn opt_object(&self, key: &str, at: &'static str) -> Result<Option<Obj<'a>>, AdapterError> {
        match self.map.get(key) {
            None => Ok(None),
            Some(_) => self.req_object(key, at).map(Some),
        }
    }

    fn list(&self, key: &str) -> Result<Option<&'a [Value]>, AdapterError> {
        match self.map.get(key) {
            None => Ok(None),
            Some(Value::Array(items)) => Ok(Some(items)),
            Some(_) => Err(encode_error(format!("{}{key} has the wrong type", self.at))),
        }
    }
}

/// A list of texts as `<wrapper><item/>…</wrapper>` (an empty list keeps its wrapper, as
/// `<wrapper/>`).
fn text_list(
    w: &mut Out,
    wrapper: &str,
    item: &str,
    items: Option<&[Value]>,
) -> Result<(), AdapterError> {
    let Some(items) = items else { return Ok(()) };
    if items.is_empty() {
        w.w.empty(wrapper, &[]);
        return Ok(());
    }
    w.start(wrapper);
    for v in items {
        let t = v
            .as_str()
            .ok_or_else(|| encode_error(format!("{wrapper} holds a non-text item")))?;
        w.text(item, t)?;
    }
    w.end(wrapper);
    Ok(())
}

fn gender(w: &mut Out, person: Obj<'_>) -> Result<(), AdapterError> {
    if let Some(g) = person.text("gender")? {
        let code = to_partner(GENDER, g)
            .ok_or_else(|| encode_error("person.gender has no police code"))?;
        w.text("Gender", code)?;
    }
    Ok(())
}

fn write_submission(w: &mut Out, p: Obj<'_>) -> Result<(), AdapterError> {
    let material_type = p.req_text("material_type")?;
    let type_code = to_partner(MATERIAL_TYPES, material_type)
        .ok_or_else(|| encode_error("material_type has no police code"))?;
    w.start("MaterialSubmission");
    w.text("MaterialId", p.req_text("material_id")?)?;
    w.text("MaterialType", type_code)?;

    let centre = p.req_object("centre", "centre.")?;
    w.start("Centre");
    w.text("CentreId", centre.req_text("id")?)?;
    w.text("Name", centre.req_text("name")?)?;
    w.opt_text("DivisionCode", centre.text("division_code")?)?;
    w.end("Centre");

    let person = p.req_object("person", "person.")?;
    w.start("Person");
    w.text("PersonId", person.req_text("person_id")?)?;
    w.text("Name", person.req_text("name")?)?;
    if let Some(d) = person.text("birth_date")? {
        w.date("BirthDate", d)?;
    }
    gender(w, person)?;
    w.end("Person");

    let bureau = p.req_object("police_bureau", "police_bureau.")?;
    w.start("PoliceBureau");
    w.text("DivisionCode", bureau.req_text("division_code")?)?;
    w.opt_text("Name", bureau.text("name")?)?;
    w.end("PoliceBureau");

    w.text("Summary", p.req_text("summary")?)?;

    let documents = p.list("documents")?.unwrap_or(&[]);
    if documents.is_empty() {
        return Err(encode_error(
            "documents: the police document requires at least one document reference",
        ));
    }
    w.start("Documents");
    for d in documents {
        let map = d
            .as_object()
            .ok_or_else(|| encode_error("documents holds a non-object item"))?;
        let d = Obj {
            map,
            at: "documents[].",
        };
        w.start("Document");
        w.text("Uri", d.req_text("uri")?)?;
        w.text("Sha256", d.req_text("sha256")?)?;
        w.text("Title", d.req_text("title")?)?;
        w.opt_text("MediaType", d.text("media_type")?)?;
        w.end("Document");
    }
    w.end("Documents");

    // Minimisation: clinical justification only where the material type requires it.
    if material_type == OUTSIDE_MEDICAL {
        w.opt_text("MedicalJustification", p.text("medical_justification")?)?;
    }
    if let Some(d) = p.text("respond_by")? {
        w.date("RespondBy", d)?;
    }
    w.end("MaterialSubmission");
    Ok(())
}

fn write_decision(w: &mut Out, p: Obj<'_>) -> Result<(), AdapterError> {
    let decision = p.req_text("decision")?;
    let code = to_partner(DECISIONS, decision)
        .ok_or_else(|| encode_error("decision has no police code"))?;
    w.start("MaterialDecision");
    w.text("MaterialId", p.req_text("material_id")?)?;
    w.text("PoliceCaseNumber", p.req_text("police_case_number")?)?;
    w.text("Decision", code)?;
    text_list(w, "Reasons", "Reason", p.list("reasons")?)?;
    text_list(
        w,
        "RequestedMaterials",
        "RequestedMaterial",
        p.list("requested_materials")?,
    )?;
    w.date_time("DecidedAt", p.req_text("decided_at")?)?;
    if let Some(b) = p.opt_object("bureau", "bureau.")? {
        w.start("Bureau");
        w.text("BureauId", b.req_text("id")?)?;
        w.text("Name", b.req_text("name")?)?;
        w.end("Bureau");
    }
    w.end("MaterialDecision");
    Ok(())
}

/// Canonical envelope → exchange document bytes.
pub fn encode_document(env: &Envelope) -> Result<Vec<u8>, AdapterError> {
    let body: fn(&mut Out, Obj<'_>) -> Result<(), AdapterError> = match env.message_type.as_str() {
        SUBMIT => write_submission,
        DECISION => write_decision,
        _ => return Err(AdapterError::UnsupportedType(env.message_type.clone())),
    };
    let map = env
        .payload
        .as_object()
        .ok_or_else(|| encode_error("payload is not an object"))?;
    let mut w = Out::new();
    w.start("Header");
    w.text("DocumentId", &env.message_id)?;
    w.text("DocumentType", &env.message_type)?;
    w.text("SchemaVersion", &env.schema_version)?;
    w.date_time("SentAt", &env.sent_at)?;
    w.opt_text("InReplyTo", env.correlation_id.as_deref())?;
    w.end("Header");
    body(&mut w, Obj { map, at: "" })?;
    Ok(w.finish())
}

// ── Decoding ─────────────────────────────────────────────────────────────────────────────────

fn xml_error(e: XmlError) -> AdapterError {
    e.into_adapter_error(FORMAT)
}

fn unmappable(what: String) -> AdapterError {
    AdapterError::Unmappable(what)
}

/// The children of `el` in our namespace, one slot per name. Children in other namespaces are
/// ignored; an unknown name of ours is unmappable; a repeated one is refused.
fn slots<'e, const N: usize>(
    el: &'e Element<'e>,
    names: [&'static str; N],
) -> Result<[Option<&'e Element<'e>>; N], AdapterError> {
    let mut found = [None; N];
    for child in &el.children {
        if child.ns.as_deref() != Some(NS) {
            continue;
        }
        let Some(i) = names.iter().position(|n| *n == child.name) else {
            return Err(unmappable(format!("unknown element in {}", el.name)));
        };
        let Some(slot) = found.get_mut(i) else {
            continue;
        };
        if slot.is_some() {
            return Err(AdapterError::Refused(format!(
                "{} appears more than once in {}",
                child.name, el.name
            )));
        }
        *slot = Some(child);
    }
    Ok(found)
}

/// The items of a list wrapper: every child of ours must be `item`.
fn items<'e>(
    el: &'e Element<'e>,
    item: &'static str,
) -> Result<Vec<&'e Element<'e>>, AdapterError> {
    let mut out = Vec::new();
    for child in &el.children {
        if child.ns.as_deref() != Some(NS) {
            continue;
        }
        if child.name != item {
            return Err(unmappable(format!("unknown element in {}", el.name)));
        }
        out.push(child);
    }
    Ok(out)
}

/// Text of a leaf element, exactly as sent; a leaf has no child elements of ours.
fn leaf<'e>(el: &'e Element<'e>) -> Result<&'e str, AdapterError> {
    if el.children.iter().any(|c| c.ns.as_deref() == Some(NS)) {
        return Err(unmappable(format!("{} must hold text only", el.name)));
    }
    Ok(&el.text)
}

/// How a leaf is read: free text exactly, tokens (identifiers, codes, dates) trimmed.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Read {
    Text,
    Token,
}

fn opt_value(slot: Option<&Element>, read: Read) -> Result<Option<String>, AdapterError> {
    let Some(el) = slot else { return Ok(None) };
    let t = leaf(el)?;
    let t = if read == Read::Token { t.trim() } else { t };
    Ok((!t.is_empty()).then(|| t.to_owned()))
}

fn req_value(
    slot: Option<&Element>,
    parent: &str,
    name: &str,
    read: Read,
) -> Result<String, AdapterError> {
    opt_value(slot, read)?.ok_or_else(|| unmappable(format!("{parent}/{name} is missing or empty")))
}

fn req_element<'e>(
    slot: Option<&'e Element<'e>>,
    parent: &str,
    name: &str,
) -> Result<&'e Element<'e>, AdapterError> {
    slot.ok_or_else(|| unmappable(format!("{parent}/{name} is missing")))
}

fn put(map: &mut Map<String, Value>, key: &str, value: Option<String>) {
    if let Some(v) = value {
        map.insert(key.to_owned(), Value::String(v));
    }
}

fn read_code(
    slot: Option<&Element>,
    parent: &str,
    name: &str,
    codes: &[(&'static str, &str)],
) -> Result<Option<&'static str>, AdapterError> {
    match opt_value(slot, Read::Token)? {
        None => Ok(None),
        Some(code) => to_canonical(codes, &code)
            .map(Some)
            .ok_or_else(|| unmappable(format!("{parent}/{name} has an unknown code"))),
    }
}

fn read_list(slot: Option<&Element>, item: &'static str) -> Result<Option<Value>, AdapterError> {
    let Some(wrapper) = slot else { return Ok(None) };
    let mut out = Vec::new();
    for el in items(wrapper, item)? {
        let t = req_value(Some(el), &wrapper.name, item, Read::Text)?;
        out.push(Value::String(t));
    }
    Ok(Some(Value::Array(out)))
}

fn read_person(el: &Element) -> Result<Value, AdapterError> {
    const P: &str = "Person";
    let [id, name, birth, gender] = slots(el, ["PersonId", "Name", "BirthDate", "Gender"])?;
    let mut m = Map::new();
    put(
        &mut m,
        "person_id",
        Some(req_value(id, P, "PersonId", Read::Token)?),
    );
    put(
        &mut m,
        "name",
        Some(req_value(name, P, "Name", Read::Text)?),
    );
    put(&mut m, "birth_date", opt_value(birth, Read::Token)?);
    if let Some(g) = read_code(gender, P, "Gender", GENDER)? {
        m.insert("gender".into(), Value::String(g.into()));
    }
    Ok(Value::Object(m))
}

fn read_submission(el: &Element) -> Result<Map<String, Value>, AdapterError> {
    const S: &str = "MaterialSubmission";
    let [
        id,
        kind,
        centre,
        person,
        bureau,
        summary,
        documents,
        justification,
        respond_by,
    ] = slots(
        el,
        [
            "MaterialId",
            "MaterialType",
            "Centre",
            "Person",
            "PoliceBureau",
            "Summary",
            "Documents",
            "MedicalJustification",
            "RespondBy",
        ],
    )?;
    let mut p = Map::new();
    put(
        &mut p,
        "material_id",
        Some(req_value(id, S, "MaterialId", Read::Token)?),
    );
    let material_type = read_code(kind, S, "MaterialType", MATERIAL_TYPES)?
        .ok_or_else(|| unmappable(format!("{S}/MaterialType is missing or empty")))?;
    p.insert("material_type".into(), Value::String(material_type.into()));

    let centre = req_element(centre, S, "Centre")?;
    let [cid, cname, cdiv] = slots(centre, ["CentreId", "Name", "DivisionCode"])?;
    let mut c = Map::new();
    put(
        &mut c,
        "id",
        Some(req_value(cid, "Centre", "CentreId", Read::Token)?),
    );
    put(
        &mut c,
        "name",
        Some(req_value(cname, "Centre", "Name", Read::Text)?),
    );
    put(&mut c, "division_code", opt_value(cdiv, Read::Token)?);
    p.insert("centre".into(), Value::Object(c));

    p.insert(
        "person".into(),
        read_person(req_element(person, S, "Person")?)?,
    );

    let bureau = req_element(bureau, S, "PoliceBureau")?;
    let [bdiv, bname] = slots(bureau, ["DivisionCode", "Name"])?;
    let mut b = Map::new();
    put(
        &mut b,
        "division_code",
        Some(req_value(
            bdiv,
            "PoliceBureau",
            "DivisionCode",
            Read::Token,
        )?),
    );
    put(&mut b, "name", opt_value(bname, Read::Text)?);
    p.insert("police_bureau".into(), Value::Object(b));

    put(
        &mut p,
        "summary",
        Some(req_value(summary, S, "Summary", Read::Text)?),
    );

    let documents = req_element(documents, S, "Documents")?;
    let mut docs = Vec::new();
    for d in items(documents, "Document")? {
        const D: &str = "Document";
        let [uri, sha, title, media] = slots(d, ["Uri", "Sha256", "Title", "MediaType"])?;
        let mut m = Map::new();
        put(&mut m, "uri", Some(req_value(uri, D, "Uri", Read::Token)?));
        put(
            &mut m,
            "sha256",
            Some(req_value(sha, D, "Sha256", Read::Token)?),
        );
        put(
            &mut m,
            "title",
            Some(req_value(title, D, "Title", Read::Text)?),
        );
        put(&mut m, "media_type", opt_value(media, Read::Text)?);
        docs.push(Value::Object(m));
    }
    if docs.is_empty() {
        return Err(unmappable(format!("{S}/Documents has no Document")));
    }
    p.insert("documents".into(), Value::Array(docs));

    let justification = opt_value(justification, Read::Text)?;
    if justification.is_some() && material_type != OUTSIDE_MEDICAL {
        return Err(unmappable(format!(
            "{S}/MedicalJustification is allowed only for OutsideMedicalTreatment"
        )));
    }
    put(&mut p, "medical_justification", justification);
    put(&mut p, "respond_by", opt_value(respond_by, Read::Token)?);
    Ok(p)
}

fn read_decision(el: &Element) -> Result<Map<String, Value>, AdapterError> {
    const D: &str = "MaterialDecision";
    let [id, case, decision, reasons, requested, decided_at, bureau] = slots(
        el,
        [
            "MaterialId",
            "PoliceCaseNumber",
            "Decision",
            "Reasons",
            "RequestedMaterials",
            "DecidedAt",
            "Bureau",
        ],
    )?;
    let mut p = Map::new();
    put(
        &mut p,
        "material_id",
        Some(req_value(id, D, "MaterialId", Read::Token)?),
    );
    put(
        &mut p,
        "police_case_number",
        Some(req_value(case, D, "PoliceCaseNumber", Read::Text)?),
    );
    let decision = read_code(decision, D, "Decision", DECISIONS)?
        .ok_or_else(|| unmappable(format!("{D}/Decision is missing or empty")))?;
    p.insert("decision".into(), Value::String(decision.into()));
    if let Some(r) = read_list(reasons, "Reason")? {
        p.insert("reasons".into(), r);
    }
    if let Some(r) = read_list(requested, "RequestedMaterial")? {
        p.insert("requested_materials".into(), r);
    }
    put(
        &mut p,
        "decided_at",
        Some(req_value(decided_at, D, "DecidedAt", Read::Token)?),
    );
    if let Some(b) = bureau {
        let [bid, bname] = slots(b, ["BureauId", "Name"])?;
        let mut m = Map::new();
        put(
            &mut m,
            "id",
            Some(req_value(bid, "Bureau", "BureauId", Read::Token)?),
        );
        put(
            &mut m,
            "name",
            Some(req_value(bname, "Bureau", "Name", Read::Text)?),
        );
        p.insert("bureau".into(), Value::Object(m));
    }
    Ok(p)
}

/// Exchange document bytes → canonical envelope with `source` set.
pub fn decode_document(bytes: &[u8], source: &str) -> Result<Envelope, AdapterError> {
    let root = xml::parse(bytes, &xml::Limits::default()).map_err(xml_error)?;
    if !root.is(NS, "ExchangeDocument") {
        return Err(unmappable("not a police exchange document".into()));
    }
    let [header, submission, decision] =
        slots(&root, ["Header", "MaterialSubmission", "MaterialDecision"])?;
    const H: &str = "Header";
    let header = req_element(header, "ExchangeDocument", H)?;
    let [id, doc_type, version, sent_at, in_reply_to] = slots(
        header,
        [
            "DocumentId",
            "DocumentType",
            "SchemaVersion",
            "SentAt",
            "InReplyTo",
        ],
    )?;
    let (message_type, payload) = match (submission, decision) {
        (Some(s), None) => (SUBMIT, read_submission(s)?),
        (None, Some(d)) => (DECISION, read_decision(d)?),
        (None, None) => {
            return Err(unmappable(
                "no MaterialSubmission or MaterialDecision".into(),
            ));
        }
        (Some(_), Some(_)) => {
            return Err(unmappable(
                "both MaterialSubmission and MaterialDecision".into(),
            ));
        }
    };
    let doc_type = req_value(doc_type, H, "DocumentType", Read::Token)?;
    if doc_type != message_type {
        return Err(unmappable(
            "Header/DocumentType does not match the document body".into(),
        ));
    }
    Ok(Envelope {
        message_id: req_value(id, H, "DocumentId", Read::Token)?,
        message_type: message_type.to_owned(),
        schema_version: req_value(version, H, "SchemaVersion", Read::Token)?,
        source: source.to_owned(),
        sent_at: req_value(sent_at, H, "SentAt", Read::Token)?,
        correlation_id: opt_value(in_reply_to, Read::Token)?,
        payload: Value::Object(payload),
    })
}
