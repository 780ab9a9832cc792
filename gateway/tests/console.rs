//! The console in a real browser (Debian's headless Chromium through chromedriver), for both
//! of its users:
//! - an operator, in a Chinese browser, sees Chinese, switches to English (the choice sticks),
//!   replays a parked message with a reason and tracks it (the partner receives it once and
//!   the audit trail shows who and why), reads the routes in force, reloads a changed config
//!   after confirming and compares the two versions, explains a message, sees the last hour;
//! - a compliance officer finds a message by person id (with a reason, itself audited), opens
//!   its timeline with its police reply, verifies the chain and exports a window that
//!   verifies offline;
//! - each role is refused the other's endpoints (403) and its views are not on its page.
//!
//! Each view is photographed at 1280×800 in both languages; with
//! `WINGSPAN_CONSOLE_SCREENSHOTS=<dir>` the pictures are kept there (docs/console/ holds them).

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;
use support::webdriver::{Browser, base64_decode};
use support::{World, eventually, post};
use wingspan::audit;
use wingspan_sim::{Behaviour, samples};

const OPERATOR: &str = "dev-operator-token";
const COMPLIANCE: &str = "dev-compliance-token";
const PERSON: &str = "32010219850612771X";
const SECS: Duration = Duration::from_secs(15);

fn shots_dir(world: &World) -> PathBuf {
    match std::env::var("WINGSPAN_CONSOLE_SCREENSHOTS") {
        Ok(d) if !d.is_empty() => {
            let dir = support::repo().join(d);
            std::fs::create_dir_all(&dir).expect("screenshot dir");
            dir
        }
        _ => world.dir.clone(),
    }
}

async fn set_language(browser: &Browser, lang: &str) {
    let now = browser
        .execute(&format!(
            "const s = document.querySelector('#lang'); s.value = '{lang}'; \
             s.dispatchEvent(new Event('change')); return document.documentElement.lang;"
        ))
        .await;
    assert_eq!(now, lang);
}

async fn open_view(browser: &Browser, view: &str) {
    let button = browser
        .wait_for(&format!("#views button[data-view=\"{view}\"]"), SECS)
        .await;
    browser.click(&button).await;
    browser
        .wait_for(&format!("#view-{view}:not([hidden])"), SECS)
        .await;
}

/// Each of `views`, in both languages, at 1280×800: a PNG each in `dir`.
async fn photograph(browser: &Browser, role: &str, views: &[&str], dir: &Path) {
    browser.viewport(1280, 800).await;
    for lang in ["zh-CN", "en"] {
        set_language(browser, lang).await;
        for view in views {
            open_view(browser, view).await;
            tokio::time::sleep(Duration::from_millis(700)).await;
            browser.execute("window.scrollTo(0, 0); return 0;").await;
            let png = browser.screenshot().await;
            assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
            std::fs::write(dir.join(format!("{role}-{view}-{lang}.png")), png).expect("png");
        }
    }
}

#[test]
fn screenshots_decode_from_standard_base64() {
    assert_eq!(base64_decode("TWFu"), b"Man");
    assert_eq!(base64_decode("TWE="), b"Ma");
    assert_eq!(base64_decode("TQ=="), b"M");
    assert_eq!(base64_decode("iVBORw0KGgo="), b"\x89PNG\r\n\x1a\n");
}

