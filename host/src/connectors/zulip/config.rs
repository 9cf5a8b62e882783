//! `[[zulip]]` config sections: one per realm (a Zulip organisation the bot
//! belongs to), checked once into a [`RealmConfig`]. The API key is read
//! here like every connector secret, from a file or an environment
//! variable named in the config — never written inline — and is held in a
//! [`Secret`] whose `Debug` hides it, so it cannot reach a log line.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::connectors::secret::{self, Secret};
use crate::connectors::{bounded, check_name, check_unique};

/// Realms one daemon connects to; each is a long-poll task and a sink.
const REALMS_MAX: usize = 64;
/// Zulip event types a queue may be pinned to.
const EVENT_TYPES_MAX: usize = 64;

/// A `[[zulip]]` section as written in the file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RealmSection {
    /// The realm's name in Hookbox: the tenant of its events.
    pub name: String,
    /// The server, e.g. `https://chat.example.com`.
    pub site: String,
    /// The bot's email address.
    pub email: String,
    /// A file holding the bot's API key.
    pub api_key_file: Option<PathBuf>,
    /// An environment variable holding the bot's API key.
    pub api_key_env: Option<String>,
    /// Zulip event types to register for. Default: the types the deployed
    /// handlers subscribe to (all when one subscribes to `*`).
    pub event_types: Option<Vec<String>>,
    /// Receive messages of every public channel, not only the bot's.
    pub all_public_streams: Option<bool>,
    /// Longest wait for one long-poll answer (default `90s`).
    #[serde(default, with = "crate::config::opt_duration")]
    pub poll_timeout: Option<Duration>,
    /// Longest wait for any other request (default `30s`).
    #[serde(default, with = "crate::config::opt_duration")]
    pub request_timeout: Option<Duration>,
    /// Longest pause between reconnection attempts (default `60s`).
    #[serde(default, with = "crate::config::opt_duration")]
    pub max_backoff: Option<Duration>,
    /// Whether `zulip.send_message` & co. of this realm are performed
    /// (default true).
    pub sink: Option<bool>,
    /// REST calls the sink makes at once (default 2).
    pub sink_concurrency: Option<u32>,
    /// Whether the bot's own events (its messages, reactions, edits) are
    /// accepted (default false: they are acknowledged and skipped, so a
    /// handler replying to messages cannot answer its own replies).
    pub own_events: Option<bool>,
}

/// One realm, validated.
#[derive(Clone, Debug)]
pub struct RealmConfig {
    /// Name and tenant.
    pub name: String,
    /// Server base URL without a trailing `/`.
    pub site: String,
    /// The bot's email.
    pub email: String,
    /// The bot's API key.
    pub api_key: Secret,
    /// Pinned Zulip event types, or `None` to follow the subscriptions.
    pub event_types: Option<Vec<String>>,
    /// `all_public_streams` for `POST /register`.
    pub all_public_streams: bool,
    /// Long-poll wait bound.
    pub poll_timeout: Duration,
    /// Other requests' bound.
    pub request_timeout: Duration,
    /// First reconnection pause (doubles up to `max_backoff`).
    pub initial_backoff: Duration,
    /// Reconnection pause cap.
    pub max_backoff: Duration,
    /// Whether the reply sink runs for this realm.
    pub sink: bool,
    /// Sink REST calls at once.
    pub sink_concurrency: u32,
    /// Whether the bot's own events are accepted.
    pub own_events: bool,
}

impl RealmConfig {
    /// A realm with default settings (tests and embedders).
    pub fn new(name: &str, site: &str, email: &str, api_key: Secret) -> RealmConfig {
        RealmConfig {
            name: name.into(),
            site: site.trim_end_matches('/').into(),
            email: email.into(),
            api_key,
            event_types: None,
            all_public_streams: false,
            poll_timeout: Duration::from_secs(90),
            request_timeout: Duration::from_secs(30),
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(60),
            sink: true,
            sink_concurrency: 2,
            own_events: false,
        }
    }

    /// The handler name of this realm's reply sink.
    pub fn sink_name(&self) -> String {
        format!("zulip:{}", self.name)
    }
}

impl crate::connectors::Section for RealmSection {
    type Config = RealmConfig;

    fn resolve(&self, env: &dyn Fn(&str) -> Option<String>) -> Result<RealmConfig, String> {
        RealmSection::resolve(self, env)
    }

    fn check_all(all: &[RealmConfig]) -> Result<(), String> {
        validate_realms(all)
    }
}

