//! The subject access report (PIPL Arts. 44–45): what the gateway did with the messages about
//! one person, assembled from the audit trail alone — every message, when, from which source,
//! to which partners, which fields each partner received (the field policy of the config in
//! force, named by its hash), each outcome, and the replies.
//!
//! Pure: the shell finds the records (the person's by subject reference, each message's
//! trail) and answers which fields a destination received under a config; this module puts
//! them in order and writes the document (JSON, or an HTML page in Chinese and English whose
//! every value is escaped). The person id is never an input here: the report names the
//! person by the keyed reference only.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::audit::{Event, Record};

/// What a partner received of a message's payload under the config in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "fields", rename_all = "snake_case")]
pub enum Received {
    /// The whole payload (`*`).
    All,
    /// These fields only (dotted paths, as the field policy names them).
    Fields(Vec<String>),
    /// The config in force is no longer kept, or names no policy for this type: unknown.
    Unknown,
}

/// One destination of one message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Delivery {
    pub destination: String,
    pub received: Received,
    /// `delivered`, `parked`, `discarded`, `retrying` or `pending` (routed, no outcome yet).
    pub state: String,
    pub attempts: u32,
    /// The time of the last step about this destination.
    pub last_at: String,
}

/// One message about the person (or a reply to one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Message {
    pub message_id: String,
    pub source: String,
    pub message_type: String,
    /// The message this one answers, for replies.
    pub correlation_id: Option<String>,
    pub received_at: String,
    /// `accepted`, or `refused: <problem>`.
    pub outcome: String,
    /// Times the same message was sent again and answered with its original receipt.
    pub duplicates: u32,
    /// The config in force when it was received (SHA-256 of its text), if on record.
    pub config_sha256: Option<String>,
    pub deliveries: Vec<Delivery>,
}

/// The report: generated when, about which reference, and the messages in time order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    pub generated_at: String,
    /// The keyed reference of the person (never the id).
    pub subject_ref: String,
    pub messages: Vec<Message>,
}

/// Assemble the report. `records`: every record of every thread about the person and of the
/// replies to them, in any order (repeats are ignored); `configs`: the chain's
/// `config_loaded` records; `received(config_sha256, destination, message_type)`: what the
/// destination received under that config.
pub fn assemble(
    generated_at: &str,
    subject_ref: &str,
    records: &[Record],
    configs: &[Record],
    received: &mut dyn FnMut(&str, &str, &str) -> Received,
) -> Report {
    // Threads by (chain, source, message id), each with its records in chain order.
    let mut threads: BTreeMap<(String, String, String), Vec<&Record>> = BTreeMap::new();
    let mut seen = std::collections::HashSet::new();
    for r in records {
        let (Some(id), Some(source)) = (&r.entry.message_id, &r.entry.source) else {
            continue;
        };
        if !seen.insert((r.chain_id.clone(), r.seq)) {
            continue;
        }
        threads
            .entry((r.chain_id.clone(), source.clone(), id.clone()))
            .or_default()
            .push(r);
    }
    let mut messages: Vec<Message> = threads
        .into_iter()
        .filter_map(|((chain, source, message_id), mut rs)| {
            rs.sort_by_key(|r| r.seq);
            let first = rs
                .iter()
                .find(|r| r.entry.event == Event::Received)
                .or(rs.first())?;
            let config_sha256 = config_at(configs, &chain, first.seq);
            let message_type = rs
                .iter()
                .find_map(|r| r.entry.message_type.clone())
                .unwrap_or_default();
            let was_accepted = rs.iter().any(|r| crate::audit::accepted(&r.entry));
            let outcome = match rs.iter().find(|r| r.entry.event == Event::Rejected) {
                Some(r) if !was_accepted => format!(
                    "refused: {}",
                    r.entry.reason.as_deref().unwrap_or("refused")
                ),
                _ if was_accepted => "accepted".into(),
                _ => "received".into(),
            };
            let duplicates = u32::try_from(
                rs.iter()
                    .filter(|r| r.entry.event == Event::Duplicate)
                    .count(),
            )
            .unwrap_or(u32::MAX);
            let mut deliveries: Vec<Delivery> = Vec::new();
            for r in &rs {
                // A message's routing (its `received` record, or a `routed` one in older
                // chains) names its destinations, comma-separated.
                let named: Vec<&str> = match (r.entry.event, &r.entry.destination) {
                    (Event::Routed | Event::Received, Some(d)) => {
                        d.split(',').filter(|d| !d.is_empty()).collect()
                    }
                    (_, Some(d)) => vec![d.as_str()],
                    _ => continue,
                };
                for d in named {
                    let i = match deliveries.iter().position(|x| x.destination == d) {
                        Some(i) => i,
                        None => {
                            deliveries.push(Delivery {
                                destination: d.to_owned(),
                                received: match &config_sha256 {
                                    Some(sha) => received(sha, d, &message_type),
                                    None => Received::Unknown,
                                },
                                state: "pending".into(),
                                attempts: 0,
                                last_at: r.entry.at.clone(),
                            });
                            deliveries.len() - 1
                        }
                    };
                    let Some(x) = deliveries.get_mut(i) else {
                        continue;
                    };
                    x.last_at.clone_from(&r.entry.at);
                    if crate::audit::attempted(&r.entry) {
                        x.attempts = x.attempts.saturating_add(1);
                    }
                    match r.entry.event {
                        Event::Delivered => x.state = "delivered".into(),
                        Event::Parked => x.state = "parked".into(),
                        Event::Discarded => x.state = "discarded".into(),
                        Event::RetryScheduled | Event::Replayed => x.state = "retrying".into(),
                        _ => {}
                    }
                }
            }
            Some(Message {
                correlation_id: rs.iter().find_map(|r| r.entry.correlation_id.clone()),
                received_at: first.entry.at.clone(),
                message_id,
                source,
                message_type,
                outcome,
                duplicates,
                config_sha256,
                deliveries,
            })
        })
        .collect();
    messages.sort_by(|a, b| {
        (&a.received_at, &a.message_id, &a.source).cmp(&(&b.received_at, &b.message_id, &b.source))
    });
    Report {
        generated_at: generated_at.to_owned(),
        subject_ref: subject_ref.to_owned(),
        messages,
    }
}

