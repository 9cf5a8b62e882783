//! `hookbox run`: the command-line arguments, and printing the result of
//! [`crate::run::run_local`].

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use super::client::EXIT_DELIVERY_FAILED;
use crate::limits::Limits;
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
    /// The handler's config: JSON text, or `@FILE`.
    #[arg(long, value_name = "JSON|@FILE", default_value = "{}")]
    pub config: String,
    /// Handler name, i.e. the KV namespace [default: the file stem].
    #[arg(long, value_name = "NAME")]
    pub handler: Option<String>,
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
        let mut limits = Limits::default();
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
        Ok(LocalRun {
            component: self.component.clone(),
            input,
            config: self.config.clone(),
            handler: self.handler.clone(),
            limits,
        })
    }
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
    fn usage_errors() {
        assert!(parse(&["h.wasm", "--event", "e.json", "--type", "x"]).is_err());
        assert!(parse(&["h.wasm", "--zulip"]).is_err());
        assert!(parse(&["h.wasm", "--timeout", "soon"]).is_err());
        let no_input = parse(&["h.wasm"]).unwrap();
        assert!(no_input.to_local_run().is_err());
    }
}
