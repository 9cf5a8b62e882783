//! The `hookbox` command line: the daemon (`serve`), the handler author's
//! tools (`run`, `new`), and the client of a running daemon (`handlers`,
//! `emit`, `logs`, `event`, `kv`, `stats`, `tokens`, `dlq`). `main` only
//! calls [`main`].

pub mod client;
pub mod run;
pub mod serve;

use std::process::ExitCode;

use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use client::{ClientOpts, DlqCmd, EmitArgs, EventArgs, HandlersCmd, KvCmd, LogsArgs, TokensCmd};

/// Runs untrusted event handlers as sandboxed WebAssembly components.
#[derive(Debug, Parser)]
#[command(name = "hookbox", version)]
pub struct Cli {
    #[command(flatten)]
    pub client: ClientOpts,
    #[command(subcommand)]
    pub command: Command,
}

/// Every subcommand.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon: admin API, dispatcher and store.
    Serve(serve::ServeArgs),
    /// Run a component against events locally, without a daemon.
    Run(run::RunArgs),
    /// Create a new handler crate.
    New(serve::NewArgs),
    /// Deploy and manage handlers on a running daemon.
    #[command(subcommand)]
    Handlers(HandlersCmd),
    /// Send an event to a running daemon.
    Emit(EmitArgs),
    /// Show (or follow) the delivery log.
    Logs(LogsArgs),
    /// Show one event: payload, and every delivery attempt with its logs.
    Event(EventArgs),
    /// Read a handler's key-value store (per tenant).
    #[command(subcommand)]
    Kv(KvCmd),
    /// Show per-handler statistics.
    Stats,
    /// Create, list and revoke API tokens.
    #[command(subcommand)]
    Tokens(TokensCmd),
    /// Inspect, replay and purge dead letters.
    #[command(subcommand)]
    Dlq(DlqCmd),
}

/// Parses the command line and runs it; errors are printed, not returned.
pub fn main() -> ExitCode {
    // The compile child (`runtime::CompileLimits`): not a user command, so
    // not in clap's list or `--help`.
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some(crate::runtime::COMPILE_SUBCOMMAND) {
        return crate::runtime::compile_worker(&args[2..]);
    }
    let matches = Cli::command().get_matches();
    let data_was_given = !matches!(
        matches.value_source("data"),
        Some(ValueSource::DefaultValue) | None
    );
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    match run(cli, data_was_given) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli, data_was_given: bool) -> anyhow::Result<ExitCode> {
    let opts = cli.client;
    match cli.command {
        Command::Serve(args) => serve::serve(args, data_was_given.then(|| opts.data.clone())),
        Command::Run(mut args) => {
            args.json = opts.json;
            run::run(args)
        }
        Command::New(args) => serve::new(args),
        Command::Handlers(cmd) => block_on(client::handlers(&opts, cmd)),
        Command::Emit(args) => block_on(client::emit(&opts, args)),
        Command::Logs(args) => block_on(client::logs(&opts, args)),
        Command::Event(args) => block_on(client::event(&opts, args)),
        Command::Kv(cmd) => block_on(client::kv(&opts, cmd)),
        Command::Stats => block_on(client::stats(&opts)),
        Command::Tokens(cmd) => block_on(client::tokens(&opts, cmd)),
        Command::Dlq(cmd) => block_on(client::dlq(&opts, cmd)),
    }
}

/// Client commands are one request (or one stream) each: a single-threaded
/// runtime is enough.
fn block_on(f: impl Future<Output = anyhow::Result<ExitCode>>) -> anyhow::Result<ExitCode> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verify_cli() {
        Cli::command().debug_assert();
    }

    #[test]
    fn serve_takes_the_global_data_dir() {
        let cli = Cli::try_parse_from([
            "hookbox",
            "serve",
            "--data",
            "/tmp/x",
            "--listen",
            "127.0.0.1:0",
        ])
        .unwrap();
        assert_eq!(cli.client.data, std::path::PathBuf::from("/tmp/x"));
        assert!(matches!(cli.command, Command::Serve(_)));
    }

    #[test]
    fn bad_listen_address_is_a_usage_error() {
        let err = Cli::try_parse_from(["hookbox", "serve", "--listen", "nope"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::ValueValidation);
    }
}
