//! `wingspan decode` and `wingspan encode`: a partner document through an adapter to the
//! canonical envelope, and a canonical envelope to what a destination would receive.

use std::path::{Path, PathBuf};

use super::resolve;

fn read_input(path: &Path) -> Result<Vec<u8>, i32> {
    std::fs::read(path).map_err(|e| {
        eprintln!("error[unreadable]: {}: {e}", path.display());
        1
    })
}

/// `wingspan decode`: print the canonical envelope, validated against the config's schemas when
/// the config loads.
pub fn decode(
    adapter: &str,
    source: Option<String>,
    content_type: Option<String>,
    config: PathBuf,
    file: &Path,
) -> i32 {
    let bytes = match read_input(file) {
        Ok(b) => b,
        Err(code) => return code,
    };
    let source = source.unwrap_or_else(|| adapter.to_owned());
    // Built-in adapters work without a config; declared ones come with the config that
    // declares them, whose problems are shown when the adapter is not a built-in.
    let loaded = wingspan::load::load(&resolve(config));
    let set = match &loaded {
        Ok(l) => l.config.adapters.clone(),
        Err(_) => wingspan_adapters::builtins(),
    };
    if let Err(errors) = &loaded
        && !set.contains(adapter)
    {
        for e in errors {
            eprintln!("{e}");
        }
        return 1;
    }
    let result = wingspan::tools::decode(&set, adapter, &source, content_type.as_deref(), &bytes)
        .and_then(|env| {
            if let Ok(l) = &loaded {
                wingspan::tools::validate(&l.config, &env)?;
            }
            Ok(env)
        });
    match result {
        Ok(env) => match serde_json::to_string_pretty(&env) {
            Ok(text) => {
                println!("{text}");
                0
            }
            Err(e) => {
                eprintln!("error[internal]: {e}");
                1
            }
        },
        Err(e) => {
            eprintln!("{e}");
            1
        }
    }
}

/// `wingspan encode`: the content type on stderr, the body on stdout.
pub fn encode(adapter: &str, destination: &str, config: PathBuf, file: &Path) -> i32 {
    let loaded = match wingspan::load::load(&resolve(config)) {
        Ok(l) => l,
        Err(errors) => {
            for e in &errors {
                eprintln!("{e}");
            }
            return 1;
        }
    };
    let bytes = match read_input(file) {
        Ok(b) => b,
        Err(code) => return code,
    };
    match wingspan::tools::encode(&loaded.config, adapter, destination, &bytes) {
        Ok((content_type, body)) => {
            use std::io::Write;
            eprintln!("content-type: {content_type}");
            let mut out = std::io::stdout().lock();
            if out.write_all(&body).and_then(|()| out.flush()).is_err() {
                return 1;
            }
            if !body.ends_with(b"\n") {
                println!();
            }
            0
        }
        Err(e) => {
            eprintln!("{e}");
            1
        }
    }
}
