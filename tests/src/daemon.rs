//! A real `hookbox serve` process for the end-to-end tests, and an HTTP
//! client for its admin API.
//!
//! [`Daemon::start`] runs the `hookbox` binary cargo built next to the test
//! executable (`target/debug/hookbox`, or `$HOOKBOX_BIN`) on a fresh data
//! directory and a free port, with a known admin token, and waits for its
//! `hookbox listening on http://ADDR` line. [`Daemon::stop`] sends SIGTERM
//! and insists on a clean exit; [`Daemon::kill9`] simulates a crash;
//! [`Daemon::restart`] starts it again on the same data directory.
//!
//! Every wait is bounded ([`WAIT`]) and panics naming what it waited for.
//! The daemon's stderr is kept (its tail, across restarts) and printed when
//! a test panics with the `Daemon` in scope, so failures come with the
//! server's log. The HTTP side ([`Http`], [`Reply`], [`SseStream`]) is in
//! `daemon/http.rs`.

use std::collections::VecDeque;
use std::fmt;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use crate::guests;

mod http;

pub use http::{Body, Http, Reply, SseEvent, SseStream};

/// The longest any single wait of the harness lasts before it gives up.
pub const WAIT: Duration = Duration::from_secs(30);
/// The admin token every test daemon runs with.
pub const ADMIN_TOKEN: &str = "hbx_e2e_admin_token_0123456789";
/// The daemon config every test daemon starts from: a small instance pool
/// (each slot reserves address space, and several daemons run at once).
pub const BASE_CONFIG: &str = "[runtime]\npool_instances = 32\n";
/// How much of the daemon's stderr is kept for failure reports.
const STDERR_TAIL_BYTES: usize = 64 * 1024;
/// Environment that would leak the caller's settings into the daemon or CLI.
const HOOKBOX_ENV: &[&str] = &[
    "HOOKBOX_URL",
    "HOOKBOX_TOKEN",
    "HOOKBOX_DATA",
    "HOOKBOX_LISTEN",
    "HOOKBOX_LOG",
    "HOOKBOX_ADMIN_TOKEN",
    // Whether the daemon may use transparent huge pages (README, "The
    // daemon's own memory").
    "MIMALLOC_ALLOW_THP",
];

/// The `hookbox` binary: `$HOOKBOX_BIN`, else `hookbox` in the cargo target
/// directory of this test executable (…/target/debug/deps/x → …/target/debug/hookbox).
pub fn hookbox_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("HOOKBOX_BIN") {
        let bin = PathBuf::from(bin);
        assert!(
            bin.is_file(),
            "HOOKBOX_BIN is {}, which is not a file",
            bin.display()
        );
        return bin;
    }
    let exe = std::env::current_exe().expect("the test executable has a path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test executable lives in <target>/<profile>/deps");
    let bin = profile_dir.join(format!("hookbox{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.is_file(),
        "the hookbox binary is not at {}: build it first with `cargo build -p hookbox` \
         (`cargo test --workspace` builds it too), or set HOOKBOX_BIN",
        bin.display()
    );
    assert_fresh(&bin);
    bin
}

/// Refuses a binary older than one of its sources, as listed in the dep-info
/// file cargo writes beside it (`hookbox.d`): testing it would test old code,
/// and `cargo test -p hookbox-tests` alone does not rebuild it.
fn assert_fresh(bin: &Path) {
    let mut dep_info = bin.as_os_str().to_owned();
    dep_info.push(".d");
    let Ok(text) = std::fs::read_to_string(&dep_info) else {
        return; // Not built by cargo: nothing to compare with.
    };
    let built = std::fs::metadata(bin)
        .and_then(|m| m.modified())
        .expect("the binary's modification time");
    let sources = text.split_once(": ").map_or("", |(_, deps)| deps);
    // Paths are separated by spaces; a space inside a path is `\ `.
    let sources = sources.replace("\\ ", "\u{0}");
    for source in sources.split_whitespace() {
        let source = PathBuf::from(source.replace('\u{0}', " "));
        let stale = std::fs::metadata(&source)
            .and_then(|m| m.modified())
            .map_or(true, |t| t > built);
        assert!(
            !stale,
            "{} is older than its source {}: rebuild it with `cargo build -p hookbox` \
             (`cargo test --workspace` does), or set HOOKBOX_BIN to test another binary",
            bin.display(),
            source.display()
        );
    }
}

