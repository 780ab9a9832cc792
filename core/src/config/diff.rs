//! What changed between two configs, in words: sources, destinations (transport, adapter,
//! field policies), routes (types, predicates, destinations) and the settings sections. Secrets
//! are never printed: a changed broker URL or token list is named, not shown.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;

use super::raw::{RawConfig, RawDestination, RawPredicate, RawRoute, RawSource};

fn set(v: &[String]) -> BTreeSet<&str> {
    v.iter().map(String::as_str).collect()
}

/// "+a, +b, -c" for the members added to and removed from a list.
fn delta(before: &[String], after: &[String]) -> Option<String> {
    let (b, a) = (set(before), set(after));
    let mut parts: Vec<String> = a.difference(&b).map(|x| format!("+{x}")).collect();
    parts.extend(b.difference(&a).map(|x| format!("-{x}")));
    (!parts.is_empty()).then(|| parts.join(", "))
}

fn predicate(p: &RawPredicate) -> String {
    let op = if let Some(x) = &p.equals {
        format!("equals {x:?}")
    } else if let Some(x) = &p.prefix {
        format!("prefix {x:?}")
    } else if let Some(x) = &p.one_of {
        format!("one of {x:?}")
    } else if let Some(x) = p.exists {
        if x { "exists".into() } else { "absent".into() }
    } else {
        "?".into()
    };
    format!("{} {op}", p.field)
}

fn predicates(ps: &[RawPredicate]) -> String {
    if ps.is_empty() {
        "always".into()
    } else {
        ps.iter().map(predicate).collect::<Vec<_>>().join(" and ")
    }
}

fn by_id<T>(items: &[T], id: impl Fn(&T) -> &str) -> BTreeMap<&str, &T> {
    items.iter().map(|x| (id(x), x)).collect()
}

/// Added, removed, and (id, before, after) for the ones in both.
type Pairs<'a, T> = (Vec<&'a str>, Vec<&'a str>, Vec<(&'a str, &'a T, &'a T)>);

fn pairs<'a, T>(a: &BTreeMap<&'a str, &'a T>, b: &BTreeMap<&'a str, &'a T>) -> Pairs<'a, T> {
    let added = b.keys().filter(|k| !a.contains_key(*k)).copied().collect();
    let removed = a.keys().filter(|k| !b.contains_key(*k)).copied().collect();
    let both = a
        .iter()
        .filter_map(|(k, x)| b.get(k).map(|y| (*k, *x, *y)))
        .collect();
    (added, removed, both)
}

fn differs<T: Debug>(a: &T, b: &T) -> bool {
    format!("{a:?}") != format!("{b:?}")
}

fn source(out: &mut Vec<String>, id: &str, a: &RawSource, b: &RawSource) {
    if let Some(d) = delta(&a.message_types, &b.message_types) {
        out.push(format!("source {id}: may send {d}"));
    }
    if a.adapter != b.adapter {
        out.push(format!(
            "source {id}: adapter {} → {}",
            a.adapter, b.adapter
        ));
    }
    if let Some(d) = delta(&a.identities, &b.identities) {
        out.push(format!("source {id}: certificate identities {d}"));
    }
    if a.tokens_sha256 != b.tokens_sha256 {
        out.push(format!(
            "source {id}: bearer tokens changed ({} → {})",
            a.tokens_sha256.len(),
            b.tokens_sha256.len()
        ));
    }
    if let Some(d) = delta(&a.amqp_users, &b.amqp_users) {
        out.push(format!("source {id}: broker users {d}"));
    }
    if (a.rate_per_sec, a.burst, a.max_body_bytes) != (b.rate_per_sec, b.burst, b.max_body_bytes) {
        out.push(format!("source {id}: rate, burst or body limit changed"));
    }
}

fn transport(d: &RawDestination) -> String {
    match (&d.http, &d.amqp) {
        (Some(h), _) => {
            let rest = h.url.split_once("://").map_or(h.url.as_str(), |(_, r)| r);
            let host = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
            format!("HTTP {}", host.split('?').next().unwrap_or(host))
        }
        (None, Some(a)) if a.once => format!(
            "AMQP exchange {} key {}, published once",
            a.exchange, a.routing_key
        ),
        (None, Some(a)) => format!("AMQP exchange {} key {}", a.exchange, a.routing_key),
        (None, None) => "no transport".into(),
    }
}

