#!/usr/bin/env python3
"""Write the hostile corpus (contract-tests/hostile/) and its MANIFEST.tsv.

Run from anywhere: `python3 contract-tests/hostile/generate.py`. The files are committed;
this script says how each was made. The defusedxml-* XML files are copies of
../shared/corpus/hostile/xml (from the defusedxml project's test suite, see its SOURCES.md).
The 100 MiB body is not a file: gateway/tests/hostile.rs streams it.

MANIFEST.tsv columns: file, endpoint (canonical = POST /v1/messages as rehab; police =
POST /v1/sources/police/messages as police, application/xml; health = POST
/v1/sources/health/messages as health, application/fhir+json), expected status, expected
problem type slug.
"""
import json, os, shutil

HERE = os.path.dirname(os.path.abspath(__file__))
SHARED = os.path.join(HERE, "..", "..", "..", "shared", "corpus", "hostile", "xml")
rows = []

def write(name, data, endpoint, status, slug):
    path = os.path.join(HERE, name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())
    rows.append((name, endpoint, str(status), slug))

def envelope(**over):
    e = {
        "message_id": "a3c1f0a2-5b7e-4c1d-9f00-0000000000h1".replace("h", "0"),
        "message_type": "enforcement.material.submit",
        "schema_version": "1.0",
        "source": "rehab",
        "sent_at": "2026-11-30T08:00:00+08:00",
        "payload": {},
    }
    e.update(over)
    return e

env = json.dumps(envelope())
# JSON, canonical ingress
write("json/duplicate-key.json", env[:-1] + ', "source": "police"}', "canonical", 400, "duplicate-key")
write("json/duplicate-key-escaped.json", env[:-1] + ', "\\u0073ource": "police"}', "canonical", 400, "duplicate-key")
write("json/deep-arrays-100000.json", "[" * 100_000 + "]" * 100_000, "canonical", 400, "too-deep")
write("json/deep-objects-100000.json", '{"a":' * 100_000 + "1" + "}" * 100_000, "canonical", 400, "too-deep")
write("json/unclosed-deep-100000.json", "[" * 100_000, "canonical", 400, "too-deep")
write("json/invalid-utf8.json", env.encode().replace(b'"rehab"', b'"reh\xffab"'), "canonical", 400, "invalid-encoding")
write("json/overlong-utf8.json", env.encode().replace(b'"rehab"', b'"reh\xc0\xafab"'), "canonical", 400, "invalid-encoding")
write("json/bom.json", b"\xef\xbb\xbf" + env.encode(), "canonical", 400, "invalid-encoding")
write("json/nul-byte.json", env.encode() + b"\x00", "canonical", 400, "malformed")
write("json/nul-inside.json", env.encode().replace(b'"rehab"', b'"reh\x00ab"'), "canonical", 400, "malformed")
write("json/nul-escaped.json", json.dumps(envelope(message_id="a3c1f0a2\u0000")), "canonical", 422, "invalid-envelope")
write("json/number-1000-digits.json", env[:-1] + ', "n": 1' + "0" * 1000 + "}", "canonical", 400, "malformed")
write("json/number-1000-digits-in-payload.json", json.dumps(envelope())[:-3] + '{"n": 9' + "9" * 999 + "}}", "canonical", 400, "malformed")
write("json/string-100k.json", json.dumps(envelope(payload={"summary": "x" * 100_000})), "canonical", 400, "string-too-long")
write("json/key-100k.json", json.dumps(envelope(payload={"k" * 100_000: 1})), "canonical", 400, "string-too-long")
write("json/truncated.json", env[: len(env) // 2], "canonical", 400, "malformed")
write("json/not-an-object.json", "[1, 2, 3]", "canonical", 400, "malformed")
write("json/empty.json", "", "canonical", 400, "malformed")
write("json/spoofed-source.json", json.dumps(envelope(source="police", message_type="enforcement.material.decision")), "canonical", 403, "source-mismatch")
# XML, police ingress
for name in ["cyclic", "dtd", "external", "external_file", "quadratic", "xmlbomb", "xmlbomb2"]:
    with open(os.path.join(SHARED, f"defusedxml-{name}.xml"), "rb") as f:
        write(f"xml/defusedxml-{name}.xml", f.read(), "police", 400, "refused-document")
write("xml/billion-laughs.xml", '<?xml version="1.0"?>\n<!DOCTYPE lolz [\n <!ENTITY lol "lol">\n'
      + "".join(f' <!ENTITY lol{i} "' + (f"&lol{i-1};" if i > 1 else "&lol;") * 10 + '">\n' for i in range(1, 10))
      + ']>\n<lolz>&lol9;</lolz>\n', "police", 400, "refused-document")
write("xml/parameter-entity.xml", '<?xml version="1.0"?>\n<!DOCTYPE r [\n <!ENTITY % remote SYSTEM "http://127.0.0.1:9/evil.dtd">\n %remote;\n]>\n<r/>\n', "police", 400, "refused-document")
write("xml/external-entity-file.xml", '<?xml version="1.0"?>\n<!DOCTYPE r [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>\n<r>&xxe;</r>\n', "police", 400, "refused-document")
write("xml/deep-100000.xml", "<a>" * 100_000 + "</a>" * 100_000, "police", 400, "refused-document")
write("xml/processing-instruction.xml", '<?xml version="1.0"?>\n<?xml-stylesheet href="http://127.0.0.1:9/x.xsl"?>\n<r/>\n', "police", 400, "refused-document")
write("xml/invalid-utf8.xml", b'<?xml version="1.0"?>\n<r>\xff\xfe</r>\n', "police", 400, "refused-document")
write("xml/nul-byte.xml", b'<?xml version="1.0"?>\n<r>\x00</r>\n', "police", 400, "malformed-document")
write("xml/unclosed.xml", '<?xml version="1.0"?>\n<r><s>', "police", 400, "malformed-document")
# FHIR JSON, health ingress
write("fhir/deep-100000.json", '{"resourceType":"Bundle","entry":' + "[" * 100_000 + "]" * 100_000 + "}", "health", 400, "refused-document")
write("fhir/duplicate-key.json", '{"resourceType":"Bundle","resourceType":"Patient"}', "health", 400, "refused-document")

with open(os.path.join(HERE, "MANIFEST.tsv"), "w") as f:
    f.write("# file\tendpoint\tstatus\tproblem\n")
    for r in rows:
        f.write("\t".join(r) + "\n")
print(f"{len(rows)} files")
