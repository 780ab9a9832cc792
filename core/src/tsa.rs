//! RFC 3161 time-stamps of audit checkpoints: the request the shell posts to a time-stamping
//! authority, and the checks of the token it gets back — its message imprint is the SHA-256 of
//! the checkpoint's signed statement, its signed attributes carry the digest of its TSTInfo,
//! and the TSA's signature over them verifies under the TSA certificate the verifier trusts.
//!
//! Only what a token needs is read, with a small DER reader of its own (definite lengths,
//! one-byte tags); RSA (PKCS #1 v1.5) and ECDSA P-256 signatures with SHA-256, through ring.

use ring::digest::{SHA256, digest};
use ring::signature;

/// Why a response or token was not accepted. Nothing here names the stamped content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TsaError {
    #[error("not DER the time-stamp needs: {0}")]
    Malformed(&'static str),
    #[error("the time-stamping authority refused (status {0})")]
    Refused(u64),
    #[error("the token stamps another message than this checkpoint's")]
    ImprintMismatch,
    #[error("the token's signed attributes do not carry its TSTInfo's digest")]
    DigestMismatch,
    #[error("the token's signature does not verify under the TSA certificate")]
    BadSignature,
    #[error("the token uses an algorithm not supported here ({0})")]
    Unsupported(&'static str),
}

/// A checked token: when the TSA says it saw the imprint, and its serial (hex).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamp {
    /// The GeneralizedTime as the TSA wrote it (e.g. `20261206204110Z`).
    pub gen_time: String,
    pub serial: String,
}

const OID_SHA256: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01];
const OID_SIGNED_DATA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02];
const OID_TST_INFO: &[u8] = &[
    0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x10, 0x01, 0x04,
];
const OID_MESSAGE_DIGEST: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x04];
const OID_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
const OID_SHA256_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b];
const OID_ECDSA_SHA256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02];

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const INTEGER: u8 = 0x02;
const OCTET_STRING: u8 = 0x04;
const OID: u8 = 0x06;
const BIT_STRING: u8 = 0x03;
const GENERALIZED_TIME: u8 = 0x18;
const CONTEXT_0: u8 = 0xa0;

/// One DER element: its tag, its contents, and the whole encoding.
#[derive(Debug, Clone, Copy)]
struct Der<'a> {
    tag: u8,
    body: &'a [u8],
    raw: &'a [u8],
}

fn read(input: &[u8]) -> Result<(Der<'_>, &[u8]), TsaError> {
    let bad = TsaError::Malformed;
    let (&tag, rest) = input.split_first().ok_or(bad("truncated"))?;
    if tag & 0x1f == 0x1f {
        return Err(bad("multi-byte tag"));
    }
    let (&first, rest) = rest.split_first().ok_or(bad("truncated"))?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return Err(bad("length"));
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return Err(bad("truncated"));
    }
    let header = input.len() - rest.len();
    Ok((
        Der {
            tag,
            body: &rest[..len],
            raw: &input[..header + len],
        },
        &rest[len..],
    ))
}

impl<'a> Der<'a> {
    fn parse(input: &'a [u8], tag: u8) -> Result<Self, TsaError> {
        let (d, rest) = read(input)?;
        if !rest.is_empty() {
            return Err(TsaError::Malformed("trailing bytes"));
        }
        d.expect(tag)
    }

    fn expect(self, tag: u8) -> Result<Self, TsaError> {
        if self.tag == tag {
            Ok(self)
        } else {
            Err(TsaError::Malformed("unexpected element"))
        }
    }

    /// The elements inside a constructed element.
    fn children(self) -> Result<Vec<Der<'a>>, TsaError> {
        let mut out = Vec::new();
        let mut rest = self.body;
        while !rest.is_empty() {
            if out.len() >= 64 {
                return Err(TsaError::Malformed("too many elements"));
            }
            let (d, r) = read(rest)?;
            out.push(d);
            rest = r;
        }
        Ok(out)
    }

    /// The only element inside an explicitly tagged one.
    fn inner(self) -> Result<Der<'a>, TsaError> {
        Self::parse(self.body, self.body.first().copied().unwrap_or(0))
    }
}

fn at<'a>(items: &[Der<'a>], i: usize, tag: u8) -> Result<Der<'a>, TsaError> {
    items
        .get(i)
        .copied()
        .ok_or(TsaError::Malformed("missing element"))?
        .expect(tag)
}

/// The algorithm OID of an AlgorithmIdentifier.
fn algorithm(d: Der<'_>) -> Result<&[u8], TsaError> {
    Ok(at(&d.expect(SEQUENCE)?.children()?, 0, OID)?.body)
}

fn tlv(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = body.len();
    if len < 0x80 {
        out.push(u8::try_from(len).unwrap_or(0));
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|&b| b == 0)
            .collect();
        out.push(0x80 | u8::try_from(bytes.len()).unwrap_or(0));
        out.extend_from_slice(&bytes);
    }
    out.extend_from_slice(body);
    out
}

