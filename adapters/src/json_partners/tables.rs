//! The four partner descriptions. Everything a partner receives or sends is in its table;
//! `dropped` lists what it never receives (checked against the canonical schemas by the tests:
//! every canonical field is mapped, implied or dropped).

use super::{Document, Field, Fixed, Implied, JsonPartner, Ty};
use Ty::{Boolean, Integer, Text, TextList};

const fn req(
    canonical: &'static [&'static str],
    partner: &'static [&'static str],
    ty: Ty,
) -> Field {
    Field {
        canonical,
        partner,
        ty,
        required: true,
    }
}

const fn opt(
    canonical: &'static [&'static str],
    partner: &'static [&'static str],
    ty: Ty,
) -> Field {
    Field {
        canonical,
        partner,
        ty,
        required: false,
    }
}

/// Sex codes of GB/T 2261.1 (0 unknown, 1 male, 2 female), as Chinese government systems use them.
pub const GENDER: &[(&str, &str)] = &[("unknown", "0"), ("male", "1"), ("female", "2")];
const SUPERVISION: &[(&str, &str)] = &[
    ("aftercare", "AFTERCARE"),
    ("community_rehabilitation", "COMMUNITY_REHABILITATION"),
];
const DISPATCH_STATUS: &[(&str, &str)] = &[("dispatched", "DISPATCHED"), ("declined", "DECLINED")];
const PLACEMENT_RESULT: &[(&str, &str)] = &[("placed", "PLACED"), ("not_placed", "NOT_PLACED")];
const ALLOWANCE_RESULT: &[(&str, &str)] = &[
    ("allowance_granted", "GRANTED"),
    ("allowance_denied", "DENIED"),
];
const SUPERVISION_RESULT: &[(&str, &str)] = &[
    ("supervision_started", "STARTED"),
    ("supervision_refused", "REFUSED"),
];

const REFERRAL_TYPES: &[&str] = &[
    "referral.handover",
    "referral.acknowledged",
    "referral.outcome",
];

/// Not sent to any referral partner: substance use and clinical detail (their shapes have no
/// field for them), and the centre's medical alliance (a routing attribute for hospitals).
const HANDOVER_NEVER: [&str; 3] = ["centre.alliance", "substance_history", "clinical_summary"];

// ── 120 emergency dispatch ───────────────────────────────────────────────────────────────────

/// 120 dispatch: transfer requests and emergency consultation alerts out, acknowledgements back.
/// It receives the caller (centre), the patient's identity, the pickup point and the condition:
/// no substance history, clinical summary or medications.
pub static EMERGENCY: JsonPartner = JsonPartner {
    name: "emergency",
    message_types: &[
        "emergency.transfer.request",
        "telemedicine.consultation.request",
        "emergency.transfer.acknowledged",
    ],
    documents: &[
        Document {
            message_type: "emergency.transfer.request",
            kind: "dispatch_request",
            fields: &[
                req(&["transfer_id"], &["request_no"], Text),
                opt(&["consultation_id"], &["related_consultation_no"], Text),
                req(&["centre", "id"], &["caller", "unit_code"], Text),
                req(&["centre", "name"], &["caller", "unit_name"], Text),
                opt(&["centre", "division_code"], &["caller", "area_code"], Text),
                req(&["person", "person_id"], &["patient", "id_number"], Text),
                req(&["person", "name"], &["patient", "name"], Text),
                opt(&["person", "birth_date"], &["patient", "birth_date"], Text),
                opt(&["person", "gender"], &["patient", "sex"], Ty::Code(GENDER)),
                req(&["pickup", "address"], &["pickup", "address"], Text),
                req(&["pickup", "division_code"], &["pickup", "area_code"], Text),
                req(&["condition"], &["condition"], Text),
                opt(&["requested_at"], &["requested_at"], Text),
            ],
            implied: &[],
            dropped: &["centre.alliance"],
        },
        Document {
            message_type: "telemedicine.consultation.request",
            kind: "dispatch_alert",
            fields: &[
                req(&["consultation_id"], &["alert_no"], Text),
                req(&["centre", "id"], &["caller", "unit_code"], Text),
                req(&["centre", "name"], &["caller", "unit_name"], Text),
                opt(&["centre", "division_code"], &["caller", "area_code"], Text),
                req(&["person", "person_id"], &["patient", "id_number"], Text),
                req(&["person", "name"], &["patient", "name"], Text),
                opt(&["person", "birth_date"], &["patient", "birth_date"], Text),
                opt(&["person", "gender"], &["patient", "sex"], Ty::Code(GENDER)),
                req(&["specialty"], &["specialty_requested"], Text),
                req(&["reason"], &["condition"], Text),
                opt(&["requested_at"], &["requested_at"], Text),
            ],
            implied: &[Implied {
                canonical: "urgency",
                value: Fixed::Text("emergency"),
            }],
            dropped: &[
                "centre.alliance",
                "clinical_summary",
                "substance_history",
                "medications",
            ],
        },
        Document {
            message_type: "emergency.transfer.acknowledged",
            kind: "dispatch_ack",
            fields: &[
                req(&["transfer_id"], &["request_no"], Text),
                req(&["dispatch_id"], &["dispatch_id"], Text),
                req(&["status"], &["status"], Ty::Code(DISPATCH_STATUS)),
                opt(&["eta_minutes"], &["eta_minutes"], Integer),
                req(&["acknowledged_at"], &["acknowledged_at"], Text),
            ],
            implied: &[],
            dropped: &[],
        },
    ],
};

