//! `wingspan check`, `wingspan test` and `wingspan explain`: a config's problems, its route
//! test cases, and what its routes would do with one message (nothing is sent).

use std::path::Path;

use super::load_or_report;

/// `wingspan check`: every problem of the config and its schemas; exit code 1 on any.
pub fn check(config: &Path) -> i32 {
    match wingspan::load::load(config) {
        Ok(l) if !wingspan::load::lint(&l).is_empty() => {
            let problems = wingspan::load::lint(&l);
            for e in &problems {
                eprintln!("{e}");
            }
            eprintln!("{} problem(s)", problems.len());
            1
        }
        Ok(l) => {
            let c = &l.config;
            println!(
                "config ok: {} sources, {} destinations, {} routes, {} message types",
                c.sources.len(),
                c.destinations.len(),
                c.routes.routes().len(),
                c.schemas.message_types().count()
            );
            0
        }
        Err(errors) => {
            for e in &errors {
                eprintln!("{e}");
            }
            eprintln!("{} problem(s)", errors.len());
            1
        }
    }
}

/// `wingspan test`: the route test cases beside the config; exit code 1 on any failure, or when
/// there is none.
pub fn test(config: &Path) -> i32 {
    let Some(loaded) = load_or_report(config) else {
        return 1;
    };
    let results = match wingspan::preview::run_tests(&loaded.config, &loaded.config_dir) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("wingspan test: {e}");
            return 1;
        }
    };
    let failed = results.iter().filter(|r| !r.problems.is_empty()).count();
    for r in &results {
        if r.problems.is_empty() {
            println!("pass  {}", r.name);
        } else {
            println!("FAIL  {}  ({})", r.name, r.file.display());
            for p in &r.problems {
                println!("      {p}");
            }
        }
    }
    println!("{} passed, {failed} failed", results.len() - failed);
    if results.is_empty() {
        eprintln!("no test cases in {}/tests", loaded.config_dir.display());
        return 1;
    }
    i32::from(failed > 0)
}

/// `wingspan explain`: exit code 1 when the message would be refused.
pub fn explain(config: &Path, file: &Path) -> i32 {
    let Some(loaded) = load_or_report(config) else {
        return 1;
    };
    let bytes = match std::fs::read(file) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("wingspan explain: {}: {e}", file.display());
            return 1;
        }
    };
    let x = wingspan::preview::explain(&loaded.config, &bytes);
    print!("{}", wingspan::preview::describe(&x));
    i32::from(x.refused.is_some())
}