impl RealmSection {
    /// Checks the section and reads the key. `env` looks up environment
    /// variables (injected so tests need not touch the process environment).
    /// Errors name the realm and key, never the key's value.
    pub fn resolve(&self, env: &dyn Fn(&str) -> Option<String>) -> Result<RealmConfig, String> {
        let name = &self.name;
        validate_realm_name(name)?;
        let at = |msg: String| format!("[[zulip]] {name:?}: {msg}");
        let site = validate_site(&self.site).map_err(at)?;
        if self.email.trim().is_empty() || self.email.chars().any(char::is_control) {
            return Err(at("`email` must be the bot's email address".into()));
        }
        if self.api_key_file.is_some() == self.api_key_env.is_some() {
            return Err(at(
                "set exactly one of `api_key_file` and `api_key_env` (keys are never written inline)"
                    .into(),
            ));
        }
        let key = secret::read(
            "api_key",
            self.api_key_file.as_deref(),
            self.api_key_env.as_deref(),
            env,
        )
        .map_err(at)?
        .ok_or_else(|| at("no API key".into()))?;
        if key.expose().chars().any(char::is_whitespace) {
            return Err(at(
                "the API key is empty or contains spaces or control characters".into(),
            ));
        }
        if let Some(types) = &self.event_types {
            if types.len() > EVENT_TYPES_MAX {
                return Err(at(format!(
                    "`event_types` lists {} types; the limit is {EVENT_TYPES_MAX}",
                    types.len()
                )));
            }
            if let Some(bad) = types.iter().find(|t| !is_zulip_type(t)) {
                return Err(at(format!(
                    "`event_types`: {bad:?} is not a Zulip event type (lowercase letters and `_`)"
                )));
            }
        }
        let mut realm = RealmConfig::new(name, &site, self.email.trim(), key);
        realm.event_types = self.event_types.clone();
        realm.all_public_streams = self.all_public_streams.unwrap_or(false);
        let bounded = |what: &str, v: Option<Duration>, default: Duration| {
            bounded(
                what,
                v,
                default,
                Duration::from_millis(100),
                Duration::from_secs(3600),
            )
            .map_err(at)
        };
        realm.poll_timeout = bounded("poll_timeout", self.poll_timeout, realm.poll_timeout)?;
        realm.request_timeout = bounded(
            "request_timeout",
            self.request_timeout,
            realm.request_timeout,
        )?;
        realm.max_backoff = bounded("max_backoff", self.max_backoff, realm.max_backoff)?;
        realm.initial_backoff = realm.initial_backoff.min(realm.max_backoff);
        realm.sink = self.sink.unwrap_or(true);
        realm.sink_concurrency = match self.sink_concurrency {
            Some(n @ 1..=64) => n,
            Some(_) => return Err(at("`sink_concurrency` must be 1 to 64".into())),
            None => realm.sink_concurrency,
        };
        realm.own_events = self.own_events.unwrap_or(false);
        Ok(realm)
    }
}

/// Checks a list of realms as a whole: names are unique and few enough.
pub fn validate_realms(realms: &[RealmConfig]) -> Result<(), String> {
    if realms.len() > REALMS_MAX {
        return Err(format!(
            "{} [[zulip]] realms; the limit is {REALMS_MAX}",
            realms.len()
        ));
    }
    check_unique("zulip", realms.iter().map(|r| r.name.as_str()))
}

/// Realm names follow the rule of every connector name.
fn validate_realm_name(name: &str) -> Result<(), String> {
    check_name("zulip", name)
}

/// An `http(s)://host[:port][/path]` URL without query or credentials,
/// returned without its trailing `/`.
fn validate_site(site: &str) -> Result<String, String> {
    let url = reqwest::Url::parse(site).map_err(|e| format!("`site` {site:?}: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(format!(
            "`site` {site:?} must be an http:// or https:// URL"
        ));
    }
    if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
        return Err(format!(
            "`site` {site:?} must not carry a query, fragment or credentials"
        ));
    }
    Ok(url.as_str().trim_end_matches('/').to_string())
}

