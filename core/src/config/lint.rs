//! What a config that compiles can still get wrong, found before it goes live
//! (`wingspan check`; the gateway logs them as warnings at start):
//! - a route that can never match: no source may send any of its message types, or two of its
//!   own predicates contradict each other;
//! - a message type some source may send that no route takes (every such message would be
//!   refused with `no-route`);
//! - two routes that can take the same message to the same destination (it is delivered once,
//!   but one of the routes is redundant or a mistake).
//!
//! And [`locate`]: the line of the config text a problem's path points at.

use std::collections::HashSet;

use super::{CompiledConfig, ConfigError};
use crate::route::{Op, Predicate};

/// Whether two predicates on the same field can both hold.
fn compatible(a: &Predicate, b: &Predicate) -> bool {
    if a.field != b.field {
        return true;
    }
    use Op::*;
    match (&a.op, &b.op) {
        (Exists(x), Exists(y)) => x == y,
        (Exists(false), _) | (_, Exists(false)) => false,
        (Exists(true), _) | (_, Exists(true)) => true,
        (Equals(x), Equals(y)) => x == y,
        (Equals(x), Prefix(p)) | (Prefix(p), Equals(x)) => x.starts_with(p.as_str()),
        (Equals(x), OneOf(v)) | (OneOf(v), Equals(x)) => v.contains(x),
        (Prefix(p), Prefix(q)) => p.starts_with(q.as_str()) || q.starts_with(p.as_str()),
        (Prefix(p), OneOf(v)) | (OneOf(v), Prefix(p)) => {
            v.iter().any(|x| x.starts_with(p.as_str()))
        }
        (OneOf(v), OneOf(w)) => v.iter().any(|x| w.contains(x)),
    }
}

fn satisfiable(preds: &[&Predicate]) -> bool {
    preds
        .iter()
        .enumerate()
        .all(|(i, a)| preds[i + 1..].iter().all(|b| compatible(a, b)))
}

/// Every problem of a compiled config that compiling does not catch.
pub fn lint(config: &CompiledConfig) -> Vec<ConfigError> {
    let mut problems = Vec::new();
    let sendable: HashSet<&str> = config
        .sources
        .values()
        .flat_map(|s| s.allowed.iter().map(String::as_str))
        .collect();
    let routes = config.routes.routes();
    for (i, r) in routes.iter().enumerate() {
        if !r
            .message_types
            .iter()
            .any(|t| sendable.contains(t.as_str()))
        {
            problems.push(ConfigError::new(
                format!("routes[{i}].message_types"),
                format!(
                    "route {:?} can never match: no source may send any of its message types",
                    r.name
                ),
            ));
        } else if !satisfiable(&r.when.iter().collect::<Vec<_>>()) {
            problems.push(ConfigError::new(
                format!("routes[{i}].when"),
                format!(
                    "route {:?} can never match: its predicates contradict each other",
                    r.name
                ),
            ));
        }
    }
    let mut ids: Vec<&String> = config.sources.keys().collect();
    ids.sort();
    for id in ids {
        let source = &config.sources[id];
        let mut types: Vec<&String> = source.allowed.iter().collect();
        types.sort();
        for t in types {
            if !routes.iter().any(|r| r.message_types.contains(t)) {
                problems.push(ConfigError::new(
                    format!("sources.{id}.message_types"),
                    format!(
                        "no route takes {t:?}, which source {id:?} may send: every such message would be refused (no-route)"
                    ),
                ));
            }
        }
    }
    for (i, a) in routes.iter().enumerate() {
        for (j, b) in routes.iter().enumerate().skip(i + 1) {
            let Some(shared_type) = a.message_types.iter().find(|t| b.message_types.contains(t))
            else {
                continue;
            };
            let both: Vec<&Predicate> = a.when.iter().chain(&b.when).collect();
            if !satisfiable(&both) {
                continue;
            }
            for d in a.destinations.iter().filter(|d| b.destinations.contains(d)) {
                problems.push(ConfigError::new(
                    format!("routes[{j}].destinations"),
                    format!(
                        "routes {:?} and {:?} can both take one {shared_type} message to {:?}: it is delivered once, but one route is redundant or a mistake",
                        a.name,
                        b.name,
                        config.routes.destination_name(*d)
                    ),
                ));
            }
        }
    }
    problems
}

