//! The release `hookbox` binary and one running `hookbox serve` process:
//! started the way the end-to-end tests start it (`--data`, `--listen
//! 127.0.0.1:0`, `HOOKBOX_ADMIN_TOKEN`, ready when stdout says `hookbox
//! listening on http://ADDR`), timed from spawn to that line, stopped with
//! SIGTERM, its resident memory read from `/proc`. Plus a thin async client
//! for the admin API calls the bench makes.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

/// The word-counter example component, as `tests/build.rs` built it.
pub fn word_counter() -> Vec<u8> {
    let (_, path) = hookbox_tests::guests::EXAMPLES
        .iter()
        .find(|(name, _)| *name == "word-counter")
        .expect("tests/build.rs built example-handlers/word-counter");
    std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The admin token of every bench daemon.
pub const TOKEN: &str = "hbx_bench_admin_token_0123456789";
/// Longest wait for a start, a stop or a single request.
const WAIT: Duration = Duration::from_secs(120);

/// The release daemon: `$HOOKBOX_BIN`, else `target/release/hookbox`, built
/// (or confirmed up to date) with `cargo build --release -p hookbox --bin
/// hookbox` in this bench's target directory. `cargo bench` builds the
/// bench profile of this crate only, not the daemon binary, so the bench
/// builds it deliberately.
pub fn release_binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("HOOKBOX_BIN") {
        let bin = PathBuf::from(bin);
        assert!(bin.is_file(), "HOOKBOX_BIN={} is not a file", bin.display());
        return bin;
    }
    let exe = std::env::current_exe().expect("the bench executable has a path");
    // <target>/release/deps/daemon-HASH → <target>
    let target = exe
        .ancestors()
        .nth(3)
        .expect("the bench runs from <target>/release/deps");
    let cargo = option_env!("CARGO").unwrap_or("cargo");
    println!("building the release daemon: cargo build --release -p hookbox --bin hookbox");
    let status = Command::new(cargo)
        .args(["build", "--release", "-p", "hookbox", "--bin", "hookbox"])
        .arg("--manifest-path")
        .arg(crate::support::workspace_root().join("Cargo.toml"))
        .arg("--target-dir")
        .arg(target)
        .status()
        .unwrap_or_else(|e| panic!("running {cargo}: {e}"));
    assert!(status.success(), "building the release daemon failed");
    let bin = target.join("release").join("hookbox");
    assert!(bin.is_file(), "{} was not built", bin.display());
    bin
}

/// A running daemon; killed when dropped.
#[derive(Debug)]
pub struct Daemon {
    bin: PathBuf,
    data: PathBuf,
    config: Option<PathBuf>,
    child: Option<Child>,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// From spawn to the `listening` line.
    pub started_in: Duration,
}

impl Daemon {
    /// Starts `bin serve` on `data` (created if needed), with the TOML
    /// config file `config` when given.
    pub fn start(bin: &Path, data: &Path, config: Option<&Path>) -> Daemon {
        let mut d = Daemon {
            bin: bin.to_path_buf(),
            data: data.to_path_buf(),
            config: config.map(Path::to_path_buf),
            child: None,
            url: String::new(),
            started_in: Duration::ZERO,
        };
        d.spawn();
        d
    }

