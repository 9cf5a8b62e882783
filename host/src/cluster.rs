//! Cluster mode: several `hookbox serve` nodes sharing one event log on
//! NATS JetStream (`[cluster] nats = [...]`). The only owner of the
//! `async-nats` crate.
//!
//! What is shared, and how (README "Run a cluster" is the user's view):
//! - **The inbox** ([`JetStreamInbox`]): one work-queue stream holds every
//!   accepted delivery as a message on `<prefix>.d.<handler>.<event id>`;
//!   ingest answers 202 only after JetStream acknowledged every message of
//!   the batch. Each handler has one durable pull consumer that all nodes
//!   fetch from, so each delivery runs on one node; a node holds at most
//!   [`LOCAL_PREFETCH`] per handler and keeps them alive with progress
//!   acks, so a node that dies gives its deliveries back after `ack_wait`.
//!   A retry is a nak with the backoff as delay (any node runs it); a final
//!   outcome is an ack. Idempotency keys live in a KV bucket whose entries
//!   expire with the idempotency window, so a key is seen by every node.
//! - **The registry** ([`ClusterRegistry`]): handlers and versions in a KV
//!   bucket (compare-and-set picks version numbers), components in the
//!   object store; every node's store is a view kept by a watch.
//! - **The delivery log, dead letters and stats** (`journal.rs`): log
//!   lines in a stream every node copies into its store, dead letters in
//!   a KV bucket every node watches, each node's counters in a KV bucket
//!   every node sums.
//! - **Handler KV** ([`ClusterKv`]): one KV bucket, every write a
//!   compare-and-set on the key's revision (`kv.rs`).
//! - **Tokens and schemas** ([`ClusterRegistry`]): KV buckets every node
//!   watches into its store.
//!
//! The client runs on its own small tokio runtime on a dedicated thread:
//! the inbox's methods are blocking (the dispatcher calls them from worker
//! threads and blocking tasks) and wait on that runtime.

mod inbox;
mod journal;
mod kv;
mod registry;

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

pub use inbox::{JetStreamInbox, LOCAL_PREFETCH};
pub use kv::ClusterKv;
pub use registry::ClusterRegistry;

/// `[cluster]` in the config file; present with `nats` set: cluster mode.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSection {
    /// NATS server URLs (`nats://host:4222`, `tls://…`); several for a
    /// NATS cluster, the client fails over between them.
    #[serde(default)]
    pub nats: Vec<String>,
    /// A NATS `.creds` file (JWT + nkey seed).
    pub credentials: Option<PathBuf>,
    /// A PEM file of CA certificates to trust for TLS.
    pub tls_ca: Option<PathBuf>,
    /// A client certificate (PEM) for mutual TLS, with `tls_key`.
    pub tls_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    pub tls_key: Option<PathBuf>,
    /// Insist on TLS even for `nats://` URLs (default false).
    pub tls_required: Option<bool>,
    /// Replicas of the stream and buckets (1, 3 or 5; default 1).
    pub replicas: Option<usize>,
    /// How long a node may hold a delivery without a sign of life before
    /// JetStream gives it to another node (default `30s`).
    #[serde(default, with = "crate::config::opt_duration")]
    pub ack_wait: Option<Duration>,
    /// Names of the stream, consumers and buckets start with it, so two
    /// Hookbox clusters can share one NATS account (default `hookbox`).
    pub prefix: Option<String>,
    /// This node's name in `GET /v1/cluster` (default: the host name and a
    /// random suffix, made once and kept in the data directory).
    pub node: Option<String>,
}

/// Validated cluster settings.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// Server URLs, at least one.
    pub nats: Vec<String>,
    /// `.creds` file.
    pub credentials: Option<PathBuf>,
    /// CA certificates.
    pub tls_ca: Option<PathBuf>,
    /// Client certificate and key.
    pub tls_client: Option<(PathBuf, PathBuf)>,
    /// TLS required.
    pub tls_required: bool,
    /// Stream and bucket replicas.
    pub replicas: usize,
    /// The consumers' `ack_wait`.
    pub ack_wait: Duration,
    /// Name prefix.
    pub prefix: String,
    /// This node's name, when configured.
    pub node: Option<String>,
}

