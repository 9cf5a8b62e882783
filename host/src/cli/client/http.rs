//! The one place the client touches reqwest: the base URL, the bearer token
//! and its fallback file, sending a request, and turning every way a request
//! can fail into a [`Failure`] with a message and, when there is one, a hint.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use reqwest::{Method, RequestBuilder, Response, StatusCode, Url};
use serde_json::Value;

use super::ClientOpts;

/// Connecting to a local or LAN daemon takes milliseconds; past this it is
/// not there. Requests themselves have no overall timeout (`emit --wait` and
/// `logs --follow` legitimately take long).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How much of an error response is read; the API's error bodies are a few
/// hundred bytes, anything longer came from something else.
const ERROR_BODY_BYTES_MAX: usize = 64 << 10;

/// How much of a non-JSON error body is worth showing.
const RAW_ERROR_CHARS: usize = 300;

/// The name of the admin token file the daemon writes into its data directory.
pub(crate) const TOKEN_FILE: &str = "admin.token";

/// A failure the user can act on: what went wrong, and possibly how to fix it.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) message: String,
    pub(crate) hint: Option<String>,
}

impl Failure {
    pub(crate) fn new(message: impl Into<String>) -> Failure {
        Failure {
            message: message.into(),
            hint: None,
        }
    }

    pub(crate) fn with_hint(mut self, hint: impl Into<String>) -> Failure {
        self.hint = Some(hint.into());
        self
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

/// Prints an error and its hint, if any, to stderr.
pub(crate) fn report(err: &anyhow::Error) {
    eprintln!("error: {err:#}");
    if let Some(hint) = err
        .chain()
        .find_map(|e| e.downcast_ref::<Failure>())
        .and_then(|f| f.hint.as_deref())
    {
        eprintln!("hint: {hint}");
    }
}

/// A JSON response, parsed for the human renderers and kept as sent for `--json`.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) value: Value,
    raw: String,
}

impl Reply {
    fn parse(body: &[u8]) -> anyhow::Result<Reply> {
        if body.is_empty() {
            return Ok(Reply {
                value: Value::Null,
                raw: String::new(),
            });
        }
        let raw = std::str::from_utf8(body).map_err(|e| {
            Failure::new(format!("the daemon sent a response that is not UTF-8: {e}"))
        })?;
        let value = serde_json::from_str(raw).map_err(|e| {
            Failure::new(format!("the daemon sent a response that is not JSON: {e}"))
        })?;
        Ok(Reply {
            value,
            raw: raw.to_string(),
        })
    }