    fn spawn(&mut self) {
        std::fs::create_dir_all(&self.data).expect("the data directory");
        let log = std::fs::File::create(self.log_path()).expect("a log file");
        let mut cmd = Command::new(&self.bin);
        cmd.arg("serve")
            .arg("--data")
            .arg(&self.data)
            .arg("--listen")
            .arg("127.0.0.1:0");
        if let Some(c) = &self.config {
            cmd.arg("--config").arg(c);
        }
        for var in [
            "HOOKBOX_URL",
            "HOOKBOX_TOKEN",
            "HOOKBOX_DATA",
            "HOOKBOX_LISTEN",
        ] {
            cmd.env_remove(var);
        }
        let started = Instant::now();
        let mut child = cmd
            .env("HOOKBOX_ADMIN_TOKEN", TOKEN)
            .env("HOOKBOX_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", self.bin.display()));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(url) = line.strip_prefix("hookbox listening on ") {
                    let _ = tx.send((url.trim().to_string(), Instant::now()));
                }
            }
        });
        self.child = Some(child);
        let (url, at) = rx.recv_timeout(WAIT).unwrap_or_else(|_| {
            panic!(
                "the daemon did not start within {WAIT:?}; see {}",
                self.log_path().display()
            )
        });
        self.url = url;
        self.started_in = at - started;
    }

    fn log_path(&self) -> PathBuf {
        self.data.with_extension("log")
    }

    /// `field=value` of the last line of this run's log (stderr) that
    /// contains `message`, e.g. `took_ms` of `Dispatcher loaded`.
    pub fn log_field(&self, message: &str, field: &str) -> Option<String> {
        let log = std::fs::read_to_string(self.log_path()).ok()?;
        let line = log.lines().rev().find(|l| l.contains(message))?;
        let at = line.find(&format!("{field}="))? + field.len() + 1;
        let value = line[at..].split_whitespace().next()?;
        Some(value.trim_matches('"').to_string())
    }

    /// The daemon's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("the daemon is running").id()
    }

    /// Resident memory of the daemon process, in bytes.
    pub fn rss(&self) -> u64 {
        crate::support::proc_status_bytes(&self.pid().to_string(), "VmRSS").unwrap_or(0)
    }

    /// SIGTERM, then waits for the exit (a clean shutdown flushes the store).
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + WAIT;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                assert!(status.success(), "the daemon exited with {status}");
                return;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("the daemon did not stop within {WAIT:?}");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Starts a stopped daemon again on the same data.
    pub fn resume(&mut self) {
        assert!(self.child.is_none(), "the daemon is running");
        self.spawn();
    }

    /// Stops the daemon and starts it again on the same data.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The admin API calls the bench makes, over one reqwest client.
#[derive(Clone, Debug)]
pub struct Api {
    pub client: reqwest::Client,
    pub url: String,
}

impl Api {
    pub fn new(url: &str) -> Api {
        Api {
            client: reqwest::Client::builder()
                .timeout(WAIT)
                .build()
                .expect("a reqwest client"),
            url: url.to_string(),
        }
    }

    /// `POST /v1/handlers`; returns the deploy answer.
    pub async fn deploy(&self, manifest: &Value, wasm: &[u8]) -> Value {
        let form = reqwest::multipart::Form::new()
            .part(
                "manifest",
                reqwest::multipart::Part::text(manifest.to_string()),
            )
            .part("component", reqwest::multipart::Part::bytes(wasm.to_vec()));
        let resp = self
            .client
            .post(format!("{}/v1/handlers", self.url))
            .bearer_auth(TOKEN)
            .multipart(form)
            .send()
            .await
            .expect("deploy request");
        let status = resp.status();
        let body: Value = resp.json().await.expect("deploy answer");
        assert!(status.is_success(), "deploy failed: {status} {body}");
        body
    }

    /// `POST /v1/events` with a prepared JSON body; the accepted event ids
    /// (`None` when the queue was full: 429).
    pub async fn publish(&self, body: bytes::Bytes, wait: bool) -> Option<Value> {
        let path = if wait {
            "/v1/events?wait=true"
        } else {
            "/v1/events"
        };
        let resp = self
            .client
            .post(format!("{}{path}", self.url))
            .bearer_auth(TOKEN)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .expect("publish request");
        let status = resp.status().as_u16();
        if status == 429 || status == 503 {
            return None;
        }
        let answer: Value = resp.json().await.expect("publish answer");
        assert!(status == 202 || status == 200, "publish: {status} {answer}");
        Some(answer)
    }

    /// One message event for `tenant`, published with `?wait=true`: the
    /// time until its outcome came back, asserted `ok`.
    pub async fn deliver_one(&self, tenant: &str, payload: &Value) -> Duration {
        let body = serde_json::json!([{"type": "message", "tenant": tenant, "payload": payload}]);
        let t = Instant::now();
        let answer = self
            .publish(bytes::Bytes::from(body.to_string()), true)
            .await
            .expect("the queue has room");
        let took = t.elapsed();
        let outcome = &answer["outcomes"][0]["deliveries"][0]["outcome"];
        assert_eq!(outcome, "ok", "delivery to {tenant}: {answer}");
        took
    }

    /// The text of `GET /metrics`.
    pub async fn metrics_text(&self) -> String {
        self.client
            .get(format!("{}/metrics", self.url))
            .bearer_auth(TOKEN)
            .send()
            .await
            .expect("metrics request")
            .text()
            .await
            .expect("metrics text")
    }

    /// The value of a Prometheus series in `GET /metrics` (summed over labels).
    pub async fn metric(&self, name: &str) -> f64 {
        self.metrics_text()
            .await
            .lines()
            .filter(|l| {
                l.strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}
