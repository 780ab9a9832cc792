//! Table tests for the route decision, and a property: every message gets exactly one decision,
//! whose destinations are each listed once.

use super::*;
use serde_json::json;

fn pred(field: &str, op: Op) -> Predicate {
    Predicate {
        field: field.into(),
        op,
    }
}

/// Destinations: 0 aftercare-3204, 1 aftercare-3205, 2 hr, 3 civil, 4 hospital, 5 emergency, 6 police.
fn table() -> RouteTable {
    let names = [
        "aftercare-3204",
        "aftercare-3205",
        "hr",
        "civil",
        "hospital",
        "emergency",
        "police",
    ]
    .map(String::from)
    .to_vec();
    let route = |name: &str, t: &str, when: Vec<Predicate>, d: Vec<usize>| Route {
        name: name.into(),
        message_types: vec![t.into()],
        when,
        destinations: d,
    };
    RouteTable::new(
        vec![
            route(
                "handover-3204",
                "referral.handover",
                vec![pred(
                    "/payload/residence/division_code",
                    Op::Prefix("3204".into()),
                )],
                vec![0],
            ),
            route(
                "handover-3205",
                "referral.handover",
                vec![pred(
                    "/payload/residence/division_code",
                    Op::Prefix("3205".into()),
                )],
                vec![1],
            ),
            route(
                "handover-hr",
                "referral.handover",
                vec![pred(
                    "/payload/employment_needed",
                    Op::Equals("true".into()),
                )],
                vec![2],
            ),
            route(
                "handover-civil",
                "referral.handover",
                vec![pred(
                    "/payload/subsistence_eligible",
                    Op::Equals("true".into()),
                )],
                vec![3],
            ),
            route(
                "consult",
                "telemedicine.consultation.request",
                vec![],
                vec![4],
            ),
            route(
                "consult-emergency",
                "telemedicine.consultation.request",
                vec![pred("/payload/urgency", Op::Equals("emergency".into()))],
                vec![5, 4],
            ),
            route(
                "material",
                "enforcement.material.submit",
                vec![pred("source", Op::OneOf(vec!["rehab".into()]))],
                vec![6],
            ),
        ],
        names,
    )
}

fn env(message_type: &str, source: &str, payload: serde_json::Value) -> Envelope {
    Envelope {
        message_id: "m".into(),
        message_type: message_type.into(),
        schema_version: "1.0".into(),
        source: source.into(),
        sent_at: "2026-11-29T10:00:00Z".into(),
        correlation_id: None,
        payload,
    }
}

#[test]
fn decisions_by_table() {
    let t = table();
    let cases: Vec<(&str, Envelope, Vec<&str>)> = vec![
        (
            "changzhou district goes to its station",
            env(
                "referral.handover",
                "rehab",
                json!({"residence": {"division_code": "320411"}}),
            ),
            vec!["aftercare-3204"],
        ),
        (
            "suzhou goes to its station",
            env(
                "referral.handover",
                "rehab",
                json!({"residence": {"division_code": "320506"}}),
            ),
            vec!["aftercare-3205"],
        ),
        (
            "employment and allowance fan out",
            env(
                "referral.handover",
                "rehab",
                json!({"residence": {"division_code": "320411"}, "employment_needed": true, "subsistence_eligible": true}),
            ),
            vec!["aftercare-3204", "hr", "civil"],
        ),
        (
            "no station for another province",
            env(
                "referral.handover",
                "rehab",
                json!({"residence": {"division_code": "110105"}}),
            ),
            vec![],
        ),
        (
            "employment only",
            env(
                "referral.handover",
                "rehab",
                json!({"residence": {"division_code": "110105"}, "employment_needed": true}),
            ),
            vec!["hr"],
        ),
        (
            "routine consultation",
            env(
                "telemedicine.consultation.request",
                "rehab",
                json!({"urgency": "routine"}),
            ),
            vec!["hospital"],
        ),
        (
            "emergency consultation also alerts 120, hospital once",
            env(
                "telemedicine.consultation.request",
                "rehab",
                json!({"urgency": "emergency"}),
            ),
            vec!["hospital", "emergency"],
        ),
        (
            "material from rehab",
            env("enforcement.material.submit", "rehab", json!({})),
            vec!["police"],
        ),
        (
            "material from elsewhere",
            env("enforcement.material.submit", "hr", json!({})),
            vec![],
        ),
        (
            "unrouted type",
            env("referral.outcome", "hr", json!({})),
            vec![],
        ),
    ];
    for (name, e, expected) in cases {
        let d = t.decide(&e);
        assert_eq!(t.destination_names(&d), expected, "case: {name}");
        assert_eq!(expected.is_empty(), d == Decision::NoRoute, "case: {name}");
    }
}

#[test]
fn predicate_operators() {
    let e = env("x", "rehab", json!({"a": "320411", "n": 7}));
    assert!(pred("/payload/a", Op::Prefix("32".into())).holds(&e));
    assert!(!pred("/payload/a", Op::Prefix("33".into())).holds(&e));
    assert!(pred("/payload/n", Op::Equals("7".into())).holds(&e));
    assert!(pred("/payload/a", Op::OneOf(vec!["1".into(), "320411".into()])).holds(&e));
    assert!(pred("/payload/a", Op::Exists(true)).holds(&e));
    assert!(pred("/payload/b", Op::Exists(false)).holds(&e));
    assert!(!pred("/payload/b", Op::Equals("".into())).holds(&e));
    assert!(pred("correlation_id", Op::Exists(false)).holds(&e));
}

mod property {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn every_message_gets_one_decision_with_unique_destinations(
            code in "[0-9]{6}",
            urgency in prop::sample::select(vec!["routine", "urgent", "emergency"]),
            employment in any::<bool>(),
            allowance in any::<bool>(),
            t in prop::sample::select(vec!["referral.handover", "telemedicine.consultation.request", "enforcement.material.submit", "referral.outcome"]),
        ) {
            let table = table();
            let e = env(t, "rehab", json!({"residence": {"division_code": code}, "urgency": urgency, "employment_needed": employment, "subsistence_eligible": allowance}));
            let d = table.decide(&e);
            // Deterministic.
            prop_assert_eq!(&d, &table.decide(&e));
            if let Decision::Deliver { destinations, routes } = &d {
                prop_assert!(!destinations.is_empty());
                prop_assert!(!routes.is_empty());
                let mut unique = destinations.clone();
                unique.dedup();
                prop_assert_eq!(unique.len(), destinations.len());
                // Every destination comes from a matching route.
                for dest in destinations {
                    prop_assert!(routes.iter().any(|&r| table.routes()[r].destinations.contains(dest)));
                }
            }
        }
    }
}
