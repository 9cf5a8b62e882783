//! `hookbox run`: the command-line arguments, and printing the result of
//! [`crate::run::run_local`].

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;

use super::client::EXIT_DELIVERY_FAILED;
use crate::limits::Limits;
use crate::manifest::{Capability, Manifest};
use crate::run::{LocalRun, RunInput, run_local};

/// Run a handler component against events locally, without a daemon.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The handler component (`.wasm`, built for `wasm32-wasip2`).
    pub component: PathBuf,
    /// A Hookbox event JSON file (`{"type", "tenant", "payload", "metadata",
    /// "key", "priority"}`) or an array of them; `-` reads stdin.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["event_type", "zulip", "payload", "tenant"])]
    pub event: Option<PathBuf>,
    /// Wrap `--payload` into one event of this type.
    #[arg(long = "type", value_name = "TYPE")]
    pub event_type: Option<String>,
    /// Treat `--payload` as Zulip events (an object or an array): one event
    /// each, typed `type` or `type.op`.
    #[arg(long, conflicts_with = "event_type", requires = "payload")]
    pub zulip: bool,
    /// The payload file (default `{}`); `-` reads stdin.
    #[arg(long, value_name = "FILE")]
    pub payload: Option<PathBuf>,
    /// The events' tenant.
    #[arg(long, value_name = "TENANT", default_value = "")]
    pub tenant: String,
    /// The handler's manifest (`manifest.json`): its name, config, limits
    /// and capabilities apply as the daemon would apply them, unless the
    /// flags below give their own.
    #[arg(long, value_name = "FILE")]
    pub manifest: Option<PathBuf>,
    /// The handler's config: JSON text, or `@FILE` [default: the manifest's,
    /// else `{}`].
    #[arg(long, value_name = "JSON|@FILE")]
    pub config: Option<String>,
    /// Handler name, i.e. the KV namespace [default: the manifest's, else
    /// the file stem].
    #[arg(long, value_name = "NAME")]
    pub handler: Option<String>,
    /// The Hookbox interfaces granted, comma-separated
    /// (`log,kv,config,emit,clock`), or `none`; a call to another ends the
    /// delivery `capability_denied` [default: the manifest's, else all].
    #[arg(long, value_name = "LIST", value_parser = parse_capabilities)]
    pub capabilities: Option<BTreeSet<Capability>>,
    /// Fuel (instruction budget) per event.
    #[arg(long, value_name = "N")]
    pub fuel: Option<u64>,
    /// Linear memory limit per event, in bytes.
    #[arg(long, value_name = "BYTES")]
    pub memory: Option<u64>,
    /// Wall-clock deadline per event, e.g. `500ms`, `2s`.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub timeout: Option<Duration>,
    /// Print JSON instead of text: set from the global `--json`.
    #[arg(skip)]
    pub json: bool,
}

impl RunArgs {
    /// The library's description of this run.
    pub fn to_local_run(&self) -> anyhow::Result<LocalRun> {
        let input = match (&self.event, &self.event_type, self.zulip, &self.payload) {
            (Some(file), ..) => RunInput::Events(file.clone()),
            (None, _, true, Some(file)) => RunInput::Zulip {
                tenant: self.tenant.clone(),
                file: file.clone(),
            },
            (None, Some(t), false, payload) => RunInput::Payload {
                event_type: t.clone(),
                tenant: self.tenant.clone(),
                file: payload.clone(),
            },
            _ => anyhow::bail!(
                "give the events with `--event FILE`, `--type TYPE [--payload FILE]` or `--zulip --payload FILE`"
            ),
        };
        let manifest = match &self.manifest {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?;
                let m = Manifest::from_json(&text)
                    .and_then(|m| m.validate().map(|()| m))
                    .with_context(|| format!("{} is not a valid manifest", path.display()))?;
                Some(m)
            }
            None => None,
        };
        let mut limits = match &manifest {
            Some(m) => Limits::default()
                .with_overrides(&m.limits, &Limits::default_ceilings())
                .map_err(anyhow::Error::msg)
                .context("the manifest's `limits`")?,
            None => Limits::default(),
        };
        if let Some(fuel) = self.fuel {
            limits.fuel = fuel;
        }
        if let Some(memory) = self.memory {
            limits.memory_bytes = memory;
        }
        if let Some(timeout) = self.timeout {
            limits.timeout_ms = u64::try_from(timeout.as_millis())
                .unwrap_or(u64::MAX)
                .max(1);
        }
        let config = match (&self.config, &manifest) {
            (Some(c), _) => c.clone(),
            (None, Some(m)) => m.config.to_string(),
            (None, None) => "{}".into(),
        };
        let handler = self
            .handler
            .clone()
            .or_else(|| manifest.as_ref().map(|m| m.name.clone()));
        let capabilities = match (&self.capabilities, manifest) {
            (Some(c), _) => c.clone(),
            (None, Some(m)) => m.capabilities,
            (None, None) => Capability::all(),
        };
        Ok(LocalRun {
            component: self.component.clone(),
            input,
            config,
            handler,
            limits,
            capabilities,
            // Compiled in a child of this binary, under the compile caps.
            compiler: Some(std::env::current_exe().context("finding the hookbox executable")?),
        })
    }
}