/// The component and manifest of the example handler `name`.
pub fn example(name: &str) -> (String, Vec<u8>) {
    let (_, path) = guests::EXAMPLES
        .iter()
        .find(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("example handler `{name}` was not built"));
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../example-handlers")
        .join(name)
        .join("manifest.json");
    let manifest = std::fs::read_to_string(&manifest)
        .unwrap_or_else(|e| panic!("reading {}: {e}", manifest.display()));
    (manifest, crate::read(path))
}

/// The Zulip fixture events as `POST /v1/events` inputs of `tenant`: type
/// `type`, or `type.op` when `op` is a non-empty string; the payload is the
/// Zulip event.
pub fn zulip_inputs(tenant: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(crate::ZULIP_EVENTS).expect("the Zulip fixtures");
    let events: Vec<Value> = serde_json::from_str(&text).expect("the fixtures are a JSON array");
    events
        .into_iter()
        .map(|e| {
            let t = hookbox::event::zulip_event_type(&e).expect("every fixture has a type");
            json!({"type": t, "tenant": tenant, "payload": e})
        })
        .collect()
}

/// A command running `bin`, under `ulimit` with these arguments when
/// given (`-d 2097152`: a 2 GiB data segment; `-n 512`: descriptors),
/// through `/bin/sh`, which then `exec`s `bin`, so the child's pid is the
/// program's.
pub fn limited(bin: &Path, ulimit: Option<&str>) -> Command {
    let Some(args) = ulimit else {
        return Command::new(bin);
    };
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(format!("ulimit {args} && exec \"$0\" \"$@\""))
        .arg(bin);
    cmd
}

/// The peak resident set (`VmHWM`) of process `pid`, in bytes.
pub fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("reading /proc/{pid}/status: {e}"));
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .unwrap_or_else(|| panic!("no VmHWM in /proc/{pid}/status"))
}

/// A running `hookbox serve`. Killed when dropped.
#[derive(Debug)]
pub struct Daemon {
    bin: PathBuf,
    /// Holds `data/` and `hookbox.toml`; removed on drop.
    dir: tempfile::TempDir,
    child: Option<Child>,
    url: String,
    stderr: Arc<Mutex<Tail>>,
    readers: Vec<JoinHandle<()>>,
    http: Http,
    /// Arguments of `ulimit` the daemon process starts under.
    ulimit: Option<String>,
    /// `HOOKBOX_LOG`: the daemon's log filter.
    log: String,
}

impl Daemon {
    /// Starts a daemon with [`BASE_CONFIG`].
    pub fn start() -> Daemon {
        Daemon::start_with("")
    }

    /// Starts a daemon with [`BASE_CONFIG`] followed by `extra` TOML (which
    /// must not open `[runtime]` again).
    pub fn start_with(extra: &str) -> Daemon {
        Daemon::start_inner(extra, None, "info")
    }

    /// [`Daemon::start_with`] with a log filter other than `info` (e.g.
    /// `info,hookbox::handler=warn`, so handlers logging every delivery do
    /// not push the daemon's own lines out of [`Daemon::stderr_tail`]).
    /// It holds over restarts.
    pub fn start_with_log(extra: &str, filter: &str) -> Daemon {
        Daemon::start_inner(extra, None, filter)
    }

