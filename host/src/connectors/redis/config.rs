//! `[[redis]]` sections: one event bus each, checked once into a
//! [`RedisConfig`]. The password comes from `password_file` or
//! `password_env`, never from the URL, and is held as a [`Secret`]; TLS is
//! `rediss://`, verified against the system's CA store or `ca_file`, with
//! an optional client certificate (`client_cert_file` + `client_key_file`).

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::connectors::secret::{self, Secret};
use crate::connectors::{bounded, check_name, check_unique};

/// Buses one daemon connects to.
const BUSES_MAX: usize = 32;
/// Longest prefix, stream, group or consumer name.
const KEY_MAX: usize = 200;

/// How the bus carries events.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RedisMode {
    /// `PUBLISH` on `<prefix>:<eventType>`; the source pattern-subscribes
    /// to `<prefix>:*`. Messages sent while the source is disconnected are
    /// lost (that is pub/sub).
    #[default]
    Pubsub,
    /// `XADD` to one stream; the source reads it with a consumer group and
    /// acknowledges each entry after Hookbox accepted it.
    Stream,
}

impl RedisMode {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            RedisMode::Pubsub => "pubsub",
            RedisMode::Stream => "stream",
        }
    }
}

/// A `[[redis]]` section as written in the file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisSection {
    /// The bus's name in Hookbox (`source` of its events: `redis:<name>`).
    pub name: String,
    /// `redis://host:port/db` or `rediss://…` (TLS), without a password.
    pub url: String,
    /// The ACL user (default: none, or `default` with a password).
    pub username: Option<String>,
    /// A file holding the password.
    pub password_file: Option<PathBuf>,
    /// An environment variable holding the password.
    pub password_env: Option<String>,
    /// Channel prefix: events travel on `<prefix>:<eventType>` (default `event:`).
    pub prefix: Option<String>,
    /// `pubsub` (default) or `stream`.
    pub mode: Option<RedisMode>,
    /// The stream key in `stream` mode (default `<prefix>:stream`).
    pub stream: Option<String>,
    /// The stream entry field holding the JSON envelope (default `event`).
    pub stream_field: Option<String>,
    /// The consumer group (default `hookbox`).
    pub group: Option<String>,
    /// This daemon's consumer name in the group (default `hookbox`).
    pub consumer: Option<String>,
    /// Whether messages on the bus become events (default true).
    pub source: Option<bool>,
    /// Whether `redis.publish` events are published here (default true).
    pub sink: Option<bool>,
    /// Messages read per round trip (default 100).
    pub batch: Option<usize>,
    /// Longest wait for a command's answer (default `5s`).
    #[serde(default, with = "crate::config::opt_duration")]
    pub timeout: Option<Duration>,
    /// Longest pause between reconnection attempts (default `30s`).
    #[serde(default, with = "crate::config::opt_duration")]
    pub max_backoff: Option<Duration>,
    /// Publishes the sink makes at once (default 4).
    pub sink_concurrency: Option<u32>,
    /// `rediss://` only: PEM certificates to trust instead of the system's
    /// CA store (a private CA).
    pub ca_file: Option<PathBuf>,
    /// `rediss://` only: a PEM client certificate for mutual TLS (with
    /// `client_key_file`).
    pub client_cert_file: Option<PathBuf>,
    /// `rediss://` only: the client certificate's PEM private key.
    pub client_key_file: Option<PathBuf>,
}

/// TLS material beyond the system's CA store, read at start-up.
#[derive(Clone, Debug, Default)]
pub struct RedisTls {
    /// PEM certificates trusted instead of the system's store.
    pub ca_pem: Option<Vec<u8>>,
    /// A PEM client certificate and its key (held as a [`Secret`]).
    pub client: Option<(Vec<u8>, Secret)>,
}

