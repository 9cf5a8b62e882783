//! What the real-service harnesses (`redis_server`, `nats_server`) share:
//! finding the server's binary, failing with an install hint when it is
//! missing (these tests never skip), and free loopback ports.

use std::net::TcpListener;
use std::path::PathBuf;

/// The binary `name`: `$<env>` when set, else the first on `PATH`. Panics
/// with `hint` (how to install it) when there is none.
pub(crate) fn binary(env: &str, name: &str, hint: &str) -> PathBuf {
    if let Some(bin) = std::env::var_os(env) {
        return PathBuf::from(bin);
    }
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{hint}"))
}

/// A loopback port nothing listens on right now.
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}