/// `--capabilities`: interface names separated by commas, or `none`.
fn parse_capabilities(list: &str) -> Result<BTreeSet<Capability>, String> {
    if list.trim() == "none" {
        return Ok(BTreeSet::new());
    }
    list.split(',')
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .map(|name| {
            Capability::all()
                .into_iter()
                .find(|c| c.interface() == name)
                .ok_or_else(|| {
                    format!("unknown capability `{name}`: use log, kv, config, emit, clock or none")
                })
        })
        .collect()
}

/// Runs `hookbox run`; exits with [`EXIT_DELIVERY_FAILED`] when a delivery
/// did not end `ok`.
pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let summary = run_local(&args.to_local_run()?)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary.to_json())?);
    } else {
        print!("{}", summary.to_text());
    }
    Ok(if summary.all_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_DELIVERY_FAILED)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cmd {
        #[command(flatten)]
        args: RunArgs,
    }

    fn parse(argv: &[&str]) -> Result<RunArgs, clap::Error> {
        Cmd::try_parse_from(std::iter::once("run").chain(argv.iter().copied())).map(|c| c.args)
    }

    #[test]
    fn inputs_and_limits() {
        let a = parse(&[
            "h.wasm",
            "--event",
            "e.json",
            "--fuel",
            "10",
            "--timeout",
            "500ms",
        ])
        .unwrap();
        let run = a.to_local_run().unwrap();
        assert_eq!(run.input, RunInput::Events("e.json".into()));
        assert_eq!((run.limits.fuel, run.limits.timeout_ms), (10, 500));

        let a = parse(&[
            "h.wasm",
            "--type",
            "message",
            "--tenant",
            "acme",
            "--payload",
            "p.json",
        ])
        .unwrap();
        assert!(matches!(
            a.to_local_run().unwrap().input,
            RunInput::Payload { ref event_type, ref tenant, file: Some(_) } if event_type == "message" && tenant == "acme"
        ));

        let a = parse(&[
            "h.wasm",
            "--zulip",
            "--payload",
            "z.json",
            "--memory",
            "1048576",
        ])
        .unwrap();
        let run = a.to_local_run().unwrap();
        assert!(matches!(run.input, RunInput::Zulip { .. }));
        assert_eq!(run.limits.memory_bytes, 1 << 20);
    }

    #[test]
    fn capabilities_and_the_manifest() {
        let a = parse(&["h.wasm", "--type", "x"]).unwrap();
        let run = a.to_local_run().unwrap();
        assert_eq!(run.capabilities, Capability::all());
        assert_eq!(run.config, "{}");

        let a = parse(&["h.wasm", "--type", "x", "--capabilities", "log, kv"]).unwrap();
        let run = a.to_local_run().unwrap();
        assert_eq!(
            run.capabilities,
            [Capability::Log, Capability::Kv].into_iter().collect()
        );
        let a = parse(&["h.wasm", "--type", "x", "--capabilities", "none"]).unwrap();
        assert!(a.to_local_run().unwrap().capabilities.is_empty());
        let err = parse(&["h.wasm", "--capabilities", "log,net"]).unwrap_err();
        assert!(
            err.to_string().contains("unknown capability `net`"),
            "{err}"
        );

        let dir = std::env::temp_dir().join(format!("hookbox-run-args-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let manifest = dir.join("manifest.json");
        std::fs::write(
            &manifest,
            r#"{"name": "counter", "subscription": {"events": ["x"]},
                "capabilities": ["log"], "config": {"n": 1}, "limits": {"fuel": 1234}}"#,
        )
        .unwrap();
        let m = manifest.to_str().unwrap();
        let run = parse(&["h.wasm", "--type", "x", "--manifest", m])
            .unwrap()
            .to_local_run()
            .unwrap();
        assert_eq!(run.handler.as_deref(), Some("counter"));
        assert_eq!(run.config, r#"{"n":1}"#);
        assert_eq!(run.limits.fuel, 1234);
        assert_eq!(run.capabilities, [Capability::Log].into_iter().collect());
        // Flags win over the manifest.
        let run = parse(&[
            "h.wasm",
            "--type",
            "x",
            "--manifest",
            m,
            "--config",
            "{}",
            "--handler",
            "h",
            "--fuel",
            "9",
            "--capabilities",
            "kv",
        ])
        .unwrap()
        .to_local_run()
        .unwrap();
        assert_eq!(
            (run.handler.as_deref(), run.config.as_str()),
            (Some("h"), "{}")
        );
        assert_eq!(run.limits.fuel, 9);
        assert_eq!(run.capabilities, [Capability::Kv].into_iter().collect());

        std::fs::write(
            &manifest,
            r#"{"name": "Bad Name", "subscription": {"events": ["x"]}}"#,
        )
        .unwrap();
        let err = parse(&["h.wasm", "--type", "x", "--manifest", m])
            .unwrap()
            .to_local_run()
            .unwrap_err();
        assert!(
            format!("{err:#}").contains("not a valid manifest"),
            "{err:#}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn usage_errors() {
        assert!(parse(&["h.wasm", "--event", "e.json", "--type", "x"]).is_err());
        assert!(parse(&["h.wasm", "--zulip"]).is_err());
        assert!(parse(&["h.wasm", "--timeout", "soon"]).is_err());
        let no_input = parse(&["h.wasm"]).unwrap();
        assert!(no_input.to_local_run().is_err());
    }
}
