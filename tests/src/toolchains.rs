//! The Python and JavaScript SDKs' example handler
//! (`guest-sdk/{python,js}/examples/keyword-responder`) built with its own
//! toolchain (componentize-py; esbuild + componentize-js), for the runtime
//! tests and the `languages` bench.
//!
//! The toolchains come from PyPI and npm: `tests/other-toolchains/install.sh`
//! puts them under `target/other-toolchains/` (`tests/run-all.sh` runs it).
//! Without them, building fails, saying how to install them.

use std::path::{Path, PathBuf};
use std::process::Command;

/// How to get the toolchains.
pub const INSTALL_HINT: &str = "install the Python and JavaScript toolchains with \
    `tests/other-toolchains/install.sh` (needs python3 with venv, node >= 20 and npm; \
    tests/run-all.sh runs it)";

/// A toolchain of the SDKs.
#[derive(Clone, Copy, Debug)]
pub enum Lang {
    /// componentize-py and `guest-sdk/python`.
    Python,
    /// esbuild + componentize-js and `guest-sdk/js`.
    Js,
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

fn toolchains() -> PathBuf {
    root().join("target/other-toolchains")
}

/// The example handler's directory.
pub fn example(lang: Lang) -> PathBuf {
    let sdk = match lang {
        Lang::Python => "python",
        Lang::Js => "js",
    };
    root()
        .join("guest-sdk")
        .join(sdk)
        .join("examples/keyword-responder")
}

fn run(cmd: &mut Command, what: &str) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot start {cmd:?}: {e}; {INSTALL_HINT}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Builds the example with its toolchain; returns the component's bytes.
pub fn build(lang: Lang) -> Vec<u8> {
    let out_dir = toolchains().join("out");
    std::fs::create_dir_all(&out_dir).expect("creating target/other-toolchains/out");
    let src = example(lang);
    let wit = root().join("wit");
    let wasm = match lang {
        Lang::Python => {
            let componentize = toolchains().join("venv/bin/componentize-py");
            assert!(
                componentize.is_file(),
                "componentize-py is not at {}: {INSTALL_HINT}",
                componentize.display()
            );
            // From a copy: componentize-py writes __pycache__ next to app.py.
            let tmp = tempfile::tempdir().expect("a temporary directory");
            std::fs::copy(src.join("app.py"), tmp.path().join("app.py")).expect("copying app.py");
            let wasm = out_dir.join("py-keyword-responder.wasm");
            run(
                Command::new(&componentize)
                    .current_dir(tmp.path())
                    // componentize-py finds the SDK through the active venv.
                    .env("VIRTUAL_ENV", toolchains().join("venv"))
                    .args(["-d"])
                    .arg(&wit)
                    .args(["-w", "handler", "componentize", "app", "-o"])
                    .arg(&wasm),
                "componentize-py",
            );
            wasm
        }
        Lang::Js => {
            let js = toolchains().join("js/node_modules/@bytecodealliance/componentize-js");
            assert!(
                js.is_dir(),
                "componentize-js is not at {}: {INSTALL_HINT}",
                js.display()
            );
            let wasm = out_dir.join("js-keyword-responder.wasm");
            run(
                Command::new("node")
                    .arg(root().join("guest-sdk/js/build.mjs"))
                    .arg(src.join("handler.js"))
                    .arg("-o")
                    .arg(&wasm)
                    .arg("--wit")
                    .arg(&wit)
                    .env("HOOKBOX_JS_TOOLCHAIN", toolchains().join("js")),
                "hookbox-build-js",
            );
            wasm
        }
    };
    std::fs::read(&wasm).unwrap_or_else(|e| panic!("reading {}: {e}", wasm.display()))
}