/// A `TimeStampReq` for the SHA-256 of `message`, with `nonce`; the TSA's certificate is not
/// asked for (the verifier is configured with it: tokens stay small).
pub fn request(message: &[u8], nonce: u64) -> Vec<u8> {
    let imprint = digest(&SHA256, message);
    let algorithm = tlv(SEQUENCE, &[tlv(OID, OID_SHA256), vec![0x05, 0x00]].concat());
    let message_imprint = tlv(
        SEQUENCE,
        &[algorithm, tlv(OCTET_STRING, imprint.as_ref())].concat(),
    );
    let mut n: Vec<u8> = nonce
        .to_be_bytes()
        .into_iter()
        .skip_while(|&b| b == 0)
        .collect();
    if n.first().is_none_or(|&b| b & 0x80 != 0) {
        n.insert(0, 0);
    }
    tlv(
        SEQUENCE,
        &[
            tlv(INTEGER, &[1]),
            message_imprint,
            tlv(INTEGER, &n),
            vec![0x01, 0x01, 0x00],
        ]
        .concat(),
    )
}

/// The token (a CMS ContentInfo) in a `TimeStampResp`, if the TSA granted it.
pub fn token_of_response(response: &[u8]) -> Result<Vec<u8>, TsaError> {
    let parts = Der::parse(response, SEQUENCE)?.children()?;
    let status = at(&at(&parts, 0, SEQUENCE)?.children()?, 0, INTEGER)?.body;
    let code = status
        .iter()
        .fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
    if status.len() > 8 || code > 1 {
        return Err(TsaError::Refused(code));
    }
    Ok(at(&parts, 1, SEQUENCE)?.raw.to_vec())
}

/// The public key in a certificate (DER): its algorithm OID and the subjectPublicKey bits.
fn public_key(cert: &[u8]) -> Result<(&[u8], &[u8]), TsaError> {
    let cert = Der::parse(cert, SEQUENCE)?.children()?;
    let tbs = at(&cert, 0, SEQUENCE)?.children()?;
    let skip = usize::from(tbs.first().is_some_and(|d| d.tag == CONTEXT_0));
    let spki = at(&tbs, skip + 5, SEQUENCE)?.children()?;
    let alg = algorithm(spki[0])?;
    let bits = at(&spki, 1, BIT_STRING)?.body;
    match bits.split_first() {
        Some((0, key)) => Ok((alg, key)),
        _ => Err(TsaError::Malformed("public key bits")),
    }
}

