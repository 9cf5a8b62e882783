//! `[[webhook]]` sections: one named endpoint each, checked once into a
//! [`WebhookConfig`]. Handlers name the endpoint, never a URL, so this list
//! is the allow-list of where Hookbox may send.
//!
//! Secrets: the signing secret of a `standard` endpoint comes from
//! `secret_file` / `secret_env`; the URL may too (`url_file` / `url_env`),
//! because Discord and Slack webhook URLs carry their token in the path.
//! Only the URL's scheme, host and port are ever shown.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use base64::Engine as _;
use serde::Deserialize;

use crate::connectors::secret::{self, Secret};
use crate::connectors::{bounded, check_name, check_unique};

/// Endpoints one daemon may name.
const WEBHOOKS_MAX: usize = 256;
/// Extra headers per endpoint.
const HEADERS_MAX: usize = 32;
/// The Standard Webhooks spec's secret sizes (24 to 64 random bytes).
const SECRET_BYTES: std::ops::RangeInclusive<usize> = 24..=64;
/// Headers Hookbox sets itself and the config may not override.
const RESERVED_HEADERS: [&str; 7] = [
    "content-type",
    "content-length",
    "host",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "transfer-encoding",
];

/// What the endpoint expects.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum WebhookKind {
    /// Any JSON body, signed per the Standard Webhooks spec.
    #[default]
    Standard,
    /// A Discord webhook (`content`, `embeds`, …); honours `retry_after`.
    Discord,
    /// A Slack incoming webhook (`text`, `blocks`).
    Slack,
}

impl WebhookKind {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookKind::Standard => "standard",
            WebhookKind::Discord => "discord",
            WebhookKind::Slack => "slack",
        }
    }
}

/// A `[[webhook]]` section as written in the file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSection {
    /// The name handlers use in `webhook.send`.
    pub name: String,
    /// The URL, inline (fine for a `standard` receiver; Discord and Slack
    /// URLs are secrets: prefer `url_file` or `url_env`).
    pub url: Option<String>,
    /// A file holding the URL.
    pub url_file: Option<PathBuf>,
    /// An environment variable holding the URL.
    pub url_env: Option<String>,
    /// `standard` (default), `discord` or `slack`.
    pub kind: Option<WebhookKind>,
    /// A file holding the `whsec_…` signing secret (`standard` only).
    pub secret_file: Option<PathBuf>,
    /// An environment variable holding the signing secret.
    pub secret_env: Option<String>,
    /// Extra request headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Longest wait for an answer (default `10s`).
    #[serde(default, with = "crate::config::opt_duration")]
    pub timeout: Option<Duration>,
    /// Tenants whose handlers may use this endpoint (default: all).
    #[serde(default)]
    pub tenants: Vec<String>,
    /// Requests in flight at once (default 4).
    pub concurrency: Option<u32>,
}

/// The HMAC key of a `standard` endpoint (the secret's decoded bytes).
#[derive(Clone, PartialEq, Eq)]
pub struct SigningKey(pub(crate) Vec<u8>);

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey(***)")
    }
}

/// One endpoint, validated.
#[derive(Clone, Debug)]
pub struct WebhookConfig {
    /// Its name.
    pub name: String,
    /// The URL (a secret for Discord and Slack).
    pub url: Secret,
    /// `scheme://host[:port]`: what may be shown.
    pub origin: String,
    /// What it expects.
    pub kind: WebhookKind,
    /// The signing key (`standard` only).
    pub key: Option<SigningKey>,
    /// Extra headers (names lowercase).
    pub headers: Vec<(String, String)>,
    /// Answer timeout.
    pub timeout: Duration,
    /// Tenants allowed; empty: all.
    pub tenants: Vec<String>,
    /// Requests at once.
    pub concurrency: u32,
}

impl WebhookConfig {
    /// A `standard` endpoint with default settings (tests and embedders).
    pub fn standard(name: &str, url: &str, secret: &str) -> Result<WebhookConfig, String> {
        let mut c = Self::new(name, url, WebhookKind::Standard)?;
        c.key = Some(decode_secret(secret)?);
        Ok(c)
    }

    /// An endpoint of `kind` without a signing key.
    pub fn new(name: &str, url: &str, kind: WebhookKind) -> Result<WebhookConfig, String> {
        check_name("webhook", name)?;
        Ok(WebhookConfig {
            name: name.to_string(),
            origin: check_url(url)?,
            url: Secret::new(url),
            kind,
            key: None,
            headers: Vec::new(),
            timeout: Duration::from_secs(10),
            tenants: Vec::new(),
            concurrency: 4,
        })
    }