/// One bus, validated.
#[derive(Clone, Debug)]
pub struct RedisConfig {
    /// Its name.
    pub name: String,
    /// The URL without credentials.
    pub url: String,
    /// ACL user.
    pub username: Option<String>,
    /// Password.
    pub password: Option<Secret>,
    /// Channel prefix.
    pub prefix: String,
    /// Pub/sub or stream.
    pub mode: RedisMode,
    /// Stream key.
    pub stream: String,
    /// Stream entry field.
    pub stream_field: String,
    /// Consumer group.
    pub group: String,
    /// Consumer name.
    pub consumer: String,
    /// Source on.
    pub source: bool,
    /// Sink on.
    pub sink: bool,
    /// Messages per read.
    pub batch: usize,
    /// Command timeout.
    pub timeout: Duration,
    /// First reconnection pause.
    pub initial_backoff: Duration,
    /// Reconnection pause cap.
    pub max_backoff: Duration,
    /// Sink publishes at once.
    pub sink_concurrency: u32,
    /// A private CA and/or a client certificate (`rediss://` only).
    pub tls: Option<RedisTls>,
}

impl RedisConfig {
    /// A bus with default settings (tests and embedders).
    pub fn new(name: &str, url: &str, mode: RedisMode) -> Result<RedisConfig, String> {
        check_name("redis", name)?;
        let url = check_url(url)?;
        let prefix = "event:".to_string();
        Ok(RedisConfig {
            name: name.into(),
            url,
            username: None,
            password: None,
            stream: format!("{prefix}:stream"),
            prefix,
            mode,
            stream_field: "event".into(),
            group: "hookbox".into(),
            consumer: "hookbox".into(),
            source: true,
            sink: true,
            batch: 100,
            timeout: Duration::from_secs(5),
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(30),
            sink_concurrency: 4,
            tls: None,
        })
    }

    /// The sink's handler name.
    pub fn sink_name(&self) -> String {
        format!("redis:{}", self.name)
    }

    /// The channel of an event type.
    pub fn channel(&self, event_type: &str) -> String {
        format!("{}:{event_type}", self.prefix)
    }

    /// The pattern the pub/sub source subscribes to: `<prefix>:*`, with the
    /// prefix's glob characters escaped.
    pub fn pattern(&self) -> String {
        let mut p = String::new();
        for c in self.prefix.chars() {
            if matches!(c, '*' | '?' | '[' | ']' | '\\') {
                p.push('\\');
            }
            p.push(c);
        }
        p.push_str(":*");
        p
    }
}

impl crate::connectors::Section for RedisSection {
    type Config = RedisConfig;

    fn resolve(&self, env: &dyn Fn(&str) -> Option<String>) -> Result<RedisConfig, String> {
        RedisSection::resolve(self, env)
    }

    fn check_all(all: &[RedisConfig]) -> Result<(), String> {
        validate_buses(all)
    }
}

impl RedisSection {
    /// Checks the section and reads the password. Errors name the bus and
    /// setting, never the password.
    pub fn resolve(&self, env: &dyn Fn(&str) -> Option<String>) -> Result<RedisConfig, String> {
        let name = &self.name;
        check_name("redis", name)?;
        let at = |msg: String| format!("[[redis]] {name:?}: {msg}");
        let mut c = RedisConfig::new(name, &self.url, self.mode.unwrap_or_default()).map_err(at)?;
        c.password = secret::read(
            "password",
            self.password_file.as_deref(),
            self.password_env.as_deref(),
            env,
        )
        .map_err(at)?;
        c.username = self.username.clone();
        let key = |what: &str, v: &Option<String>, default: &str| match v {
            Some(s) if s.is_empty() || s.len() > KEY_MAX || s.chars().any(char::is_control) => {
                Err(at(format!(
                    "`{what}` must be 1 to {KEY_MAX} bytes without control characters"
                )))
            }
            Some(s) => Ok(s.clone()),
            None => Ok(default.to_string()),
        };
        c.prefix = key("prefix", &self.prefix, &c.prefix)?;
        c.stream = key("stream", &self.stream, &format!("{}:stream", c.prefix))?;
        c.stream_field = key("stream_field", &self.stream_field, &c.stream_field)?;
        c.group = key("group", &self.group, &c.group)?;
        c.consumer = key("consumer", &self.consumer, &c.consumer)?;
        c.source = self.source.unwrap_or(true);
        c.sink = self.sink.unwrap_or(true);
        c.batch = match self.batch {
            Some(n @ 1..=10_000) => n,
            Some(_) => return Err(at("`batch` must be 1 to 10000".into())),
            None => c.batch,
        };
        let (ms, hour) = (Duration::from_millis(100), Duration::from_secs(3600));
        c.timeout = bounded(
            "timeout",
            self.timeout,
            c.timeout,
            ms,
            Duration::from_secs(60),
        )
        .map_err(at)?;
        c.max_backoff =
            bounded("max_backoff", self.max_backoff, c.max_backoff, ms, hour).map_err(at)?;
        c.initial_backoff = c.initial_backoff.min(c.max_backoff);
        c.sink_concurrency = match self.sink_concurrency {
            Some(n @ 1..=64) => n,
            Some(_) => return Err(at("`sink_concurrency` must be 1 to 64".into())),
            None => c.sink_concurrency,
        };
        c.tls = self.tls().map_err(at)?;
        if c.tls.is_some() && !c.url.starts_with("rediss://") {
            return Err(at(
                "`ca_file`, `client_cert_file` and `client_key_file` need a rediss:// (TLS) `url`"
                    .into(),
            ));
        }
        Ok(c)
    }