/// The 1-based line of `text` that a problem path (`routes[2].destinations[0]`,
/// `limits.max_body_bytes`, `sources.hr.message_types`, `admin.users[1].role`) points at: the
/// key's line inside its table when found, else the table's header.
pub fn locate(text: &str, path: &str) -> Option<usize> {
    let segments: Vec<(&str, Option<usize>)> = path
        .split('.')
        .map(|s| match s.split_once('[') {
            Some((name, rest)) => (name, rest.trim_end_matches(']').parse().ok()),
            None => (s, None),
        })
        .collect();
    let lines: Vec<&str> = text.lines().collect();
    let is_header = |l: &str| l.trim_start().starts_with('[');
    let key_line = |from: usize, key: &str| {
        lines[from..]
            .iter()
            .take_while(|l| !is_header(l))
            .position(|l| {
                let t = l.trim_start();
                t.strip_prefix(key)
                    .is_some_and(|r| r.trim_start().starts_with('='))
                    || t.strip_prefix(&format!("{key:?}"))
                        .is_some_and(|r| r.trim_start().starts_with('='))
            })
            .map(|p| from + p)
    };
    // `sources.<id>`: the [[sources]] entry whose id is <id>.
    if let [("sources", None), (id, None), rest @ ..] = segments.as_slice() {
        let mut header = None;
        for (n, l) in lines.iter().enumerate() {
            if l.trim() == "[[sources]]" {
                header = Some(n);
            } else if let Some(h) = header
                && l.trim().replace(' ', "") == format!("id=\"{id}\"")
            {
                let key = rest.first().map(|(k, _)| *k);
                return Some(key.and_then(|k| key_line(h + 1, k)).unwrap_or(h) + 1);
            }
        }
        return None;
    }
    for k in (1..=segments.len()).rev() {
        let name: Vec<&str> = segments[..k].iter().map(|(n, _)| *n).collect();
        let name = name.join(".");
        let header = match segments[k - 1].1 {
            Some(nth) => lines
                .iter()
                .enumerate()
                .filter(|(_, l)| l.trim() == format!("[[{name}]]"))
                .nth(nth)
                .map(|(n, _)| n),
            None => lines.iter().position(|l| l.trim() == format!("[{name}]")),
        };
        if let Some(h) = header {
            let found = segments.get(k).and_then(|(key, _)| key_line(h + 1, key));
            return Some(found.unwrap_or(h) + 1);
        }
    }
    segments
        .first()
        .and_then(|(key, _)| key_line(0, key))
        .map(|n| n + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "[gateway]\ninstance = \"x\"\n\n[limits]\nmax_body_bytes = 10\n\n[[sources]]\nid = \"rehab\"\nmessage_types = []\n\n[[sources]]\nid = \"hr\"\nadapter = \"hr\"\nmessage_types = [\"a\"]\n\n[[routes]]\nname = \"r0\"\n\n[[routes]]\nname = \"r1\"\ndestinations = [\"x\"]\n";

    #[test]
    fn problem_paths_are_located_at_their_lines() {
        assert_eq!(locate(TEXT, "limits.max_body_bytes"), Some(5));
        assert_eq!(locate(TEXT, "routes[1].destinations[0]"), Some(21));
        assert_eq!(locate(TEXT, "routes[0].when"), Some(16));
        assert_eq!(locate(TEXT, "sources.hr.message_types"), Some(14));
        assert_eq!(locate(TEXT, "sources[0].message_types[0]"), Some(9));
        assert_eq!(locate(TEXT, "gateway.instance"), Some(2));
        assert_eq!(locate(TEXT, "nowhere.at_all"), None);
    }

    #[test]
    fn contradictions_are_found() {
        let p = |field: &str, op: Op| Predicate {
            field: field.into(),
            op,
        };
        let eq = |x: &str| Op::Equals(x.into());
        assert!(!compatible(&p("/a", eq("1")), &p("/a", eq("2"))));
        assert!(compatible(&p("/a", eq("1")), &p("/b", eq("2"))));
        assert!(compatible(
            &p("/a", eq("3204")),
            &p("/a", Op::Prefix("32".into()))
        ));
        assert!(!compatible(
            &p("/a", Op::Prefix("3204".into())),
            &p("/a", Op::Prefix("3205".into()))
        ));
        assert!(!compatible(&p("/a", Op::Exists(false)), &p("/a", eq("1"))));
        assert!(!compatible(
            &p("/a", Op::OneOf(vec!["x".into()])),
            &p("/a", Op::OneOf(vec!["y".into()]))
        ));
    }
}
