//! A RabbitMQ node of its own: its own node name, ports and data directory, started with
//! `rabbitmq-server -detached` and the RABBITMQ_* environment variables, listening on
//! 127.0.0.1 only. `wingspan demo` starts one when no broker answers and RabbitMQ is
//! installed; the fault-injection suite restarts, kills, freezes, alarms and clusters them
//! without disturbing the node other work on this machine shares. Ports stay fixed across
//! restarts.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

const BIN: &str = "/usr/lib/rabbitmq/bin";

/// Whether RabbitMQ is installed where Debian's package puts it.
pub fn installed() -> bool {
    Path::new(&format!("{BIN}/rabbitmq-server")).exists()
}

pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

#[derive(Debug)]
pub struct Node {
    /// `wingspan-<tag>-<attempt>@localhost`.
    pub name: String,
    pub dir: PathBuf,
    /// The AMQP port on 127.0.0.1.
    pub port: u16,
    dist_port: u16,
}

impl Node {
    /// Boot a new node under `dir` (created), listening on 127.0.0.1 only.
    pub fn start(dir: &Path, tag: &str) -> anyhow::Result<Self> {
        let mut why = None;
        // A port picked here can be taken before the node binds it: try fresh ones.
        for attempt in 0..3 {
            let node = Self {
                name: format!("wingspan-{tag}-{attempt}@localhost"),
                dir: dir.to_path_buf(),
                port: free_port()?,
                dist_port: free_port()?,
            };
            for d in ["mnesia", "log"] {
                std::fs::create_dir_all(dir.join(d))?;
            }
            std::fs::write(
                dir.join("rabbitmq.conf"),
                format!(
                    "listeners.tcp.default = 127.0.0.1:{}\nloopback_users = none\n\
                     # The suite raises alarms itself; keep the defaults out of its way.\n\
                     disk_free_limit.absolute = 1MB\n\
                     # Quorum queues' shared log rolls over at 64 MB, not 512: each rollover\n\
                     # moves the log's entries to segment files, and at 512 MB the soak saw\n\
                     # deliveries stall up to ~1 s at every rollover (every ~3 min).\n\
                     raft.wal_max_size_bytes = 64000000\n",
                    node.port
                ),
            )?;
            std::fs::write(dir.join("enabled_plugins"), "[].\n")?;
            match node.boot() {
                Ok(()) => return Ok(node),
                Err(e) => {
                    node.stop();
                    why = Some(e);
                }
            }
        }
        Err(why.unwrap_or_else(|| anyhow::anyhow!("node did not start")))
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        let d = |p: &str| self.dir.join(p).display().to_string();
        vec![
            ("RABBITMQ_NODENAME", self.name.clone()),
            ("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1".into()),
            ("RABBITMQ_NODE_PORT", self.port.to_string()),
            ("RABBITMQ_DIST_PORT", self.dist_port.to_string()),
            ("RABBITMQ_CONFIG_FILE", d("rabbitmq")),
            ("RABBITMQ_MNESIA_BASE", d("mnesia")),
            ("RABBITMQ_LOG_BASE", d("log")),
            ("RABBITMQ_ENABLED_PLUGINS_FILE", d("enabled_plugins")),
            ("RABBITMQ_PID_FILE", d("pid")),
        ]
    }

    /// Start the node's process and wait until it serves AMQP.
    pub fn boot(&self) -> anyhow::Result<()> {
        let _ = std::fs::remove_file(self.dir.join("pid"));
        let started = Command::new(format!("{BIN}/rabbitmq-server"))
            .arg("-detached")
            .envs(self.env())
            .output()
            .context("rabbitmq-server (install Debian's rabbitmq-server package)")?;
        if !started.status.success() {
            bail!(
                "rabbitmq-server -detached: {}",
                String::from_utf8_lossy(&started.stderr)
            );
        }
        let waited = self.ctl(&[
            "wait",
            &self.dir.join("pid").display().to_string(),
            "--timeout",
            "90",
        ])?;
        if !waited.status.success() {
            bail!("node {} did not come up: {}", self.name, text(&waited));
        }
        self.wait_amqp(Duration::from_secs(30))
    }