    /// Reads `ca_file` and the client certificate pair, checking each holds
    /// PEM of the right kind (the key's contents never appear in errors).
    fn tls(&self) -> Result<Option<RedisTls>, String> {
        let read = |what: &str, path: &std::path::Path, label: &str| {
            let bytes =
                std::fs::read(path).map_err(|e| format!("`{what}` {}: {e}", path.display()))?;
            let text = String::from_utf8_lossy(&bytes);
            if !text.contains(&format!("-----BEGIN {label}")) {
                return Err(format!(
                    "`{what}` {} holds no PEM `{label}` block",
                    path.display()
                ));
            }
            Ok(bytes)
        };
        let ca_pem = match &self.ca_file {
            Some(path) => Some(read("ca_file", path, "CERTIFICATE")?),
            None => None,
        };
        let client = match (&self.client_cert_file, &self.client_key_file) {
            (Some(cert), Some(key)) => {
                let cert = read("client_cert_file", cert, "CERTIFICATE")?;
                // `PRIVATE KEY`, `RSA PRIVATE KEY` and `EC PRIVATE KEY` all end so.
                let key_bytes = std::fs::read(key)
                    .map_err(|e| format!("`client_key_file` {}: {e}", key.display()))?;
                let key_text = String::from_utf8(key_bytes)
                    .map_err(|_| format!("`client_key_file` {} is not PEM text", key.display()))?;
                if !key_text.contains("PRIVATE KEY-----") {
                    return Err(format!(
                        "`client_key_file` {} holds no PEM private key",
                        key.display()
                    ));
                }
                Some((cert, Secret::new(key_text)))
            }
            (None, None) => None,
            _ => {
                return Err(
                    "`client_cert_file` and `client_key_file` go together (mutual TLS)".into(),
                );
            }
        };
        Ok((ca_pem.is_some() || client.is_some()).then_some(RedisTls { ca_pem, client }))
    }
}

/// Checks the buses as a whole: unique names, few enough, one sink.
pub fn validate_buses(buses: &[RedisConfig]) -> Result<(), String> {
    if buses.len() > BUSES_MAX {
        return Err(format!(
            "{} [[redis]] buses; the limit is {BUSES_MAX}",
            buses.len()
        ));
    }
    check_unique("redis", buses.iter().map(|b| b.name.as_str()))?;
    if buses.iter().filter(|b| b.sink).count() > 1 {
        return Err(
            "more than one [[redis]] bus has `sink = true`: `redis.publish` events go to one bus; set `sink = false` on the others"
                .into(),
        );
    }
    Ok(())
}

