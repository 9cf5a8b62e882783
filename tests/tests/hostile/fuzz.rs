//! The fuzz targets' checks (`tests/fuzz/src/checks.rs`) on stable Rust,
//! over every input kept in the tree: `tests/fuzz/seeds/<target>/` (the
//! starting corpus) and `tests/fuzz/regressions/<target>/` (inputs that
//! once crashed a target: save a crasher there and it is tested forever).

#[path = "../../fuzz/src/checks.rs"]
mod checks;

use std::path::Path;

/// Runs `check` on every kept input of `target`; returns how many.
fn replay(target: &str, check: fn(&[u8])) -> usize {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut n = 0;
    for kind in ["seeds", "regressions"] {
        let dir = root.join(kind).join(target);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut files: Vec<_> = entries
            .map(|e| e.expect("a directory entry").path())
            .collect();
        files.sort();
        for file in files.iter().filter(|f| f.is_file()) {
            let data = std::fs::read(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            let replayed = std::panic::catch_unwind(|| check(&data));
            assert!(replayed.is_ok(), "{} fails its check", file.display());
            n += 1;
        }
    }
    n
}

#[test]
fn kept_event_inputs_pass() {
    assert!(replay("event", checks::event) > 0, "no event seeds");
}

#[test]
fn kept_manifest_inputs_pass() {
    assert!(
        replay("manifest", checks::manifest) > 0,
        "no manifest seeds"
    );
}

#[test]
fn kept_subscription_inputs_pass() {
    assert!(
        replay("subscription", checks::subscription) > 0,
        "no subscription seeds"
    );
}

#[test]
fn kept_config_inputs_pass() {
    assert!(replay("config", checks::config) > 0, "no config seeds");
}
