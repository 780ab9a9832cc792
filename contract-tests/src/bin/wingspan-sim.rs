//! Run one partner simulator by hand:
//!
//! `wingspan-sim <name> <listen> [--reply-as <source>] [--gateway <url>] [--adapter <name or declared adapter directory>] [--behaviour <b>]`
//!
//! `<b>` is `accept` (default), `reject`, `fail:<status>`, `fail-first:<n>` or `delay:<ms>`.
//! Prints a summary of what it received when stopped with Ctrl-C.

use std::time::Duration;

use wingspan_sim::{Behaviour, Partner, PartnerOptions};

fn behaviour(text: &str) -> Option<Behaviour> {
    let (kind, arg) = text.split_once(':').unwrap_or((text, ""));
    match kind {
        "accept" => Some(Behaviour::Accept),
        "reject" => Some(Behaviour::Reject),
        "fail" => arg.parse().ok().map(Behaviour::Fail),
        "fail-first" => arg.parse().ok().map(Behaviour::FailFirst),
        "delay" => arg
            .parse()
            .ok()
            .map(|ms| Behaviour::Delay(Duration::from_millis(ms))),
        _ => None,
    }
}

const USAGE: &str = "usage: wingspan-sim <name> <listen> [--reply-as <source>] [--gateway <url>] [--adapter <name or declared adapter directory>] [--behaviour accept|reject|fail:<status>|fail-first:<n>|delay:<ms>]";

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(name), Some(listen)) = (args.first(), args.get(1)) else {
        eprintln!("{USAGE}");
        return std::process::ExitCode::from(2);
    };
    let mut options = PartnerOptions {
        name: name.clone(),
        reply_as: None,
        gateway: None,
        adapter: "rehab".into(),
    };
    let mut chosen = Behaviour::Accept;
    let mut rest = args[2..].iter();
    while let Some(flag) = rest.next() {
        let value = rest.next();
        match (flag.as_str(), value) {
            ("--reply-as", Some(v)) => options.reply_as = Some(v.clone()),
            ("--gateway", Some(v)) => options.gateway = Some(v.clone()),
            ("--adapter", Some(v)) => options.adapter = v.clone(),
            ("--behaviour", Some(v)) => match behaviour(v) {
                Some(b) => chosen = b,
                None => {
                    eprintln!("unknown behaviour {v:?}\n{USAGE}");
                    return std::process::ExitCode::from(2);
                }
            },
            _ => {
                eprintln!("{USAGE}");
                return std::process::ExitCode::from(2);
            }
        }
    }
    let partner = match Partner::start(listen, options).await {
        Ok(p) => p,
        Err(e) => {
            eprintln!("wingspan-sim: cannot listen on {listen}: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    partner.set_behaviour(chosen);
    println!(
        "wingspan-sim: {name} listening on http://{}",
        partner.addr()
    );
    let _ = tokio::signal::ctrl_c().await;
    println!(
        "wingspan-sim: {name} received {} POSTs, accepted {} messages, absorbed {} repeats, sent {} replies",
        partner.posts(),
        partner.accepted_count(),
        partner.repeats(),
        partner.replies_sent()
    );
    std::process::ExitCode::SUCCESS
}
