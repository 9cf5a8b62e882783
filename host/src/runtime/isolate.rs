//! Compiling an uploaded component in a child process under a memory and
//! CPU cap (issue 12, hole 1): the budget in [`super::validate`] bounds the
//! shape of what is compiled, and this bounds what compiling it may cost,
//! whatever the budget lets through. A compile that needs more is a named
//! error ([`RuntimeError::CompileLimit`]), not an OOM kill of the daemon.
//!
//! The child is the `hookbox` binary itself (hidden subcommand
//! `__compile`): it caps its own data segment (`RLIMIT_DATA`, which counts
//! heap and private mappings but not the address space wasmtime reserves
//! without touching) and CPU time (`RLIMIT_CPU`) first, before it reads a
//! byte; then reads the component from stdin, validates and compiles it on
//! an engine with the daemon's code settings, and writes the serialized
//! code to stdout. The parent kills it past the wall-clock limit and loads
//! the code it wrote (wasmtime checks that it fits the parent's engine).
//! Cost: one process start and engine build per compile (measured in
//! `README.md`), small next to the compile itself and paid only on deploy
//! or a cache miss — cached code is loaded without a child.

use std::io::{Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use wasmtime::component::Component;

use super::{RuntimeConfig, RuntimeError, chain, engine, validate};

/// The hidden subcommand the child runs.
pub const SUBCOMMAND: &str = "__compile";
/// Exit code of a child that refused the component (message on stderr).
const EXIT_INVALID: i32 = 2;
/// Exit code of a child whose compile ran out of memory in a way it could
/// report (an allocation wasmtime checks, such as mapping code).
const EXIT_MEMORY: i32 = 3;
/// Most of a child's stderr kept for the error message.
const STDERR_MAX: u64 = 16 << 10;
/// How often the parent checks the child while it compiles.
const POLL: Duration = Duration::from_millis(2);

/// Limits of one compile; see [`RuntimeConfig::compile`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompileLimits {
    /// The executable to run as the child (the `hookbox` binary); `None`
    /// compiles in this process, unbounded (library use and unit tests).
    pub isolate: Option<PathBuf>,
    /// Cap of the child's data segment (heap and private mappings), bytes.
    pub memory_bytes: u64,
    /// Wall-clock limit of one compile; the CPU-time limit is this times
    /// the cores (compilation is parallel), plus a second.
    pub timeout: Duration,
}

impl Default for CompileLimits {
    /// 1 GiB and 60 s: the largest components the budget lets through
    /// compile in well under 300 MiB and a few seconds (release build).
    fn default() -> Self {
        CompileLimits {
            isolate: None,
            memory_bytes: 1 << 30,
            timeout: Duration::from_secs(60),
        }
    }
}

impl CompileLimits {
    /// The named error of a compile past the memory cap.
    fn memory_error(&self) -> RuntimeError {
        RuntimeError::CompileLimit(format!(
            "compiling the component needed more memory than the limit of {} bytes \
             (`[runtime] compile_memory_bytes`)",
            self.memory_bytes
        ))
    }

    /// The named error of a compile past the time limit.
    fn time_error(&self) -> RuntimeError {
        RuntimeError::CompileLimit(format!(
            "compiling the component took longer than the limit of {} s \
             (`[runtime] compile_timeout`)",
            self.timeout.as_secs_f64()
        ))
    }
}

/// Compiles `wasm` in a child process running `exe`; the serialized code.
pub(super) fn compile_in_child(
    exe: &std::path::Path,
    cfg: &RuntimeConfig,
    wasm: &[u8],
) -> Result<Vec<u8>, RuntimeError> {
    let limits = &cfg.compile;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    let cpu_seconds = limits.timeout.as_secs().max(1).saturating_mul(cores) + 1;
    let mut child = Command::new(exe)
        .arg(SUBCOMMAND)
        .arg(cfg.max_wasm_stack.to_string())
        .arg(limits.memory_bytes.to_string())
        .arg(cpu_seconds.to_string())
        .arg(cfg.max_component_bytes.to_string())
        // The binary's allocator, mimalloc, reserves 1 GiB of address
        // space for its arena up front; the child's `RLIMIT_DATA` counts
        // it, and the compiler could not even start its threads. With no
        // reservation it maps what it uses.
        .env("MIMALLOC_ARENA_RESERVE", "0")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| RuntimeError::Compiler(format!("cannot start {}: {e}", exe.display())))?;
    let (Some(mut stdin), Some(stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Err(RuntimeError::Compiler(
            "the child's pipes are missing".into(),
        ));
    };
    let started = Instant::now();
    std::thread::scope(|s| {
        // Writing, reading and waiting at once: a child that stops reading
        // (or fills its stdout) cannot block the others.
        s.spawn(move || {
            // A child that died early closes its stdin: its status says why.
            let _ = stdin.write_all(wasm);
        });
        // The child writes at most what its data cap lets it hold.
        let out = s.spawn(move || {
            let mut buf = Vec::new();
            let _ = stdout.take(limits.memory_bytes).read_to_end(&mut buf);
            buf
        });
        let err = s.spawn(move || {
            let mut buf = Vec::new();
            let _ = stderr.take(STDERR_MAX).read_to_end(&mut buf);
            String::from_utf8_lossy(&buf).trim().to_string()
        });
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Ok(status),
                Ok(None) if started.elapsed() > limits.timeout => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break Err(limits.time_error());
                }
                Ok(None) => std::thread::sleep(POLL),
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break Err(RuntimeError::Compiler(format!(
                        "waiting for the child: {e}"
                    )));
                }
            }
        };
        let out = out.join().unwrap_or_default();
        let err = err.join().unwrap_or_default();
        let status = status?;
        match (status.code(), status.signal()) {
            (Some(0), _) => Ok(out),
            (Some(EXIT_INVALID), _) => Err(RuntimeError::Invalid(err)),
            (Some(EXIT_MEMORY), _) => Err(limits.memory_error()),
            // Rust aborts when an allocation fails; wasmtime's own mappings
            // report ENOMEM (the child exits with EXIT_MEMORY then).
            (None, Some(libc_sig::SIGABRT)) if err.contains("memory allocation") => {
                Err(limits.memory_error())
            }
            (None, Some(libc_sig::SIGXCPU | libc_sig::SIGKILL)) => Err(limits.time_error()),
            _ => Err(RuntimeError::Compiler(format!(
                "the compiler process ended with {status}: {err}"
            ))),
        }
    })
}

