//! What the benchmark targets share: quick mode, the bench payloads (a real
//! Zulip message event padded to an exact size), timing statistics, the
//! machine description, resident-memory readings, and the result tables —
//! printed, saved under `target/hookbox-bench/`, and (on full runs) written
//! into their section of `BENCHMARKS.md`.
//!
//! Each bench target includes this file as a module and uses part of it.
#![allow(dead_code)]

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use hookbox::event::{Event, EventInput};
use serde_json::Value;

/// The `hookbox` binary allocates through mimalloc (`host/src/main.rs`), so
/// the benches that run the library in-process do too: a figure of theirs
/// is what the daemon's code costs on the allocator it runs on, with
/// transparent huge pages off like the daemon ([`Report::new`] and the
/// one-cell dispatch run call [`like_the_daemon`]).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Sets this process's memory up as the `hookbox` binary's `main` does.
pub fn like_the_daemon() {
    hookbox::daemon::disable_transparent_huge_pages();
}

/// `HOOKBOX_BENCH_QUICK=1`: a smoke run with few iterations; figures are
/// not written to `BENCHMARKS.md`.
pub fn quick() -> bool {
    std::env::var("HOOKBOX_BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// The three payload sizes of the issue: 1 KiB, 16 KiB, 256 KiB.
pub const PAYLOAD_SIZES: [usize; 3] = [1 << 10, 16 << 10, 256 << 10];

/// `1 KiB`, `16 KiB`, `2.5 MiB` …
pub fn size_label(bytes: usize) -> String {
    if bytes >= 1 << 20 && bytes.is_multiple_of(1 << 20) {
        format!("{} MiB", bytes >> 20)
    } else if bytes >= 1 << 20 {
        format!("{:.1} MiB", bytes as f64 / f64::from(1 << 20))
    } else if bytes >= 1 << 10 {
        format!("{} KiB", bytes >> 10)
    } else {
        format!("{bytes} B")
    }
}

/// The Zulip `message` event of the fixtures, with its content replaced by
/// words so that the whole payload is exactly `size` bytes of JSON.
pub fn zulip_message(size: usize) -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/zulip/zulip-events.json"
    );
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let events: Vec<Value> = serde_json::from_str(&text).expect("the fixtures are JSON");
    let mut message = events
        .into_iter()
        .find(|e| e["type"] == "message")
        .expect("the fixtures hold a message event");
    message["message"]["content"] = Value::String("<p></p>".into());
    let base = message.to_string().len();
    let fill = size
        .checked_sub(base)
        .unwrap_or_else(|| panic!("a payload of {size} bytes is smaller than the event"));
    message["message"]["content"] = Value::String(format!("<p>{}</p>", words(fill)));
    assert_eq!(message.to_string().len(), size, "padded payload size");
    message
}

/// Exactly `len` bytes of space-separated words (no JSON escaping needed).
fn words(len: usize) -> String {
    const WORDS: [&str; 12] = [
        "the", "quick", "brown", "fox", "jumps", "over", "a", "lazy", "dog", "while", "Zulip",
        "streams",
    ];
    let mut out = String::with_capacity(len);
    for w in WORDS.iter().cycle() {
        if out.len() + w.len() + 1 > len {
            break;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(w);
    }
    while out.len() < len {
        out.push('s');
    }
    out
}

/// An accepted `message` event for tenant `acme` carrying `payload`.
pub fn message_event(payload: &Value) -> Event {
    let mut input = EventInput::new("message", payload);
    input.tenant = "acme".into();
    input
        .accept("zulip:acme", 0, 1 << 20)
        .expect("a valid bench event")
}

/// Median, quartiles and range of a set of samples.
#[derive(Clone, Copy, Debug)]
pub struct Stats {
    pub median: f64,
    pub p25: f64,
    pub p75: f64,
    pub min: f64,
    pub max: f64,
}

impl Stats {
    pub fn of(samples: &[f64]) -> Stats {
        assert!(!samples.is_empty(), "no samples");
        let mut s = samples.to_vec();
        s.sort_by(f64::total_cmp);
        let at = |q: f64| s[((s.len() - 1) as f64 * q).round() as usize];
        Stats {
            median: at(0.5),
            p25: at(0.25),
            p75: at(0.75),
            min: s[0],
            max: s[s.len() - 1],
        }
    }

    /// Interquartile spread relative to the median, in percent.
    pub fn spread_pct(&self) -> f64 {
        if self.median == 0.0 {
            0.0
        } else {
            (self.p75 - self.p25) / self.median * 100.0
        }
    }
}

/// A percentile (0–100) of sorted values.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    assert!(!sorted.is_empty(), "no values");
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// CPU time of the calling thread (user + system), in nanoseconds.
#[allow(unsafe_code)]
pub fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `clock_gettime` writes one `timespec` through a valid pointer.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// CPU time (user + system) of this process's threads so far, in seconds,
/// summed by thread name with any trailing number dropped (`hookbox-worker-1`
/// and `hookbox-worker-2` count as `hookbox-worker`; Linux cuts names at 15
/// bytes). Read from `/proc/self/task/*/stat`; threads that ended are gone.
pub fn cpu_by_thread() -> std::collections::BTreeMap<String, f64> {
    let mut by_name = std::collections::BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return by_name;
    };
    for task in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        let Some((name, secs)) = stat_cpu(&stat) else {
            continue;
        };
        let name = name.trim_end_matches(|c: char| c.is_ascii_digit() || c == '-');
        *by_name.entry(name.to_string()).or_insert(0.0) += secs;
    }
    by_name
}

