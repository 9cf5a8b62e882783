//! `hookbox handlers deploy`: builds the manifest from a file and flags
//! (flags win), then streams the component to `POST /v1/handlers` as
//! multipart, with a byte-count progress line on a terminal.
//!
//! The manifest is built as JSON, not as `crate::manifest::Manifest`: the
//! daemon validates it (strictly) and owns the defaults, and a manifest file
//! may carry fields this client does not know.

use std::fs::File;
use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use reqwest::Method;
use reqwest::multipart::{Form, Part};
use serde_json::{Map, Value, json};

use super::args::{parse_bytes, parse_duration, parse_json_arg};
use super::http::{Client, Failure};
use super::output::{self, bytes, get, get_str};

/// Read size of the upload stream.
const CHUNK_BYTES: usize = 64 << 10;

/// Below this, an upload is over before a progress line would help.
const PROGRESS_MIN_BYTES: u64 = 4 << 20;

/// Upload a component as a new version of a handler.
#[derive(Clone, Debug, clap::Args)]
pub struct DeployArgs {
    /// The component (`.wasm`) to upload.
    pub file: PathBuf,
    /// Handler name [default: the manifest's `name`].
    #[arg(long)]
    pub name: Option<String>,
    /// A manifest JSON file; the flags below override its fields.
    #[arg(long, value_name = "FILE")]
    pub manifest: Option<PathBuf>,
    /// Event-type patterns to subscribe to (`message`, `reaction.*`, `*`).
    #[arg(long, value_delimiter = ',', value_name = "PATTERN,..")]
    pub events: Vec<String>,
    /// Only receive events of this tenant (repeatable) [default: every tenant].
    #[arg(long = "tenant", value_name = "TENANT")]
    pub tenants: Vec<String>,
    /// Handler config: JSON, or @FILE.
    #[arg(long, value_parser = parse_json_arg, value_name = "JSON|@FILE")]
    pub config: Option<Value>,
    /// Free text for operators.
    #[arg(long)]
    pub description: Option<String>,
    /// Fuel (instruction budget) per delivery.
    #[arg(long)]
    pub fuel: Option<u64>,
    /// Linear memory per delivery (`64MiB`, `1GiB`, or bytes).
    #[arg(long, value_parser = parse_bytes, value_name = "BYTES")]
    pub memory: Option<u64>,
    /// Wall-clock limit per delivery (`500ms`, `5s`).
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub timeout: Option<Duration>,
}

/// The manifest to send: `base` (a manifest file's JSON, if any) with the
/// flags applied on top. Fields the flags do not name are kept as they are.
pub(crate) fn build_manifest(base: Option<Value>, args: &DeployArgs) -> Result<Value, String> {
    let mut m = match base {
        None => Map::new(),
        Some(Value::Object(m)) => m,
        Some(_) => return Err("the manifest must be a JSON object".to_string()),
    };
    if let Some(name) = &args.name {
        m.insert("name".into(), json!(name));
    }
    if !m.get("name").is_some_and(Value::is_string) {
        return Err("the handler needs a name: pass --name or set \"name\" in the manifest".into());
    }
    if let Some(description) = &args.description {
        m.insert("description".into(), json!(description));
    }
    let sub = object_at(&mut m, "subscription")?;
    if !args.events.is_empty() {
        sub.insert("events".into(), json!(args.events));
    }
    if !args.tenants.is_empty() {
        sub.insert("tenants".into(), json!(args.tenants));
    }
    if sub
        .get("events")
        .and_then(Value::as_array)
        .is_none_or(Vec::is_empty)
    {
        return Err(
            "no events to subscribe to: pass --events (e.g. --events 'message,reaction.*') or set subscription.events in the manifest".into(),
        );
    }
    if let Some(config) = &args.config {
        m.insert("config".into(), config.clone());
    }
    if args.fuel.is_some() || args.memory.is_some() || args.timeout.is_some() {
        let limits = object_at(&mut m, "limits")?;
        if let Some(fuel) = args.fuel {
            limits.insert("fuel".into(), json!(fuel));
        }
        if let Some(memory) = args.memory {
            limits.insert("memory_bytes".into(), json!(memory));
        }
        if let Some(timeout) = args.timeout {
            let ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
            if ms == 0 {
                return Err("--timeout must be at least 1ms".into());
            }
            limits.insert("timeout_ms".into(), json!(ms));
        }
    }
    Ok(Value::Object(m))
}