    fn wait_amqp(&self, within: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if Instant::now() > deadline {
                bail!("node {} does not listen on {}", self.name, self.port);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }

    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    pub fn ctl(&self, args: &[&str]) -> anyhow::Result<Output> {
        Ok(Command::new(format!("{BIN}/rabbitmqctl"))
            .args(["-n", &self.name])
            .args(args)
            .output()?)
    }

    /// Stop the whole node gracefully (its process exits).
    pub fn stop(&self) {
        let _ = self.ctl(&["stop"]);
    }

    /// A graceful restart: stop, then boot again on the same ports and data.
    pub fn restart(&self) -> anyhow::Result<()> {
        self.stop();
        self.boot()
    }

    /// The node's OS process (the Erlang VM), from its pid file.
    pub fn pid(&self) -> anyhow::Result<u32> {
        let text = std::fs::read_to_string(self.dir.join("pid"))?;
        Ok(text.trim().parse()?)
    }

    fn signal(&self, sig: &str) -> anyhow::Result<()> {
        let pid = self.pid()?;
        let ok = Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()?;
        anyhow::ensure!(ok.success(), "kill {sig} {pid}");
        Ok(())
    }

    /// `kill -9` of the node's process; waits until it is gone.
    pub fn kill9(&self) -> anyhow::Result<()> {
        let pid = self.pid()?;
        self.signal("-KILL")?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// Freeze (SIGSTOP) and thaw (SIGCONT) the node.
    pub fn freeze(&self) -> anyhow::Result<()> {
        self.signal("-STOP")
    }
    pub fn thaw(&self) -> anyhow::Result<()> {
        self.signal("-CONT")
    }

    /// Force-close every client connection.
    pub fn close_all_connections(&self) -> anyhow::Result<()> {
        let out = self.ctl(&["close_all_connections", "wingspan-chaos"])?;
        anyhow::ensure!(
            out.status.success(),
            "close_all_connections: {}",
            text(&out)
        );
        Ok(())
    }

    /// Raise the memory alarm (`on`) or lift it.
    pub fn memory_alarm(&self, on: bool) -> anyhow::Result<()> {
        let mark = if on { "0.000001" } else { "0.4" };
        let out = self.ctl(&["set_vm_memory_high_watermark", mark])?;
        anyhow::ensure!(out.status.success(), "watermark: {}", text(&out));
        Ok(())
    }

    /// Raise the disk alarm (`on`: a free-space limit far above what the disk has) or lift it.
    pub fn disk_alarm(&self, on: bool) -> anyhow::Result<()> {
        let limit = if on { "100000GB" } else { "1MB" };
        let out = self.ctl(&["set_disk_free_limit", limit])?;
        anyhow::ensure!(out.status.success(), "disk limit: {}", text(&out));
        Ok(())
    }

    /// Join the cluster of `seed` (this node's data is reset first).
    pub fn join(&self, seed: &Node) -> anyhow::Result<()> {
        for args in [
            vec!["stop_app"],
            vec!["reset"],
            vec!["join_cluster", seed.name.as_str()],
            vec!["start_app"],
        ] {
            let out = self.ctl(&args)?;
            anyhow::ensure!(out.status.success(), "{args:?}: {}", text(&out));
        }
        self.wait_amqp(Duration::from_secs(30))
    }

    /// Messages in a queue, from the node itself (0 when it does not exist).
    pub fn queue_messages(&self, queue: &str) -> u64 {
        let Ok(out) = self.ctl(&[
            "list_queues",
            "-q",
            "--no-table-headers",
            "name",
            "messages",
        ]) else {
            return 0;
        };
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                let mut parts = l.split_whitespace();
                (parts.next()? == queue).then(|| parts.next()?.parse().ok())?
            })
            .next()
            .unwrap_or(0)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        // A frozen node would never stop; a dead one has nothing to thaw.
        if let Ok(pid) = self.pid()
            && Path::new(&format!("/proc/{pid}")).exists()
        {
            let _ = self.thaw();
        }
        self.stop();
    }
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