    /// Prints the response for `--json`: as sent, indented; nothing for an empty body.
    pub(crate) fn print(&self) -> std::io::Result<()> {
        if self.raw.is_empty() {
            return Ok(());
        }
        super::output::out(&super::output::pretty_json(&self.raw))
    }
}

/// An authenticated connection to one daemon.
pub(crate) struct Client {
    http: reqwest::Client,
    base: Url,
    /// The URL as the user gave it, for messages.
    shown_url: String,
    token: String,
    /// Where the token came from, for the hint on a 401.
    token_source: String,
    /// Print JSON instead of tables.
    pub(crate) json: bool,
}

impl fmt::Debug for Client {
    /// Everything but the token.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("url", &self.shown_url)
            .field("token_source", &self.token_source)
            .field("json", &self.json)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Checks the URL and finds the token; nothing is sent yet.
    pub(crate) fn new(opts: &ClientOpts) -> anyhow::Result<Client> {
        let base = Url::parse(&opts.url)
            .map_err(|e| Failure::new(format!("invalid --url {:?}: {e}", opts.url)))?;
        if base.scheme() != "http" || base.cannot_be_a_base() {
            return Err(Failure::new(format!(
                "unsupported --url {:?}: the client speaks plain http:// (put TLS in front of the daemon, not in the client)",
                opts.url
            ))
            .into());
        }
        let (token, token_source) = resolve_token(opts.token.as_deref(), &opts.data)?;
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(concat!("hookbox/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("cannot set up the HTTP client")?;
        Ok(Client {
            http,
            base,
            shown_url: opts.url.trim_end_matches('/').to_string(),
            token,
            token_source,
            json: opts.json,
        })
    }

    /// The URL of a path given as segments; each segment is percent-encoded.
    pub(crate) fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    /// A request with the bearer token set.
    pub(crate) fn request(&self, method: Method, segments: &[&str]) -> RequestBuilder {
        self.http
            .request(method, self.url(segments))
            .bearer_auth(&self.token)
    }

    /// Sends a request; any non-2xx status becomes a [`Failure`].
    pub(crate) async fn send(&self, req: RequestBuilder) -> anyhow::Result<Response> {
        let resp = req.send().await.map_err(|e| self.transport_failure(&e))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let body = body_prefix(resp, ERROR_BODY_BYTES_MAX).await;
        let mut failure = api_failure(status, &body);
        if status == StatusCode::UNAUTHORIZED {
            failure = failure.with_hint(format!(
                "the daemon refused the token from {}",
                self.token_source
            ));
        }
        Err(failure.into())
    }

    /// Prints `reply` as sent under `--json`, else the human text.
    pub(crate) fn show(
        &self,
        reply: &Reply,
        human: impl FnOnce() -> String,
    ) -> anyhow::Result<std::process::ExitCode> {
        if self.json {
            reply.print()?;
        } else {
            super::output::out(&human())?;
        }
        Ok(std::process::ExitCode::SUCCESS)
    }

    /// Sends a request and parses the JSON answer (`null` for an empty body, e.g. 204).
    pub(crate) async fn call(&self, req: RequestBuilder) -> anyhow::Result<Reply> {
        let resp = self.send(req).await?;
        let body = resp.bytes().await.map_err(|e| self.transport_failure(&e))?;
        Reply::parse(&body)
    }

    /// Turns a reqwest error (nothing or a broken answer came back) into a [`Failure`].
    pub(crate) fn transport_failure(&self, err: &reqwest::Error) -> Failure {
        let reason = innermost(err);
        if err.is_connect() {
            Failure::new(format!("cannot connect to {}: {reason}", self.shown_url))
                .with_hint(format!("is `hookbox serve` running at {}?", self.shown_url))
        } else {
            Failure::new(format!("request to {} failed: {reason}", self.shown_url))
        }
    }
}

/// Reads at most `max` bytes of a body; whatever arrived if the connection fails.
async fn body_prefix(mut resp: Response, max: usize) -> Vec<u8> {
    let mut body = Vec::new();
    while body.len() < max {
        match resp.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            _ => break,
        }
    }
    body.truncate(max);
    body
}

/// The deepest cause of an error: for a refused connection, "Connection
/// refused (os error 111)" rather than "error sending request for url …".
fn innermost(err: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = err;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// The message for an error response: the API's error shape as
/// `<message> (HTTP 404 not_found)`, or the status and the start of the body
/// when something else (a proxy, an older daemon) answered.
pub(crate) fn api_failure(status: StatusCode, body: &[u8]) -> Failure {
    let parsed: Option<(String, String)> =
        serde_json::from_slice::<Value>(body).ok().and_then(|v| {
            let e = v.get("error")?;
            Some((
                e.get("code")?.as_str()?.to_string(),
                e.get("message")?.as_str()?.to_string(),
            ))
        });
    let message = match parsed {
        Some((code, message)) => format!(
            "{} (HTTP {} {})",
            super::output::clean(&message),
            status.as_u16(),
            super::output::clean(&code)
        ),
        None => {
            let text = String::from_utf8_lossy(body);
            let text: String = text.trim().chars().take(RAW_ERROR_CHARS).collect();
            let status_text = format!(
                "HTTP {} {}",
                status.as_u16(),
                status.canonical_reason().unwrap_or("")
            );
            if text.is_empty() {
                status_text.trim_end().to_string()
            } else {
                format!(
                    "{}: {}",
                    status_text.trim_end(),
                    super::output::clean(&text)
                )
            }
        }
    };
    Failure::new(message)
}

/// The token to send and a description of where it came from: `--token` /
/// `HOOKBOX_TOKEN` if set and not blank, else `<data>/admin.token`, trimmed.
pub(crate) fn resolve_token(flag: Option<&str>, data: &Path) -> Result<(String, String), Failure> {
    if let Some(token) = flag.map(str::trim).filter(|t| !t.is_empty()) {
        return Ok((token.to_string(), "--token / HOOKBOX_TOKEN".to_string()));
    }
    let path: PathBuf = data.join(TOKEN_FILE);
    let hint = format!(
        "pass --token, set HOOKBOX_TOKEN, or point --data / HOOKBOX_DATA at the daemon's data directory (the daemon writes {TOKEN_FILE} there)"
    );
    let text = std::fs::read_to_string(&path).map_err(|e| {
        let what = if e.kind() == std::io::ErrorKind::NotFound {
            format!("no API token: {} does not exist", path.display())
        } else {
            format!("no API token: cannot read {}: {e}", path.display())
        };
        Failure::new(what).with_hint(hint.clone())
    })?;
    let token = text.trim();
    if token.is_empty() {
        return Err(
            Failure::new(format!("no API token: {} is empty", path.display())).with_hint(hint),
        );
    }
    Ok((token.to_string(), path.display().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_error_shape() {
        let body = br#"{"error":{"code":"not_found","message":"no handler named \"x\""}}"#;
        let f = api_failure(StatusCode::NOT_FOUND, body);
        assert_eq!(f.message, r#"no handler named "x" (HTTP 404 not_found)"#);
    }

    #[test]
    fn foreign_error_bodies() {
        let f = api_failure(StatusCode::BAD_GATEWAY, b"  upstream down\n");
        assert_eq!(f.message, "HTTP 502 Bad Gateway: upstream down");
        let f = api_failure(StatusCode::SERVICE_UNAVAILABLE, b"");
        assert_eq!(f.message, "HTTP 503 Service Unavailable");
        let f = api_failure(StatusCode::BAD_REQUEST, br#"{"error":"flat"}"#);
        assert_eq!(f.message, r#"HTTP 400 Bad Request: {"error":"flat"}"#);
        let long = "x".repeat(10_000);
        let f = api_failure(StatusCode::INTERNAL_SERVER_ERROR, long.as_bytes());
        assert!(f.message.len() < 400);
    }

    #[test]
    fn error_messages_cannot_drive_the_terminal() {
        let body = br#"{"error":{"code":"bad_request","message":"a\u001b[2Jb\nc"}}"#;
        let f = api_failure(StatusCode::BAD_REQUEST, body);
        assert_eq!(f.message, "a [2Jb c (HTTP 400 bad_request)");
    }

    #[test]
    fn token_from_flag_then_file() {
        let dir = tempfile::tempdir().unwrap();
        let (t, src) = resolve_token(Some(" hbx_flag \n"), dir.path()).unwrap();
        assert_eq!(
            (t.as_str(), src.as_str()),
            ("hbx_flag", "--token / HOOKBOX_TOKEN")
        );

        let missing = resolve_token(None, dir.path()).unwrap_err();
        assert!(
            missing.message.contains("admin.token"),
            "{}",
            missing.message
        );
        let hint = missing.hint.unwrap();
        assert!(
            hint.contains("HOOKBOX_TOKEN") && hint.contains("--token"),
            "{hint}"
        );

        std::fs::write(dir.path().join(TOKEN_FILE), "  \n").unwrap();
        assert!(
            resolve_token(Some(""), dir.path())
                .unwrap_err()
                .message
                .contains("empty")
        );

        std::fs::write(dir.path().join(TOKEN_FILE), "hbx_file\n").unwrap();
        let (t, src) = resolve_token(Some("  "), dir.path()).unwrap();
        assert_eq!(t, "hbx_file");
        assert!(src.ends_with("admin.token"));
    }

    #[test]
    fn debug_output_hides_the_token() {
        let opts = ClientOpts {
            url: "http://127.0.0.1:8080".into(),
            token: Some("hbx_secret".into()),
            data: PathBuf::from("/nonexistent"),
            json: false,
        };
        let shown = format!("{:?}", Client::new(&opts).unwrap());
        assert!(!shown.contains("hbx_secret"), "{shown}");
    }

    #[test]
    fn urls_encode_segments() {
        let opts = ClientOpts {
            url: "http://127.0.0.1:8080/prefix/".into(),
            token: Some("t".into()),
            data: PathBuf::from("/nonexistent"),
            json: false,
        };
        let c = Client::new(&opts).unwrap();
        assert_eq!(
            c.url(&["v1", "handlers", "a b/c"]).as_str(),
            "http://127.0.0.1:8080/prefix/v1/handlers/a%20b%2Fc"
        );
        let https = ClientOpts {
            url: "https://example.com".into(),
            ..opts
        };
        assert!(Client::new(&https).is_err());
    }
}