/// The object under `key`, created if absent.
fn object_at<'a>(
    m: &'a mut Map<String, Value>,
    key: &str,
) -> Result<&'a mut Map<String, Value>, String> {
    m.entry(key)
        .or_insert_with(|| Value::Object(Map::new()))
        .as_object_mut()
        .ok_or_else(|| format!("`{key}` in the manifest must be an object"))
}

fn read_manifest(path: &Path) -> anyhow::Result<Value> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read manifest {}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| {
        Failure::new(format!(
            "manifest {} is not valid JSON: {e}",
            path.display()
        ))
        .into()
    })
}

/// Runs `handlers deploy`.
pub(crate) async fn deploy(client: &Client, args: DeployArgs) -> anyhow::Result<ExitCode> {
    let base = args.manifest.as_deref().map(read_manifest).transpose()?;
    let manifest = build_manifest(base, &args).map_err(Failure::new)?;
    let file = File::open(&args.file)
        .with_context(|| format!("cannot open component {}", args.file.display()))?;
    let len = file
        .metadata()
        .with_context(|| format!("cannot read component {}", args.file.display()))?
        .len();
    let file_name = args.file.file_name().map_or_else(
        || "component.wasm".to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let show_progress = len >= PROGRESS_MIN_BYTES && std::io::stderr().is_terminal();
    let body =
        reqwest::Body::wrap_stream(upload_stream(file, len, file_name.clone(), show_progress));
    let form = Form::new()
        .part(
            "manifest",
            Part::text(manifest.to_string()).mime_str("application/json")?,
        )
        .part(
            "component",
            Part::stream_with_length(body, len)
                .file_name(file_name)
                .mime_str("application/wasm")?,
        );
    let reply = client
        .call(
            client
                .request(Method::POST, &["v1", "handlers"])
                .multipart(form),
        )
        .await;
    if show_progress {
        eprintln!();
    }
    let reply = reply?;
    if client.json {
        reply.print()?;
        return Ok(ExitCode::SUCCESS);
    }
    let v = &reply.value;
    let name = get_str(v, &["handler.name", "version.name"]);
    let version = get(v, &["version.version", "handler.active_version"])
        .map_or_else(|| "?".to_string(), |n| output::field("version", n));
    let compiled = if get(v, &["compiled_from_cache"]).and_then(Value::as_bool) == Some(true) {
        "compiled from cache"
    } else {
        "compiled"
    };
    let mut text = format!(
        "deployed {} version {version} ({}, {compiled})\n",
        output::clean(name),
        bytes(len)
    );
    if let Some(imports) =
        get(v, &["imports"]).filter(|i| i.as_array().is_some_and(|a| !a.is_empty()))
    {
        text.push_str(&format!("imports: {}\n", output::field("imports", imports)));
    }
    if let Some(denied) =
        get(v, &["denied_imports"]).filter(|i| i.as_array().is_some_and(|a| !a.is_empty()))
    {
        text.push_str(&format!(
            "denied (not granted; a call ends the delivery with capability_denied): {}\n",
            output::field("denied_imports", denied)
        ));
    }
    output::out(&text)?;
    Ok(ExitCode::SUCCESS)
}

/// The component file as a stream of chunks, read off the async threads,
/// reporting progress (when a percent is passed) as chunks are handed to the
/// connection.
fn upload_stream(
    file: File,
    len: u64,
    name: String,
    show_progress: bool,
) -> impl futures_util::Stream<Item = std::io::Result<Vec<u8>>> + Send + 'static {
    let state = (file, 0u64, None::<u64>);
    futures_util::stream::try_unfold(state, move |(mut file, sent, shown)| {
        let name = name.clone();
        async move {
            let (file, chunk) = tokio::task::spawn_blocking(move || {
                let mut chunk = vec![0u8; CHUNK_BYTES];
                let n = file.read(&mut chunk)?;
                chunk.truncate(n);
                Ok::<_, std::io::Error>((file, chunk))
            })
            .await
            .map_err(std::io::Error::other)??;
            if chunk.is_empty() {
                return Ok(None);
            }
            let sent = sent + chunk.len() as u64;
            let percent = percent(sent, len);
            if show_progress && shown != Some(percent) {
                // `\r` back to the line start, `ESC [K` clears what is left.
                eprint!("\r{}\x1b[K", progress_line(&name, sent, len));
            }
            Ok(Some((chunk, (file, sent, Some(percent)))))
        }
    })
}