/// The hash of the config in force at `seq` of `chain`: the last `config_loaded` record
/// before it (its reason reads `config sha256 <hex>`).
fn config_at(configs: &[Record], chain: &str, seq: u64) -> Option<String> {
    configs
        .iter()
        .filter(|c| c.chain_id == chain && c.seq < seq && c.entry.event == Event::ConfigLoaded)
        .max_by_key(|c| c.seq)
        .and_then(|c| c.entry.reason.as_deref())
        .and_then(|r| r.strip_prefix("config sha256 "))
        .map(|h| h.split_whitespace().next().unwrap_or_default().to_owned())
}

/// Text for HTML: `&`, `<`, `>`, `"` and `'` escaped.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Chinese first, English beside it.
fn label(zh: &str, en: &str) -> String {
    format!("{zh} <span class=\"en\">{en}</span>")
}

/// The report as a self-contained HTML page (no script, no external resource), to print or
/// hand over.
pub fn to_html(report: &Report) -> String {
    let mut h = String::new();
    h.push_str("<!doctype html>\n<html lang=\"zh-CN\"><head><meta charset=\"utf-8\">");
    h.push_str("<title>个人信息处理情况报告 Subject access report</title><style>");
    h.push_str("body{font-family:sans-serif;margin:2em;max-width:60em}table{border-collapse:collapse;width:100%;margin:.5em 0 1.5em}td,th{border:1px solid #999;padding:.3em .5em;text-align:left;vertical-align:top}.en{color:#555;font-size:.9em}code{font-size:.85em;word-break:break-all}");
    h.push_str("</style></head><body>\n");
    h.push_str(&format!(
        "<h1>{}</h1>\n",
        label("个人信息处理情况报告", "Subject access report")
    ));
    h.push_str(&format!(
        "<p>{}: {}<br>{}: <code>{}</code><br>{}: {}</p>\n",
        label("生成时间（UTC）", "Generated (UTC)"),
        esc(&report.generated_at),
        label(
            "当事人引用（密钥哈希，非身份号码）",
            "Person reference (keyed hash, not the id)"
        ),
        esc(&report.subject_ref),
        label("消息数", "Messages"),
        report.messages.len()
    ));
    if report.messages.is_empty() {
        h.push_str(&format!(
            "<p>{}</p>\n",
            label(
                "审计记录中没有关于此人的消息。",
                "The audit trail holds no message about this person."
            )
        ));
    }
    for m in &report.messages {
        h.push_str(&format!(
            "<h2>{} <code>{}</code></h2>\n<table>",
            label("消息", "Message"),
            esc(&m.message_id)
        ));
        let mut row = |k: String, v: String| {
            h.push_str(&format!("<tr><th>{k}</th><td>{v}</td></tr>"));
        };
        row(label("接收时间", "Received"), esc(&m.received_at));
        row(label("来源", "Source"), esc(&m.source));
        row(label("消息类型", "Type"), esc(&m.message_type));
        if let Some(c) = &m.correlation_id {
            row(
                label("答复的消息", "Reply to"),
                format!("<code>{}</code>", esc(c)),
            );
        }
        row(label("处理结果", "Outcome"), esc(&m.outcome));
        if m.duplicates > 0 {
            row(label("重复提交", "Sent again"), m.duplicates.to_string());
        }
        row(
            label("当时生效的配置", "Config in force"),
            m.config_sha256
                .as_deref()
                .map_or_else(|| "—".to_owned(), |c| format!("<code>{}</code>", esc(c))),
        );
        h.push_str("</table>\n");
        if m.deliveries.is_empty() {
            continue;
        }
        h.push_str(&format!(
            "<table><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>",
            label("接收方", "Partner"),
            label("收到的字段", "Fields received"),
            label("状态", "State"),
            label("尝试次数", "Attempts"),
            label("最后时间", "Last step")
        ));
        for d in &m.deliveries {
            let fields = match &d.received {
                Received::All => label("全部内容", "the whole payload"),
                Received::Fields(f) => f.iter().map(|p| esc(p)).collect::<Vec<_>>().join(", "),
                Received::Unknown => label("未知（配置未保留）", "unknown (config not kept)"),
            };
            h.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&d.destination),
                fields,
                esc(&d.state),
                d.attempts,
                esc(&d.last_at)
            ));
        }
        h.push_str("</table>\n");
    }
    h.push_str("</body></html>\n");
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{Entry, Head, Suite};

    fn at(i: u32) -> String {
        format!("2026-12-06T10:00:{i:02}Z")
    }

    fn about(event: Event, i: u32, id: &str, source: &str) -> Entry {
        let mut e = Entry::new(event, at(i));
        e.message_id = Some(id.into());
        e.source = Some(source.into());
        e.message_type = Some("material.submit".into());
        e
    }

    /// Each delivery of a message: destination, state, attempts.
    fn states(m: &Message) -> Vec<(&str, &str, u32)> {
        m.deliveries
            .iter()
            .map(|d| (d.destination.as_str(), d.state.as_str(), d.attempts))
            .collect()
    }

    #[test]
    fn a_person_s_messages_their_partners_fields_outcomes_and_replies() {
        let mut head = Head::new("gw-1", Suite::Sm3Sm2);
        let mut configs = Vec::new();
        let mut loaded = Entry::new(Event::ConfigLoaded, at(0));
        loaded.reason = Some("config sha256 aaaa".into());
        configs.push(head.append(loaded));
        let mut records = Vec::new();
        let mut received = about(Event::Received, 1, "m-1", "rehab");
        received.subject_ref = Some("ref".into());
        records.push(head.append(received));
        records.push(head.append(about(Event::Accepted, 1, "m-1", "rehab")));
        let mut routed = about(Event::Routed, 1, "m-1", "rehab");
        routed.destination = Some("police,<civil>".into());
        records.push(head.append(routed));
        for (event, dest, i) in [
            (Event::DeliveryAttempt, "police", 2),
            (Event::Delivered, "police", 2),
            (Event::DeliveryAttempt, "<civil>", 3),
            (Event::RetryScheduled, "<civil>", 3),
            (Event::DeliveryAttempt, "<civil>", 4),
            (Event::Parked, "<civil>", 4),
        ] {
            let mut e = about(event, i, "m-1", "rehab");
            e.destination = Some(dest.into());
            records.push(head.append(e));
        }
        // A config reload, then the police's reply.
        let mut reloaded = Entry::new(Event::ConfigLoaded, at(5));
        reloaded.reason = Some("config sha256 bbbb".into());
        configs.push(head.append(reloaded));
        let mut reply = about(Event::Received, 6, "r-1", "police");
        reply.correlation_id = Some("m-1".into());
        records.push(head.append(reply));
        records.push(head.append(about(Event::Duplicate, 7, "m-1", "rehab")));
        let mut refused = about(Event::Received, 8, "m-2", "rehab");
        refused.subject_ref = Some("ref".into());
        records.push(head.append(refused));
        let mut rejected = about(Event::Rejected, 8, "m-2", "rehab");
        rejected.reason = Some("schema-violation".into());
        records.push(head.append(rejected));
        // Repeats (a record found twice) count once.
        let again = records[0].clone();
        records.push(again);

        let mut asked = Vec::new();
        let report = assemble(
            "2026-12-06T11:00:00Z",
            "ref",
            &records,
            &configs,
            &mut |sha: &str, dest: &str, ty: &str| {
                asked.push((sha.to_owned(), dest.to_owned(), ty.to_owned()));
                if dest == "police" {
                    Received::Fields(vec!["person.person_id".into(), "case".into()])
                } else {
                    Received::All
                }
            },
        );
        let ids: Vec<(&str, &str)> = report
            .messages
            .iter()
            .map(|m| (m.message_id.as_str(), m.outcome.as_str()))
            .collect();
        assert_eq!(
            ids,
            [
                ("m-1", "accepted"),
                ("r-1", "received"),
                ("m-2", "refused: schema-violation")
            ]
        );
        let m1 = &report.messages[0];
        assert_eq!(
            (m1.duplicates, m1.config_sha256.as_deref()),
            (1, Some("aaaa"))
        );
        assert_eq!(
            states(m1),
            [("police", "delivered", 1), ("<civil>", "parked", 2)]
        );
        assert_eq!(
            m1.deliveries[0].received,
            Received::Fields(vec!["person.person_id".into(), "case".into()])
        );
        // The reply came under the reloaded config.
        assert_eq!(report.messages[1].correlation_id.as_deref(), Some("m-1"));
        assert_eq!(report.messages[1].config_sha256.as_deref(), Some("bbbb"));
        assert!(
            asked
                .iter()
                .all(|(sha, _, ty)| sha == "aaaa" && ty == "material.submit")
        );

        let html = to_html(&report);
        assert!(html.contains("&lt;civil&gt;") && !html.contains("<civil>"));
        assert!(html.contains("个人信息处理情况报告") && html.contains("Subject access report"));
        assert!(!html.contains("<script"));
        let json = serde_json::to_value(&report).expect("json");
        assert_eq!(
            json["messages"][0]["deliveries"][1]["received"]["kind"],
            "all"
        );
    }

    #[test]
    fn acceptance_with_routing_and_a_delivery_with_its_attempt_in_one_record_each_read_as_before() {
        let mut head = Head::new("gw-1", Suite::Sha256Ed25519);
        let mut loaded = Entry::new(Event::ConfigLoaded, at(0));
        loaded.reason = Some("config sha256 cccc".into());
        let configs = vec![head.append(loaded)];
        let mut received = about(Event::Received, 1, "m-9", "rehab");
        received.subject_ref = Some("ref".into());
        received.outcome = Some(crate::audit::ACCEPTED.into());
        received.destination = Some("police,civil".into());
        received.reason = Some("to-police,to-civil".into());
        let mut records = vec![head.append(received)];
        // The attempt that delivered is the delivery's record: the bytes' hash, the attempt.
        let mut delivered = about(Event::Delivered, 2, "m-9", "rehab");
        delivered.destination = Some("police".into());
        delivered.payload_sha256 = Some("ab".repeat(32));
        delivered.outcome = Some("delivered".into());
        delivered.reason = Some("attempt 2".into());
        let mut failed = about(Event::DeliveryAttempt, 2, "m-9", "rehab");
        failed.destination = Some("police".into());
        failed.payload_sha256 = Some("ab".repeat(32));
        failed.outcome = Some("http 503".into());
        failed.reason = Some("attempt 1".into());
        records.push(head.append(failed));
        records.push(head.append(delivered));
        // Received but never accepted: no destination, refused.
        let mut refused = about(Event::Received, 3, "m-10", "rehab");
        refused.subject_ref = Some("ref".into());
        records.push(head.append(refused));
        let mut rejected = about(Event::Rejected, 3, "m-10", "rehab");
        rejected.reason = Some("schema-violation".into());
        records.push(head.append(rejected));

        let report = assemble(
            "t",
            "ref",
            &records,
            &configs,
            &mut |_: &str, _: &str, _: &str| Received::All,
        );
        let m = &report.messages[0];
        assert_eq!(
            (m.message_id.as_str(), m.outcome.as_str()),
            ("m-9", "accepted")
        );
        assert_eq!(
            states(m),
            [("police", "delivered", 2), ("civil", "pending", 0)]
        );
        assert_eq!(report.messages[1].outcome, "refused: schema-violation");
        assert!(report.messages[1].deliveries.is_empty());
    }

    #[test]
    fn nobody_on_record_is_an_empty_report() {
        let report = assemble("t", "ref", &[], &[], &mut |_: &str, _: &str, _: &str| {
            Received::All
        });
        assert!(report.messages.is_empty());
        assert!(to_html(&report).contains("no message about this person"));
    }
}