/// A `redis://` or `rediss://` URL without credentials.
fn check_url(url: &str) -> Result<String, String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("`url` is not a URL ({e})"))?;
    if !matches!(parsed.scheme(), "redis" | "rediss") || parsed.host_str().is_none() {
        return Err("`url` must be a redis:// or rediss:// (TLS) URL".into());
    }
    if parsed.password().is_some() || !parsed.username().is_empty() {
        return Err(
            "`url` must not carry credentials: set `username` and `password_file` or `password_env`"
                .into(),
        );
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err("`url` must not carry a query or fragment".into());
    }
    Ok(parsed.as_str().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(extra: &str) -> Result<RedisSection, String> {
        toml::from_str(&format!("name = \"bus\"\n{extra}")).map_err(|e| e.to_string())
    }

    fn env(var: &str) -> Option<String> {
        (var == "PW").then(|| "s3cr3t\n".to_string())
    }

    #[test]
    fn defaults_and_overrides() {
        let c = section("url = \"redis://127.0.0.1:6379/0\"")
            .unwrap()
            .resolve(&env)
            .unwrap();
        assert_eq!(c.mode, RedisMode::Pubsub);
        assert_eq!(c.prefix, "event:");
        assert_eq!(c.channel("TICKET_CREATED"), "event::TICKET_CREATED");
        assert_eq!(c.pattern(), "event::*");
        assert_eq!(c.stream, "event::stream");
        assert_eq!(c.sink_name(), "redis:bus");
        assert!(c.source && c.sink && c.password.is_none());

        let c = section(
            "url = \"rediss://cache.example.com:6380\"\nmode = \"stream\"\nprefix = \"app*\"\n\
             password_env = \"PW\"\nusername = \"hookbox\"\ngroup = \"g\"\nbatch = 10",
        )
        .unwrap()
        .resolve(&env)
        .unwrap();
        assert_eq!(c.mode, RedisMode::Stream);
        assert_eq!(c.pattern(), "app\\*:*");
        assert_eq!(c.stream, "app*:stream");
        assert_eq!(c.password.as_ref().unwrap().expose(), "s3cr3t");
        assert_eq!((c.group.as_str(), c.batch), ("g", 10));
        assert!(!format!("{c:?}").contains("s3cr3t"));
    }

    #[test]
    fn errors_name_the_setting() {
        let cases = [
            ("url = \"http://x\"", "redis://"),
            ("url = \"redis://:pw@x\"", "credentials"),
            ("url = \"redis://x\"\npassword_env = \"NOPE\"", "NOPE"),
            ("url = \"redis://x\"\nprefix = \"\"", "prefix"),
            ("url = \"redis://x\"\nbatch = 0", "batch"),
            ("url = \"redis://x\"\ntimeout = \"1ms\"", "timeout"),
        ];
        for (extra, expected) in cases {
            let err = section(extra).unwrap().resolve(&env).unwrap_err();
            assert!(err.contains(expected), "{extra}: {err}");
            assert!(err.contains("bus"), "{extra}: {err}");
        }
        let dir = tempfile::tempdir().unwrap();
        let pem = dir.path().join("ca.pem");
        std::fs::write(
            &pem,
            "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not pem").unwrap();
        let (pem, junk) = (pem.display(), junk.display());
        let tls_cases = [
            (
                format!("url = \"redis://x\"\nca_file = \"{pem}\""),
                "rediss://",
            ),
            (
                format!("url = \"rediss://x\"\nca_file = \"{junk}\""),
                "no PEM",
            ),
            (
                "url = \"rediss://x\"\nca_file = \"/nonexistent/ca.pem\"".to_string(),
                "ca_file",
            ),
            (
                format!("url = \"rediss://x\"\nclient_cert_file = \"{pem}\""),
                "go together",
            ),
            (
                format!(
                    "url = \"rediss://x\"\nclient_cert_file = \"{pem}\"\nclient_key_file = \"{pem}\""
                ),
                "no PEM private key",
            ),
        ];
        for (extra, expected) in &tls_cases {
            let err = section(extra).unwrap().resolve(&env).unwrap_err();
            assert!(err.contains(expected), "{extra}: {err}");
        }
        let ok = section(&format!("url = \"rediss://x\"\nca_file = \"{pem}\""))
            .unwrap()
            .resolve(&env)
            .unwrap();
        assert!(ok.tls.unwrap().ca_pem.is_some());
        let err = section("url = \"redis://x\"\nmode = \"kafka\"").unwrap_err();
        assert!(err.contains("kafka"), "{err}");
        let a = RedisConfig::new("a", "redis://x", RedisMode::Pubsub).unwrap();
        let mut b = a.clone();
        b.name = "b".into();
        let err = validate_buses(&[a.clone(), b.clone()]).unwrap_err();
        assert!(err.contains("sink = false"), "{err}");
        b.sink = false;
        assert!(validate_buses(&[a.clone(), b]).is_ok());
        let err = validate_buses(&[a.clone(), a]).unwrap_err();
        assert!(err.contains("twice"), "{err}");
    }
}
