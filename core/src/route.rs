//! The route decision: a pure function of (envelope, route table) → destinations.
//!
//! Every route whose message types include the envelope's type and whose predicates all hold
//! contributes its destinations; the decision is their union in config order, each destination
//! once. No matching route is a decision too ([`Decision::NoRoute`]), never a silent drop.

use std::collections::HashMap;

use crate::envelope::Envelope;

/// A predicate operator on one field's text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Equals(String),
    Prefix(String),
    OneOf(Vec<String>),
    /// `true`: the field must be present; `false`: it must be absent.
    Exists(bool),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Predicate {
    pub field: String,
    pub op: Op,
}

impl Predicate {
    /// The predicate in words, as written in the config (`/payload/x prefix "32"`).
    pub fn describe(&self) -> String {
        let f = &self.field;
        match &self.op {
            Op::Equals(x) => format!("{f} equals {x:?}"),
            Op::Prefix(p) => format!("{f} prefix {p:?}"),
            Op::OneOf(xs) => format!("{f} one of {xs:?}"),
            Op::Exists(true) => format!("{f} exists"),
            Op::Exists(false) => format!("{f} absent"),
        }
    }

    pub fn holds(&self, envelope: &Envelope) -> bool {
        let value = envelope.field_text(&self.field);
        match (&self.op, value) {
            (Op::Exists(want), v) => v.is_some() == *want,
            (_, None) => false,
            (Op::Equals(x), Some(v)) => v == x.as_str(),
            (Op::Prefix(p), Some(v)) => v.starts_with(p.as_str()),
            (Op::OneOf(xs), Some(v)) => xs.iter().any(|x| v == x.as_str()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub name: String,
    pub message_types: Vec<String>,
    pub when: Vec<Predicate>,
    /// Indices into the destination list.
    pub destinations: Vec<usize>,
}

/// The routes, indexed by message type.
#[derive(Debug, Clone)]
pub struct RouteTable {
    routes: Vec<Route>,
    by_type: HashMap<String, Vec<usize>>,
    destination_names: Vec<String>,
}

/// Why one route did or did not take a message (never quotes the message's values).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RouteVerdict {
    pub route: String,
    /// The route is for this message type at all.
    pub for_type: bool,
    /// Each predicate in words and whether it holds (empty when not for this type).
    pub predicates: Vec<(String, bool)>,
    pub matched: bool,
    pub destinations: Vec<String>,
}

/// The outcome of routing one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Deliver to these destinations (indices, each once, in config order) because of these routes.
    Deliver {
        routes: Vec<usize>,
        destinations: Vec<usize>,
    },
    /// No route matched: the message is rejected to its sender.
    NoRoute,
}

impl RouteTable {
    pub fn new(routes: Vec<Route>, destination_names: Vec<String>) -> Self {
        let mut by_type: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, r) in routes.iter().enumerate() {
            for t in &r.message_types {
                by_type.entry(t.clone()).or_default().push(i);
            }
        }
        Self {
            routes,
            by_type,
            destination_names,
        }
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    pub fn destination_name(&self, index: usize) -> &str {
        &self.destination_names[index]
    }

    /// Route one message.
    pub fn decide(&self, envelope: &Envelope) -> Decision {
        let Some(candidates) = self.by_type.get(&envelope.message_type) else {
            return Decision::NoRoute;
        };
        let mut routes = Vec::new();
        let mut destinations: Vec<usize> = Vec::new();
        for &i in candidates {
            let route = &self.routes[i];
            if route.when.iter().all(|p| p.holds(envelope)) {
                routes.push(i);
                for &d in &route.destinations {
                    if !destinations.contains(&d) {
                        destinations.push(d);
                    }
                }
            }
        }
        if destinations.is_empty() {
            return Decision::NoRoute;
        }
        destinations.sort_unstable();
        Decision::Deliver {
            routes,
            destinations,
        }
    }

    /// Every route's verdict on one message, in config order: the decision, explained.
    pub fn explain(&self, envelope: &Envelope) -> Vec<RouteVerdict> {
        self.routes
            .iter()
            .map(|r| {
                let for_type = r.message_types.contains(&envelope.message_type);
                let predicates: Vec<(String, bool)> = if for_type {
                    r.when
                        .iter()
                        .map(|p| (p.describe(), p.holds(envelope)))
                        .collect()
                } else {
                    Vec::new()
                };
                RouteVerdict {
                    route: r.name.clone(),
                    for_type,
                    matched: for_type && predicates.iter().all(|(_, h)| *h),
                    predicates,
                    destinations: r
                        .destinations
                        .iter()
                        .map(|&d| self.destination_names[d].clone())
                        .collect(),
                }
            })
            .collect()
    }

    /// The decision as destination names (for receipts, logs and tests).
    pub fn destination_names(&self, decision: &Decision) -> Vec<&str> {
        match decision {
            Decision::Deliver { destinations, .. } => destinations
                .iter()
                .map(|&d| self.destination_name(d))
                .collect(),
            Decision::NoRoute => Vec::new(),
        }
    }
}

#[cfg(test)]
#[path = "route_tests.rs"]
mod tests;