// ── Employment offices (human resources and social security) ─────────────────────────────────

/// Employment offices: placement referrals (handovers with `employment_needed`) out,
/// acknowledgements and placement outcomes back.
pub static HR: JsonPartner = JsonPartner {
    name: "hr",
    message_types: REFERRAL_TYPES,
    documents: &[
        Document {
            message_type: "referral.handover",
            kind: "placement_referral",
            fields: &[
                req(&["referral_id"], &["referral_no"], Text),
                req(&["person", "person_id"], &["candidate", "id_number"], Text),
                req(&["person", "name"], &["candidate", "name"], Text),
                opt(
                    &["person", "birth_date"],
                    &["candidate", "birth_date"],
                    Text,
                ),
                opt(
                    &["person", "gender"],
                    &["candidate", "sex"],
                    Ty::Code(GENDER),
                ),
                opt(&["contact_phone"], &["candidate", "phone"], Text),
                opt(&["skills"], &["candidate", "skills"], TextList),
                req(&["centre", "id"], &["referred_by", "unit_code"], Text),
                req(&["centre", "name"], &["referred_by", "unit_name"], Text),
                opt(
                    &["centre", "division_code"],
                    &["referred_by", "area_code"],
                    Text,
                ),
                req(&["release_date"], &["release_date"], Text),
                req(
                    &["residence", "division_code"],
                    &["household", "area_code"],
                    Text,
                ),
                req(&["residence", "address"], &["household", "address"], Text),
                req(
                    &["supervision_type"],
                    &["supervision", "kind"],
                    Ty::Code(SUPERVISION),
                ),
                opt(&["supervision_months"], &["supervision", "months"], Integer),
                req(&["subsistence_eligible"], &["allowance_eligible"], Boolean),
            ],
            implied: &[Implied {
                canonical: "employment_needed",
                value: Fixed::Boolean(true),
            }],
            dropped: &HANDOVER_NEVER,
        },
        Document {
            message_type: "referral.acknowledged",
            kind: "placement_ack",
            fields: &[
                req(&["referral_id"], &["referral_no"], Text),
                req(&["receiving_unit", "id"], &["office", "code"], Text),
                req(&["receiving_unit", "name"], &["office", "name"], Text),
                req(&["accepted"], &["accepted"], Boolean),
                opt(&["case_officer"], &["case_worker"], Text),
                opt(&["reason"], &["note"], Text),
                req(&["acknowledged_at"], &["received_at"], Text),
            ],
            implied: &[],
            dropped: &[],
        },
        Document {
            message_type: "referral.outcome",
            kind: "placement_outcome",
            fields: &[
                req(&["referral_id"], &["referral_no"], Text),
                req(&["receiving_unit", "id"], &["office", "code"], Text),
                req(&["receiving_unit", "name"], &["office", "name"], Text),
                req(&["outcome"], &["result"], Ty::Code(PLACEMENT_RESULT)),
                opt(&["details"], &["remarks"], Text),
                opt(&["effective_date"], &["effective_date"], Text),
            ],
            implied: &[],
            dropped: &[],
        },
    ],
};

// ── Aftercare stations (county justice bureaus, township stations) ───────────────────────────