fn percent(sent: u64, len: u64) -> u64 {
    sent.saturating_mul(100).checked_div(len).unwrap_or(100)
}

/// `uploading echo.wasm: 12.5 MiB / 40 MiB (31%)`.
pub(crate) fn progress_line(name: &str, sent: u64, len: u64) -> String {
    format!(
        "uploading {}: {} / {} ({}%)",
        output::clean(name),
        bytes(sent),
        bytes(len),
        percent(sent, len)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cmd {
        #[command(flatten)]
        args: DeployArgs,
    }

    fn args(argv: &[&str]) -> DeployArgs {
        Cmd::try_parse_from(std::iter::once("deploy").chain(argv.iter().copied()))
            .unwrap()
            .args
    }

    #[test]
    fn manifest_from_flags_only() {
        let a = args(&[
            "h.wasm",
            "--name",
            "echo",
            "--events",
            "message,reaction.*",
            "--tenant",
            "acme",
            "--tenant",
            "globex",
            "--config",
            r#"{"greeting":"hi"}"#,
            "--fuel",
            "1000",
            "--memory",
            "64MiB",
            "--timeout",
            "1.5s",
        ]);
        assert_eq!(
            build_manifest(None, &a).unwrap(),
            json!({
                "name": "echo",
                "subscription": {"events": ["message", "reaction.*"], "tenants": ["acme", "globex"]},
                "config": {"greeting": "hi"},
                "limits": {"fuel": 1000, "memory_bytes": 67108864, "timeout_ms": 1500},
            })
        );
    }

    #[test]
    fn minimal_manifest_leaves_defaults_to_the_daemon() {
        let a = args(&["h.wasm", "--name", "echo", "--events", "*"]);
        assert_eq!(
            build_manifest(None, &a).unwrap(),
            json!({"name": "echo", "subscription": {"events": ["*"]}})
        );
    }

    #[test]
    fn flags_override_the_file_and_keep_the_rest() {
        let file = json!({
            "name": "old",
            "description": "kept",
            "subscription": {"events": ["message"], "filters": [{"kind": "max_age", "max_age_ms": 5}]},
            "limits": {"fuel": 1, "log_bytes": 100},
            "delivery": {"max_attempts": 2},
        });
        let a = args(&["h.wasm", "--name", "new", "--memory", "1GiB"]);
        assert_eq!(
            build_manifest(Some(file), &a).unwrap(),
            json!({
                "name": "new",
                "description": "kept",
                "subscription": {"events": ["message"], "filters": [{"kind": "max_age", "max_age_ms": 5}]},
                "limits": {"fuel": 1, "log_bytes": 100, "memory_bytes": 1073741824},
                "delivery": {"max_attempts": 2},
            })
        );
    }

    #[test]
    fn missing_pieces_are_named() {
        let err = build_manifest(None, &args(&["h.wasm", "--events", "x"])).unwrap_err();
        assert!(err.contains("--name"), "{err}");
        let err = build_manifest(None, &args(&["h.wasm", "--name", "a"])).unwrap_err();
        assert!(err.contains("--events"), "{err}");
        let err = build_manifest(Some(json!([1])), &args(&["h.wasm"])).unwrap_err();
        assert!(err.contains("object"), "{err}");
        let bad_sub = json!({"name": "a", "subscription": "message"});
        let err = build_manifest(Some(bad_sub), &args(&["h.wasm"])).unwrap_err();
        assert!(err.contains("subscription"), "{err}");
        let err = build_manifest(
            None,
            &args(&[
                "h.wasm",
                "--name",
                "a",
                "--events",
                "x",
                "--timeout",
                "10us",
            ]),
        )
        .unwrap_err();
        assert!(err.contains("1ms"), "{err}");
    }

    #[test]
    fn progress() {
        assert_eq!(
            progress_line("echo.wasm", 5 << 20, 20 << 20),
            "uploading echo.wasm: 5 MiB / 20 MiB (25%)"
        );
        assert_eq!(progress_line("e", 0, 0), "uploading e: 0 B / 0 B (100%)");
    }
}
