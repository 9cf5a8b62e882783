//! The client half of the `hookbox` binary: every subcommand that talks to a
//! running daemon over the admin API (`handlers`, `emit`, `logs`, `event`,
//! `kv`, `stats`, `tokens`, `dlq`).
//!
//! Each entry point reports its own failures on stderr — `error: <message>`,
//! then a `hint: …` line when there is a likely fix — and returns the exit
//! code: 0 on success, 1 on any failure (an error response, an unreachable
//! daemon, a missing token, an unreadable file), 3 for `emit --wait` when a
//! delivery failed or the wait timed out. Clap owns 2 (usage errors), which
//! is why the value parsers in `args` reject bad flags up front.
//!
//! Human output is aligned tables and `key: value` lines; `--json` prints
//! the daemon's JSON as it was sent, indented. Text that came from handlers
//! (error messages, names) has its control characters replaced before it
//! reaches the terminal.

mod args;
mod deploy;
mod dlq;
mod emit;
mod event;
mod handlers;
mod http;
mod kv;
mod logs;
mod output;
mod sse;
mod stats;
mod tokens;

use std::future::Future;
use std::path::PathBuf;
use std::process::ExitCode;

pub use deploy::DeployArgs;
pub use dlq::{DlqCmd, dlq};
pub use emit::{EmitArgs, emit};
pub use event::{EventArgs, event};
pub use handlers::{HandlersCmd, handlers};
pub use kv::{KvCmd, kv};
pub use logs::{LogsArgs, logs};
pub use stats::stats;
pub use tokens::{TokensCmd, tokens};

/// How to reach the daemon and how to print; global to every client subcommand.
#[derive(Clone, clap::Args)]
#[command(next_help_heading = "Daemon connection")]
pub struct ClientOpts {
    /// Base URL of the daemon's admin API.
    #[arg(
        long,
        env = "HOOKBOX_URL",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    pub url: String,
    /// API token [default: the contents of <DATA>/admin.token].
    // `<DATA>` is the `--data` value's name in `--help`, not HTML.
    #[allow(rustdoc::invalid_html_tags)]
    #[arg(long, env = "HOOKBOX_TOKEN", global = true, hide_env_values = true)]
    pub token: Option<String>,
    /// The daemon's data directory; the client reads the admin token from it.
    #[arg(
        long,
        env = "HOOKBOX_DATA",
        default_value = "./hookbox-data",
        global = true
    )]
    pub data: PathBuf,
    /// Print the daemon's JSON responses instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
}

impl std::fmt::Debug for ClientOpts {
    /// Everything but the token's value.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientOpts")
            .field("url", &self.url)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("data", &self.data)
            .field("json", &self.json)
            .finish()
    }
}

/// Exit code of `emit --wait` when a delivery failed or the wait timed out;
/// distinct from 1 (the request itself failed) so scripts can tell them apart.
pub(crate) const EXIT_DELIVERY_FAILED: u8 = 3;

/// Runs one command body, turning its error into the report on stderr and
/// exit code 1. A closed stdout (`hookbox logs | head`) is not a failure.
async fn finish(body: impl Future<Output = anyhow::Result<ExitCode>>) -> anyhow::Result<ExitCode> {
    match body.await {
        Ok(code) => Ok(code),
        Err(err) if is_broken_pipe(&err) => Ok(ExitCode::SUCCESS),
        Err(err) => {
            http::report(&err);
            Ok(ExitCode::FAILURE)
        }
    }
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

#[cfg(test)]
mod tests {
    use crate::cli::Cli;
    use clap::Parser;

    #[test]
    fn global_flags_work_after_the_subcommand() {
        let cli = Cli::try_parse_from([
            "hookbox",
            "handlers",
            "list",
            "--json",
            "--url",
            "http://h:1",
            "--token",
            "t",
        ])
        .unwrap();
        assert!(cli.client.json);
        assert_eq!(cli.client.url, "http://h:1");
        assert_eq!(cli.client.token.as_deref(), Some("t"));
    }

    #[test]
    fn usage_errors_are_clap_errors() {
        for argv in [
            &["hookbox", "emit"][..],
            &["hookbox", "emit", "--type", "x", "--payload", "{nope"],
            &["hookbox", "emit", "--type", "x", "--metadata", "novalue"],
            &["hookbox", "emit", "--type", "x", "--timeout", "5s"],
            &["hookbox", "logs", "--since", "yesterday-ish"],
            &["hookbox", "logs", "--follow", "--limit", "3"],
            &[
                "hookbox", "handlers", "deploy", "x.wasm", "--memory", "lots",
            ],
            &["hookbox", "handlers", "list", "--status", "sleeping"],
            &["hookbox", "tokens", "create", "--name", "n"],
            &[
                "hookbox", "tokens", "create", "--name", "n", "--scope", "root",
            ],
        ] {
            let err = Cli::try_parse_from(argv).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{argv:?}: {err}");
        }
    }
}