    /// The sink's handler name.
    pub fn sink_name(&self) -> String {
        format!("webhook:{}", self.name)
    }
}

impl crate::connectors::Section for WebhookSection {
    type Config = WebhookConfig;

    fn resolve(&self, env: &dyn Fn(&str) -> Option<String>) -> Result<WebhookConfig, String> {
        WebhookSection::resolve(self, env)
    }

    fn check_all(all: &[WebhookConfig]) -> Result<(), String> {
        validate_webhooks(all)
    }
}

impl WebhookSection {
    /// Checks the section and reads its secrets. Errors name the endpoint
    /// and setting, never a secret.
    pub fn resolve(&self, env: &dyn Fn(&str) -> Option<String>) -> Result<WebhookConfig, String> {
        let name = &self.name;
        check_name("webhook", name)?;
        let at = |msg: String| format!("[[webhook]] {name:?}: {msg}");
        let from_source = secret::read(
            "url",
            self.url_file.as_deref(),
            self.url_env.as_deref(),
            env,
        )
        .map_err(at)?;
        let url = match (&self.url, from_source) {
            (Some(u), None) => Secret::new(u.trim()),
            (None, Some(u)) => u,
            _ => {
                return Err(at(
                    "set exactly one of `url`, `url_file` and `url_env`".into()
                ));
            }
        };
        let kind = self.kind.unwrap_or_default();
        let mut c = WebhookConfig::new(name, url.expose(), kind).map_err(at)?;
        c.url = url;
        let secret = secret::read(
            "secret",
            self.secret_file.as_deref(),
            self.secret_env.as_deref(),
            env,
        )
        .map_err(at)?;
        c.key = match (kind, secret) {
            (WebhookKind::Standard, Some(s)) => Some(decode_secret(s.expose()).map_err(at)?),
            (WebhookKind::Standard, None) => {
                return Err(at(
                    "a `standard` endpoint is signed: set `secret_file` or `secret_env` (a `whsec_…` secret)".into(),
                ));
            }
            (other, Some(_)) => {
                return Err(at(format!(
                    "{} webhooks are not signed; the URL is their secret (use `url_file` or `url_env`), drop the secret",
                    other.as_str()
                )));
            }
            (_, None) => None,
        };
        if self.headers.len() > HEADERS_MAX {
            return Err(at(format!("more than {HEADERS_MAX} `headers`")));
        }
        for (k, v) in &self.headers {
            let lower = k.to_ascii_lowercase();
            let token = !k.is_empty()
                && k.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
            if !token || RESERVED_HEADERS.contains(&lower.as_str()) {
                return Err(at(format!(
                    "`headers`: {k:?} is not a header name Hookbox lets the config set"
                )));
            }
            if v.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f) {
                return Err(at(format!(
                    "`headers`: the value of {k:?} contains control characters"
                )));
            }
            c.headers.push((lower, v.clone()));
        }
        c.timeout = bounded(
            "timeout",
            self.timeout,
            c.timeout,
            Duration::from_millis(100),
            Duration::from_secs(60),
        )
        .map_err(at)?;
        if self.tenants.iter().any(|t| t.is_empty()) {
            return Err(at("`tenants` lists an empty tenant".into()));
        }
        c.tenants = self.tenants.clone();
        c.concurrency = match self.concurrency {
            Some(n @ 1..=64) => n,
            Some(_) => return Err(at("`concurrency` must be 1 to 64".into())),
            None => c.concurrency,
        };
        Ok(c)
    }
}

/// Checks the list as a whole.
pub fn validate_webhooks(hooks: &[WebhookConfig]) -> Result<(), String> {
    if hooks.len() > WEBHOOKS_MAX {
        return Err(format!(
            "{} [[webhook]] endpoints; the limit is {WEBHOOKS_MAX}",
            hooks.len()
        ));
    }
    check_unique("webhook", hooks.iter().map(|h| h.name.as_str()))
}

/// An `http(s)://` URL without credentials or fragment; returns its origin.
fn check_url(url: &str) -> Result<String, String> {
    // The URL may be a secret: errors do not repeat it.
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("`url` is not a URL ({e})"))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err("`url` must be an http:// or https:// URL".into());
    }
    if !parsed.username().is_empty() || parsed.password().is_some() || parsed.fragment().is_some() {
        return Err("`url` must not carry credentials or a fragment".into());
    }
    Ok(parsed.origin().ascii_serialization())
}

