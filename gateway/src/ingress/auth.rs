//! Who is calling, and may they call now.
//!
//! A request authenticates as one source, in this order:
//! 1. a client certificate presented on the HTTPS listener (verified against the configured CA
//!    during the handshake; an unknown CA or an expired certificate never gets this far) whose
//!    SAN DNS name or URI, or subject common name, is one of the source's `identities`;
//! 2. `Authorization: Bearer <token>` whose SHA-256 is one of the source's `tokens_sha256`
//!    (compared in constant time; the token itself is never stored or logged);
//! 3. nothing, only where `[http] anonymous = true` (local development): the envelope's source
//!    is taken at its word.
//!
//! Then the source's rate limit (GCRA, `rate_per_sec` and `burst`): over it, 429 with
//! `Retry-After`, audited once per burst rather than per request. Failed authentications share
//! one limiter, so a stranger's flood cannot fill the audit trail either.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use wingspan_core::CompiledConfig;
use wingspan_core::config::AdminUser;

use crate::problem::Problem;

/// The identities a verified client certificate carries (SAN DNS names and URIs, and the
/// subject's common name); empty for a TLS client that presented none. Absent on the plain-HTTP listener.
#[derive(Debug, Clone, Default)]
pub struct Peer {
    pub names: Arc<[String]>,
}

impl Peer {
    /// The SAN DNS names and URIs of a DER end-entity certificate, and its subject's common
    /// name.
    pub fn from_certificate(der: &rustls::pki_types::CertificateDer<'_>) -> Self {
        let mut names: Vec<String> = match webpki::EndEntityCert::try_from(der) {
            Ok(cert) => cert
                .valid_dns_names()
                .chain(cert.valid_uri_names())
                .map(str::to_owned)
                .collect(),
            Err(_) => Vec::new(),
        };
        if let Some(cn) = subject_common_name(der.as_ref())
            && !names.contains(&cn)
        {
            names.push(cn);
        }
        Self {
            names: names.into(),
        }
    }
}

/// One DER element: (tag, content, rest).
fn der(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// The subject's common name (OID 2.5.4.3) of a DER certificate, if it has one. The chain
/// was verified by rustls before this runs; this only reads the name.
fn subject_common_name(cert: &[u8]) -> Option<String> {
    const SEQUENCE: u8 = 0x30;
    let (_, certificate, _) = der(cert).filter(|(t, ..)| *t == SEQUENCE)?;
    let (_, tbs, _) = der(certificate).filter(|(t, ..)| *t == SEQUENCE)?;
    // version [0] (optional), serial, signature, issuer, validity, subject
    let mut rest = tbs;
    let (tag, _, after) = der(rest)?;
    if tag == 0xA0 {
        rest = after;
    }
    for _ in 0..4 {
        rest = der(rest)?.2;
    }
    let (_, mut subject, _) = der(rest).filter(|(t, ..)| *t == SEQUENCE)?;
    while let Some((_, set, next)) = der(subject) {
        let mut attributes = set;
        while let Some((_, attribute, after)) = der(attributes) {
            let (oid_tag, oid, value) = der(attribute)?;
            if oid_tag == 0x06 && oid == [0x55, 0x04, 0x03] {
                let (_, text, _) = der(value)?;
                return std::str::from_utf8(text).ok().map(str::to_owned);
            }
            attributes = after;
        }
        subject = next;
    }
    None
}

/// The authenticated caller of an ingress request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    Source(String),
    /// No credentials, accepted only with `[http] anonymous = true`.
    Anonymous,
}

impl Caller {
    pub fn source(&self) -> Option<&str> {
        match self {
            Self::Source(s) => Some(s),
            Self::Anonymous => None,
        }
    }
}

/// Why a request could not be attributed to a source. `slug` is the problem type and the
/// audit reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// No credentials at all.
    Missing,
    /// A token no source has, or an Authorization header that is not a bearer token.
    BadToken,
    /// A valid certificate whose identity no source claims.
    UnknownIdentity,
}

impl Denied {
    pub fn slug(self) -> &'static str {
        match self {
            Self::Missing | Self::BadToken => "unauthenticated",
            Self::UnknownIdentity => "unknown-identity",
        }
    }

    pub fn status(self) -> u16 {
        match self {
            Self::Missing | Self::BadToken => 401,
            Self::UnknownIdentity => 403,
        }
    }

    pub fn problem(self) -> Response {
        let (title, detail) = match self {
            Self::Missing => (
                "Authentication required",
                "present a client certificate or a bearer token",
            ),
            Self::BadToken => ("Authentication failed", "the credentials were not accepted"),
            Self::UnknownIdentity => (
                "Unknown identity",
                "the client certificate names no configured source",
            ),
        };
        let mut resp = Problem::new(self.status(), self.slug(), title, detail).into_response();
        if self.status() == 401 {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"wingspan\""),
            );
        }
        resp
    }
}

/// The SHA-256 of the bearer token in `headers`: `Ok(None)` when there is no Authorization
/// header, `Err` when there is one that is not a bearer token.
fn bearer_sha256(headers: &HeaderMap) -> Result<Option<[u8; 32]>, ()> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let text = value.to_str().map_err(|_| ())?;
    let (scheme, token) = text.split_once(' ').ok_or(())?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(());
    }
    let digest = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    Ok(Some(out))
}