/// Check `token` (a ContentInfo, as [`token_of_response`] returns it) as a time-stamp of
/// `message` by the TSA whose certificate (DER) is `tsa_cert`.
pub fn check(token: &[u8], message: &[u8], tsa_cert: &[u8]) -> Result<Stamp, TsaError> {
    let info = Der::parse(token, SEQUENCE)?.children()?;
    if at(&info, 0, OID)?.body != OID_SIGNED_DATA {
        return Err(TsaError::Malformed("not signed data"));
    }
    let signed = at(&info, 1, CONTEXT_0)?
        .inner()?
        .expect(SEQUENCE)?
        .children()?;
    // version, digestAlgorithms, encapContentInfo, [0] certificates?, [1] crls?, signerInfos
    let encap = at(&signed, 2, SEQUENCE)?.children()?;
    if at(&encap, 0, OID)?.body != OID_TST_INFO {
        return Err(TsaError::Malformed("not a TSTInfo"));
    }
    let tst_der = at(&encap, 1, CONTEXT_0)?
        .inner()?
        .expect(OCTET_STRING)?
        .body;
    let tst = Der::parse(tst_der, SEQUENCE)?.children()?;
    // version, policy, messageImprint, serialNumber, genTime, …
    let imprint = at(&tst, 2, SEQUENCE)?.children()?;
    if algorithm(imprint[0])? != OID_SHA256 {
        return Err(TsaError::Unsupported("imprint digest"));
    }
    if at(&imprint, 1, OCTET_STRING)?.body != digest(&SHA256, message).as_ref() {
        return Err(TsaError::ImprintMismatch);
    }
    let serial = crate::audit::hex(at(&tst, 3, INTEGER)?.body);
    let gen_time = String::from_utf8_lossy(at(&tst, 4, GENERALIZED_TIME)?.body).into_owned();

    let signer_infos = signed
        .last()
        .copied()
        .ok_or(TsaError::Malformed("no signer"))?
        .expect(SET)?
        .children()?;
    let signer = at(&signer_infos, 0, SEQUENCE)?.children()?;
    // version, sid, digestAlgorithm, [0] signedAttrs, signatureAlgorithm, signature, …
    if algorithm(
        signer
            .get(2)
            .copied()
            .ok_or(TsaError::Malformed("signer"))?,
    )? != OID_SHA256
    {
        return Err(TsaError::Unsupported("signer digest"));
    }
    let attrs = at(&signer, 3, CONTEXT_0)?;
    let mut digest_ok = false;
    for attr in attrs.children()? {
        let parts = attr.expect(SEQUENCE)?.children()?;
        if at(&parts, 0, OID)?.body == OID_MESSAGE_DIGEST {
            let value = at(&at(&parts, 1, SET)?.children()?, 0, OCTET_STRING)?.body;
            digest_ok = value == digest(&SHA256, tst_der).as_ref();
        }
    }
    if !digest_ok {
        return Err(TsaError::DigestMismatch);
    }
    // What is signed: the attributes as a SET (RFC 5652 §5.4).
    let mut signed_attrs = attrs.raw.to_vec();
    signed_attrs[0] = SET;
    let sig_alg = algorithm(
        signer
            .get(4)
            .copied()
            .ok_or(TsaError::Malformed("signer"))?,
    )?;
    let sig = at(&signer, 5, OCTET_STRING)?.body;
    let (key_alg, key) = public_key(tsa_cert)?;
    let verifier: &dyn signature::VerificationAlgorithm = match (sig_alg, key_alg) {
        (OID_RSA | OID_SHA256_RSA, OID_RSA) => &signature::RSA_PKCS1_2048_8192_SHA256,
        (OID_ECDSA_SHA256, _) => &signature::ECDSA_P256_SHA256_ASN1,
        _ => return Err(TsaError::Unsupported("signature algorithm")),
    };
    signature::UnparsedPublicKey::new(verifier, key)
        .verify(&signed_attrs, sig)
        .map_err(|_| TsaError::BadSignature)?;
    Ok(Stamp { gen_time, serial })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MESSAGE: &[u8] = include_bytes!("../tests/fixtures/tsa/message.txt");

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/tsa")
                .join(name),
        )
        .expect("fixture")
    }

    /// Tokens made by `openssl ts -reply` (an RSA-2048 TSA that includes its certificate, and
    /// an ECDSA P-256 TSA that does not) over `message.txt`.
    #[test]
    fn openssl_tokens_check_and_every_alteration_is_named() {
        for (response, cert) in [
            ("rsa-response.der", "rsa-cert.der"),
            ("ec-response.der", "ec-cert.der"),
        ] {
            let token = token_of_response(&fixture(response)).expect("granted");
            let cert = fixture(cert);
            let stamp = check(&token, MESSAGE, &cert).expect(response);
            assert!(stamp.gen_time.starts_with("2026") && stamp.gen_time.ends_with('Z'));
            // Another message (a rewritten checkpoint).
            assert_eq!(
                check(&token, b"another checkpoint", &cert),
                Err(TsaError::ImprintMismatch)
            );
            // Another TSA's certificate.
            let other = if cert == fixture("rsa-cert.der") {
                "ec-cert.der"
            } else {
                "rsa-cert.der"
            };
            assert!(
                check(&token, MESSAGE, &fixture(other)).is_err(),
                "{response}"
            );
            // Any byte changed: never a panic; a byte of what the TSA signed (the TSTInfo,
            // the signed attributes) or of the signature: refused. (The rest — the
            // certificates the token may carry, the signer's id — is not what is trusted.)
            let covered = covered_ranges(&token);
            for i in 0..token.len() {
                let mut t = token.clone();
                t[i] ^= 0x01;
                let r = check(&t, MESSAGE, &cert);
                if covered.iter().any(|c| c.contains(&i)) {
                    assert!(r.is_err(), "{response}: byte {i} flipped");
                }
            }
            for n in 0..token.len() {
                assert!(check(&token[..n], MESSAGE, &cert).is_err());
            }
        }
    }

    /// Where the TSTInfo, the signed attributes and the signature lie in a token.
    fn covered_ranges(token: &[u8]) -> Vec<std::ops::Range<usize>> {
        let offset = |part: &[u8]| {
            let start = part.as_ptr() as usize - token.as_ptr() as usize;
            start..start + part.len()
        };
        let info = Der::parse(token, SEQUENCE)
            .expect("token")
            .children()
            .expect("info");
        let signed = info[1].inner().expect("signed").children().expect("signed");
        let encap = signed[2].children().expect("encap");
        let tst = encap[1].inner().expect("tst").body;
        let signer = signed.last().expect("signers").children().expect("signers")[0]
            .children()
            .expect("signer");
        vec![offset(tst), offset(signer[3].body), offset(signer[5].body)]
    }

    #[test]
    fn a_request_holds_the_imprint_and_a_positive_nonce() {
        let req = request(MESSAGE, 0x8123_4567_89ab_cdef);
        let parts = Der::parse(&req, SEQUENCE)
            .expect("seq")
            .children()
            .expect("parts");
        assert_eq!(parts.len(), 4);
        let imprint = parts[1].children().expect("imprint");
        assert_eq!(imprint[1].body, digest(&SHA256, MESSAGE).as_ref());
        // A high bit set: a leading zero keeps the nonce positive.
        assert_eq!(parts[2].body[0], 0);
        assert_eq!(parts[3].raw, &[0x01, 0x01, 0x00]);
        assert_eq!(request(MESSAGE, 1)[..], request(MESSAGE, 1)[..]);
        // A refusal is named with its status.
        let refused = tlv(SEQUENCE, &tlv(SEQUENCE, &tlv(INTEGER, &[2])));
        assert_eq!(token_of_response(&refused), Err(TsaError::Refused(2)));
    }
}
