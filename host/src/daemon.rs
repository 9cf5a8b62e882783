//! `hookbox serve`: opens the store, settles the admin token, starts the
//! runtime, the dispatcher (with the connectors' sinks), the connectors'
//! sources (Zulip, Redis) and the admin API, optionally builds and deploys
//! the example handlers, and shuts all of it down in order on SIGINT or
//! SIGTERM (stop the sources, stop accepting, let in-flight deliveries
//! finish, flush).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::api::{self, ApiLimits, AppState};
use crate::cluster::{ClusterRegistry, JetStreamInbox};
use crate::config::Config;
use crate::connectors::{Connectors, ConnectorsConfig};
use crate::dispatch::Dispatcher;
use crate::manifest::Manifest;
use crate::runtime::Runtime;
use crate::store::{Inbox, InboxKind, LogInbox, Store};

/// Name of the admin token file inside the data directory.
pub const ADMIN_TOKEN_FILE: &str = "admin.token";
/// How long in-flight deliveries get to finish at shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// How long the sources get to finish an accept in flight at shutdown.
const SOURCES_GRACE: Duration = Duration::from_secs(5);
/// How often the delivery log retention runs.
const RETENTION_EVERY: Duration = Duration::from_secs(60);
/// How often the delivery log's count cap is enforced between those passes.
const LOG_CAP_EVERY: Duration = Duration::from_secs(1);
/// The most log lines one of those cap passes removes.
const LOG_CAP_BUDGET: usize = 50_000;
/// A cap pass that takes this long is logged as a warning: it is falling
/// behind its one-second cadence. (A pass no longer holds other writers up,
/// so a shorter one costs only CPU: ≈ 13 µs per line on a 2-core VM.)
const SLOW_PASS: Duration = LOG_CAP_EVERY;

/// What `serve` needs beyond the config.
#[derive(Debug, Default, Clone)]
pub struct ServeOptions {
    /// `HOOKBOX_ADMIN_TOKEN`, read by the CLI layer.
    pub admin_token: Option<String>,
    /// Build the example handlers from this source tree and deploy them.
    pub examples: Option<PathBuf>,
}

/// The dispatcher's inbox, and in cluster mode the JetStream inbox itself
/// (the registry shares its connection).
type OpenedInbox = (Arc<dyn Inbox>, Option<Arc<JetStreamInbox>>);

/// The inbox `[store] inbox` names, or in cluster mode the JetStream
/// inbox. The log inbox first takes over the deliveries still waiting in
/// the sled inbox (a data directory last run with `inbox = "sled"`), so
/// none is stranded; the sled and JetStream inboxes refuse to start over
/// unfinished deliveries in the other embedded inbox.
fn open_inbox(cfg: &Config, store: &Store) -> anyhow::Result<OpenedInbox> {
    let dir = cfg.data_dir.join("inbox");
    let dir = dir.as_path();
    if cfg.cluster.is_some() || cfg.store.inbox == InboxKind::Sled {
        let waiting = LogInbox::unfinished_in(store, dir)
            .with_context(|| format!("reading the inbox log in {}", dir.display()))?;
        if waiting > 0 {
            let instead = if cfg.cluster.is_some() {
                "without `[cluster]`"
            } else {
                "with `[store] inbox = \"log\"` (the default)"
            };
            bail!(
                "the inbox log in {} still holds unfinished deliveries ({waiting}): run {instead} \
                 until they are done",
                dir.display()
            );
        }
    }
    if let Some(cluster) = &cfg.cluster {
        if store.has_pending()? {
            bail!(
                "`[cluster]` is set, but the sled inbox still holds unfinished deliveries: \
                 run without `[cluster]` until they are done"
            );
        }
        let node = crate::cluster::node_name(cluster.node.as_deref(), &cfg.data_dir)
            .context("naming this node")?;
        let inbox = JetStreamInbox::open(
            cluster.clone(),
            node,
            store.clone(),
            cfg.dispatch.idempotency_window,
        )
        .context("joining the cluster")?;
        let inbox = Arc::new(inbox);
        return Ok((inbox.clone(), Some(inbox)));
    }
    let inbox: Arc<dyn Inbox> = match cfg.store.inbox {
        InboxKind::Sled => Arc::new(store.clone()),
        InboxKind::Log => {
            let inbox = LogInbox::open(store.clone(), dir)
                .with_context(|| format!("opening the inbox log in {}", dir.display()))?;
            if store.has_pending()? {
                let moved = inbox
                    .adopt_sled()
                    .context("moving the sled inbox's deliveries into the inbox log")?;
                tracing::info!(
                    deliveries = moved,
                    "Moved the sled inbox's unfinished deliveries into the inbox log"
                );
            }
            Arc::new(inbox)
        }
    };
    Ok((inbox, None))
}