fn destination(out: &mut Vec<String>, id: &str, a: &RawDestination, b: &RawDestination) {
    if a.adapter != b.adapter {
        out.push(format!(
            "destination {id}: adapter {} → {}",
            a.adapter, b.adapter
        ));
    }
    let (ta, tb) = (transport(a), transport(b));
    if ta != tb || differs(&a.http, &b.http) {
        out.push(format!("destination {id}: transport {ta} → {tb}"));
    }
    if a.content_type != b.content_type {
        out.push(format!(
            "destination {id}: content type {} → {}",
            a.content_type.as_deref().unwrap_or("(adapter's default)"),
            b.content_type.as_deref().unwrap_or("(adapter's default)")
        ));
    }
    if a.concurrency != b.concurrency || a.retry.max_attempts != b.retry.max_attempts {
        out.push(format!(
            "destination {id}: concurrency {} → {}, attempts {} → {}",
            a.concurrency, b.concurrency, a.retry.max_attempts, b.retry.max_attempts
        ));
    }
    let types: BTreeSet<&String> = a.fields.keys().chain(b.fields.keys()).collect();
    for t in types {
        match (a.fields.get(t), b.fields.get(t)) {
            (None, Some(f)) => out.push(format!(
                "destination {id}: now receives {t} with fields {}",
                f.join(", ")
            )),
            (Some(_), None) => {
                out.push(format!("destination {id}: no longer has a policy for {t}"))
            }
            (Some(x), Some(y)) => {
                if let Some(d) = delta(x, y) {
                    out.push(format!("destination {id}: fields of {t}: {d}"));
                }
            }
            (None, None) => {}
        }
    }
}

fn route(out: &mut Vec<String>, name: &str, a: &RawRoute, b: &RawRoute) {
    if let Some(d) = delta(&a.message_types, &b.message_types) {
        out.push(format!("route {name}: message types {d}"));
    }
    if differs(&a.when, &b.when) {
        out.push(format!(
            "route {name}: when {} → {}",
            predicates(&a.when),
            predicates(&b.when)
        ));
    }
    if let Some(d) = delta(&a.destinations, &b.destinations) {
        out.push(format!("route {name}: destinations {d}"));
    }
}

