//! Upload-time checks and the compiled-code cache.

use std::collections::BTreeSet;

use hookbox::manifest::Capability;
use hookbox::runtime::{Outcome, Runtime, RuntimeConfig, RuntimeError};
use hookbox_tests::{Delivery, guests, read, runtime, test_config};

fn compile_err(path: &str, caps: &BTreeSet<Capability>) -> RuntimeError {
    runtime()
        .compile(&read(path), caps)
        .expect_err("the component must be refused")
}

#[test]
fn a_core_module_is_refused_with_a_clear_message() {
    let err = compile_err(guests::TRAP_CORE, &Capability::all());
    assert!(matches!(err, RuntimeError::CoreModule), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("core WebAssembly module, not a component"),
        "{msg}"
    );
    assert!(msg.contains("wasm32-wasip2"), "{msg}");
}

#[test]
fn bytes_that_are_not_wasm_are_refused() {
    let err = runtime()
        .compile(b"#!/bin/sh\necho pwned\n", &Capability::all())
        .unwrap_err();
    assert!(matches!(err, RuntimeError::NotWasm), "{err:?}");
}

#[test]
fn the_size_cap_is_checked_both_ways() {
    let wasm = read(guests::GOOD);
    let rt = |max| {
        Runtime::new(RuntimeConfig {
            pooling: false,
            max_component_bytes: max,
            ..test_config()
        })
        .unwrap()
    };
    assert!(rt(wasm.len()).compile(&wasm, &Capability::all()).is_ok());
    let err = rt(wasm.len() - 1)
        .compile(&wasm, &Capability::all())
        .unwrap_err();
    assert!(
        matches!(err, RuntimeError::TooLarge { size, max } if size == wasm.len() && max == wasm.len() - 1),
        "{err:?}"
    );
}

#[test]
fn a_foreign_import_is_refused_naming_it() {
    let err = compile_err(guests::EVIL_IMPORT, &Capability::all());
    match &err {
        RuntimeError::ForbiddenImport { name, .. } => assert_eq!(name, "evil:net/socket@1.0.0"),
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("`evil:net/socket@1.0.0`"), "{err}");
}

#[test]
fn an_ungranted_import_is_accepted_listed_and_denied_when_called() {
    let only_log: BTreeSet<_> = [Capability::Log].into();
    // Capabilities by use: the good guest imports every Hookbox interface
    // and compiles under a grant of `log` alone; the rest are listed.
    let compiled = runtime()
        .compile(&read(guests::GOOD), &only_log)
        .expect("ungranted imports are not refused at upload");
    assert_eq!(
        compiled.denied_imports,
        [
            "hookbox:handler/kv@0.1.0",
            "hookbox:handler/config@0.1.0",
            "hookbox:handler/emit@0.1.0",
            "hookbox:handler/clock@0.1.0",
        ]
    );
    assert_eq!(
        runtime().denied_imports(&compiled.module, &Capability::all()),
        Vec::<String>::new()
    );
    // Just inside: with every capability the delivery succeeds.
    let report = Delivery::new(1).run(&compiled.module);
    assert_eq!(report.outcome, Outcome::Ok, "{:?}", report.error);
    // Just past: the guest logs (granted), then calls `kv.increment`.
    let mut delivery = Delivery::new(1);
    delivery.capabilities = only_log;
    let report = delivery.run(&compiled.module);
    assert_eq!(
        report.outcome,
        Outcome::CapabilityDenied,
        "{:?}",
        report.error
    );
    assert!(!report.retryable, "a missing grant does not heal on retry");
    let err = report.error.unwrap();
    assert!(
        err.contains("`hookbox:handler/kv@0.1.0#increment` is denied")
            && err.contains("capability `kv` is not granted"),
        "{err}"
    );
    assert_eq!(
        report.logs.len(),
        1,
        "the granted log call ran: {:?}",
        report.logs
    );
    assert!(report.emitted.is_empty());
}

