//! `hookbox serve` and `hookbox new`: the command-line shells over
//! [`crate::daemon`] and [`crate::scaffold`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use crate::config::{Config, ConfigFile, LogFormat, Overrides};
use crate::daemon::{self, ServeOptions};

/// The source tree this binary was built from (for `--examples`).
const SOURCE_ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

/// `hookbox serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address for the admin API.
    #[arg(long, env = "HOOKBOX_LISTEN", value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// A TOML config file (see the README's "Configuration").
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Log filter: trace, debug, info, warn, error, or a tracing directive.
    #[arg(long, env = "HOOKBOX_LOG", value_name = "LEVEL")]
    pub log_level: Option<String>,
    /// Log line format.
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,
    /// Build the example handlers of a Hookbox source tree (default: the one
    /// this binary was built from) and deploy them at start.
    #[arg(long, value_name = "SOURCE_DIR", num_args = 0..=1, default_missing_value = SOURCE_ROOT)]
    pub examples: Option<PathBuf>,
    /// Admin token to use instead of a generated one (at least 16 characters).
    #[arg(
        long,
        env = "HOOKBOX_ADMIN_TOKEN",
        hide_env_values = true,
        value_name = "SECRET"
    )]
    pub admin_token: Option<String>,
}

/// Runs the daemon. `data` is the global `--data`, `None` when it was left
/// at its default (so a config file's `data_dir` can apply).
pub fn serve(args: ServeArgs, data: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let file = match &args.config {
        Some(path) => ConfigFile::load(path)?,
        None => ConfigFile::default(),
    };
    let cfg = Config::resolve(
        file,
        Overrides {
            data_dir: data,
            listen: args.listen,
            log_level: args.log_level,
            log_format: args.log_format,
        },
    )?;
    init_tracing(&cfg.log_level, cfg.log_format)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("hookbox-io")
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(daemon::serve(
        cfg,
        ServeOptions {
            admin_token: args.admin_token,
            examples: args.examples,
        },
    ))?;
    Ok(ExitCode::SUCCESS)
}

/// Installs the tracing subscriber on stderr.
pub fn init_tracing(filter: &str, format: LogFormat) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .with_context(|| format!("invalid log level {filter:?}"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let installed = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    installed.map_err(|e| anyhow::anyhow!("installing the logger: {e}"))
}

/// `hookbox new`.
#[derive(Debug, clap::Args)]
pub struct NewArgs {
    /// The handler's name (a-z, 0-9, `-`, `_`); also the crate and folder name.
    pub name: String,
    /// Where to create the crate folder.
    #[arg(long, default_value = ".", value_name = "DIR")]
    pub path: PathBuf,
    /// The `guest-sdk` folder of a Hookbox checkout [default: the one this
    /// binary was built from].
    #[arg(long, value_name = "DIR")]
    pub sdk: Option<PathBuf>,
    /// The handler's language: `rust` (a crate), `python` (componentize-py)
    /// or `js` (componentize-js).
    #[arg(long, value_enum, default_value_t = crate::scaffold::Lang::Rust)]
    pub lang: crate::scaffold::Lang,
}

/// Scaffolds a handler crate.
pub fn new(args: NewArgs) -> anyhow::Result<ExitCode> {
    let sdk = args.sdk.unwrap_or_else(crate::scaffold::default_sdk_path);
    let dir = crate::scaffold::scaffold(&args.name, &args.path, &sdk, args.lang)?;
    println!("created {}", dir.display());
    let next = match args.lang {
        crate::scaffold::Lang::Rust => "cargo test && cargo build --release --target wasm32-wasip2",
        crate::scaffold::Lang::Python => {
            "python3 -m venv .venv && . .venv/bin/activate && pip install -r requirements.txt && pytest && ./build.sh"
        }
        crate::scaffold::Lang::Js => "npm install && npm test && npm run build",
    };
    println!("next: cd {} && {next}", dir.display());
    Ok(ExitCode::SUCCESS)
}