impl ClusterSection {
    /// `None` without `nats` URLs (single-node mode); the checked settings
    /// otherwise.
    pub fn resolve(&self) -> Result<Option<ClusterConfig>, String> {
        let other_keys = self.credentials.is_some()
            || self.tls_ca.is_some()
            || self.tls_cert.is_some()
            || self.tls_key.is_some()
            || self.tls_required.is_some()
            || self.replicas.is_some()
            || self.ack_wait.is_some()
            || self.prefix.is_some()
            || self.node.is_some();
        if self.nats.is_empty() {
            if other_keys {
                return Err("[cluster]: `nats` must list at least one server URL".into());
            }
            return Ok(None);
        }
        for url in &self.nats {
            let scheme = url.split_once("://").map(|(s, _)| s);
            if !matches!(scheme, Some("nats" | "tls")) || url.len() < "nats://x".len() {
                return Err(format!(
                    "[cluster]: `nats` entry {url:?} is not a nats:// or tls:// URL"
                ));
            }
        }
        let tls_client = match (&self.tls_cert, &self.tls_key) {
            (Some(c), Some(k)) => Some((c.clone(), k.clone())),
            (None, None) => None,
            _ => {
                return Err("[cluster]: `tls_cert` and `tls_key` go together".into());
            }
        };
        let replicas = self.replicas.unwrap_or(1);
        if !matches!(replicas, 1 | 3 | 5) {
            return Err(format!(
                "[cluster]: `replicas` must be 1, 3 or 5, got {replicas}"
            ));
        }
        let ack_wait = self.ack_wait.unwrap_or(Duration::from_secs(30));
        if ack_wait < Duration::from_secs(1) {
            return Err("[cluster]: `ack_wait` must be at least 1s".into());
        }
        let prefix = self.prefix.clone().unwrap_or_else(|| "hookbox".into());
        let prefix_ok = !prefix.is_empty()
            && prefix.len() <= 32
            && prefix
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if !prefix_ok {
            return Err(format!(
                "[cluster]: `prefix` must be 1 to 32 of a-z 0-9 _ -, got {prefix:?}"
            ));
        }
        if let Some(node) = &self.node
            && !valid_node_name(node)
        {
            return Err(format!(
                "[cluster]: `node` must be 1 to 64 of A-Z a-z 0-9 _ -, got {node:?}"
            ));
        }
        Ok(Some(ClusterConfig {
            nats: self.nats.clone(),
            credentials: self.credentials.clone(),
            tls_ca: self.tls_ca.clone(),
            tls_client,
            tls_required: self.tls_required.unwrap_or(false),
            replicas,
            ack_wait,
            prefix,
            node: self.node.clone(),
        }))
    }
}

fn valid_node_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// This node's name: the configured one, else the one kept in
/// `<data_dir>/node-name`, else a new one (host name and a random suffix)
/// written there.
pub fn node_name(configured: Option<&str>, data_dir: &std::path::Path) -> std::io::Result<String> {
    if let Some(n) = configured {
        return Ok(n.to_string());
    }
    let path = data_dir.join("node-name");
    match std::fs::read_to_string(&path) {
        Ok(s) if valid_node_name(s.trim()) => return Ok(s.trim().to_string()),
        Ok(_) => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{} does not hold a node name; delete it", path.display()),
            ));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let host: String = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap_or_default()
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .take(40)
        .collect();
    let host = if host.is_empty() { "node".into() } else { host };
    let name = format!("{host}-{}", hex::encode(rand::random::<[u8; 3]>()));
    std::fs::write(&path, format!("{name}\n"))?;
    Ok(name)
}

/// Why the cluster could not be joined or used.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// Connecting to NATS failed.
    #[error("connecting to NATS ({servers}): {message}")]
    Connect {
        /// The URLs tried.
        servers: String,
        /// The client's error.
        message: String,
    },
    /// JetStream refused to create or open a stream, consumer or bucket.
    #[error("JetStream: {0}")]
    JetStream(String),
    /// The client's runtime thread did not start.
    #[error("starting the NATS client runtime: {0}")]
    Runtime(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Option<ClusterConfig>, String> {
        let s: ClusterSection = toml::from_str(text).map_err(|e| e.to_string())?;
        s.resolve()
    }

    #[test]
    fn no_urls_is_single_node_and_settings_are_checked() {
        assert!(parse("").unwrap().is_none());
        let c = parse("nats = [\"nats://127.0.0.1:4222\"]\nreplicas = 3\nack_wait = \"5s\"")
            .unwrap()
            .unwrap();
        assert_eq!((c.replicas, c.ack_wait), (3, Duration::from_secs(5)));
        assert_eq!(c.prefix, "hookbox");
        let dir = tempfile::tempdir().unwrap();
        let made = node_name(None, dir.path()).unwrap();
        assert!(valid_node_name(&made), "{made}");
        assert_eq!(node_name(None, dir.path()).unwrap(), made, "kept");
        assert_eq!(node_name(Some("n1"), dir.path()).unwrap(), "n1");
        for (bad, says) in [
            ("replicas = 3", "`nats` must list"),
            ("nats = [\"http://x:1\"]", "not a nats://"),
            ("nats = [\"nats://x:1\"]\nreplicas = 2", "1, 3 or 5"),
            (
                "nats = [\"nats://x:1\"]\nack_wait = \"10ms\"",
                "at least 1s",
            ),
            ("nats = [\"nats://x:1\"]\nprefix = \"A.b\"", "`prefix`"),
            (
                "nats = [\"nats://x:1\"]\ntls_cert = \"c.pem\"",
                "go together",
            ),
            ("nats = [\"nats://x:1\"]\nnode = \"a b\"", "`node`"),
        ] {
            let err = parse(bad).unwrap_err();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }
}
