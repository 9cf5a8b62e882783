//! Hostile uploads: bytes that are not a handler component, components for
//! another contract, imports that were not granted, compile bombs and
//! hostile handler names. Each is refused at deploy with a precise error
//! and stores nothing; the daemon keeps serving.

use hookbox::manifest::Capability;
use hookbox::runtime::RuntimeError;
use hookbox_tests::daemon::{Daemon, limited, peak_rss};
use hookbox_tests::{guests, read, runtime};
use serde_json::json;
use wasm_encoder::{
    CodeSection, Component, ComponentTypeSection, Function, FunctionSection, Module, ModuleSection,
    NestedComponentSection, PrimitiveValType, TypeSection,
};

use super::{await_outcome, deploy, manifest, publish};

/// The compile budget's caps (`host/src/runtime/validate.rs`).
const MAX_FUNCTIONS: u32 = 50_000;
const MAX_FUNCTION_BYTES: usize = 2 << 20;
/// 10 000 blocks nested inside each other pass the nesting budget
/// (50 million: the sum of the blocks' depths, 1 + 2 + … + 10 000).
const NESTING_PAST: usize = 10_000;

/// A component holding one core module of `functions` functions of type
/// `[] -> []`, each with `body` (instructions, without the final `end`).
/// Not a handler (no `handle` export): the point is what compiling costs.
fn bomb(functions: u32, body: &[u8]) -> Vec<u8> {
    let mut types = TypeSection::new();
    types.ty().function([], []);
    let mut decls = FunctionSection::new();
    let mut code = CodeSection::new();
    let mut f = Function::new([]);
    f.raw(body.iter().copied());
    f.raw([0x0b]);
    for _ in 0..functions {
        decls.function(0);
        code.function(&f);
    }
    let mut module = Module::new();
    module.section(&types).section(&decls).section(&code);
    let mut component = Component::new();
    component.section(&ModuleSection(&module));
    component.finish()
}

/// `depth` empty blocks nested inside each other.
fn nested(depth: usize) -> Vec<u8> {
    let mut body = [0x02, 0x40].repeat(depth);
    body.extend(std::iter::repeat_n(0x0b, depth));
    body
}

/// `n` times `i32.const 0; drop` (3 bytes each): straight-line code.
fn straight(n: usize) -> Vec<u8> {
    [0x41, 0x00, 0x1a].repeat(n)
}

/// A function body of straight-line code, with its locals byte and `end`,
/// of exactly `bytes` bytes (`bytes - 2` must be a multiple of 3).
fn body_of(bytes: usize) -> Vec<u8> {
    assert_eq!((bytes - 2) % 3, 0);
    straight((bytes - 2) / 3)
}

fn refused(wasm: &[u8]) -> String {
    match runtime().compile(wasm, &Capability::all()) {
        Err(e @ RuntimeError::Invalid(_)) => e.to_string(),
        Err(other) => panic!("refused for another reason: {other}"),
        Ok(_) => panic!("the bomb was compiled"),
    }
}

/// Compiles (the budget lets it through), then fails on the missing
/// `handle` export: proof that it was compiled, not refused.
fn compiled(wasm: &[u8]) {
    match runtime().compile(wasm, &Capability::all()) {
        Err(RuntimeError::Export(_)) => {}
        Err(other) => panic!("refused before compiling: {other}"),
        Ok(_) => panic!("a component without `handle` was accepted"),
    }
}

#[test]
fn too_many_functions_is_refused_before_compiling() {
    let msg = refused(&bomb(MAX_FUNCTIONS + 1, &[]));
    assert!(
        msg.contains("compile budget") && msg.contains("functions"),
        "{msg}"
    );
}

#[test]
fn the_most_functions_allowed_compile() {
    compiled(&bomb(MAX_FUNCTIONS, &[]));
}

#[test]
fn deep_nesting_is_refused_before_compiling() {
    // Unchecked, this one function compiles for minutes (quadratic in depth).
    let msg = refused(&bomb(1, &nested(NESTING_PAST)));
    assert!(
        msg.contains("compile budget") && msg.contains("nested"),
        "{msg}"
    );
    // The budget is over the whole component, not per function: two
    // functions of 7 100 nested blocks are 2 × 25.2 million.
    let msg = refused(&bomb(2, &nested(7_100)));
    assert!(msg.contains("nested"), "{msg}");
}

