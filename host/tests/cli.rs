//! The `hookbox` binary as a user meets it, without a daemon: help and
//! version, usage errors (exit 2), `run` on a missing file, and `new`
//! scaffolding a handler crate.
//!
//! Being an integration test of the `hookbox` package, this file also makes
//! `cargo test` build `target/debug/hookbox`, the binary the end-to-end
//! daemon tests in `tests/tests/daemon.rs` start.

use std::path::Path;
use std::process::{Command, Output};

/// The binary under test, built by cargo for this test.
const HOOKBOX: &str = env!("CARGO_BIN_EXE_hookbox");

/// Every subcommand the top-level help must list.
const SUBCOMMANDS: &[&str] = &[
    "serve", "run", "new", "handlers", "emit", "logs", "stats", "tokens", "dlq",
];

/// Runs `hookbox` with `args`, isolated from the caller's `HOOKBOX_*` settings.
fn hookbox(args: &[&str]) -> Output {
    let mut cmd = Command::new(HOOKBOX);
    cmd.args(args);
    for var in [
        "HOOKBOX_URL",
        "HOOKBOX_TOKEN",
        "HOOKBOX_DATA",
        "HOOKBOX_LISTEN",
        "HOOKBOX_LOG",
        "HOOKBOX_ADMIN_TOKEN",
    ] {
        cmd.env_remove(var);
    }
    cmd.output()
        .unwrap_or_else(|e| panic!("running {HOOKBOX}: {e}"))
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn help_lists_every_subcommand() {
    let o = hookbox(&["--help"]);
    assert!(o.status.success(), "{o:?}");
    let text = stdout(&o);
    let commands = text
        .split("Commands:")
        .nth(1)
        .unwrap_or_else(|| panic!("no `Commands:` section in:\n{text}"));
    for sub in SUBCOMMANDS {
        assert!(
            commands.lines().any(|l| l.trim_start().starts_with(sub)),
            "`{sub}` missing from --help:\n{text}"
        );
    }
    for flag in ["--url", "--token", "--data", "--json"] {
        assert!(text.contains(flag), "`{flag}` missing from --help:\n{text}");
    }
}

#[test]
fn every_subcommand_has_help() {
    for sub in SUBCOMMANDS {
        let o = hookbox(&[sub, "--help"]);
        assert!(o.status.success(), "hookbox {sub} --help: {o:?}");
        assert!(
            stdout(&o).contains("Usage: hookbox"),
            "{sub}: {}",
            stdout(&o)
        );
    }
}

#[test]
fn version_is_the_crate_version() {
    let o = hookbox(&["--version"]);
    assert!(o.status.success(), "{o:?}");
    assert_eq!(
        stdout(&o).trim(),
        format!("hookbox {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn usage_errors_exit_2_naming_the_problem() {
    let cases: &[(&[&str], &str)] = &[
        (&["--bogus"], "--bogus"),
        (&[], "Usage"),
        (&["frobnicate"], "frobnicate"),
        (&["serve", "--listen", "not-an-address"], "--listen"),
        (&["emit"], "--type"),
    ];
    for (args, needle) in cases {
        let o = hookbox(args);
        assert_eq!(o.status.code(), Some(2), "hookbox {args:?}: {o:?}");
        let err = stderr(&o);
        assert!(err.contains(needle), "hookbox {args:?}: {err}");
    }
}

#[test]
fn run_on_a_missing_component_fails_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.wasm");
    let missing = missing.to_str().unwrap();
    let o = hookbox(&["run", missing, "--type", "message"]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    let err = stderr(&o);
    assert!(
        err.starts_with("error:") && err.contains(missing),
        "the message should name the file: {err}"
    );
    assert!(stdout(&o).is_empty(), "{}", stdout(&o));
}

#[test]
fn run_on_a_file_that_is_not_wasm_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("handler.wasm");
    std::fs::write(&path, b"not a component").unwrap();
    let o = hookbox(&["run", path.to_str().unwrap(), "--type", "message"]);
    assert_ne!(o.status.code(), Some(0), "{o:?}");
    let err = stderr(&o);
    assert!(err.starts_with("error:"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn new_scaffolds_a_handler_crate() {
    let dir = tempfile::tempdir().unwrap();
    let parent = dir.path().to_str().unwrap();
    let o = hookbox(&["new", "my-handler", "--path", parent]);
    assert!(o.status.success(), "{o:?}");
    let root = dir.path().join("my-handler");
    assert!(
        stdout(&o).contains(root.to_str().unwrap()),
        "{}",
        stdout(&o)
    );
    for file in ["Cargo.toml", "manifest.json", "src/lib.rs", "README.md"] {
        assert!(root.join(file).is_file(), "{file} was not created");
    }

    let manifest: serde_json::Value =
        serde_json::from_str(&read(&root.join("manifest.json"))).unwrap();
    assert_eq!(manifest["name"], "my-handler");
    hookbox::manifest::Manifest::from_json(&manifest.to_string())
        .expect("the scaffolded manifest is one the daemon accepts");

    let cargo = read(&root.join("Cargo.toml"));
    assert!(cargo.contains("name = \"my-handler\""), "{cargo}");
    let sdk = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../guest-sdk")
        .canonicalize()
        .unwrap();
    assert!(
        cargo.contains(&format!("hookbox-sdk = {{ path = \"{}\" }}", sdk.display())),
        "the crate should depend on this checkout's SDK:\n{cargo}"
    );
    assert!(read(&root.join("src/lib.rs")).contains("export_handler!"));

    // A second time: the folder exists, nothing is overwritten.
    std::fs::write(root.join("src/lib.rs"), "// mine").unwrap();
    let o = hookbox(&["new", "my-handler", "--path", parent]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(stderr(&o).contains("already exists"), "{}", stderr(&o));
    assert_eq!(read(&root.join("src/lib.rs")), "// mine");
}

#[test]
fn new_refuses_an_invalid_name() {
    let dir = tempfile::tempdir().unwrap();
    let o = hookbox(&["new", "Bad Name", "--path", dir.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(stderr(&o).contains("\"Bad Name\""), "{}", stderr(&o));
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}