#[test]
fn a_component_for_another_contract_version_is_refused() {
    let err = compile_err(guests::FUTURE_VERSION, &Capability::all());
    match &err {
        RuntimeError::ForbiddenImport { name, reason } => {
            assert_eq!(name, "hookbox:handler/log@0.2.0");
            assert!(reason.contains("0.1.x"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn handle_must_be_exported_with_the_contract_type() {
    let err = compile_err(guests::WRONG_EXPORT, &Capability::all());
    assert!(matches!(err, RuntimeError::Export(_)), "{err:?}");
    assert!(err.to_string().contains("handle"), "{err}");

    let err = compile_err(guests::NO_HANDLE, &Capability::all());
    assert!(matches!(err, RuntimeError::Export(_)), "{err:?}");
    assert!(err.to_string().contains("exports: run"), "{err}");
}

#[test]
fn wasi_imports_need_no_capability() {
    let compiled = runtime()
        .compile(&read(guests::WASI_DENIED), &BTreeSet::new())
        .expect("WASI 0.2 is always linked");
    assert!(
        compiled.denied_imports.is_empty(),
        "{:?}",
        compiled.denied_imports
    );
    assert!(
        compiled
            .imports
            .iter()
            .any(|i| i == "wasi:filesystem/preopens@0.2.0"),
        "{:?}",
        compiled.imports
    );
}

#[test]
fn imports_are_reported() {
    let compiled = runtime()
        .compile(&read(guests::GOOD), &Capability::all())
        .unwrap();
    for iface in ["log", "kv", "config", "emit", "clock"] {
        let name = format!("hookbox:handler/{iface}@0.1.0");
        assert!(
            compiled.imports.contains(&name),
            "{name} in {:?}",
            compiled.imports
        );
    }
    assert_eq!(compiled.module.imports(), compiled.imports.as_slice());
}

#[test]
fn compiled_code_round_trips_through_the_cache() {
    let compiled = runtime()
        .compile(&read(guests::GOOD), &Capability::all())
        .unwrap();
    let loaded = runtime().load_precompiled(&compiled.serialized).unwrap();
    assert_eq!(loaded.imports(), compiled.imports.as_slice());
    let d = Delivery::new(1);
    let fresh = d.run(&compiled.module);
    let cached = d.run(&loaded);
    assert_eq!(fresh.outcome, Outcome::Ok);
    assert_eq!(cached.outcome, Outcome::Ok);
    assert_eq!(fresh.logs, cached.logs);
    assert_eq!(fresh.fuel_used, cached.fuel_used);
    assert_eq!(cached.emitted.len(), 1);
}

#[test]
fn fingerprints_are_stable_and_code_loads_across_runtimes() {
    let other = Runtime::new(test_config()).unwrap();
    let fp = runtime().fingerprint();
    assert_eq!(fp, other.fingerprint());
    assert_eq!(fp, runtime().fingerprint());
    assert_eq!(fp.len(), 64);
    assert!(fp.bytes().all(|b| b.is_ascii_hexdigit()), "{fp}");
    let compiled = runtime()
        .compile(&read(guests::SPIN), &Capability::all())
        .unwrap();
    let loaded = other.load_precompiled(&compiled.serialized).unwrap();
    assert_eq!(
        Delivery::new(10).run_on(&other, &loaded).outcome,
        Outcome::Ok
    );
}

#[test]
fn garbage_is_not_loaded_as_compiled_code() {
    let err = runtime()
        .load_precompiled(b"not compiled code")
        .unwrap_err();
    assert!(matches!(err, RuntimeError::Precompiled(_)), "{err:?}");
    // A component binary is not compiled code either.
    let err = runtime().load_precompiled(&read(guests::GOOD)).unwrap_err();
    assert!(matches!(err, RuntimeError::Precompiled(_)), "{err:?}");
}