/// Zulip event types are lowercase snake case (`message`, `realm_user`).
pub(crate) fn is_zulip_type(t: &str) -> bool {
    !t.is_empty() && t.len() <= 64 && t.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(extra: &str) -> RealmSection {
        toml::from_str(&format!(
            "name = \"acme\"\nsite = \"https://chat.acme.test/\"\nemail = \"bot@acme.test\"\n{extra}"
        ))
        .unwrap()
    }

    fn env(var: &str) -> Option<String> {
        (var == "ACME_KEY").then(|| "  s3cr3tKEY\n".to_string())
    }

    #[test]
    fn key_from_env_or_file_never_inline_never_shown() {
        let r = section("api_key_env = \"ACME_KEY\"").resolve(&env).unwrap();
        assert_eq!(r.api_key.expose(), "s3cr3tKEY");
        assert_eq!(r.site, "https://chat.acme.test");
        assert_eq!(r.sink_name(), "zulip:acme");
        assert!(!format!("{r:?}").contains("s3cr3t"), "{r:?}");

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, "fileKEY\n").unwrap();
        let r = section(&format!("api_key_file = {:?}", path.display().to_string()))
            .resolve(&env)
            .unwrap();
        assert_eq!(r.api_key.expose(), "fileKEY");

        let err = toml::from_str::<RealmSection>(
            "name = \"a\"\nsite = \"http://x\"\nemail = \"b\"\napi_key = \"k\"",
        )
        .unwrap_err();
        assert!(err.to_string().contains("api_key"), "{err}");
    }

    #[test]
    fn errors_name_the_setting_and_hide_the_key() {
        let cases = [
            ("", "exactly one of"),
            (
                "api_key_env = \"ACME_KEY\"\napi_key_file = \"/k\"",
                "exactly one of",
            ),
            ("api_key_env = \"NOPE\"", "NOPE is not set"),
            ("api_key_file = \"/does/not/exist\"", "/does/not/exist"),
            (
                "api_key_env = \"ACME_KEY\"\nevent_types = [\"Message\"]",
                "event_types",
            ),
            (
                "api_key_env = \"ACME_KEY\"\npoll_timeout = \"1ms\"",
                "poll_timeout",
            ),
            (
                "api_key_env = \"ACME_KEY\"\nsink_concurrency = 0",
                "sink_concurrency",
            ),
        ];
        for (extra, expected) in cases {
            let err = section(extra).resolve(&env).unwrap_err();
            assert!(err.contains(expected), "{extra}: {err}");
            assert!(err.contains("acme"), "{extra}: {err}");
            assert!(!err.contains("s3cr3t"), "{err}");
        }
        let spaced = |_: &str| Some("two words".to_string());
        let err = section("api_key_env = \"K\"").resolve(&spaced).unwrap_err();
        assert!(
            err.contains("spaces") && !err.contains("two words"),
            "{err}"
        );
    }

    #[test]
    fn names_and_sites() {
        for bad in ["", "Acme", "-a", "a b", "a:b"] {
            assert!(validate_realm_name(bad).is_err(), "{bad:?}");
        }
        for good in ["acme", "chat.example.com", "a_b-1"] {
            assert!(validate_realm_name(good).is_ok(), "{good:?}");
        }
        assert_eq!(
            validate_site("http://127.0.0.1:9/zulip/").unwrap(),
            "http://127.0.0.1:9/zulip"
        );
        for bad in [
            "chat.example.com",
            "ftp://x",
            "https://x/?a=1",
            "https://u:p@x",
        ] {
            assert!(validate_site(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn daemon_config_reads_zulip_tables() {
        use crate::config::{Config, ConfigFile, Overrides};
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("acme.key");
        std::fs::write(&key, "k3y\n").unwrap();
        let table = |name: &str| {
            format!(
                "[[zulip]]\nname = \"{name}\"\nsite = \"https://{name}.zulipchat.com\"\n\
                 email = \"bot@{name}.zulipchat.com\"\napi_key_file = {:?}\n",
                key.display().to_string()
            )
        };
        let text = format!(
            "{}event_types = [\"message\"]\n{}",
            table("acme"),
            table("beta")
        );
        let c = Config::resolve(ConfigFile::parse(&text).unwrap(), Overrides::default()).unwrap();
        assert_eq!(c.zulip.len(), 2);
        assert_eq!(c.zulip[0].event_types, Some(vec!["message".to_string()]));
        assert_eq!(c.zulip[1].api_key.expose(), "k3y");
        assert!(
            Config::resolve(ConfigFile::parse("").unwrap(), Overrides::default())
                .unwrap()
                .zulip
                .is_empty()
        );

        let twice = format!("{}{}", table("acme"), table("acme"));
        let err =
            Config::resolve(ConfigFile::parse(&twice).unwrap(), Overrides::default()).unwrap_err();
        assert!(err.to_string().contains("twice"), "{err}");
        let err = ConfigFile::parse(&format!("{}sitee = \"x\"\n", table("acme"))).unwrap_err();
        assert!(err.contains("sitee"), "{err}");
    }

    #[test]
    fn realm_names_are_unique() {
        let r = RealmConfig::new("a", "http://x", "b", Secret::new("k"));
        assert!(validate_realms(std::slice::from_ref(&r)).is_ok());
        let err = validate_realms(&[r.clone(), r]).unwrap_err();
        assert!(err.contains("twice"), "{err}");
    }
}
