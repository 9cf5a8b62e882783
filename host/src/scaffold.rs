//! `hookbox new <name>`: scaffolds a handler crate — a manifest, a small
//! handler using the SDK, and a native unit test — that builds to a
//! component with `cargo build --release --target wasm32-wasip2`.
//!
//! `hookbox-sdk` is not published to a registry, so the scaffold depends on
//! it by path: the SDK of the source tree this binary was built from, or
//! `--sdk PATH`.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use crate::manifest::validate_name;

/// Where the SDK of the source tree this binary was built from lives.
pub fn default_sdk_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../guest-sdk")
}

/// Creates `<parent>/<name>/` with a handler crate. Refuses to overwrite.
pub fn scaffold(name: &str, parent: &Path, sdk: &Path) -> anyhow::Result<PathBuf> {
    validate_name(name).map_err(|e| anyhow::anyhow!("{}", e.0))?;
    let sdk = sdk.canonicalize().with_context(|| {
        format!(
            "the guest SDK is not at {}; pass --sdk PATH to the `guest-sdk` folder of a Hookbox checkout",
            sdk.display()
        )
    })?;
    if !sdk.join("Cargo.toml").is_file() {
        bail!(
            "{} has no Cargo.toml; is it the `guest-sdk` folder?",
            sdk.display()
        );
    }
    let dir = parent.join(name);
    if dir.exists() {
        bail!("{} already exists", dir.display());
    }
    std::fs::create_dir_all(dir.join("src"))
        .with_context(|| format!("creating {}", dir.display()))?;
    let crate_ident = name.replace('-', "_");
    let files = [
        ("Cargo.toml", cargo_toml(name, &sdk)),
        ("manifest.json", manifest_json(name)),
        ("src/lib.rs", LIB_RS.to_string()),
        (".gitignore", "/target\n".to_string()),
        ("README.md", readme(name, &crate_ident)),
    ];
    for (file, text) in files {
        let path = dir.join(file);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(dir)
}

fn cargo_toml(name: &str, sdk: &Path) -> String {
    // TOML basic strings need `\` and `"` escaped; paths may contain either.
    let sdk = sdk
        .display()
        .to_string()
        .replace('\\', "\\\\")
        .replace('"', "\\\"");
    format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"
publish = false

[lib]
# cdylib: the wasm component; rlib: native unit tests.
crate-type = ["cdylib", "rlib"]

[dependencies]
hookbox-sdk = {{ path = "{sdk}" }}
serde = {{ version = "1", features = ["derive"] }}
serde_json = "1"

[profile.release]
opt-level = "s"
lto = true
strip = true

# A crate of its own, even when created inside another workspace.
[workspace]
"#
    )
}

fn manifest_json(name: &str) -> String {
    let manifest = serde_json::json!({
        "name": name,
        "description": "Counts events per type and greets on `message` events.",
        "subscription": {"events": ["*"], "tenants": []},
        "config": {"greeting": "hello"},
    });
    format!(
        "{}\n",
        serde_json::to_string_pretty(&manifest).expect("a json! value serializes")
    )
}

fn readme(name: &str, crate_ident: &str) -> String {
    format!(
        r#"# {name}

A Hookbox event handler.

- Test the logic natively: `cargo test`
- Build the component: `cargo build --release --target wasm32-wasip2`
  (the file is `target/wasm32-wasip2/release/{crate_ident}.wasm`)
- Run it once, no daemon: `hookbox run target/wasm32-wasip2/release/{crate_ident}.wasm --type message --payload event.json`
- Deploy it: `hookbox handlers deploy target/wasm32-wasip2/release/{crate_ident}.wasm --name {name} --manifest manifest.json`
"#
    )
}

const LIB_RS: &str = r##"//! A Hookbox handler: counts events per type in its KV namespace and emits
//! a greeting for every `message` event.

use hookbox_sdk::{Event, Handler, HandlerError, emit, info, kv};
use serde::Deserialize;

#[derive(Deserialize)]
struct Config {
    greeting: String,
}

pub struct Greeter;

impl Handler for Greeter {
    fn handle(event: Event) -> Result<(), HandlerError> {
        let seen = kv::increment(&format!("seen:{}", event.event_type), 1);
        info!(event_type = event.event_type, seen = seen; "Counted an event");
        if event.event_type == "message" {
            let config: Config = hookbox_sdk::config()?;
            let reply = serde_json::json!({ "text": config.greeting, "in_reply_to": event.id });
            emit::emit(emit::NewEvent::new("greeting").payload(&reply))?;
        }
        Ok(())
    }
}

hookbox_sdk::export_handler!(Greeter);

#[cfg(test)]
mod tests {
    use super::*;
    use hookbox_sdk::testing::TestHost;

    #[test]
    fn counts_and_greets() {
        let mut host = TestHost::new();
        host.set_config_json(r#"{"greeting": "hi there"}"#);
        for _ in 0..2 {
            let event = Event::builder("message").tenant("acme").build();
            host.run::<Greeter>(event).unwrap();
        }
        assert_eq!(host.kv_get_string("acme", "seen:message").as_deref(), Some("2"));
        assert_eq!(host.emitted().len(), 2);
        assert_eq!(host.emitted()[0].event_type, "greeting");
    }

    #[test]
    fn bad_config_is_an_error() {
        let mut host = TestHost::new();
        host.set_config_json("{}");
        let event = Event::builder("message").build();
        assert!(host.run::<Greeter>(event).is_err());
    }
}
"##;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_bad_names_and_existing_dirs() {
        let tmp = tempfile::tempdir().unwrap();
        let sdk = default_sdk_path();
        assert!(scaffold("Bad/Name", tmp.path(), &sdk).is_err());
        let dir = scaffold("my-handler", tmp.path(), &sdk).unwrap();
        assert!(dir.join("src/lib.rs").is_file());
        let manifest = std::fs::read_to_string(dir.join("manifest.json")).unwrap();
        crate::manifest::Manifest::from_json(&manifest).unwrap();
        let err = scaffold("my-handler", tmp.path(), &sdk).unwrap_err();
        assert!(err.to_string().contains("already exists"), "{err}");
    }

    #[test]
    fn missing_sdk_is_a_clear_error() {
        let tmp = tempfile::tempdir().unwrap();
        let err = scaffold("x", tmp.path(), &tmp.path().join("nope")).unwrap_err();
        assert!(err.to_string().contains("--sdk"), "{err}");
    }
}