/// Attribute an ingress request to a source (see the module documentation).
pub fn authenticate(
    config: &CompiledConfig,
    peer: Option<&Peer>,
    headers: &HeaderMap,
) -> Result<Caller, Denied> {
    if let Some(peer) = peer
        && !peer.names.is_empty()
    {
        return config
            .source_for_identity(peer.names.iter().map(String::as_str))
            .map(|s| Caller::Source(s.id.clone()))
            .ok_or(Denied::UnknownIdentity);
    }
    match bearer_sha256(headers) {
        Ok(Some(hash)) => config
            .source_for_token(&hash)
            .map(|s| Caller::Source(s.id.clone()))
            .ok_or(Denied::BadToken),
        Ok(None) if config.http_anonymous => Ok(Caller::Anonymous),
        Ok(None) => Err(Denied::Missing),
        Err(()) => Err(Denied::BadToken),
    }
}

/// The admin user a request's bearer token belongs to.
pub fn admin_user<'a>(config: &'a CompiledConfig, headers: &HeaderMap) -> Option<&'a AdminUser> {
    match bearer_sha256(headers) {
        Ok(Some(hash)) => config.admin_for_token(&hash),
        _ => None,
    }
}

/// Refusals less than this apart belong to one burst (audited once).
const BURST_GAP: Duration = Duration::from_secs(1);

struct Limiter {
    limiter: DefaultDirectRateLimiter,
    /// When the last refusal happened: a refusal within [`BURST_GAP`] of it continues the
    /// burst already audited.
    last_refusal: Mutex<Option<Instant>>,
}

impl Limiter {
    fn new(rate: u32, burst: u32) -> Self {
        let one = NonZeroU32::MIN;
        let quota = Quota::per_second(NonZeroU32::new(rate).unwrap_or(one))
            .allow_burst(NonZeroU32::new(burst).unwrap_or(one));
        Self {
            limiter: RateLimiter::direct(quota),
            last_refusal: Mutex::new(None),
        }
    }

    fn check(&self) -> Result<(), Limited> {
        let Err(not_until) = self.limiter.check() else {
            return Ok(());
        };
        let now = Instant::now();
        let mut last = self.last_refusal.lock().unwrap_or_else(|p| p.into_inner());
        let first = last.is_none_or(|t| now.duration_since(t) > BURST_GAP);
        *last = Some(now);
        Err(Limited {
            wait: not_until.wait_time_from(DefaultClock::default().now()),
            first,
        })
    }
}

/// Over a rate limit.
#[derive(Debug, Clone, Copy)]
pub struct Limited {
    pub wait: Duration,
    /// The first refusal of this burst (the one to audit).
    pub first: bool,
}

impl Limited {
    pub fn problem(&self) -> Response {
        let secs = u32::try_from(self.wait.as_millis().div_ceil(1000))
            .unwrap_or(u32::MAX)
            .max(1);
        let mut p = Problem::new(
            429,
            "rate-limited",
            "Too many requests",
            format!("over this source's rate limit; retry in {secs} s"),
        );
        p.retry_after = Some(secs);
        p.into_response()
    }
}

/// A source's limiter and the (rate, burst) it was built for.
type SourceLimiter = ((u32, u32), Arc<Limiter>);

/// One rate limiter per source, one for anonymous callers and one for failed
/// authentications.
pub struct Limiters {
    /// Per source, with the (rate, burst) it was built for; replaced on reload when those change.
    sources: std::sync::RwLock<HashMap<String, SourceLimiter>>,
    anonymous: Limiter,
    failures: Limiter,
}

impl std::fmt::Debug for Limiters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiters")
            .field(
                "sources",
                &self.sources.read().map(|s| s.len()).unwrap_or(0),
            )
            .finish_non_exhaustive()
    }
}

impl Limiters {
    pub fn new(config: &CompiledConfig) -> Self {
        let limiters = Self {
            sources: Default::default(),
            anonymous: Limiter::new(500, 1_000),
            failures: Limiter::new(20, 50),
        };
        limiters.update(config);
        limiters
    }

    /// Follow a reloaded config: a limiter for each new source or changed rate; a source
    /// whose rate did not change keeps its limiter (and what it has counted).
    pub fn update(&self, config: &CompiledConfig) {
        let mut sources = self.sources.write().unwrap_or_else(|p| p.into_inner());
        sources.retain(|id, _| config.sources.contains_key(id));
        for s in config.sources.values() {
            let rate = (s.rate_per_sec, s.burst);
            if sources.get(&s.id).is_none_or(|(r, _)| *r != rate) {
                sources.insert(s.id.clone(), (rate, Arc::new(Limiter::new(rate.0, rate.1))));
            }
        }
    }

    /// Count one request of `caller`.
    pub fn check(&self, caller: &Caller) -> Result<(), Limited> {
        match caller {
            Caller::Source(s) => {
                let limiter = self
                    .sources
                    .read()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(s)
                    .map(|(_, l)| l.clone());
                limiter.map_or(Ok(()), |l| l.check())
            }
            Caller::Anonymous => self.anonymous.check(),
        }
    }

    /// Count one failed authentication.
    pub fn check_failure(&self) -> Result<(), Limited> {
        self.failures.check()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_certificate_names_its_sans_and_its_subject_common_name() {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params =
            rcgen::CertificateParams::new(vec!["police.example".to_owned()]).expect("params");
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "Public Security Bureau");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "police");
        let cert = params.self_signed(&key).expect("cert");
        let peer = Peer::from_certificate(cert.der());
        assert_eq!(&*peer.names, ["police.example", "police"]);

        let bare = rcgen::CertificateParams::new(Vec::<String>::new())
            .expect("params")
            .self_signed(&key)
            .expect("cert");
        assert_eq!(
            subject_common_name(bare.der()).as_deref(),
            Some("rcgen self signed cert")
        );
        assert_eq!(subject_common_name(b"\x30\x03\x02\x01"), None);
        assert_eq!(subject_common_name(&[]), None);
    }
}