/// Both string tables name the same keys, and every key the page names exists.
#[test]
fn both_languages_have_every_string() {
    let root = support::repo().join("gateway/src/console");
    let strings = std::fs::read_to_string(root.join("strings.js")).expect("strings");
    let table = |lang: &str| -> Vec<String> {
        let start = strings
            .find(&format!("\"{lang}\": {{"))
            .unwrap_or_else(|| panic!("no {lang} table"));
        let body = &strings[start..];
        let end = body.find("\n  }").expect("table end");
        body[..end]
            .lines()
            .skip(1)
            .filter_map(|l| l.trim().strip_prefix('"'))
            .filter_map(|l| l.split_once("\":").map(|(k, _)| k.to_owned()))
            .collect()
    };
    let (en, zh) = (table("en"), table("zh-CN"));
    assert!(en.len() > 100, "{}", en.len());
    assert_eq!(en, zh, "the two tables differ in their keys");
    let page = std::fs::read_to_string(root.join("index.html")).expect("page");
    for key in page.split("data-i18n=\"").skip(1) {
        let key = key.split('"').next().unwrap_or_default();
        assert!(
            en.iter().any(|k| k == key),
            "the page names {key}, no table has it"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_works_the_console_in_either_language() {
    let world = World::new("console", false).await;
    world.partner("civil").set_behaviour(Behaviour::Reject);
    let (gateway, base) = world.start_gateway().await;
    let client = reqwest::Client::new();
    let msg = samples::handover(7, "320411", false, true);
    let id = msg["message_id"].as_str().expect("id").to_owned();
    assert_eq!(post(&client, &base, &msg).await.0, 202);
    assert!(
        eventually(Duration::from_secs(30), || gateway
            .stats
            .totals()
            .dead_lettered
            >= 1)
        .await,
        "not parked"
    );
    let db = world.dir.join("state/wingspan-state.db");
    assert!(
        eventually(Duration::from_secs(10), || {
            rusqlite::Connection::open(&db)
                .ok()
                .and_then(|c| wingspan::store::dead_letters(&c, None).ok())
                .is_some_and(|l| l.len() == 1)
        })
        .await
    );
    world.partner("civil").set_behaviour(Behaviour::Accept);

    let admin = format!("http://{}", gateway.admin_addr.expect("admin"));
    // The page itself holds no data and is locked down.
    let page = client
        .get(format!("{admin}/console"))
        .send()
        .await
        .expect("console");
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .expect("csp")
        .to_owned();
    assert!(
        csp.contains("script-src 'self'") && csp.contains("default-src 'none'"),
        "{csp}"
    );
    // The operator's token reaches no compliance data.
    for path in [
        "/v1/audit/search",
        "/v1/audit/status",
        "/v1/audit/messages/x",
    ] {
        let r = client
            .get(format!("{admin}{path}"))
            .bearer_auth(OPERATOR)
            .send()
            .await
            .expect("refused");
        assert_eq!(r.status(), 403, "{path}");
    }
    let me: serde_json::Value = client
        .get(format!("{admin}/v1/whoami"))
        .bearer_auth(OPERATOR)
        .send()
        .await
        .expect("whoami")
        .json()
        .await
        .expect("json");
    assert_eq!(
        (me["name"].as_str(), me["role"].as_str()),
        (Some("operator-dev"), Some("operator"))
    );
    let anonymous = client
        .get(format!("{admin}/v1/whoami"))
        .send()
        .await
        .expect("whoami");
    assert_eq!(anonymous.status(), 401);

    // A Chinese browser gets the page in Chinese.
    let browser = Browser::start_in("zh-CN").await;
    browser.open(&format!("{admin}/console")).await;
    let title = browser
        .wait_text("h1", SECS, |t| t.contains("控制台"))
        .await;
    assert!(title.contains("控制台"), "{title}");
    let token = browser.wait_for("#token", SECS).await;
    browser.type_into(&token, OPERATOR).await;
    let connect = browser.wait_for("#connect", SECS).await;
    browser.click(&connect).await;
    let who = browser
        .wait_text("#who", SECS, |t| t.contains("operator-dev"))
        .await;
    assert!(who.contains("运维"), "{who}");
    // Only the operator's views are on the page.
    assert!(browser.find_all("#view-audit", None).await.is_empty());
    assert!(browser.find_all("#view-chain", None).await.is_empty());
    // The choice of English sticks across a reload.
    set_language(&browser, "en").await;
    browser.open(&format!("{admin}/console")).await;
    browser
        .wait_text("#who", SECS, |t| t.contains("Signed in as operator-dev"))
        .await;
    assert_eq!(
        browser
            .execute("return document.documentElement.lang;")
            .await,
        "en"
    );

    // Destinations with their health.
    open_view(&browser, "delivery").await;
    let civil = browser
        .wait_text("#destinations tr[data-destination=\"civil\"]", SECS, |t| {
            t.contains("civil")
        })
        .await;
    assert!(civil.contains("civil"), "{civil}");

    // The parked message, replayed with a reason.
    let row = format!("#dead-letters tr[data-message-id=\"{id}\"]");
    let row_el = browser.wait_for(&row, SECS).await;
    let reason = browser.find_all("input.replay-reason", Some(&row_el)).await;
    let button = browser.find_all("button.replay", Some(&row_el)).await;
    assert_eq!(
        (reason.len(), button.len()),
        (1, 1),
        "no replay form in the row"
    );
    browser
        .type_into(&reason[0], "civil affairs back online")
        .await;
    browser.click(&button[0]).await;
    let result = browser
        .wait_text("#dlq-result", SECS, |t| t.contains("Replayed"))
        .await;
    assert!(
        result.contains(&format!("Replayed 1 copy(ies) of {id}")),
        "{result}"
    );
    assert!(
        eventually(Duration::from_secs(20), || world
            .partner("civil")
            .accepted_count()
            == 1)
        .await,
        "the replayed message did not reach the partner"
    );
    assert_eq!(world.partner("civil").accepted_keys(), vec![id.clone()]);

    // The tracker shows its timeline, replay included.
    let track = browser.wait_for("#track-id", SECS).await;
    browser.type_into(&track, &id).await;
    let submit = browser.wait_for("#track button", SECS).await;
    browser.click(&submit).await;
    let timeline = browser
        .wait_text("#track-timeline tbody", SECS, |t| t.contains("replayed"))
        .await;
    assert!(
        timeline.contains("replayed") && timeline.contains("operator-dev"),
        "{timeline}"
    );

    // The routes in force, predicates in words.
    open_view(&browser, "routes").await;
    let routes = browser
        .wait_text("#routes tbody", SECS, |t| t.contains("materials-to-police"))
        .await;
    assert!(routes.contains("materials-to-police"), "{routes}");
    // A changed config, reloaded after confirming, and the two versions compared.
    world.rewrite(|t| format!("{t}\n# a second version, for the console's test\n"));
    let reload = browser.wait_for("#reload", SECS).await;
    browser.click(&reload).await;
    let yes = browser
        .wait_for("#confirm:not([hidden]) #confirm-yes", SECS)
        .await;
    browser.click(&yes).await;
    let done = browser
        .wait_text("#config-status", SECS, |t| t.contains("Now in force"))
        .await;
    assert!(done.contains("Now in force"), "{done}");
    browser
        .wait_for("#versions tbody tr:nth-child(2)", SECS)
        .await;
    let compare = browser.wait_for("#diff", SECS).await;
    browser.click(&compare).await;
    let diff = browser
        .wait_text("#diff-out", SECS, |t| t.contains("second version"))
        .await;
    assert!(
        diff.contains("+ # a second version, for the console's test"),
        "{diff}"
    );

    // A message explained: routes and what each destination would receive; nothing sent.
    let before = world.partner("police").accepted_count();
    open_view(&browser, "explain").await;
    let area = browser.wait_for("#explain-message", SECS).await;
    let material = samples::material_submit(99);
    browser
        .type_into(&area, &serde_json::to_string(&material).expect("json"))
        .await;
    let go = browser.wait_for("#explain button[type=submit]", SECS).await;
    browser.click(&go).await;
    let explained = browser
        .wait_text("#explain-out", SECS, |t| t.contains("would receive"))
        .await;
    assert!(
        explained.contains("materials-to-police") && explained.contains("takes it"),
        "{explained}"
    );
    assert!(
        !browser
            .find_all("#explain-out .delivery[data-destination=\"police\"]", None)
            .await
            .is_empty(),
        "{explained}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        world.partner("police").accepted_count(),
        before,
        "explain sent nothing"
    );

    // The last hour, drawn from the gateway's own counters.
    open_view(&browser, "live").await;
    browser
        .wait_for("#chart-flow svg polyline, #chart-flow svg text", SECS)
        .await;
    let live: serde_json::Value = client
        .get(format!("{admin}/admin/live"))
        .bearer_auth(OPERATOR)
        .send()
        .await
        .expect("live")
        .json()
        .await
        .expect("json");
    let accepted: u64 = live["minutes"]
        .as_array()
        .expect("minutes")
        .iter()
        .filter_map(|m| m["accepted"].as_u64())
        .sum();
    assert!(accepted >= 1, "{live}");

    photograph(
        &browser,
        "operator",
        &["delivery", "live", "routes", "explain"],
        &shots_dir(&world),
    )
    .await;
    // In a narrow window the page reflows: nothing wider than the window but the tables,
    // which scroll inside their own boxes.
    browser.viewport(420, 800).await;
    open_view(&browser, "delivery").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let overflow = browser
        .execute("return document.documentElement.scrollWidth - window.innerWidth;")
        .await;
    assert!(
        overflow.as_i64().unwrap_or(i64::MAX) <= 1,
        "the page is wider than the window by {overflow}"
    );
    std::fs::write(
        shots_dir(&world).join("operator-delivery-narrow-en.png"),
        browser.screenshot().await,
    )
    .expect("png");
    browser.close().await;

    // In the audit trail: who and why.
    let conn = rusqlite::Connection::open(&db).expect("db");
    let (actor, why): (String, String) = conn
        .query_row(
            "SELECT actor, reason FROM audit WHERE event = 'replayed' AND message_id = ?1",
            [&id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("replayed record");
    assert_eq!(
        (actor.as_str(), why.as_str()),
        ("operator-dev", "civil affairs back online")
    );

    gateway.shutdown().await;
    world.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compliance_officer_finds_a_person_and_exports_a_window_that_verifies() {
    let world = World::new("console-compliance", true).await;
    let (gateway, base) = world.start_gateway().await;
    let client = reqwest::Client::new();
    let mut material = samples::material_submit(31);
    material["payload"]["person"]["person_id"] = json!(PERSON);
    let id = material["message_id"].as_str().expect("id").to_owned();
    assert_eq!(post(&client, &base, &material).await.0, 202);
    // The police decision comes back to rehab.
    assert!(
        eventually(Duration::from_secs(20), || world
            .partner("rehab")
            .accepted_count()
            >= 1)
        .await,
        "no police reply"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;

    let admin = format!("http://{}", gateway.admin_addr.expect("admin"));
    // The compliance token reaches no operator endpoint.
    for path in [
        "/admin/routes",
        "/admin/live",
        "/admin/destinations",
        "/metrics",
    ] {
        let r = client
            .get(format!("{admin}{path}"))
            .bearer_auth(COMPLIANCE)
            .send()
            .await
            .expect("refused");
        assert_eq!(r.status(), 403, "{path}");
    }
    let replay = client
        .post(format!("{admin}/admin/reload"))
        .bearer_auth(COMPLIANCE)
        .send()
        .await
        .expect("refused");
    assert_eq!(replay.status(), 403);

    let browser = Browser::start().await;
    browser.open(&format!("{admin}/console")).await;
    let token = browser.wait_for("#token", SECS).await;
    browser.type_into(&token, COMPLIANCE).await;
    let connect = browser.wait_for("#connect", SECS).await;
    browser.click(&connect).await;
    browser
        .wait_text("#who", SECS, |t| t.contains("compliance-dev"))
        .await;
    assert!(browser.find_all("#view-delivery", None).await.is_empty());
    assert!(browser.find_all("#view-routes", None).await.is_empty());

    // By person: a reason first, then the records that name the person.
    open_view(&browser, "audit").await;
    let subject = browser.wait_for("#s-subject", SECS).await;
    browser.type_into(&subject, PERSON).await;
    let search = browser.wait_for("#s-submit", SECS).await;
    browser.click(&search).await;
    let refused = browser
        .wait_text("#search-status", SECS, |t| t.contains("Say why"))
        .await;
    assert!(refused.contains("Say why"), "{refused}");
    let reason = browser.wait_for("#s-reason", SECS).await;
    browser
        .type_into(&reason, "subject access request 2026-77")
        .await;
    browser.click(&search).await;
    let found = browser
        .wait_text("#results tbody", SECS, |t| t.contains("received"))
        .await;
    assert!(found.contains(&id), "{found}");
    let page_text = browser.execute("return document.body.innerText;").await;
    assert!(
        !page_text.as_str().unwrap_or_default().contains(PERSON),
        "the person id is shown nowhere on the page"
    );
    // Habits: every field has a label, every time is shown in local time with its UTC form
    // on hover.
    let unlabelled = browser
        .execute(
            "return [...document.querySelectorAll('input, select, textarea')]\
               .filter((e) => e.labels.length === 0 && !e.getAttribute('aria-label'))\
               .map((e) => e.id || e.outerHTML);",
        )
        .await;
    assert_eq!(unlabelled, json!([]), "fields without a label");
    let times = browser
        .execute(
            "return [...document.querySelectorAll('#results time')]\
               .map((e) => [e.getAttribute('datetime'), e.title, e.textContent]);",
        )
        .await;
    let times = times.as_array().cloned().unwrap_or_default();
    assert!(!times.is_empty(), "the results show their times");
    for time in &times {
        let (iso, hover) = (
            time[0].as_str().unwrap_or_default(),
            time[1].as_str().unwrap_or_default(),
        );
        assert!(!iso.is_empty(), "{time}");
        assert_eq!(hover, format!("UTC: {iso}"), "{time}");
        assert_ne!(time[2].as_str(), Some(iso), "shown in local form: {time}");
    }
    // Its timeline, the police reply in it.
    let open = browser.wait_for("#results tbody button.link", SECS).await;
    browser.click(&open).await;
    browser.wait_for("#timeline li.reply", SECS).await;
    let timeline = browser
        .wait_text("#timeline", SECS, |t| t.contains("reply"))
        .await;
    assert!(
        timeline.contains("received") && timeline.contains("reply_correlated"),
        "{timeline}"
    );
    // The search is on record: who, why, and whose reference (never the id).
    let searched = audit::search(
        &mut audit::Location::Sqlite(world.dir.join("state/wingspan-state.db"))
            .open()
            .expect("store"),
        &audit::Filter {
            event: Some("subject_searched".into()),
            limit: 10,
            ..Default::default()
        },
    )
    .expect("search");
    assert_eq!(searched.len(), 1, "{searched:?}");
    let e = &searched[0].entry;
    assert_eq!(
        (e.actor.as_deref(), e.reason.as_deref()),
        (
            Some("compliance-dev"),
            Some("subject access request 2026-77")
        )
    );
    assert_eq!(
        e.subject_ref.as_deref(),
        Some(gateway.store.subject_ref(PERSON).as_str())
    );
    // The person's subject access report, a document to open or save: the message is in it,
    // the person id is not.
    let report = browser.wait_for("#s-report", SECS).await;
    browser.click(&report).await;
    browser
        .wait_text("#search-status", SECS, |t| t.contains("report is ready"))
        .await;
    // The link is the document itself (a blob the page made, to open or save); the page's
    // policy lets scripts fetch nothing but the gateway, so it is opened at the end.
    let report_href = browser
        .execute("return document.querySelector('#report-link a').href;")
        .await;
    let report_href = report_href.as_str().unwrap_or_default().to_owned();
    assert!(report_href.starts_with("blob:"), "{report_href}");
    let download = browser
        .execute("return document.querySelector('#report-link a').getAttribute('download');")
        .await;
    assert_eq!(download.as_str(), Some("subject-report.html"));

    // The chain, verified now.
    open_view(&browser, "chain").await;
    let verify = browser.wait_for("#verify", SECS).await;
    browser.click(&verify).await;
    let chains = browser
        .wait_text("#chains tbody", SECS, |t| t.contains("intact"))
        .await;
    assert!(
        chains.contains("intact") && !chains.contains("NOT"),
        "{chains}"
    );
    let last = browser
        .wait_text("#chain-last", SECS, |t| !t.is_empty())
        .await;
    assert!(last.contains("Last verification"), "{last}");

    // A window exported: a records file and its manifest, which verify offline.
    let export = browser.wait_for("#e-submit", SECS).await;
    browser.click(&export).await;
    let status = browser
        .wait_text("#export-status", SECS, |t| t.contains("Exported"))
        .await;
    assert!(status.contains("Exported"), "{status}");
    let files = browser.find_all("#export-files a", None).await;
    assert!(files.len() >= 2, "records file and manifest");
    let exports = world.dir.join("state/exports");
    let made: Vec<PathBuf> = std::fs::read_dir(&exports)
        .expect("exports")
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(made.len(), 1);
    let key = audit::trusted_key(&world.load(), None).expect("key");
    let checked = audit::verify_export(&made[0], &key).expect("verify export");
    assert!(!checked.is_empty());
    for (manifest, report, problems) in checked {
        assert!(
            report.ok() && problems.is_empty(),
            "{manifest:?} {report:?} {problems:?}"
        );
    }
    // And as an officer checks it offline: `wingspan audit verify --export`.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wingspan"))
        .args(["audit", "verify", "--config"])
        .arg(&world.config_file)
        .arg("--export")
        .arg(&made[0])
        .output()
        .expect("wingspan");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The page's link serves the same bytes as the file.
    let name = browser.text(&files[0]).await;
    let served = client
        .get(format!(
            "{admin}/v1/audit/exports/{}/{name}",
            made[0].file_name().and_then(|n| n.to_str()).expect("id")
        ))
        .bearer_auth(COMPLIANCE)
        .send()
        .await
        .expect("file")
        .bytes()
        .await
        .expect("bytes");
    assert_eq!(
        served.as_ref(),
        std::fs::read(made[0].join(&name)).expect("file")
    );
    let escape = client
        .get(format!(
            "{admin}/v1/audit/exports/..%2F..%2Fwingspan-state.db/x"
        ))
        .bearer_auth(COMPLIANCE)
        .send()
        .await
        .expect("refused");
    assert_eq!(escape.status(), 404);

    photograph(
        &browser,
        "compliance",
        &["audit", "chain"],
        &shots_dir(&world),
    )
    .await;
    // The subject access report the link holds: the message is in it, the person id is not.
    browser.open(&report_href).await;
    let document = browser
        .execute("return document.documentElement.outerHTML;")
        .await;
    let document = document.as_str().unwrap_or_default();
    assert!(
        document.contains("Subject access report") && document.contains(&id),
        "{document}"
    );
    assert!(
        !document.contains(PERSON),
        "the document names the person by reference only"
    );
    browser.close().await;
    gateway.shutdown().await;
    world.cleanup().await;
}
