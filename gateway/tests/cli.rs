//! `wingspan decode` and `wingspan encode`: an adapter by hand, exit codes and typed errors.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use wingspan_sim::samples;

fn wingspan(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wingspan"))
        .args(args)
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
        .output()
        .expect("run wingspan")
}

fn temp(name: &str, bytes: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("wingspan-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let p = dir.join(name);
    std::fs::write(&p, bytes).expect("write");
    p
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn encode_applies_the_destination_policy_and_decode_reads_it_back() {
    let handover = samples::handover(1, "320411", true, true);
    let file = temp(
        "handover.json",
        &serde_json::to_vec(&handover).expect("json"),
    );
    let f = file.to_str().expect("path");

    let out = wingspan(&["encode", "--adapter", "hr", "--destination", "hr", f]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("content-type: application/json"));
    let body = text(&out.stdout);
    assert!(body.contains("ref-1"));
    for secret in ["heroin", "methadone", "substance", "clinical"] {
        assert!(!body.contains(secret), "hr would receive {secret}: {body}");
    }
    // What HR receives decodes with the HR adapter into the handover, cut to the policy.
    let wire = temp("hr-wire.json", body.as_bytes());
    let out = wingspan(&[
        "decode",
        "--adapter",
        "hr",
        "--source",
        "rehab",
        wire.to_str().expect("path"),
    ]);
    // The cut handover lacks nothing HR's shape needs, but it is no longer a complete
    // canonical handover for the schema (supervision type is cut): decode reports that.
    let decoded_or_violation = text(&out.stdout) + &text(&out.stderr);
    assert!(
        decoded_or_violation.contains("ref-1")
            || decoded_or_violation.contains("error[schema-violation]"),
        "{decoded_or_violation}"
    );

    // Police XML for a material, and back.
    let material = samples::material_submit(2);
    let mfile = temp(
        "material.json",
        &serde_json::to_vec(&material).expect("json"),
    );
    let out = wingspan(&[
        "encode",
        "--adapter",
        "police",
        "--destination",
        "police",
        mfile.to_str().expect("path"),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).starts_with("<?xml"));
    let xml = temp("material.xml", &out.stdout);
    let out = wingspan(&[
        "decode",
        "--adapter",
        "police",
        "--source",
        "rehab",
        xml.to_str().expect("path"),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let back: Value = serde_json::from_slice(&out.stdout).expect("canonical JSON");
    assert_eq!(back["message_id"], material["message_id"]);
    // The police policy names the centre's id, name and division, not its medical alliance.
    let mut expected = material["payload"].clone();
    expected["centre"]
        .as_object_mut()
        .expect("centre")
        .remove("alliance");
    assert_eq!(back["payload"], expected);
}

#[test]
fn errors_are_typed_with_exit_code_1() {
    let doctype = temp(
        "bomb.xml",
        b"<!DOCTYPE l [<!ENTITY a \"aaaa\"><!ENTITY b \"&a;&a;\">]><l>&b;</l>",
    );
    let out = wingspan(&[
        "decode",
        "--adapter",
        "police",
        doctype.to_str().expect("p"),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).starts_with("error[refused-document]"),
        "{}",
        text(&out.stderr)
    );

    let out = wingspan(&["decode", "--adapter", "nope", doctype.to_str().expect("p")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).starts_with("error[unknown-adapter]"));

    let patient = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/corpus/health/json/Patient-f001.json");
    let out = wingspan(&[
        "decode",
        "--adapter",
        "health",
        patient.to_str().expect("p"),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).starts_with("error[unmappable-document]"),
        "{}",
        text(&out.stderr)
    );

    let handover = temp(
        "h.json",
        &serde_json::to_vec(&samples::handover(3, "320411", true, false)).expect("json"),
    );
    let out = wingspan(&[
        "encode",
        "--adapter",
        "hr",
        "--destination",
        "mars",
        handover.to_str().expect("p"),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).starts_with("error[unknown-destination]"));
    let garbage = temp("g.json", b"{\"not\": \"an envelope\"}");
    let out = wingspan(&[
        "encode",
        "--adapter",
        "hr",
        "--destination",
        "hr",
        garbage.to_str().expect("p"),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).starts_with("error[invalid-canonical]"));
}

/// Copy the example config (and its tests and examples) to a temporary directory.
fn config_copy(tag: &str) -> PathBuf {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = std::env::temp_dir().join(format!("wingspan-cli-{tag}-{}", std::process::id()));
    for sub in ["tests", "examples"] {
        std::fs::create_dir_all(dir.join(sub)).expect("dir");
        for entry in std::fs::read_dir(repo.join("config").join(sub)).expect("read") {
            let p = entry.expect("entry").path();
            std::fs::copy(&p, dir.join(sub).join(p.file_name().expect("name"))).expect("copy");
        }
    }
    let text = std::fs::read_to_string(repo.join("config/wingspan.toml"))
        .expect("config")
        .replace(
            "schemas_dir = \"../schemas\"",
            &format!(
                "schemas_dir = {:?}",
                repo.join("schemas").display().to_string()
            ),
        )
        .replace(
            "adapters_dir = \"adapters\"",
            &format!(
                "adapters_dir = {:?}",
                repo.join("config/adapters").display().to_string()
            ),
        );
    std::fs::write(dir.join("wingspan.toml"), text).expect("write");
    dir
}

#[test]
fn the_example_route_tests_pass_and_a_wrong_expectation_fails_with_a_diff() {
    let out = wingspan(&["test", "--config", "config"]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("9 passed, 0 failed"), "{stdout}");

    // The Changzhou handover expected at Suzhou's station and with its drug history at HR.
    let dir = config_copy("test");
    let cases = dir.join("tests/routes.toml");
    let broken = std::fs::read_to_string(&cases)
        .expect("cases")
        .replace(
            "destinations = [\"aftercare-3204\", \"hr\"]",
            "destinations = [\"aftercare-3205\", \"hr\"]",
        )
        .replace(
            "hr = [\"person.name\", \"skills\"]",
            "hr = [\"person.name\", \"substance_history\"]",
        );
    std::fs::write(&cases, broken).expect("write");
    let out = wingspan(&["test", "--config", dir.to_str().expect("path")]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("8 passed, 1 failed"), "{stdout}");
    assert!(
        stdout.contains("- aftercare-3205 (expected, not reached)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("+ aftercare-3204 (reached, not expected)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("hr: - substance_history (must be present, is absent)"),
        "{stdout}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn explain_shows_each_route_verdict_and_what_each_destination_receives() {
    let out = wingspan(&[
        "explain",
        "--config",
        "config",
        "config/examples/referral.handover.json",
    ]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    let line = |route: &str| {
        stdout
            .lines()
            .find(|l| l.contains(route))
            .unwrap_or_else(|| panic!("no line for {route}: {stdout}"))
            .to_owned()
    };
    assert!(line("handover-aftercare-changzhou").contains("match"));
    assert!(line("handover-aftercare-changzhou").contains("prefix \"3204\": holds"));
    assert!(line("handover-aftercare-suzhou").contains("does not hold"));
    assert!(line("handover-subsistence").contains("does not hold"));
    assert!(line("materials-to-police").contains("not for this message type"));
    // What hr would receive is shown, cut to its policy.
    let hr = stdout
        .split("── ")
        .find(|s| s.starts_with("hr "))
        .expect("hr section");
    assert!(hr.contains("Sun Haoran"));
    assert!(!hr.contains("heroin") && !hr.contains("methadone"), "{hr}");
    assert!(
        !stdout.contains("── civil"),
        "civil is not a destination here"
    );

    // A message no route takes: refused, every route's verdict shown, exit code 1.
    let out = wingspan(&[
        "explain",
        "--config",
        "config",
        "config/examples/referral.handover.nanjing.json",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("refused: no-route"), "{stdout}");
    assert!(stdout.contains("handover-aftercare-changzhou"), "{stdout}");
}

#[test]
fn check_reports_every_problem_with_file_and_line() {
    let out = wingspan(&["check", "--config", "config"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).starts_with("config ok:"));

    // A config that compiles but would misbehave: no route for transfers any more, a route
    // whose predicates contradict, and a second route to the police for the same messages.
    let dir = config_copy("check");
    let file = dir.join("wingspan.toml");
    let config = std::fs::read_to_string(&file)
        .expect("config")
        .replace(
            "[[routes]]\nname = \"transfers-to-120\"\nmessage_types = [\"emergency.transfer.request\"]\ndestinations = [\"emergency\"]\n",
            "",
        )
        + "\n[[routes]]\nname = \"contradiction\"\nmessage_types = [\"referral.handover\"]\nwhen = [{ field = \"/payload/residence/division_code\", prefix = \"3204\" }, { field = \"/payload/residence/division_code\", prefix = \"3205\" }]\ndestinations = [\"civil\"]\n"
        + "\n[[routes]]\nname = \"police-again\"\nmessage_types = [\"enforcement.material.submit\"]\ndestinations = [\"police\"]\n";
    std::fs::write(&file, &config).expect("write");
    let line_of = |needle: &str| {
        config
            .lines()
            .position(|l| l.contains(needle))
            .map(|n| n + 1)
            .expect("needle")
    };
    let out = wingspan(&["check", "--config", dir.to_str().expect("path")]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let f = file.display().to_string();
    let rehab_types = config
        .lines()
        .enumerate()
        .skip_while(|(_, l)| !l.contains("id = \"rehab\""))
        .find(|(_, l)| l.starts_with("message_types"))
        .map(|(n, _)| n + 1)
        .expect("rehab's types");
    for expected in [
        format!("{f}:{rehab_types}: sources.rehab.message_types: no route takes \"emergency.transfer.request\""),
        format!("{f}:{}: routes[", line_of("{ field = \"/payload/residence/division_code\", prefix = \"3204\" }, {")),
        "route \"contradiction\" can never match: its predicates contradict each other".to_owned(),
        "routes \"materials-to-police\" and \"police-again\" can both take one enforcement.material.submit message to \"police\"".to_owned(),
    ] {
        assert!(stderr.contains(&expected), "missing {expected:?} in:\n{stderr}");
    }
    assert!(stderr.contains("3 problem(s)"), "{stderr}");

    // A compile error is located too.
    std::fs::write(
        &file,
        config.replace(
            "destinations = [\"police\"]\n",
            "destinations = [\"polize\"]\n",
        ),
    )
    .expect("write");
    let out = wingspan(&["check", "--config", dir.to_str().expect("path")]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains(&format!(
            "{f}:{}: routes[0].destinations",
            line_of("destinations = [\"police\"]")
        )),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The Debian package installs the example config with two paths changed (schemas under
/// /usr/share/wingspan, state under /var/lib/wingspan) and nothing else; its unit runs the
/// gateway as its own user with no privileges, writing only its state directory.
/// (`packaging/test-deb.sh` builds, installs, runs, reloads and removes the package itself.)
#[test]
fn the_packaged_config_is_the_example_and_the_unit_is_hardened() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let read = |p: &str| std::fs::read_to_string(root.join(p)).expect(p);
    let example = read("config/wingspan.toml");
    let packaged = read("packaging/etc/wingspan.toml");
    let expected = example
        .replacen(
            "schemas_dir = \"../schemas\"",
            "schemas_dir = \"/usr/share/wingspan/schemas\"",
            1,
        )
        .replacen(
            "state_dir = \"../var\"",
            "state_dir = \"/var/lib/wingspan\"",
            1,
        );
    // The packaged copy says where it came from in two comment lines of its own.
    let note = "# Installed by the Debian package: the example of the source tree with its schemas in\n\
                # /usr/share/wingspan/schemas and its state in /var/lib/wingspan.\n";
    assert!(packaged.contains(note), "the packaged config's note");
    assert_ne!(
        expected, example,
        "the example's paths moved: update the packaged config"
    );
    assert_eq!(
        packaged.replacen(note, "", 1),
        expected,
        "packaging/etc/wingspan.toml must be config/wingspan.toml with the installed paths"
    );

    let unit = read("packaging/debian/wingspan.service");
    for line in [
        "User=wingspan",
        "ExecStart=/usr/bin/wingspan run --config /etc/wingspan",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ReadWritePaths=/var/lib/wingspan",
        "PrivateTmp=yes",
        "CapabilityBoundingSet=",
        "AmbientCapabilities=",
        "StandardOutput=journal",
    ] {
        assert!(unit.lines().any(|l| l == line), "the unit lacks {line}");
    }
}

/// Where RabbitMQ is installed but no broker answers at the config's URL, the demo starts a
/// private node of its own (own name, ports and data directory), does its job on it and
/// stops it at the end.
#[test]
fn the_demo_starts_a_broker_of_its_own_when_none_answers() {
    let dir = config_copy("demo-private");
    let file = dir.join("wingspan.toml");
    let text_before = std::fs::read_to_string(&file).expect("config");
    // Nothing listens on port 1; the state (and the node's data) stays in this directory.
    let changed = text_before
        .replace(
            "amqp://guest:guest@127.0.0.1:5672/%2f",
            "amqp://guest:guest@127.0.0.1:1/%2f",
        )
        .replace("state_dir = \"../var\"", "state_dir = \"var\"");
    assert_ne!(changed, text_before);
    std::fs::write(&file, changed).expect("config");
    let out = Command::new(env!("CARGO_BIN_EXE_wingspan"))
        .args(["demo", "--config"])
        .arg(&dir)
        .env_remove("WINGSPAN_AMQP_URL")
        .env_remove("WINGSPAN_AMQP_URL_FILE")
        .output()
        .expect("demo");
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.contains("starting a private RabbitMQ node"),
        "{stdout}"
    );
    assert!(
        stdout.contains("the first message sent again: 200"),
        "{stdout}"
    );
    assert!(dir.join("var/demo-broker/mnesia").exists());
    // The node is gone: nothing answers on its port any more.
    let port: u16 = stdout
        .split("on 127.0.0.1:")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .expect("the node's port in the output");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "the private node still listens on {port}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("dir");
    for entry in std::fs::read_dir(from).expect("read") {
        let p = entry.expect("entry").path();
        let target = to.join(p.file_name().expect("name"));
        if p.is_dir() {
            copy_tree(&p, &target);
        } else {
            std::fs::copy(&p, &target).expect("copy");
        }
    }
}

/// Declared adapters through the CLI as built-in ones: their golden cases run by `adapter
/// test`, `encode` and `decode` by name with the config that declares them, `explain` showing
/// what the HL7 v2 hospital would receive, and a program that does not compile reported by
/// `check` at file:line:column.
#[test]
fn declared_adapters_are_tested_encoded_decoded_and_checked_from_the_cli() {
    let out = wingspan(&["adapter", "test", "--config", "config"]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    for adapter in ["hl7v2", "police-declared", "hr-declared", "civil-declared"] {
        assert!(stdout.contains(&format!("pass {adapter}: ")), "{stdout}");
    }
    assert!(stdout.contains(" passed, 0 failed"), "{stdout}");
    let out = wingspan(&["adapter", "test", "--config", "config", "hl7v3"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("error[unknown-adapter]"),
        "{}",
        text(&out.stderr)
    );

    // Encode: a consultation order for the county hospital, after its destination's policy.
    let order = "config/adapters/hl7v2/golden/encode/consultation-order.canonical.json";
    let out = wingspan(&[
        "encode",
        "--adapter",
        "hl7v2",
        "--destination",
        "hospital-ma03",
        "--config",
        "config",
        order,
    ]);
    let er7 = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("content-type: application/hl7-v2"),
        "{}",
        text(&out.stderr)
    );
    assert!(er7.starts_with("MSH|^~\\&|"), "{er7}");
    assert!(
        er7.contains("|OMG^O19^OMG_O19|cons-2026-1130-0001|"),
        "{er7}"
    );

    // Decode: what it wrote reads back as the order; a result reads as a correlated result.
    let wire = temp("order.hl7", er7.trim_end_matches('\n').as_bytes());
    let out = wingspan(&[
        "decode",
        "--adapter",
        "hl7v2",
        "--source",
        "hospital-ma03",
        "--config",
        "config",
        wire.to_str().expect("path"),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let decoded: Value = serde_json::from_slice(&out.stdout).expect("json");
    let expected: Value = serde_json::from_slice(
        &std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(order))
            .expect("order"),
    )
    .expect("json");
    assert_eq!(decoded["message_id"], expected["message_id"]);
    assert_eq!(
        decoded["payload"]["consultation_id"],
        expected["payload"]["consultation_id"]
    );
    assert_eq!(
        decoded["payload"]["person"]["person_id"],
        expected["payload"]["person"]["person_id"]
    );
    let out = wingspan(&[
        "decode",
        "--adapter",
        "hl7v2",
        "--source",
        "hospital-ma03",
        "--config",
        "config",
        "config/adapters/hl7v2/golden/decode/consultation-result-county.wire.hl7",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let result: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(result["message_type"], "telemedicine.consultation.result");
    assert_eq!(result["source"], "hospital-ma03");
    assert!(result["correlation_id"].is_string(), "{result}");
    // Not HL7 at all: a typed error, exit code 1.
    let junk = temp("junk.hl7", b"PID|1||x\r");
    let out = wingspan(&[
        "decode",
        "--adapter",
        "hl7v2",
        "--config",
        "config",
        junk.to_str().expect("path"),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("malformed-document"),
        "{}",
        text(&out.stderr)
    );

    // Explain: the ma03 consultation goes to the hospital, shown in its own format.
    let consultation = samples::consultation_request(3, "ma03", "routine");
    let file = temp(
        "consultation-ma03.json",
        &serde_json::to_vec(&consultation).expect("json"),
    );
    let out = wingspan(&[
        "explain",
        "--config",
        "config",
        file.to_str().expect("path"),
    ]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    let hospital = stdout
        .split("── ")
        .find(|s| s.starts_with("hospital-ma03 "))
        .unwrap_or_else(|| panic!("no hospital-ma03 section: {stdout}"));
    assert!(hospital.contains("OMG^O19"), "{hospital}");

    // A program that does not compile: `check` names the file, line and column.
    let dir = config_copy("declared");
    copy_tree(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/adapters"),
        &dir.join("adapters"),
    );
    let file = dir.join("wingspan.toml");
    let config = std::fs::read_to_string(&file).expect("config");
    let adapters = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../config/adapters")
        .display()
        .to_string();
    std::fs::write(
        &file,
        config.replace(
            &format!("adapters_dir = {adapters:?}"),
            &format!(
                "adapters_dir = {:?}",
                dir.join("adapters").display().to_string()
            ),
        ),
    )
    .expect("write");
    let out = wingspan(&["check", "--config", dir.to_str().expect("path")]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let program = dir.join("adapters/hl7v2/encode.vrl");
    let good = std::fs::read_to_string(&program).expect("program");
    assert_eq!(
        good.lines().nth(3),
        Some("p = object!(del(.payload))"),
        "the test breaks line 4"
    );
    std::fs::write(
        &program,
        good.replace("p = object!(del(.payload))", "p = del(.payload) + 1"),
    )
    .expect("write");
    let out = wingspan(&["check", "--config", dir.to_str().expect("path")]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let at = format!("{}:4:", program.display());
    let column = stderr
        .split(&at)
        .nth(1)
        .unwrap_or_else(|| panic!("no {at} in:\n{stderr}"));
    assert!(
        column.starts_with(|c: char| c.is_ascii_digit()),
        "a column after the line: {stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
