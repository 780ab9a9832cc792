//! A RabbitMQ node of a test's own — its own node name, ports and data directory, started with
//! `rabbitmq-server -detached` and the RABBITMQ_* environment variables — so a test can give
//! it a TLS listener (or stop it) without disturbing the node the other tests share.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const BIN: &str = "/usr/lib/rabbitmq/bin";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

#[derive(Debug)]
pub struct PrivateBroker {
    pub node: String,
    pub dir: PathBuf,
    /// The AMQPS port.
    pub tls_port: u16,
}

impl PrivateBroker {
    /// A node listening only on AMQPS at 127.0.0.1, with `server.pem`/`server.key` from `dir`
    /// and guest allowed (the node is reachable from localhost only).
    pub fn start_tls(dir: &Path) -> Self {
        // A node can fail to come up when a port picked here is taken before it binds it
        // (other tests pick ports too): try again with fresh ports and a fresh name.
        let mut why = String::new();
        for _ in 0..3 {
            match Self::try_start_tls(dir) {
                Ok(b) => return b,
                Err(e) => why = e,
            }
        }
        panic!("private node did not start: {why}");
    }

    fn try_start_tls(dir: &Path) -> Result<Self, String> {
        let tag = &uuid::Uuid::new_v4().simple().to_string()[..8];
        let node = format!("wingspan-test-{tag}@localhost");
        let tls_port = free_port();
        for d in ["mnesia", "log"] {
            std::fs::create_dir_all(dir.join(d)).expect("broker dir");
        }
        let _ = std::fs::remove_file(dir.join("pid"));
        std::fs::write(
            dir.join("rabbitmq.conf"),
            format!(
                "listeners.tcp = none\nlisteners.ssl.default = 127.0.0.1:{tls_port}\n\
                 ssl_options.certfile = {d}/server.pem\nssl_options.keyfile = {d}/server.key\n\
                 ssl_options.verify = verify_none\nssl_options.fail_if_no_peer_cert = false\n\
                 loopback_users = none\n",
                d = dir.display()
            ),
        )
        .expect("rabbitmq.conf");
        let started = Command::new(format!("{BIN}/rabbitmq-server"))
            .arg("-detached")
            .envs(Self::env(&node, dir))
            .output()
            .expect("rabbitmq-server (install the rabbitmq-server package)");
        let broker = Self {
            node,
            dir: dir.to_path_buf(),
            tls_port,
        };
        if !started.status.success() {
            return Err(format!(
                "rabbitmq-server -detached: {}",
                String::from_utf8_lossy(&started.stderr)
            ));
        }
        let waited = Command::new(format!("{BIN}/rabbitmqctl"))
            .args(["-n", &broker.node, "wait"])
            .arg(dir.join("pid"))
            .args(["--timeout", "60"])
            .output()
            .expect("rabbitmqctl");
        if !waited.status.success() {
            broker.stop();
            return Err(format!(
                "{}{}",
                String::from_utf8_lossy(&waited.stdout),
                String::from_utf8_lossy(&waited.stderr)
            ));
        }
        Ok(broker)
    }

    fn env(node: &str, dir: &Path) -> Vec<(String, String)> {
        let d = |p: &str| dir.join(p).display().to_string();
        vec![
            ("RABBITMQ_NODENAME".into(), node.to_owned()),
            ("RABBITMQ_NODE_PORT".into(), free_port().to_string()),
            ("RABBITMQ_DIST_PORT".into(), free_port().to_string()),
            ("RABBITMQ_CONFIG_FILE".into(), d("rabbitmq")),
            ("RABBITMQ_MNESIA_BASE".into(), d("mnesia")),
            ("RABBITMQ_LOG_BASE".into(), d("log")),
            ("RABBITMQ_ENABLED_PLUGINS_FILE".into(), d("enabled_plugins")),
            ("RABBITMQ_PID_FILE".into(), d("pid")),
        ]
    }

    pub fn stop(&self) {
        let _ = Command::new(format!("{BIN}/rabbitmqctl"))
            .args(["-n", &self.node, "stop"])
            .output();
    }
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        self.stop();
        std::thread::sleep(Duration::from_millis(100));
    }
}