/// Signal numbers (Linux, every architecture Hookbox builds for).
mod libc_sig {
    pub const SIGABRT: i32 = 6;
    pub const SIGKILL: i32 = 9;
    pub const SIGXCPU: i32 = 24;
}

/// The child: `hookbox __compile <max_wasm_stack> <memory_bytes>
/// <cpu_seconds> <max_component_bytes>`, the component on stdin.
pub fn worker(args: &[String]) -> ExitCode {
    match worker_inner(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err((code, msg)) => {
            eprintln!("{msg}");
            ExitCode::from(code as u8)
        }
    }
}

fn worker_inner(args: &[String]) -> Result<(), (i32, String)> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let usage = || {
        (
            1,
            format!(
                "usage: hookbox {SUBCOMMAND} <max_wasm_stack> <memory_bytes> <cpu_seconds> <max_component_bytes>"
            ),
        )
    };
    let [stack, memory, cpu, max_bytes] = args else {
        return Err(usage());
    };
    let num = |s: &String| s.parse::<u64>().map_err(|_| usage());
    let (stack, memory, cpu, max_bytes) = (num(stack)?, num(memory)?, num(cpu)?, num(max_bytes)?);
    // Only ever lowered: a daemon started under a lower hard limit (`ulimit
    // -d`) keeps it, and a process may not raise its hard limit.
    let limit = |resource, soft: u64, hard: u64| {
        let max = getrlimit(resource).maximum.unwrap_or(u64::MAX);
        setrlimit(
            resource,
            Rlimit {
                current: Some(soft.min(max)),
                maximum: Some(hard.min(max)),
            },
        )
        .map_err(|e| (1, format!("cannot set the compile limits: {e}")))
    };
    limit(Resource::Data, memory, memory)?;
    limit(Resource::Cpu, cpu, cpu.saturating_add(1))?;

    let mut wasm = Vec::new();
    std::io::stdin()
        .take(max_bytes.saturating_add(1))
        .read_to_end(&mut wasm)
        .map_err(|e| (1, format!("reading the component: {e}")))?;
    let cfg = RuntimeConfig {
        max_wasm_stack: usize::try_from(stack).map_err(|_| usage())?,
        max_component_bytes: usize::try_from(max_bytes).map_err(|_| usage())?,
        ..RuntimeConfig::default()
    };
    let invalid = |e: RuntimeError| (EXIT_INVALID, invalid_text(e));
    validate::check_binary(&wasm, cfg.max_component_bytes).map_err(invalid)?;
    validate::check_compile_budget(&wasm).map_err(invalid)?;
    let engine = engine::compile_engine(&cfg).map_err(|e| (1, e.to_string()))?;
    let component = Component::from_binary(&engine, &wasm).map_err(|e| {
        let text = chain(&e);
        if is_out_of_memory(&text) {
            (EXIT_MEMORY, text)
        } else {
            (EXIT_INVALID, text)
        }
    })?;
    let code = component.serialize().map_err(|e| {
        let text = chain(&e);
        let code = if is_out_of_memory(&text) {
            EXIT_MEMORY
        } else {
            1
        };
        (code, text)
    })?;
    std::io::stdout()
        .lock()
        .write_all(&code)
        .map_err(|e| (1, format!("writing the compiled code: {e}")))
}

/// The text of an error the parent turns back into `Invalid`.
fn invalid_text(e: RuntimeError) -> String {
    match e {
        RuntimeError::Invalid(msg) => msg,
        other => other.to_string(),
    }
}

/// Whether a wasmtime error is an allocation refused by the cap (mapping
/// code or memory images fails with ENOMEM).
fn is_out_of_memory(text: &str) -> bool {
    text.contains("Cannot allocate memory") || text.contains("out of memory")
}
