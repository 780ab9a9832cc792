//! How the CLI reaches a running gateway's admin listener: the flags that locate it and hold
//! the token, and the call itself (used by `wingspan config reload|rollback` and `wingspan dlq`).

use std::path::PathBuf;

use super::{load_or_report, resolve};

/// How the CLI reaches a running gateway's admin listener. The token comes from
/// `WINGSPAN_ADMIN_TOKEN` or `--token-file`, never from the command line.
#[derive(clap::Args, Debug, Clone)]
pub struct AdminArgs {
    /// Config directory: the admin listener's address is read from it.
    #[arg(long, default_value = "config")]
    config: PathBuf,
    /// The admin listener's base URL, instead of the configured address.
    #[arg(long)]
    admin_url: Option<String>,
    /// A file holding the admin user's token.
    #[arg(long)]
    token_file: Option<PathBuf>,
}

/// Call the running gateway's admin listener as the admin user whose token is given; print
/// the JSON answer. Exit code 0 on 2xx, 1 otherwise.
pub async fn admin_cmd(
    admin: &AdminArgs,
    method: &str,
    path: &str,
    body: serde_json::Value,
) -> i32 {
    let (status, text) = match admin_call(admin, method, path, body).await {
        Ok(answer) => answer,
        Err(code) => return code,
    };
    let pretty = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or(text);
    if status.is_success() {
        println!("{pretty}");
        0
    } else {
        eprintln!("{pretty}");
        1
    }
}

/// The call itself: the answer's status and body, or (having said why) the exit code.
pub async fn admin_call(
    admin: &AdminArgs,
    method: &str,
    path: &str,
    body: serde_json::Value,
) -> Result<(reqwest::StatusCode, String), i32> {
    let token = match (&admin.token_file, std::env::var("WINGSPAN_ADMIN_TOKEN")) {
        (Some(f), _) => match std::fs::read_to_string(f) {
            Ok(t) => t.trim().to_owned(),
            Err(e) => {
                eprintln!("wingspan: cannot read {}: {e}", f.display());
                return Err(1);
            }
        },
        (None, Ok(t)) if !t.is_empty() => t,
        _ => {
            eprintln!("wingspan: set WINGSPAN_ADMIN_TOKEN or give --token-file");
            return Err(1);
        }
    };
    let base = match &admin.admin_url {
        Some(u) => u.trim_end_matches('/').to_owned(),
        None => match load_or_report(&resolve(admin.config.clone())) {
            Some(l) => format!("http://{}", l.config.admin_listen),
            None => return Err(1),
        },
    };
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::new();
    let url = format!("{base}{path}");
    let mut req = match method {
        "POST" => client.post(&url).json(&body),
        _ => client.get(&url),
    };
    req = req
        .bearer_auth(token)
        .timeout(std::time::Duration::from_secs(120));
    let resp = match req.send().await {
        Ok(r) => r,
        Err(e) => {
            eprintln!(
                "wingspan: the admin listener at {base} did not answer: {}",
                e.without_url()
            );
            return Err(1);
        }
    };
    let status = resp.status();
    Ok((status, resp.text().await.unwrap_or_default()))
}