    /// [`Daemon::start_with`], the process started under `ulimit` with
    /// these arguments: `-d KB` caps its data segment (`RLIMIT_DATA`: the
    /// heap and every private writable mapping, not wasmtime's reserved
    /// address space), so a test that would make it grow without bound
    /// fails instead of taking the machine down; `-n N` its descriptors.
    pub fn start_limited(extra: &str, ulimit: &str) -> Daemon {
        Daemon::start_inner(extra, Some(ulimit.to_string()), "info")
    }

    fn start_inner(extra: &str, ulimit: Option<String>, log: &str) -> Daemon {
        let dir = tempfile::Builder::new()
            .prefix("hookbox-e2e-")
            .tempdir()
            .expect("a temporary directory");
        std::fs::write(
            dir.path().join("hookbox.toml"),
            format!("{BASE_CONFIG}{extra}"),
        )
        .expect("writing the daemon config");
        let mut d = Daemon {
            bin: hookbox_bin(),
            dir,
            child: None,
            url: String::new(),
            stderr: Arc::default(),
            readers: Vec::new(),
            http: Http::new(),
            ulimit,
            log: log.to_string(),
        };
        d.spawn(WAIT);
        d
    }

    fn spawn(&mut self, wait: Duration) {
        assert!(self.child.is_none(), "the daemon is already running");
        let mut child = limited(&self.bin, self.ulimit.as_deref())
            .arg("serve")
            .arg("--data")
            .arg(self.data_dir())
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--config")
            .arg(self.dir.path().join("hookbox.toml"))
            .env_clear_hookbox()
            .env("HOOKBOX_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("HOOKBOX_LOG", &self.log)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", self.bin.display()));
        let (tx, rx) = mpsc::channel();
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        self.readers.push(std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if !sent && let Some(url) = line.strip_prefix("hookbox listening on ") {
                    sent = tx.send(url.trim().to_string()).is_ok();
                }
            }
        }));
        let tail_writer = self.stderr.clone();
        self.readers.push(std::thread::spawn(move || {
            let mut stderr = stderr;
            let mut buf = [0u8; 8192];
            while let Ok(n) = stderr.read(&mut buf) {
                if n == 0 {
                    break;
                }
                tail_writer
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(&buf[..n]);
            }
        }));
        self.child = Some(child);
        match rx.recv_timeout(wait) {
            Ok(url) => self.url = url,
            Err(e) => {
                let status = self
                    .child
                    .as_mut()
                    .and_then(|c| c.try_wait().ok().flatten());
                self.kill_child();
                panic!(
                    "the daemon did not print `hookbox listening on …` within {wait:?} ({e}; exit status {status:?}); its stderr:\n{}",
                    self.stderr_tail()
                );
            }
        }
    }

    /// The admin API's base URL, `http://127.0.0.1:PORT` (changes on restart).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The daemon's process id (for `/proc/<pid>/status`).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("the daemon is running").id()
    }

    /// The admin token.
    pub fn admin(&self) -> &str {
        ADMIN_TOKEN
    }

    /// The daemon's data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// A scratch directory that lives as long as the daemon.
    pub fn scratch(&self) -> &Path {
        self.dir.path()
    }

    /// The last `STDERR_TAIL_BYTES` of the daemon's stderr, over restarts.
    pub fn stderr_tail(&self) -> String {
        self.stderr.lock().unwrap_or_else(|p| p.into_inner()).text()
    }

    /// The HTTP client.
    pub fn http(&self) -> &Http {
        &self.http
    }

    /// Stops the daemon with SIGTERM and asserts it exits 0 (graceful shutdown).
    pub fn stop(&mut self) {
        let pid = self.child.as_ref().expect("the daemon is running").id();
        let kill = Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .status()
            .expect("running kill");
        assert!(kill.success(), "kill -TERM {pid} failed: {kill}");
        let status = self.wait_exit("the daemon to exit after SIGTERM");
        assert!(
            status.success(),
            "the daemon exited with {status} after SIGTERM (expected 0); its stderr:\n{}",
            self.stderr_tail()
        );
    }

    /// Kills the daemon with SIGKILL, as a crash would.
    pub fn kill9(&mut self) {
        let child = self.child.as_mut().expect("the daemon is running");
        child.kill().expect("SIGKILL the daemon");
        self.wait_exit("the daemon to die after SIGKILL");
    }

    /// Starts the daemon again on the same data directory and config.
    pub fn restart(&mut self) {
        self.restart_within(WAIT);
    }

    /// [`Daemon::restart`], waiting up to `wait` for it to listen (a start
    /// that reads a large inbox back).
    pub fn restart_within(&mut self, wait: Duration) {
        if self.child.is_some() {
            self.stop();
        }
        self.spawn(wait);
    }

    fn wait_exit(&mut self, what: &str) -> ExitStatus {
        let deadline = Instant::now() + WAIT;
        let child = self.child.as_mut().expect("the daemon is running");
        let status = loop {
            match child.try_wait().expect("waiting for the daemon") {
                Some(status) => break status,
                None if Instant::now() >= deadline => {
                    self.kill_child();
                    panic!(
                        "timed out after {WAIT:?} waiting for {what}; its stderr:\n{}",
                        self.stderr_tail()
                    );
                }
                None => std::thread::sleep(Duration::from_millis(20)),
            }
        };
        self.kill_child(); // reaped already: only joins the readers
        status
    }

    /// Kills the process if it runs, and collects the rest of its output
    /// (its pipes close with it, so the readers end).
    fn kill_child(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
    }

    /// Polls `probe` until it returns `Some`, for at most [`WAIT`]; panics
    /// naming `what` (with the daemon's stderr) otherwise.
    pub fn wait_until<T>(&self, what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(v) = probe() {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {WAIT:?} waiting for {what}; the daemon's stderr:\n{}",
                self.stderr_tail()
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// One request to the daemon.
    pub fn send(&self, method: Method, path: &str, token: Option<&str>, body: Body) -> Reply {
        self.http.send(&self.url, method, path, token, body)
    }

    /// `GET` with the admin token.
    pub fn get(&self, path: &str) -> Reply {
        self.send(Method::GET, path, Some(ADMIN_TOKEN), Body::None)
    }

    /// `GET` with `token`.
    pub fn get_as(&self, path: &str, token: &str) -> Reply {
        self.send(Method::GET, path, Some(token), Body::None)
    }

    /// `POST` JSON with the admin token.
    pub fn post(&self, path: &str, body: &Value) -> Reply {
        self.send(
            Method::POST,
            path,
            Some(ADMIN_TOKEN),
            Body::Json(body.clone()),
        )
    }

    /// `PUT` JSON with the admin token.
    pub fn put(&self, path: &str, body: &Value) -> Reply {
        self.send(
            Method::PUT,
            path,
            Some(ADMIN_TOKEN),
            Body::Json(body.clone()),
        )
    }

    /// `DELETE` with the admin token.
    pub fn delete(&self, path: &str) -> Reply {
        self.send(Method::DELETE, path, Some(ADMIN_TOKEN), Body::None)
    }

    /// Deploys a component with its manifest (JSON text).
    pub fn deploy(&self, manifest: &str, component: &[u8]) -> Reply {
        self.send(
            Method::POST,
            "/v1/handlers",
            Some(ADMIN_TOKEN),
            Body::Multipart(vec![
                ("manifest".into(), manifest.as_bytes().to_vec()),
                ("component".into(), component.to_vec()),
            ]),
        )
    }

    /// Deploys the example handler `name` and asserts it worked.
    pub fn deploy_example(&self, name: &str) -> Reply {
        let (manifest, wasm) = example(name);
        self.deploy(&manifest, &wasm).expect(201)
    }

    /// Publishes events (an object or an array) with the admin token;
    /// `wait` waits for their outcomes.
    pub fn publish(&self, events: &Value, wait: bool) -> Reply {
        let path = if wait {
            "/v1/events?wait=true"
        } else {
            "/v1/events"
        };
        self.post(path, events)
    }

    /// Creates a token with `scopes` restricted to `tenants` (empty: all);
    /// returns its secret.
    pub fn token(&self, name: &str, scopes: &[&str], tenants: &[&str]) -> String {
        let r = self
            .post(
                "/v1/tokens",
                &json!({"name": name, "scopes": scopes, "tenants": tenants}),
            )
            .expect(201);
        r.json["secret"]
            .as_str()
            .unwrap_or_else(|| panic!("no secret in {r}"))
            .to_string()
    }

    /// The `/metrics` text.
    pub fn metrics(&self) -> String {
        self.get("/metrics").expect(200).text
    }

    /// The value of the metric line `series` (`name` or `name{labels}`).
    pub fn metric(&self, series: &str) -> Option<f64> {
        metric(&self.metrics(), series)
    }

    /// Opens the live stream at `path` (`/v1/stream?…`) with the admin token.
    pub fn stream(&self, path: &str) -> SseStream<'_> {
        self.stream_as(path, ADMIN_TOKEN)
    }

    /// Opens the live stream at `path` with `token`.
    pub fn stream_as(&self, path: &str, token: &str) -> SseStream<'_> {
        self.http.stream(&self.url, path, token)
    }

    /// The `hookbox` binary this daemon runs.
    pub fn bin(&self) -> &Path {
        &self.bin
    }

    /// Runs the `hookbox` CLI against this daemon with the admin token
    /// (`--url` and `--token` are added after `args`).
    pub fn cli(&self, args: &[&str]) -> CliOutput {
        self.cli_as(ADMIN_TOKEN, args)
    }

    /// Runs the `hookbox` CLI against this daemon with `token`.
    pub fn cli_as(&self, token: &str, args: &[&str]) -> CliOutput {
        let out = Command::new(&self.bin)
            .args(args)
            .arg("--url")
            .arg(&self.url)
            .arg("--token")
            .arg(token)
            .env_clear_hookbox()
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("running hookbox {args:?}: {e}"));
        CliOutput {
            args: args.iter().map(|a| a.to_string()).collect(),
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let running = self.child.is_some();
        self.kill_child();
        if std::thread::panicking() {
            eprintln!(
                "---- hookbox daemon stderr ({}; tail) ----\n{}",
                if running { "killed" } else { "exited" },
                self.stderr_tail()
            );
        }
    }
}