/// Aftercare stations: handover records out, receipts and supervision outcomes back.
pub static AFTERCARE: JsonPartner = JsonPartner {
    name: "aftercare",
    message_types: REFERRAL_TYPES,
    documents: &[
        Document {
            message_type: "referral.handover",
            kind: "handover_record",
            fields: &[
                req(&["referral_id"], &["referral_no"], Text),
                req(&["person", "person_id"], &["person", "id_number"], Text),
                req(&["person", "name"], &["person", "name"], Text),
                opt(&["person", "birth_date"], &["person", "birth_date"], Text),
                opt(&["person", "gender"], &["person", "sex"], Ty::Code(GENDER)),
                opt(&["contact_phone"], &["person", "phone"], Text),
                req(&["centre", "id"], &["releasing_centre", "unit_code"], Text),
                req(
                    &["centre", "name"],
                    &["releasing_centre", "unit_name"],
                    Text,
                ),
                opt(
                    &["centre", "division_code"],
                    &["releasing_centre", "area_code"],
                    Text,
                ),
                req(&["release_date"], &["release_date"], Text),
                req(
                    &["residence", "division_code"],
                    &["registered_residence", "area_code"],
                    Text,
                ),
                req(
                    &["residence", "address"],
                    &["registered_residence", "address"],
                    Text,
                ),
                req(
                    &["supervision_type"],
                    &["supervision", "kind"],
                    Ty::Code(SUPERVISION),
                ),
                opt(&["supervision_months"], &["supervision", "months"], Integer),
                req(&["employment_needed"], &["needs", "employment"], Boolean),
                req(
                    &["subsistence_eligible"],
                    &["needs", "subsistence_allowance"],
                    Boolean,
                ),
                opt(&["skills"], &["skills"], TextList),
            ],
            implied: &[],
            dropped: &HANDOVER_NEVER,
        },
        Document {
            message_type: "referral.acknowledged",
            kind: "handover_receipt",
            fields: &[
                req(&["referral_id"], &["referral_no"], Text),
                req(&["receiving_unit", "id"], &["station", "code"], Text),
                req(&["receiving_unit", "name"], &["station", "name"], Text),
                req(&["accepted"], &["accepted"], Boolean),
                opt(&["case_officer"], &["supervisor"], Text),
                opt(&["reason"], &["note"], Text),
                req(&["acknowledged_at"], &["received_at"], Text),
            ],
            implied: &[],
            dropped: &[],
        },
        Document {
            message_type: "referral.outcome",
            kind: "supervision_outcome",
            fields: &[
                req(&["referral_id"], &["referral_no"], Text),
                req(&["receiving_unit", "id"], &["station", "code"], Text),
                req(&["receiving_unit", "name"], &["station", "name"], Text),
                req(&["outcome"], &["result"], Ty::Code(SUPERVISION_RESULT)),
                opt(&["details"], &["remarks"], Text),
                opt(&["effective_date"], &["effective_date"], Text),
            ],
            implied: &[],
            dropped: &[],
        },
    ],
};

// ── Civil affairs (subsistence allowance) ────────────────────────────────────────────────────

/// Civil affairs offices: subsistence-allowance referrals (handovers with
/// `subsistence_eligible`) out, acknowledgements and allowance decisions back.
pub static CIVIL: JsonPartner = JsonPartner {
    name: "civil",
    message_types: REFERRAL_TYPES,
    documents: &[
        Document {
            message_type: "referral.handover",
            kind: "allowance_referral",
            fields: &[
                req(&["referral_id"], &["referral_no"], Text),
                req(&["person", "person_id"], &["applicant", "id_number"], Text),
                req(&["person", "name"], &["applicant", "name"], Text),
                opt(
                    &["person", "birth_date"],
                    &["applicant", "birth_date"],
                    Text,
                ),
                opt(
                    &["person", "gender"],
                    &["applicant", "sex"],
                    Ty::Code(GENDER),
                ),
                opt(&["contact_phone"], &["applicant", "phone"], Text),
                req(&["centre", "id"], &["referred_by", "unit_code"], Text),
                req(&["centre", "name"], &["referred_by", "unit_name"], Text),
                opt(
                    &["centre", "division_code"],
                    &["referred_by", "area_code"],
                    Text,
                ),
                req(&["release_date"], &["release_date"], Text),
                req(
                    &["residence", "division_code"],
                    &["household", "area_code"],
                    Text,
                ),
                req(&["residence", "address"], &["household", "address"], Text),
                req(
                    &["supervision_type"],
                    &["supervision", "kind"],
                    Ty::Code(SUPERVISION),
                ),
                opt(&["supervision_months"], &["supervision", "months"], Integer),
                req(
                    &["employment_needed"],
                    &["also_referred_for_employment"],
                    Boolean,
                ),
            ],
            implied: &[Implied {
                canonical: "subsistence_eligible",
                value: Fixed::Boolean(true),
            }],
            dropped: &[
                "centre.alliance",
                "substance_history",
                "clinical_summary",
                "skills",
            ],
        },
        Document {
            message_type: "referral.acknowledged",
            kind: "allowance_ack",
            fields: &[
                req(&["referral_id"], &["referral_no"], Text),
                req(&["receiving_unit", "id"], &["office", "code"], Text),
                req(&["receiving_unit", "name"], &["office", "name"], Text),
                req(&["accepted"], &["accepted"], Boolean),
                opt(&["case_officer"], &["handled_by"], Text),
                opt(&["reason"], &["note"], Text),
                req(&["acknowledged_at"], &["received_at"], Text),
            ],
            implied: &[],
            dropped: &[],
        },
        Document {
            message_type: "referral.outcome",
            kind: "allowance_decision",
            fields: &[
                req(&["referral_id"], &["referral_no"], Text),
                req(&["receiving_unit", "id"], &["office", "code"], Text),
                req(&["receiving_unit", "name"], &["office", "name"], Text),
                req(&["outcome"], &["decision"], Ty::Code(ALLOWANCE_RESULT)),
                opt(&["details"], &["remarks"], Text),
                opt(&["effective_date"], &["effective_date"], Text),
            ],
            implied: &[],
            dropped: &[],
        },
    ],
};