/// A Standard Webhooks secret: `whsec_` and the base64 of 24–64 bytes.
pub(crate) fn decode_secret(secret: &str) -> Result<SigningKey, String> {
    let b64 = secret
        .strip_prefix("whsec_")
        .ok_or("the signing secret must start with `whsec_` (Standard Webhooks)")?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|_| "the signing secret after `whsec_` is not base64")?;
    if !SECRET_BYTES.contains(&bytes.len()) {
        return Err(format!(
            "the signing secret is {} bytes; Standard Webhooks secrets are 24 to 64",
            bytes.len()
        ));
    }
    Ok(SigningKey(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 24 bytes of 0x01, base64.
    const SECRET: &str = "whsec_AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEB";

    fn section(extra: &str) -> Result<WebhookSection, String> {
        toml::from_str(&format!("name = \"ops\"\n{extra}")).map_err(|e| e.to_string())
    }

    fn env(var: &str) -> Option<String> {
        match var {
            "SECRET" => Some(format!("{SECRET}\n")),
            "DISCORD_URL" => Some("https://discord.com/api/webhooks/1/t0ken".into()),
            _ => None,
        }
    }

    #[test]
    fn standard_endpoints_are_signed_others_not() {
        let c = section("url = \"http://127.0.0.1:9/hook?x=1\"\nsecret_env = \"SECRET\"\nheaders = { \"X-Team\" = \"ops\" }\ntimeout = \"2s\"")
            .unwrap()
            .resolve(&env)
            .unwrap();
        assert_eq!(c.kind, WebhookKind::Standard);
        assert_eq!(c.key.as_ref().unwrap().0, vec![1u8; 24]);
        assert_eq!(c.origin, "http://127.0.0.1:9");
        assert_eq!(c.headers, [("x-team".to_string(), "ops".to_string())]);
        assert_eq!(c.timeout, Duration::from_secs(2));
        assert_eq!(c.sink_name(), "webhook:ops");
        assert!(!format!("{c:?}").contains("AQEB"), "{c:?}");

        let d = section("kind = \"discord\"\nurl_env = \"DISCORD_URL\"")
            .unwrap()
            .resolve(&env)
            .unwrap();
        assert_eq!(d.origin, "https://discord.com");
        assert!(d.key.is_none());
        assert!(!format!("{d:?}").contains("t0ken"), "{d:?}");
    }

    #[test]
    fn errors_name_the_setting_and_hide_secrets() {
        let cases = [
            ("url = \"http://x\"", "secret_file"),
            ("secret_env = \"SECRET\"", "exactly one of"),
            (
                "url = \"http://x\"\nurl_env = \"DISCORD_URL\"\nsecret_env = \"SECRET\"",
                "exactly one of",
            ),
            ("url = \"ftp://x\"\nsecret_env = \"SECRET\"", "http://"),
            (
                "url = \"https://u:p@x\"\nsecret_env = \"SECRET\"",
                "credentials",
            ),
            (
                "kind = \"slack\"\nurl = \"https://hooks.slack.com/x\"\nsecret_env = \"SECRET\"",
                "not signed",
            ),
            (
                "url = \"http://x\"\nsecret_env = \"SECRET\"\nheaders = { \"Webhook-Id\" = \"1\" }",
                "Webhook-Id",
            ),
            (
                "url = \"http://x\"\nsecret_env = \"SECRET\"\ntimeout = \"5m\"",
                "timeout",
            ),
            (
                "url = \"http://x\"\nsecret_env = \"SECRET\"\nconcurrency = 0",
                "concurrency",
            ),
        ];
        for (extra, expected) in cases {
            let err = section(extra).unwrap().resolve(&env).unwrap_err();
            assert!(err.contains(expected), "{extra}: {err}");
            assert!(err.contains("ops"), "{extra}: {err}");
            assert!(!err.contains("AQEB") && !err.contains("t0ken"), "{err}");
        }
        let err = section("kind = \"teams\"").unwrap_err();
        assert!(err.contains("teams"), "{err}");
        let err = section("urll = \"x\"").unwrap_err();
        assert!(err.contains("urll"), "{err}");
    }

    #[test]
    fn secrets_follow_the_spec() {
        assert!(decode_secret(SECRET).is_ok());
        for (bad, expected) in [
            ("AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEB", "whsec_"),
            ("whsec_!!!", "base64"),
            ("whsec_AQEB", "3 bytes"),
        ] {
            let err = decode_secret(bad).unwrap_err();
            assert!(err.contains(expected), "{bad}: {err}");
        }
    }
}