trait EnvClearHookbox {
    fn env_clear_hookbox(&mut self) -> &mut Self;
}

impl EnvClearHookbox for Command {
    fn env_clear_hookbox(&mut self) -> &mut Self {
        for var in HOOKBOX_ENV {
            self.env_remove(var);
        }
        self
    }
}

/// The tail of a byte stream.
#[derive(Debug, Default)]
struct Tail(VecDeque<u8>);

impl Tail {
    fn push(&mut self, bytes: &[u8]) {
        self.0.extend(bytes);
        let excess = self.0.len().saturating_sub(STDERR_TAIL_BYTES);
        self.0.drain(..excess);
    }

    fn text(&self) -> String {
        let (a, b) = self.0.as_slices();
        String::from_utf8_lossy(&[a, b].concat()).into_owned()
    }
}

/// What a `hookbox` CLI run printed.
#[derive(Debug)]
pub struct CliOutput {
    /// The arguments (without `--url`/`--token`).
    pub args: Vec<String>,
    /// The exit code (`None`: killed by a signal).
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl CliOutput {
    /// Asserts the exit code; returns `self` for more checks.
    pub fn expect(self, code: i32) -> Self {
        assert_eq!(self.code, Some(code), "{self}");
        self
    }

    /// Standard output as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self}"))
    }
}

impl fmt::Display for CliOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "hookbox {:?} exited {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.args, self.code, self.stdout, self.stderr
        )
    }
}

/// The value of the Prometheus line `series` in `text`.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (name, value) = l.rsplit_once(' ')?;
        (name == series).then(|| value.parse().ok()).flatten()
    })
}