/// Every difference from `a` to `b`, one sentence each; empty when they are the same in effect.
pub fn describe(a: &RawConfig, b: &RawConfig) -> Vec<String> {
    let mut out = Vec::new();
    let (added, removed, both) = pairs(
        &by_id(&a.sources, |s| s.id.as_str()),
        &by_id(&b.sources, |s| s.id.as_str()),
    );
    out.extend(added.iter().map(|s| format!("source {s} added")));
    out.extend(removed.iter().map(|s| format!("source {s} removed")));
    for (id, x, y) in both {
        source(&mut out, id, x, y);
    }
    let (added, removed, both) = pairs(
        &by_id(&a.destinations, |d| d.id.as_str()),
        &by_id(&b.destinations, |d| d.id.as_str()),
    );
    for d in added {
        let dest = b.destinations.iter().find(|x| x.id == d);
        out.push(format!(
            "destination {d} added ({})",
            dest.map(|x| format!("{} adapter, {}", x.adapter, transport(x)))
                .unwrap_or_default()
        ));
    }
    out.extend(removed.iter().map(|d| format!("destination {d} removed")));
    for (id, x, y) in both {
        destination(&mut out, id, x, y);
    }
    let (added, removed, both) = pairs(
        &by_id(&a.routes, |r| r.name.as_str()),
        &by_id(&b.routes, |r| r.name.as_str()),
    );
    for r in added {
        if let Some(x) = b.routes.iter().find(|x| x.name == r) {
            out.push(format!(
                "route {r} added: {} when {} → {}",
                x.message_types.join(", "),
                predicates(&x.when),
                x.destinations.join(", ")
            ));
        }
    }
    out.extend(removed.iter().map(|r| format!("route {r} removed")));
    for (name, x, y) in both {
        route(&mut out, name, x, y);
    }
    if a.broker.url != b.broker.url
        || a.broker.urls != b.broker.urls
        || a.broker.url_file != b.broker.url_file
    {
        out.push("broker: URL changed (not shown: it may hold credentials)".into());
    }
    let sections: [(&str, bool); 8] = [
        ("gateway", differs(&a.gateway, &b.gateway)),
        ("http", differs(&a.http, &b.http)),
        ("tls", differs(&a.tls, &b.tls)),
        ("limits", differs(&a.limits, &b.limits)),
        ("audit", differs(&a.audit, &b.audit)),
        ("admin", differs(&a.admin, &b.admin)),
        ("retention", differs(&a.retention, &b.retention)),
        (
            "broker (other settings)",
            differs(
                &(
                    &a.broker.prefix,
                    &a.broker.queue_type,
                    a.broker.prefetch,
                    &a.broker.retry_delays_ms,
                    a.broker.delivery_limit,
                    a.broker.heartbeat_secs,
                    a.broker.operation_timeout_ms,
                    &a.broker.ca_file,
                ),
                &(
                    &b.broker.prefix,
                    &b.broker.queue_type,
                    b.broker.prefetch,
                    &b.broker.retry_delays_ms,
                    b.broker.delivery_limit,
                    b.broker.heartbeat_secs,
                    b.broker.operation_timeout_ms,
                    &b.broker.ca_file,
                ),
            ),
        ),
    ];
    for (name, changed) in sections {
        if changed {
            out.push(format!("[{name}] settings changed"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> RawConfig {
        crate::config::parse("t.toml", text).expect("parse")
    }

    #[test]
    fn differences_are_named_in_words() {
        let a = parse(
            r#"
[[sources]]
id = "rehab"
message_types = ["x.a"]
[[destinations]]
id = "hr"
adapter = "hr"
http = { url = "http://hr.example/in" }
fields = { "x.a" = ["person.name", "skills"] }
[[routes]]
name = "r"
message_types = ["x.a"]
when = [{ field = "/payload/c", prefix = "3204" }]
destinations = ["hr"]
"#,
        );
        let b = parse(
            r#"
[broker]
url = "amqp://u:secret@elsewhere/"
[[sources]]
id = "rehab"
message_types = ["x.a", "x.b"]
[[destinations]]
id = "hr"
adapter = "hr"
http = { url = "http://hr2.example/in" }
fields = { "x.a" = ["person.name"] }
[[destinations]]
id = "civil"
adapter = "civil"
http = { url = "http://civil.example/in" }
[[routes]]
name = "r"
message_types = ["x.a"]
when = [{ field = "/payload/c", prefix = "3205" }]
destinations = ["hr", "civil"]
"#,
        );
        let d = describe(&a, &b);
        for expected in [
            "source rehab: may send +x.b",
            "destination civil added (civil adapter, HTTP civil.example/in)",
            "destination hr: transport HTTP hr.example/in → HTTP hr2.example/in",
            "destination hr: fields of x.a: -skills",
            "route r: when /payload/c prefix \"3204\" → /payload/c prefix \"3205\"",
            "route r: destinations +civil",
            "broker: URL changed (not shown: it may hold credentials)",
        ] {
            assert!(
                d.iter().any(|l| l == expected),
                "{expected:?} not in {d:#?}"
            );
        }
        assert!(!d.iter().any(|l| l.contains("secret")));
        assert!(describe(&a, &a).is_empty());
    }

    #[test]
    fn a_partner_delivered_once_is_said_so() {
        let text = |once: &str| {
            format!(
                r#"
[[destinations]]
id = "mq"
adapter = "civil"
amqp = {{ exchange = "partner.mq", routing_key = "in"{once} }}
"#
            )
        };
        let (a, b) = (parse(&text("")), parse(&text(", once = true")));
        assert!(!a.destinations[0].amqp.as_ref().expect("amqp").once);
        assert!(b.destinations[0].amqp.as_ref().expect("amqp").once);
        assert_eq!(
            describe(&a, &b),
            [
                "destination mq: transport AMQP exchange partner.mq key in → AMQP exchange partner.mq key in, published once"
            ]
        );
        // A misspelt option is a config error, not a silent default.
        assert!(crate::config::parse("t.toml", &text(", onse = true")).is_err());
    }
}