/// CPU time (user + system) process `pid` used so far, in seconds (`None`
/// where `/proc/<pid>/stat` cannot be read).
pub fn process_cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat_cpu(&stat).map(|(_, secs)| secs)
}

/// The name and the CPU time (user + system, in seconds) of one
/// `/proc/…/stat` line; `None` if it is not one.
#[allow(unsafe_code)]
fn stat_cpu(stat: &str) -> Option<(&str, f64)> {
    // SAFETY: `sysconf` takes a constant and reads no memory of ours.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    // `pid (name) state …`: the name may hold spaces and parentheses.
    let (open, close) = (stat.find('(')?, stat.rfind(')')?);
    let fields: Vec<&str> = stat.get(close + 1..)?.split_whitespace().collect();
    // After the name: state is field 0, utime 11, stime 12.
    let used = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok());
    Some((stat.get(open + 1..close)?, (used(11)? + used(12)?) / ticks))
}

/// Nanoseconds per call of a timed loop: wall clock, and CPU time of the
/// calling thread (which leaves out the time other processes held the core,
/// so it holds up better on a shared machine).
#[derive(Clone, Copy, Debug)]
pub struct PerCall {
    pub wall: f64,
    pub cpu: f64,
}

/// Runs `f` `iters` times; nanoseconds per call.
pub fn ns_per_call(iters: u32, mut f: impl FnMut()) -> PerCall {
    let (t, c) = (Instant::now(), thread_cpu_ns());
    for _ in 0..iters {
        f();
    }
    let cpu = thread_cpu_ns() - c;
    PerCall {
        wall: t.elapsed().as_nanos() as f64 / f64::from(iters),
        cpu: cpu as f64 / f64::from(iters),
    }
}

/// `1.23 µs`, `456 ns`, `7.8 ms`.
pub fn fmt_ns(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e4 {
        format!("{:.1} µs", ns / 1e3)
    } else if ns >= 1e3 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{ns:.0} ns")
    }
}

/// `12.3k/s`, `1.05M/s`.
pub fn fmt_rate(per_s: f64) -> String {
    if per_s >= 1e6 {
        format!("{:.2}M/s", per_s / 1e6)
    } else if per_s >= 1e3 {
        format!("{:.1}k/s", per_s / 1e3)
    } else {
        format!("{per_s:.0}/s")
    }
}

/// `12.3 MiB`.
pub fn fmt_bytes(bytes: f64) -> String {
    if bytes.abs() >= f64::from(1 << 20) {
        format!("{:.1} MiB", bytes / f64::from(1 << 20))
    } else {
        format!("{:.0} KiB", bytes / 1024.0)
    }
}

/// `VmRSS` (or another `/proc/<pid>/status` field) in bytes.
pub fn proc_status_bytes(pid: &str, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status
        .lines()
        .find(|l| l.starts_with(field) && l[field.len()..].starts_with(':'))?;
    let kib: u64 = line[field.len() + 1..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// This process's resident memory in bytes (0 where `/proc` is missing).
pub fn rss() -> u64 {
    proc_status_bytes("self", "VmRSS").unwrap_or(0)
}

/// The 1-minute load average, as `/proc/loadavg` says.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// CPU model, cores, kernel and load — the header of every result section.
pub fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into());
    format!(
        "{model}, {cores} cores, Linux {kernel}, load average {} at the start",
        load_average()
    )
}