#[test]
fn the_deepest_nesting_allowed_compiles() {
    compiled(&bomb(1, &nested(NESTING_PAST - 1)));
}

/// The component-shape budget (`host/src/runtime/validate.rs`).
const MAX_NESTING_DEPTH: usize = 16;
const MAX_UNITS: usize = 1_000;
const MAX_ITEMS: u32 = 200_000;

/// Appends `n` as unsigned LEB128.
fn leb(out: &mut Vec<u8>, mut n: usize) {
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// `depth` empty components nested inside an empty component, written
/// outside in (wrapping inside out would copy quadratically).
fn nested_components(depth: usize) -> Vec<u8> {
    const HEADER: &[u8] = b"\0asm\x0d\x00\x01\x00";
    let leb_len = |n: usize| {
        let mut v = Vec::new();
        leb(&mut v, n);
        v.len()
    };
    // sizes[k]: the bytes of a component holding k levels.
    let mut sizes = vec![HEADER.len()];
    for k in 0..depth {
        sizes.push(HEADER.len() + 1 + leb_len(sizes[k]) + sizes[k]);
    }
    let mut out = Vec::with_capacity(sizes[depth]);
    for k in (0..depth).rev() {
        out.extend_from_slice(HEADER);
        out.push(0x04); // a nested component section
        leb(&mut out, sizes[k]);
    }
    out.extend_from_slice(HEADER);
    out
}

/// `n` empty components side by side in one component.
fn sibling_components(n: usize) -> Vec<u8> {
    let mut component = Component::new();
    for _ in 0..n {
        component.section(&NestedComponentSection(&Component::new()));
    }
    component.finish()
}

/// A component defining `n` component types (`list<u8>`).
fn many_types(n: u32) -> Vec<u8> {
    let mut types = ComponentTypeSection::new();
    for _ in 0..n {
        types.defined_type().list(PrimitiveValType::U8);
    }
    let mut component = Component::new();
    component.section(&types);
    component.finish()
}

#[test]
fn the_component_shape_is_bounded_before_validating() {
    // Nested empty components cost wasmparser's validator memory with
    // the square of the depth: 20 000 levels took 7.7 GB, 100 000 (a
    // 1.2 MB upload) the whole machine. Refused by counting first.
    let msg = refused(&nested_components(MAX_NESTING_DEPTH + 1));
    assert!(msg.contains("nested more than 16 deep"), "{msg}");
    compiled(&nested_components(MAX_NESTING_DEPTH));
    let msg = refused(&sibling_components(MAX_UNITS));
    assert!(
        msg.contains("more than 1000 modules and components"),
        "{msg}"
    );
    compiled(&sibling_components(MAX_UNITS - 1));
    let msg = refused(&many_types(MAX_ITEMS + 1));
    assert!(msg.contains("more than 200000 types"), "{msg}");
    compiled(&many_types(MAX_ITEMS));
}

#[test]
fn a_deploy_of_100_000_nested_components_is_refused_in_bounded_memory() {
    // The daemon runs with its data segment capped at 2 GiB (unbounded,
    // this upload grew it to 21–24 GB before the kernel killed it), and
    // its peak resident set must stay under 512 MiB.
    const PEAK_BOUND: u64 = 512 << 20;
    let d = Daemon::start_limited("", "-d 2097152");
    let bomb = nested_components(100_000);
    assert!(bomb.len() > 1_000_000, "{} bytes", bomb.len());
    for wasm in [bomb.clone(), nested_components(20_000)] {
        let r = deploy(&d, &manifest("nest", &["x"]), &wasm);
        let msg = r.error(422, "unprocessable");
        assert!(msg.contains("nested more than 16 deep"), "{msg}");
    }
    let peak = peak_rss(d.pid());
    assert!(peak < PEAK_BOUND, "the daemon peaked at {} MiB", peak >> 20);
    d.get("/healthz").expect(200);
    deploy(&d, &manifest("good", &["y"]), &read(guests::GOOD)).expect(201);

    // `hookbox run` on the same file, under the same cap.
    let file = d.scratch().join("nest.wasm");
    std::fs::write(&file, &bomb).unwrap();
    let out = limited(d.bin(), Some("-d 2097152"))
        .arg("run")
        .arg(&file)
        .args(["--type", "x"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("nested more than 16 deep"), "{stderr}");
}

#[test]
fn a_huge_function_body_is_refused_before_compiling() {
    let msg = refused(&bomb(1, &body_of(MAX_FUNCTION_BYTES + 3)));
    assert!(
        msg.contains("function body") && msg.contains("2097155"),
        "{msg}"
    );
    compiled(&bomb(1, &body_of(MAX_FUNCTION_BYTES)));
}

/// Issue 12, hole 1 (the memory cap): a 2 MiB straight-line function passes
/// every shape bound, and compiling it takes far more than the 64 MiB this
/// daemon allows a compile. The compile child hits its cap; the deploy is a
/// clean 422 naming the limit, nothing is stored, and the daemon (its
/// memory untouched) keeps deploying and serving. `hookbox run` compiles
/// under the same kind of cap.
#[test]
fn an_upload_past_the_compile_memory_cap_is_refused_and_the_daemon_stays_up() {
    // BASE_CONFIG ends in `[runtime]`: the key goes there.
    let d = Daemon::start_with("compile_memory_bytes = 67108864\n");
    let bomb = bomb(1, &body_of(MAX_FUNCTION_BYTES));
    let r = deploy(&d, &manifest("heavy", &["x"]), &bomb);
    let msg = r.error(422, "unprocessable");
    assert!(
        msg.contains("compile limit") && msg.contains("67108864"),
        "{msg}"
    );
    d.get("/v1/handlers/heavy").expect(404);
    d.get("/healthz").expect(200);
    // A real handler compiles under the same cap, in a child, and runs in
    // the daemon's (pooled) engine.
    deploy(&d, &manifest("good", &["y"]), &read(guests::GOOD)).expect(201);
    let id = publish(&d, "y", "");
    assert_eq!(await_outcome(&d, &id, "good"), "ok");
}

/// Every hostile upload through the deploy route: status, error code and a
/// phrase the message must hold.
#[test]
fn hostile_components_are_refused_at_deploy_naming_the_problem() {
    let d = Daemon::start_with("[api]\nmax_component_bytes = 4194304\n");
    let good = read(guests::GOOD);
    let m = manifest("victim", &["good"]);
    let truncated = &good[..good.len() / 2];
    let nesting = bomb(1, &nested(NESTING_PAST));
    let functions = bomb(MAX_FUNCTIONS + 1, &[]);
    let oversized = vec![0u8; 4 * 1024 * 1024 + 1];
    let shell = b"#!/bin/sh\nrm -rf /\n".to_vec();
    let cases: Vec<(&str, Vec<u8>, u16, &str, &str)> = vec![
        (
            "not wasm",
            shell,
            422,
            "unprocessable",
            "not a WebAssembly binary",
        ),
        (
            "empty",
            Vec::new(),
            422,
            "unprocessable",
            "not a WebAssembly binary",
        ),
        (
            "truncated",
            truncated.to_vec(),
            422,
            "unprocessable",
            "invalid component",
        ),
        (
            "core module",
            read(guests::TRAP_CORE),
            422,
            "unprocessable",
            "core WebAssembly module",
        ),
        (
            "another world",
            read(guests::WRONG_EXPORT),
            422,
            "unprocessable",
            "handle",
        ),
        (
            "no handle",
            read(guests::NO_HANDLE),
            422,
            "unprocessable",
            "exports: run",
        ),
        (
            "wrong WIT version",
            read(guests::FUTURE_VERSION),
            422,
            "unprocessable",
            "hookbox:handler/log@0.2.0",
        ),
        (
            "foreign import",
            read(guests::EVIL_IMPORT),
            422,
            "unprocessable",
            "`evil:net/socket@1.0.0`",
        ),
        (
            "10M-element table",
            read(guests::HUGE_TABLE),
            422,
            "unprocessable",
            "table",
        ),
        (
            "nesting bomb",
            nesting,
            422,
            "unprocessable",
            "compile budget",
        ),
        (
            "function bomb",
            functions,
            422,
            "unprocessable",
            "compile budget",
        ),
        (
            "over the size cap",
            oversized,
            413,
            "payload_too_large",
            "`component`",
        ),
    ];
    for (what, wasm, status, code, needle) in cases {
        let r = deploy(&d, &m, &wasm);
        let msg = r.error(status, code);
        assert!(msg.contains(needle), "{what}: {msg}");
    }
    // Nothing was stored, and the daemon still deploys and delivers.
    let list = d.get("/v1/handlers").expect(200);
    assert_eq!(list.json["handlers"], json!([]), "{list}");
    deploy(&d, &m, &good).expect(201);
    let id = publish(&d, "good", "acme");
    assert_eq!(await_outcome(&d, &id, "victim"), "ok");
}

#[test]
fn hostile_handler_names_are_refused() {
    let d = Daemon::start();
    let good = read(guests::GOOD);
    let long = "a".repeat(10_000);
    let names = [
        "",
        "../../etc/passwd",
        "a/b",
        "a\\b",
        "..",
        "a\0b",
        "a\nb",
        "a\u{1b}[31mred",
        "bell\u{7}",
        "Capital",
        "émile",
        "rtl\u{202e}gnp.exe",
        "e\u{301}",
        "😀",
        "-leading-dash",
        long.as_str(),
    ];
    for name in names {
        let r = deploy(&d, &manifest(name, &["good"]), &good);
        let msg = r.error(422, "unprocessable");
        assert!(msg.contains("`name`"), "{name:?}: {msg}");
    }
    assert_eq!(
        d.get("/v1/handlers").expect(200).json["handlers"],
        json!([])
    );
    // A name that would be a path segment is not one: no route escapes.
    for path in [
        "/v1/handlers/..%2F..%2Fetc%2Fpasswd",
        "/v1/handlers/%00",
        "/v1/handlers/a%2Fb/versions",
    ] {
        d.get(path).error(404, "not_found");
    }
}

#[test]
fn a_duplicate_name_is_a_new_version_not_a_second_handler() {
    let d = Daemon::start();
    let good = read(guests::GOOD);
    let m = manifest("twin", &["good"]);
    let first = deploy(&d, &m, &good).expect(201);
    assert_eq!(first.json["version"]["version"], 1, "{first}");
    let second = deploy(&d, &m, &read(guests::COUNTER)).expect(201);
    assert_eq!(second.json["version"]["version"], 2, "{second}");
    let list = d.get("/v1/handlers").expect(200);
    let handlers = list.json["handlers"].as_array().unwrap();
    assert_eq!(handlers.len(), 1, "{list}");
    assert_eq!(handlers[0]["active_version"], 2, "{list}");
    // The first version is kept, and rollback is a pointer move.
    let versions = d.get("/v1/handlers/twin/versions").expect(200);
    assert_eq!(versions.json["versions"].as_array().unwrap().len(), 2);
}

#[test]
fn an_ungranted_capability_is_denied_by_use_not_at_upload() {
    let d = Daemon::start();
    let good = read(guests::GOOD);
    let mut only_log = manifest("least", &["good"]);
    only_log["capabilities"] = json!(["log"]);
    let r = deploy(&d, &only_log, &good).expect(201);
    assert_eq!(
        r.json["denied_imports"],
        json!([
            "hookbox:handler/kv@0.1.0",
            "hookbox:handler/config@0.1.0",
            "hookbox:handler/emit@0.1.0",
            "hookbox:handler/clock@0.1.0"
        ]),
        "{r}"
    );
    let id = publish(&d, "good", "acme");
    assert_eq!(await_outcome(&d, &id, "least"), "capability_denied");
    let logs = d.get("/v1/logs?handler=least").expect(200);
    let error = logs.json["entries"][0]["error"]
        .as_str()
        .unwrap_or_default();
    assert!(
        error.contains("`hookbox:handler/kv@0.1.0#increment` is denied"),
        "{logs}"
    );
    // The same bytes under a full grant (compiled code reused): nothing denied.
    let r = deploy(&d, &manifest("full", &["good"]), &good).expect(201);
    assert_eq!(r.json["denied_imports"], json!([]), "{r}");
    assert_eq!(r.json["compiled_from_cache"], json!(true), "{r}");
    let id = publish(&d, "good", "acme");
    assert_eq!(await_outcome(&d, &id, "full"), "ok");
}
