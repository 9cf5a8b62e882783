//! The OpenAPI document is complete enough to build valid requests from: a
//! Python client generated from the running daemon's `GET /v1/openapi.json`
//! by a standard generator (`openapi-python-client`, from PyPI) deploys a
//! handler from typed models (manifest, subscription, filters, limits,
//! delivery, breaker) and publishes an event with them, waiting for its
//! outcome (`tests/scripts/generated_client.py`).
//!
//! The generator is installed by `tests/scripts/openapi-client-venv.sh`
//! (`tests/run-all.sh` runs it); when it is missing the test fails, naming that script.

use std::path::{Path, PathBuf};
use std::process::Command;

use hookbox_tests::daemon::{Daemon, hookbox_bin};
use hookbox_tests::guests;

/// The venv `openapi-client-venv.sh` installs the generator into.
fn venv() -> PathBuf {
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(t) => PathBuf::from(t),
        // <target>/<profile>/hookbox
        None => hookbox_bin()
            .parent()
            .and_then(Path::parent)
            .expect("the hookbox binary lives in <target>/<profile>")
            .to_path_buf(),
    };
    target.join("openapi-client-venv")
}

fn scripts() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts")
}

/// Runs `cmd`, panicking with its output unless it succeeds.
fn run(what: &str, cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: could not start {cmd:?}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what} failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn a_client_generated_from_the_document_deploys_and_publishes() {
    let venv = venv();
    let generator = venv.join("bin/openapi-python-client");
    assert!(
        generator.is_file(),
        "the OpenAPI client generator is not installed at {}: run \
         `tests/scripts/openapi-client-venv.sh` (`tests/run-all.sh` does), which installs \
         openapi-python-client from PyPI",
        generator.display()
    );
    let d = Daemon::start();
    let doc = d.get("/v1/openapi.json").expect(200);
    let work = d.scratch().join("openapi-client");
    std::fs::create_dir_all(&work).unwrap();
    let spec = work.join("openapi.json");
    std::fs::write(&spec, &doc.text).unwrap();
    let config = work.join("generator.yaml");
    std::fs::write(
        &config,
        "package_name_override: hookbox_client\nproject_name_override: hookbox-client\npost_hooks: []\n",
    )
    .unwrap();
    let package = work.join("hookbox_client");
    run(
        "generating the client",
        Command::new(&generator)
            .arg("generate")
            .arg("--path")
            .arg(&spec)
            .arg("--output-path")
            .arg(&package)
            .args(["--meta", "none", "--config"])
            .arg(&config)
            .arg("--fail-on-warning"),
    );
    let out = run(
        "driving the daemon through the generated client",
        Command::new(venv.join("bin/python"))
            .arg(scripts().join("generated_client.py"))
            .arg(d.url())
            .arg(d.admin())
            .arg(guests::GOOD)
            .env("PYTHONPATH", &work)
            .env("PYTHONDONTWRITEBYTECODE", "1"),
    );
    assert!(out.contains("deployed generated v1"), "{out}");
    assert!(out.contains("delivered ok"), "{out}");
    // What the client did is what the daemon holds.
    let r = d.get("/v1/handlers/generated").expect(200);
    assert_eq!(r.json["handler"]["name"], "generated", "{r}");
}