/// A markdown table built row by row.
#[derive(Debug)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&str]) -> Table {
        Table {
            header: header.iter().map(|h| (*h).to_string()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        assert_eq!(cells.len(), self.header.len(), "table row width");
        self.rows.push(cells);
    }

    pub fn markdown(&self) -> String {
        let widths: Vec<usize> = (0..self.header.len())
            .map(|i| {
                self.rows
                    .iter()
                    .map(|r| r[i].chars().count())
                    .chain([self.header[i].chars().count(), 3])
                    .max()
                    .unwrap_or(3)
            })
            .collect();
        let line = |cells: &[String]| {
            let padded: Vec<String> = cells
                .iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c}{}", " ".repeat(w - c.chars().count())))
                .collect();
            format!("| {} |\n", padded.join(" | "))
        };
        let mut out = line(&self.header);
        let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
        out.push_str(&line(&rule));
        for r in &self.rows {
            out.push_str(&line(r));
        }
        out
    }
}

/// The results of one bench target: markdown paragraphs and tables.
#[derive(Debug)]
pub struct Report {
    name: &'static str,
    body: String,
    started: Instant,
}

impl Report {
    pub fn new(name: &'static str) -> Report {
        like_the_daemon();
        let mut body = String::new();
        let mode = if quick() { " (quick mode)" } else { "" };
        let _ = writeln!(body, "Machine: {}{mode}.\n", machine());
        println!("hookbox bench `{name}`{mode}\n{}", body.trim_end());
        Report {
            name,
            body,
            started: Instant::now(),
        }
    }

    /// Adds a titled table (printed at once).
    pub fn table(&mut self, title: &str, table: &Table, note: &str) {
        let mut s = format!("#### {title}\n\n{}", table.markdown());
        if !note.is_empty() {
            let _ = write!(s, "\n{note}\n");
        }
        println!("\n{s}");
        let _ = writeln!(self.body, "{s}");
    }

    /// Adds a line of text (printed at once).
    pub fn note(&mut self, text: &str) {
        println!("{text}");
        let _ = writeln!(self.body, "{text}\n");
    }

    /// Saves the section to `target/hookbox-bench/<name>.md` and, unless in
    /// quick mode, replaces the text between `<!-- bench:<name> -->` and
    /// `<!-- /bench:<name> -->` in `BENCHMARKS.md`.
    pub fn publish(mut self) {
        let took = self.started.elapsed();
        let _ = writeln!(
            self.body,
            "Load average at the end: {}; this section took {:.0} s.",
            load_average(),
            took.as_secs_f64()
        );
        let root = workspace_root();
        let out_dir = root.join("target").join("hookbox-bench");
        let saved = std::fs::create_dir_all(&out_dir)
            .and_then(|()| std::fs::write(out_dir.join(format!("{}.md", self.name)), &self.body));
        if let Err(e) = saved {
            eprintln!("cannot save the results under {}: {e}", out_dir.display());
        }
        if quick() {
            println!("\nquick mode: BENCHMARKS.md left unchanged");
            return;
        }
        let path = root.join("BENCHMARKS.md");
        match replace_section(&path, self.name, &self.body) {
            Ok(true) => println!("\nwrote the `{}` section of {}", self.name, path.display()),
            Ok(false) => println!(
                "\n{} has no `<!-- bench:{} -->` section; results saved in {}",
                path.display(),
                self.name,
                out_dir.display()
            ),
            Err(e) => eprintln!("cannot update {}: {e}", path.display()),
        }
        println!("took {:.1} s", took.as_secs_f64());
    }
}

/// The workspace root (the parent of this crate).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate lives in the workspace")
        .to_path_buf()
}

fn replace_section(path: &Path, name: &str, body: &str) -> std::io::Result<bool> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    let open = format!("<!-- bench:{name} -->");
    let close = format!("<!-- /bench:{name} -->");
    let (Some(a), Some(b)) = (text.find(&open), text.find(&close)) else {
        return Ok(false);
    };
    if b < a {
        return Ok(false);
    }
    let updated = format!("{}{open}\n{}\n{}", &text[..a], body.trim_end(), &text[b..]);
    std::fs::write(path, updated)?;
    Ok(true)
}

/// Bytes of the files under `dir`, recursively.
pub fn dir_bytes(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_bytes(&e.path()),
            _ => e.metadata().map_or(0, |m| m.len()),
        })
        .sum()
}
