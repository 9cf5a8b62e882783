//! A real `redis-server` (Debian's package) for the Redis connector tests,
//! on a free loopback port with its own data directory, append-only file
//! fsynced on every write (so a restart loses nothing), no RDB snapshots.
//! A missing binary fails the test with an install hint: these tests do not
//! skip. `tests/run-all.sh` installs the package when it is missing.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::service::{self, free_port};

/// How long the server gets to come up or go down.
const WAIT: Duration = Duration::from_secs(20);

/// A running `redis-server`. Killed when dropped.
#[derive(Debug)]
pub struct RedisServer {
    bin: PathBuf,
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
    tls: Option<Tls>,
}

/// The TLS side of a server from [`RedisServer::start_tls`]: its port and
/// PEM files (a throwaway CA, the server's certificate for `127.0.0.1`, and
/// a client certificate the server requires).
#[derive(Debug, Clone)]
pub struct Tls {
    /// The TLS port (the plain port stays open for the test's publisher).
    pub port: u16,
    /// The CA that signed the server's and the client's certificates.
    pub ca: PathBuf,
    /// The server's certificate and key.
    server_cert: PathBuf,
    server_key: PathBuf,
    /// A client certificate signed by the CA, and its key.
    pub client_cert: PathBuf,
    /// The client certificate's key.
    pub client_key: PathBuf,
}

/// Writes a throwaway CA, a server certificate for 127.0.0.1 and a client
/// certificate into `dir`.
fn make_certificates(dir: &std::path::Path, port: u16) -> Tls {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::new()).expect("CA parameters");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "hookbox test CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("a CA key"))
        .expect("the CA certificate");
    let leaf = |names: Vec<String>| {
        let key = KeyPair::generate().expect("a key");
        let cert = CertificateParams::new(names)
            .expect("certificate parameters")
            .signed_by(&key, &ca)
            .expect("a certificate signed by the CA");
        (cert.pem(), key.serialize_pem())
    };
    let (server_cert, server_key) = leaf(vec!["127.0.0.1".into(), "localhost".into()]);
    let (client_cert, client_key) = leaf(vec!["hookbox-client".into()]);
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("writing {name}: {e}"));
        path
    };
    Tls {
        port,
        ca: write("ca.pem", &ca.pem()),
        server_cert: write("server.pem", &server_cert),
        server_key: write("server.key", &server_key),
        client_cert: write("client.pem", &client_cert),
        client_key: write("client.key", &client_key),
    }
}

/// `redis-server`: `$REDIS_SERVER`, else the one on `PATH`.
fn redis_bin() -> PathBuf {
    service::binary(
        "REDIS_SERVER",
        "redis-server",
        "redis-server is not installed; the Redis connector tests need it. Install it with \
             `apt-get install redis-server` (Debian/Ubuntu; `tests/run-all.sh` does this) or set REDIS_SERVER",
    )
}

impl RedisServer {
    /// Starts a server on a free port.
    pub fn start() -> RedisServer {
        Self::start_inner(false)
    }

    /// Starts a server with a plain port and a TLS port that requires a
    /// client certificate signed by its throwaway CA ([`RedisServer::tls`]).
    pub fn start_tls() -> RedisServer {
        Self::start_inner(true)
    }

    fn start_inner(tls: bool) -> RedisServer {
        let mut s = RedisServer {
            bin: redis_bin(),
            port: free_port(),
            dir: tempfile::Builder::new()
                .prefix("hookbox-redis-")
                .tempdir()
                .expect("a directory for redis"),
            child: None,
            tls: None,
        };
        if tls {
            s.tls = Some(make_certificates(s.dir.path(), free_port()));
        }
        s.spawn();
        s
    }

    /// The TLS port and certificates of a server from [`RedisServer::start_tls`].
    pub fn tls(&self) -> &Tls {
        self.tls
            .as_ref()
            .expect("started with RedisServer::start_tls")
    }

    fn spawn(&mut self) {
        let mut cmd = Command::new(&self.bin);
        if let Some(tls) = &self.tls {
            cmd.arg("--tls-port")
                .arg(tls.port.to_string())
                .arg("--tls-cert-file")
                .arg(&tls.server_cert)
                .arg("--tls-key-file")
                .arg(&tls.server_key)
                .arg("--tls-ca-cert-file")
                .arg(&tls.ca)
                .args(["--tls-auth-clients", "yes"]);
        }
        let child = cmd
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .arg("--dir")
            .arg(self.dir.path())
            .args([
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
            ])
            .args(["--daemonize", "no", "--protected-mode", "yes"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", self.bin.display()));
        self.child = Some(child);
        let deadline = Instant::now() + WAIT;
        loop {
            if self.ping() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer PING on port {} within {WAIT:?}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn ping(&self) -> bool {
        redis::Client::open(self.url())
            .and_then(|c| c.get_connection_with_timeout(Duration::from_millis(200)))
            .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
            .is_ok()
    }

    /// `redis://127.0.0.1:PORT/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// A new connection.
    pub fn connect(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(2)))
            .expect("connecting to the test redis-server")
    }

    /// Stops the server with SIGTERM (it writes its data) and waits.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let deadline = Instant::now() + WAIT;
        while child.try_wait().ok().flatten().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.wait();
    }

    /// Stops and starts the server on the same port and data.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
