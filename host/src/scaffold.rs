//! `hookbox new [--lang rust|python|js] <name>`: scaffolds a handler — a
//! manifest, a small handler using the language's SDK, a native test
//! against the SDK's fake host, and the build command (Rust: `cargo build
//! --release --target wasm32-wasip2`; Python: `./build.sh`, componentize-py;
//! JavaScript: `npm run build`, esbuild + componentize-js). Python and JS
//! handlers get a copy of the WIT in `wit/`.
//!
//! The SDKs are not published to a registry, so the scaffold depends on
//! them by path: the `guest-sdk` folder of the source tree this binary was
//! built from, or `--sdk PATH` (`guest-sdk/`, `guest-sdk/python`,
//! `guest-sdk/js`).

mod js;
mod python;

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use crate::manifest::validate_name;

/// The WIT contract, copied into Python and JavaScript handlers (their
/// toolchains read it at build time).
const HANDLER_WIT: &str = include_str!("../../wit/handler.wit");

/// The language of a scaffolded handler.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    /// A crate using `hookbox-sdk`.
    #[default]
    Rust,
    /// A module using the Python SDK, built with componentize-py.
    Python,
    /// A module using the JavaScript SDK, built with componentize-js.
    Js,
}

/// Where the SDK of the source tree this binary was built from lives.
pub fn default_sdk_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../guest-sdk")
}

/// Creates `<parent>/<name>/` with a handler in `lang`. Refuses to overwrite.
pub fn scaffold(name: &str, parent: &Path, sdk: &Path, lang: Lang) -> anyhow::Result<PathBuf> {
    validate_name(name).map_err(|e| anyhow::anyhow!("{}", e.0))?;
    let sdk = sdk.canonicalize().with_context(|| {
        format!(
            "the guest SDK is not at {}; pass --sdk PATH to the `guest-sdk` folder of a Hookbox checkout",
            sdk.display()
        )
    })?;
    let marker = match lang {
        Lang::Rust => "Cargo.toml",
        Lang::Python => "python/pyproject.toml",
        Lang::Js => "js/package.json",
    };
    if !sdk.join(marker).is_file() {
        bail!(
            "{} has no {marker}; is it the `guest-sdk` folder of a Hookbox checkout?",
            sdk.display()
        );
    }
    let dir = parent.join(name);
    if dir.exists() {
        bail!("{} already exists", dir.display());
    }
    let crate_ident = name.replace('-', "_");
    let files = match lang {
        Lang::Rust => vec![
            ("Cargo.toml", cargo_toml(name, &sdk)),
            ("manifest.json", manifest_json(name)),
            ("src/lib.rs", LIB_RS.to_string()),
            (".gitignore", "/target\n".to_string()),
            ("README.md", readme(name, &crate_ident)),
        ],
        Lang::Python => python::files(name, &sdk),
        Lang::Js => js::files(name, &sdk),
    };
    let subdir = if lang == Lang::Rust { "src" } else { "wit" };
    std::fs::create_dir_all(dir.join(subdir))
        .with_context(|| format!("creating {}", dir.display()))?;
    let wit = (lang != Lang::Rust).then(|| ("wit/handler.wit", HANDLER_WIT.to_string()));
    for (file, text) in files.into_iter().chain(wit) {
        let path = dir.join(file);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    #[cfg(unix)]
    if lang == Lang::Python {
        use std::os::unix::fs::PermissionsExt;
        let build = dir.join("build.sh");
        std::fs::set_permissions(&build, std::fs::Permissions::from_mode(0o755))
            .with_context(|| format!("making {} executable", build.display()))?;
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

/// The same for every language: the handler uses log, kv, config and emit,
/// and is granted nothing else (least privilege).
fn manifest_json(name: &str) -> String {
    let manifest = serde_json::json!({
        "name": name,
        "description": "Counts events per type and greets on `message` events.",
        "subscription": {"events": ["*"], "tenants": []},
        "config": {"greeting": "hello"},
        "capabilities": ["log", "kv", "config", "emit"],
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
- Run it once, no daemon: `hookbox run target/wasm32-wasip2/release/{crate_ident}.wasm --manifest manifest.json --type message --payload event.json`
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
        assert!(scaffold("Bad/Name", tmp.path(), &sdk, Lang::Rust).is_err());
        let dir = scaffold("my-handler", tmp.path(), &sdk, Lang::Rust).unwrap();
        assert!(dir.join("src/lib.rs").is_file());
        let manifest = std::fs::read_to_string(dir.join("manifest.json")).unwrap();
        crate::manifest::Manifest::from_json(&manifest).unwrap();
        let err = scaffold("my-handler", tmp.path(), &sdk, Lang::Rust).unwrap_err();
        assert!(err.to_string().contains("already exists"), "{err}");
    }

    #[test]
    fn python_and_js_handlers_carry_the_wit_a_test_and_the_sdk_path() {
        let tmp = tempfile::tempdir().unwrap();
        let sdk = default_sdk_path().canonicalize().unwrap();
        for (lang, code, test, sdk_ref) in [
            (Lang::Python, "app.py", "test_app.py", "requirements.txt"),
            (Lang::Js, "handler.js", "handler.test.js", "package.json"),
        ] {
            let dir = scaffold("my-handler", &tmp.path().join(code), &sdk, lang).unwrap();
            for file in [code, test, "README.md", "wit/handler.wit"] {
                assert!(dir.join(file).is_file(), "{lang:?}: {file}");
            }
            let manifest = std::fs::read_to_string(dir.join("manifest.json")).unwrap();
            crate::manifest::Manifest::from_json(&manifest).unwrap();
            let reference = std::fs::read_to_string(dir.join(sdk_ref)).unwrap();
            assert!(
                reference.contains(&sdk.display().to_string()),
                "{lang:?}: {reference}"
            );
            assert_eq!(
                std::fs::read_to_string(dir.join("wit/handler.wit")).unwrap(),
                HANDLER_WIT
            );
        }
    }

    #[test]
    fn missing_sdk_is_a_clear_error() {
        let tmp = tempfile::tempdir().unwrap();
        let err = scaffold("x", tmp.path(), &tmp.path().join("nope"), Lang::Rust).unwrap_err();
        assert!(err.to_string().contains("--sdk"), "{err}");
    }
}
