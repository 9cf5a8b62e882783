//! A large handler component for the cold-start figures, built in memory:
//! a core module with a `data_bytes` data segment (pseudo-random, so it
//! neither compresses nor is skipped as zeros) whose `handle` reads one
//! word per 4 KiB page of it and returns `ok`, wrapped into a component
//! for `hookbox:handler/handler@0.1.0` the way `tests/build.rs` wraps the
//! `.wat` guests. Interpreter guests (componentize-py, QuickJS) are large
//! for the same reason: a big data image their first call touches.

use std::fmt::Write as _;

use wit_component::{ComponentEncoder, StringEncoding};
use wit_parser::Resolve;

/// Where the data image starts in linear memory (above the bump heap).
const DATA_AT: u32 = 1 << 20;
const WASM_PAGE: u32 = 64 << 10;

/// The component's bytes; about `data_bytes` plus a few hundred.
pub fn component(data_bytes: u32) -> Vec<u8> {
    let pages = (DATA_AT + data_bytes).div_ceil(WASM_PAGE) + 1;
    let mut wat = String::with_capacity(data_bytes as usize * 3 + 4096);
    let _ = write!(
        wat,
        r#"(module
  (memory (export "memory") {pages})
  (global $heap (mut i32) (i32.const 0x8000))
  ;; Bump allocator below the data image; a 1 KiB event fits many times.
  (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32)
    (local $ptr i32)
    (local.set $ptr (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get 3)))
    (local.get $ptr))
  ;; Touches every 4 KiB page of the image; `ok` is the zeroed word at 0x100.
  (func (export "handle") (param i32) (result i32)
    (local $at i32) (local $sum i32)
    (local.set $at (i32.const {DATA_AT}))
    (block $done
      (loop $pages
        (br_if $done (i32.ge_u (local.get $at) (i32.const {end})))
        (local.set $sum (i32.add (local.get $sum) (i32.load (local.get $at))))
        (local.set $at (i32.add (local.get $at) (i32.const 4096)))
        (br $pages)))
    (if (i32.eq (local.get $sum) (i32.const 0x7fffffff)) (then unreachable))
    (i32.const 0x100))
  (data (i32.const {DATA_AT}) ""#,
        end = DATA_AT + data_bytes,
    );
    let mut x: u32 = 0x9e37_79b9;
    for _ in 0..data_bytes {
        // xorshift32: cheap, deterministic, incompressible enough.
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        let _ = write!(wat, "\\{:02x}", x as u8);
    }
    wat.push_str("\"))\n");
    let mut module = wat::parse_str(&wat).expect("the big guest assembles");

    let mut resolve = Resolve::default();
    let wit = crate::support::workspace_root().join("wit");
    let (pkg, _) = resolve.push_path(&wit).expect("the WIT contract parses");
    let world = resolve
        .select_world(&[pkg], Some("hookbox:handler/handler@0.1.0"))
        .expect("the handler world");
    wit_component::embed_component_metadata(
        &mut module,
        &resolve,
        world,
        StringEncoding::UTF8,
        false,
    )
    .expect("embedding the world");
    ComponentEncoder::default()
        .validate(true)
        .module(&module)
        .and_then(|e| e.encode())
        .expect("the big guest becomes a component")
}