/// Runs the daemon until a shutdown signal.
pub async fn serve(cfg: Config, opts: ServeOptions) -> anyhow::Result<()> {
    // Before anything opens files: connections, the store and compiled
    // code all take descriptors.
    let open_files = api::raise_open_files_limit();
    tracing::debug!(?open_files, "Open-files limit");
    std::fs::create_dir_all(&cfg.data_dir)
        .with_context(|| format!("creating the data directory {}", cfg.data_dir.display()))?;
    let store_dir = cfg.data_dir.join("store");
    let store = {
        let dir = store_dir.clone();
        let options = cfg.store.clone();
        tokio::task::spawn_blocking(move || Store::open(&dir, options))
            .await?
            .with_context(|| format!("opening the store in {}", store_dir.display()))?
    };
    let token = admin_token(&cfg.data_dir, opts.admin_token)?;
    {
        let store = store.clone();
        let secret = token.secret.clone();
        tokio::task::spawn_blocking(move || store.ensure_admin_token(&secret))
            .await?
            .context("registering the admin token")?;
    }
    if token.created {
        // Printed once, on the first start; afterwards it is in the file.
        eprintln!(
            "hookbox: created an admin token (saved in {}):\n  {}",
            token.path.display(),
            token.secret
        );
    }

    let mut runtime_cfg = cfg.runtime.clone();
    // Uploads compile in a child process of this binary, under the caps.
    runtime_cfg.compile.isolate =
        Some(std::env::current_exe().context("finding the hookbox executable")?);
    let runtime = Runtime::new(runtime_cfg).context("starting the wasm runtime")?;
    let connectors = Connectors::new(ConnectorsConfig {
        zulip: cfg.zulip.clone(),
        redis: cfg.redis.clone(),
        webhooks: cfg.webhooks.clone(),
    })
    .context("configuring the connectors")?;
    let (dispatcher, registry) = {
        let store = store.clone();
        let dcfg = cfg.dispatch.clone();
        let builtins = connectors.builtins(tokio::runtime::Handle::current());
        let cfg = cfg.clone();
        tokio::task::spawn_blocking(move || {
            let (inbox, cluster) = open_inbox(&cfg, &store)?;
            let dispatcher = Dispatcher::start_on(store.clone(), inbox, runtime, dcfg, builtins)
                .context("starting the dispatcher")?;
            let registry = match (cluster, &cfg.cluster) {
                (Some(inbox), Some(_)) => {
                    let node = inbox.node();
                    let kv = crate::cluster::ClusterKv::join(&inbox)
                        .context("opening the cluster's handler KV")?;
                    dispatcher.share_kv(Arc::new(kv));
                    let r = ClusterRegistry::join(&inbox, store, &dispatcher, node)
                        .context("joining the cluster's registry")?;
                    Some(r)
                }
                _ => None,
            };
            Ok::<_, anyhow::Error>((dispatcher, registry))
        })
        .await??
    };

    if let Some(root) = opts.examples.clone() {
        let d = dispatcher.clone();
        tokio::task::spawn_blocking(move || deploy_examples(&d, &root))
            .await?
            .context("deploying the example handlers")?;
    }

    let retention = {
        let store = store.clone();
        let d = dispatcher.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(RETENTION_EVERY);
            loop {
                tick.tick().await;
                let store = store.clone();
                let d = d.clone();
                let swept = tokio::task::spawn_blocking(move || {
                    let swept = (store.enforce_retention()?, d.sweep_expired_kv()?);
                    release_free_memory();
                    Ok::<_, crate::store::StoreError>(swept)
                })
                .await;
                match swept {
                    Ok(Ok((0, 0))) => {}
                    Ok(Ok((logs, kv))) => {
                        tracing::info!(
                            log_entries = logs,
                            kv_entries = kv,
                            "Retention removed expired data"
                        )
                    }
                    Ok(Err(e)) => tracing::error!(error = %e, "Retention failed"),
                    Err(e) => tracing::error!(error = %e, "Retention task panicked"),
                }
            }
        })
    };
    // Between the full passes, the count cap a little at a time: a log at
    // its cap sheds about a second's worth of lines each second.
    let log_cap = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(LOG_CAP_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let store = store.clone();
                let pass = tokio::task::spawn_blocking(move || {
                    let started = std::time::Instant::now();
                    store
                        .enforce_log_cap(LOG_CAP_BUDGET)
                        .map(|n| (n, started.elapsed()))
                });
                match pass.await {
                    Ok(Ok((lines, took))) => crate::store::warn_if_slow(
                        "Trimming the delivery log to its cap",
                        usize::try_from(lines).unwrap_or(usize::MAX),
                        took,
                        SLOW_PASS,
                    ),
                    Ok(Err(e)) => {
                        tracing::error!(error = %e, "Enforcing the log's count cap failed")
                    }
                    Err(e) => tracing::error!(error = %e, "The log cap task panicked"),
                }
            }
        })
    };

    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("listening on {}", cfg.listen))?;
    let local = listener.local_addr()?;
    if let Some(r) = &registry {
        r.set_api(format!("http://{local}"));
    }
    // Before anyone is told the daemon is up: a SIGTERM from then on is a
    // graceful stop, not the default action (death without a flush).
    let shutdown = shutdown_signal();
    tracing::info!(addr = %local, data = %cfg.data_dir.display(), "Hookbox listening");
    // A plain line on stdout for scripts and tests that wait for readiness.
    println!("hookbox listening on http://{local}");
    let _ = std::io::stdout().flush();
    // After the examples are deployed: a new Zulip queue registers for the
    // event types the handlers subscribe to.
    let sources = connectors.start(&dispatcher, &cfg.dispatch);

    let state = AppState {
        dispatcher: dispatcher.clone(),
        limits: ApiLimits {
            max_body_bytes: cfg.max_body_bytes,
            max_component_bytes: cfg.dispatch.max_component_bytes,
            max_wait: cfg.max_wait,
            queue_wait: cfg.queue_wait,
        },
        zulip: connectors.zulip_status(),
        redis: connectors.redis_status(),
        webhooks: connectors.webhook_status(),
    };
    api::serve(listener, state, shutdown)
        .await
        .context("serving the admin API")?;

    tracing::info!("Shutting down: letting in-flight deliveries finish");
    sources.shutdown(SOURCES_GRACE).await;
    retention.abort();
    log_cap.abort();
    tokio::task::spawn_blocking(move || dispatcher.shutdown(SHUTDOWN_GRACE)).await?;
    tracing::info!("Stopped");
    Ok(())
}

