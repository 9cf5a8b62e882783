//! Many handlers without deploying each over the API: the word-counter with
//! a distinct custom section per handler (its own content hash, so its own
//! compiled module), written into a stopped daemon's store with compiled
//! code seeded from one compilation — what the daemon would have cached had
//! each been deployed, without compiling the same code thousands of times.

use std::path::Path;

use hookbox::config::{Config, ConfigFile, Overrides};
use hookbox::manifest::{Capability, Manifest};
use hookbox::runtime::Runtime;
use hookbox::store::Store;
use serde_json::Value;

/// `wasm` with a custom section naming `tag` appended: the same code under
/// another content hash, as a distinct handler's component would be.
pub fn variant(wasm: &[u8], tag: &str) -> Vec<u8> {
    let name = b"hookbox-bench";
    let mut body = Vec::new();
    leb128(&mut body, name.len() as u64);
    body.extend_from_slice(name);
    body.extend_from_slice(tag.as_bytes());
    let mut out = wasm.to_vec();
    out.push(0); // custom section
    leb128(&mut out, body.len() as u64);
    out.extend_from_slice(&body);
    out
}

fn leb128(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// Writes one handler per manifest into the store under `data` (the daemon
/// stopped), each with `variant(wasm, name)` as its component; the first
/// `with_code` with their compiled code in the cache (a handler without it
/// compiles on its first delivery, as after an engine upgrade).
pub fn handlers(
    data: &Path,
    wasm: &[u8],
    manifests: impl IntoIterator<Item = Value>,
    with_code: usize,
) {
    let cfg = Config::resolve(ConfigFile::default(), Overrides::default()).expect("defaults");
    let runtime = Runtime::new(cfg.runtime).expect("a runtime like the daemon's");
    let compiled = runtime
        .compile(wasm, &Capability::all())
        .expect("the word-counter compiles");
    let store = Store::open(&data.join("store"), cfg.store).expect("the daemon's store opens");
    for (i, manifest) in manifests.into_iter().enumerate() {
        let name = manifest["name"].as_str().expect("a named manifest");
        let bytes = variant(wasm, name);
        let hash = store.put_module(&bytes).expect("module stored");
        if i < with_code {
            store
                .put_compiled(&hash, &runtime.fingerprint(), &compiled.serialized)
                .expect("compiled code stored");
        }
        let m = Manifest::from_json(&manifest.to_string()).expect("a valid manifest");
        store
            .deploy(&m, &hash, bytes.len() as u64, "bench")
            .expect("handler stored");
    }
    store.flush().expect("flushed");
}