/// Resolves on SIGINT or SIGTERM. The handlers are installed by this
/// call, not when the future is first polled.
#[cfg(unix)]
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{Signal, SignalKind, signal};
    let listen = |kind: SignalKind, name: &'static str| match signal(kind) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::error!(error = %e, signal = name, "Cannot listen for the signal");
            None
        }
    };
    let wait = |s: Option<Signal>| async move {
        match s {
            Some(mut s) => {
                s.recv().await;
            }
            None => std::future::pending::<()>().await,
        }
    };
    let int = wait(listen(SignalKind::interrupt(), "SIGINT"));
    let term = wait(listen(SignalKind::terminate(), "SIGTERM"));
    async move {
        tokio::select! {
            () = int => {},
            () = term => {},
        }
    }
}

/// Resolves on Ctrl-C.
#[cfg(not(unix))]
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "Cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    }
}

/// The admin secret and where it came from.
struct AdminToken {
    secret: String,
    path: PathBuf,
    created: bool,
}

/// `HOOKBOX_ADMIN_TOKEN` if set (also written to the file, so the CLI finds
/// it), else the token file, else a new random token saved with mode 0600.
fn admin_token(data_dir: &Path, from_env: Option<String>) -> anyhow::Result<AdminToken> {
    let path = data_dir.join(ADMIN_TOKEN_FILE);
    if let Some(secret) = from_env {
        let secret = secret.trim().to_string();
        if secret.len() < 16 {
            bail!("HOOKBOX_ADMIN_TOKEN must be at least 16 characters");
        }
        write_private(&path, &secret)?;
        return Ok(AdminToken {
            secret,
            path,
            created: false,
        });
    }
    match std::fs::read_to_string(&path) {
        Ok(s) if !s.trim().is_empty() => Ok(AdminToken {
            secret: s.trim().to_string(),
            path,
            created: false,
        }),
        Ok(_) => bail!(
            "{} is empty; delete it to create a new token",
            path.display()
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let secret = format!("hbx_{}", hex::encode(rand::random::<[u8; 32]>()));
            write_private(&path, &secret)?;
            Ok(AdminToken {
                secret,
                path,
                created: true,
            })
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

fn write_private(path: &Path, secret: &str) -> anyhow::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    writeln!(f, "{secret}")?;
    Ok(())
}

/// Builds every crate under `<root>/example-handlers` to a wasm32-wasip2
/// component and deploys it with its `manifest.json`, unless the same code
/// and manifest are already active.
pub fn deploy_examples(dispatcher: &Dispatcher, root: &Path) -> anyhow::Result<()> {
    let examples = root.join("example-handlers");
    let mut crates: Vec<(String, PathBuf)> = std::fs::read_dir(&examples)
        .with_context(|| {
            format!(
                "--examples needs the Hookbox source tree; {} is not there",
                examples.display()
            )
        })?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.join("Cargo.toml").is_file() && p.join("manifest.json").is_file())
        .filter_map(|p| Some((p.file_name()?.to_str()?.to_string(), p)))
        .collect();
    crates.sort();
    if crates.is_empty() {
        bail!("no example handlers found in {}", examples.display());
    }
    let target = root.join("target").join("examples-wasm");
    eprintln!(
        "hookbox: building {} example handlers (first time takes a minute)…",
        crates.len()
    );
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.arg("build")
        .arg("--release")
        .arg("--target")
        .arg("wasm32-wasip2")
        .arg("--manifest-path")
        .arg(root.join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", &target)
        // Deployed components carry no debug info: smaller uploads, faster compiles.
        .env("CARGO_PROFILE_RELEASE_DEBUG", "false")
        .env("CARGO_PROFILE_RELEASE_STRIP", "true")
        .current_dir(root);
    for (name, _) in &crates {
        cmd.arg("-p").arg(name);
    }
    let status = cmd
        .status()
        .context("running cargo to build the examples")?;
    if !status.success() {
        bail!("building the example handlers failed ({status})");
    }
    for (name, dir) in crates {
        let wasm_path = target
            .join("wasm32-wasip2/release")
            .join(format!("{}.wasm", name.replace('-', "_")));
        let wasm = std::fs::read(&wasm_path)
            .with_context(|| format!("reading {}", wasm_path.display()))?;
        let manifest_text = std::fs::read_to_string(dir.join("manifest.json"))?;
        let manifest = Manifest::from_json(&manifest_text)
            .with_context(|| format!("{}/manifest.json", dir.display()))?;
        if already_active(dispatcher.store(), &manifest, &wasm)? {
            eprintln!("hookbox: {} is up to date", manifest.name);
            continue;
        }
        let deployed = dispatcher
            .deploy(manifest, &wasm, "serve --examples")
            .with_context(|| format!("deploying {name}"))?;
        eprintln!(
            "hookbox: deployed {} version {}",
            deployed.handler.name, deployed.version.version
        );
    }
    Ok(())
}

fn already_active(store: &Store, manifest: &Manifest, wasm: &[u8]) -> anyhow::Result<bool> {
    use sha2::{Digest, Sha256};
    let Some(h) = store.handler(&manifest.name)? else {
        return Ok(false);
    };
    let Some(v) = store.version(&h.name, h.active_version)? else {
        return Ok(false);
    };
    Ok(v.module_hash == hex::encode(Sha256::digest(wasm)) && &v.manifest == manifest)
}

/// Turns transparent huge pages off for this process (and the children it
/// spawns, such as the compile child), unless the operator set
/// `MIMALLOC_ALLOW_THP`, which then decides.
///
/// mimalloc, the `hookbox` binary's allocator, asks for huge pages on its
/// arenas (`madvise(MADV_HUGEPAGE)`). On a kernel in THP's `madvise` mode
/// (the default of Debian and most distributions) each first touch of such
/// a region then faults in 2 MiB at once, zeroed, after a compaction if no
/// free 2 MiB page is at hand: a handler's first delivery, which maps its
/// code and allocates its instance, became 2–3x slower at the p99
/// (5.7–6.8 ms against 2.1–2.6 ms with huge pages off), the idle daemon
/// held ≈ 40 MiB more, and a restart with 10 000 handlers took twice as long
/// (BENCHMARKS.md, issue 20). glibc's malloc never asked for huge pages, so
/// this keeps the memory behaviour operators had. The kernel checks the flag
/// at each fault, so the arena mimalloc reserved before `main` is covered.
///
/// Best effort: a kernel built without THP refuses the call, and then
/// there is nothing to turn off.
pub fn disable_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_none() {
        let _ = rustix::thread::disable_transparent_huge_pages(true);
    }
}

/// Gives the allocator's free pages back to the system. glibc keeps memory
/// freed by a thread in that thread's arena, and trims only the top of each
/// heap: at 10k events/s a 10-minute soak's RSS rose by ≈ 145 MiB this way,
/// and one `malloc_trim` gave 194 MiB of 528 back (BENCHMARKS.md, issue 14).
/// Called once per retention pass, off the delivery path.
///
/// The `hookbox` binary allocates through mimalloc (main.rs), which gives
/// freed pages back by itself, so there this trims only what C code left
/// in glibc's heaps; a program that embeds the library with the system
/// allocator (the tests) still needs it.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn release_free_memory() {
    // SAFETY: `malloc_trim` takes no pointers and only returns free pages
    // of the allocator's own heaps (`madvise(MADV_DONTNEED)`); it locks
    // each arena while it walks it, like any `malloc` call.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Other allocators give free memory back by themselves.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn release_free_memory() {}
