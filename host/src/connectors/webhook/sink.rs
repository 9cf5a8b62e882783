//! The sink of one endpoint: the built-in handler `webhook:<name>` performs
//! the `webhook.send` events that name it, as one HTTP POST each.
//!
//! Payload (unknown fields are refused): `{"endpoint": "<name>", "body":
//! <JSON>}`. The body is sent byte for byte as the handler wrote it (a
//! `standard` signature covers exactly those bytes); a `discord` body must
//! be an object with `content` or `embeds`, a `slack` one an object with
//! `text` or `blocks`.
//!
//! Answers ([`verdict`], pure): 2xx finishes the delivery; 429 (and a 503
//! with `Retry-After`) is backpressure — the delivery waits what the
//! receiver asked (Discord's `retry_after` in the body, else the
//! `Retry-After` header) without using an attempt; other 5xx, 408 and
//! network errors are retried by the sink's policy; redirects are not
//! followed (the config is the allow-list); any other 4xx is dead-lettered
//! with the status and the start of the response body.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use serde_json::value::RawValue;

use super::config::{WebhookConfig, WebhookKind};
use super::sign::sign;
use super::{SEND_EVENT, status::EndpointState};
use crate::connectors::{Pause, block_on, cut, rate_limited};
use crate::dispatch::{BuiltinError, BuiltinHandler};
use crate::event::Event;

/// Response body bytes kept in a dead letter or log line.
const BODY_SHOWN: usize = 512;
/// Response body bytes read at most (the rest is not waited for).
const BODY_READ: usize = 16 * 1024;
/// Added to the request timeout before a worker stops waiting for the
/// async side (a runtime shutting down).
const HANDOFF_SLACK: Duration = Duration::from_secs(5);
/// Longest pause a receiver may ask for; longer asks are capped.
const MAX_WAIT: Duration = Duration::from_secs(3600);
/// The pause after a 429 that names none.
const DEFAULT_WAIT: Duration = Duration::from_secs(1);

/// `webhook.send`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Send {
    endpoint: String,
    body: Box<RawValue>,
}

/// What an answer means for the delivery.
#[derive(Debug, PartialEq)]
pub(crate) enum Verdict {
    Sent,
    /// Backpressure: wait this long, then the same delivery again.
    Wait(String, Duration),
    Retry(String),
    Fatal(String),
}

/// Classifies an answer (see the module docs).
pub(crate) fn verdict(
    kind: WebhookKind,
    status: u16,
    retry_after: Option<&str>,
    body: &[u8],
) -> Verdict {
    let header_wait = retry_after
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(|s| Duration::from_secs_f64(s.min(MAX_WAIT.as_secs_f64())));
    let shown = || cut(body, BODY_SHOWN);
    match status {
        200..=299 => Verdict::Sent,
        429 => {
            let body_wait = (kind == WebhookKind::Discord)
                .then(|| serde_json::from_slice::<DiscordLimit>(body).ok())
                .flatten()
                .map(|l| l.retry_after)
                .filter(|s| s.is_finite() && *s >= 0.0)
                .map(|s| Duration::from_secs_f64(s.min(MAX_WAIT.as_secs_f64())));
            let wait = body_wait.or(header_wait).unwrap_or(DEFAULT_WAIT);
            Verdict::Wait(
                format!(
                    "HTTP 429: rate limited; retry after {:.3}s",
                    wait.as_secs_f64()
                ),
                wait,
            )
        }
        503 if header_wait.is_some() => {
            let wait = header_wait.unwrap_or(DEFAULT_WAIT);
            Verdict::Wait(
                format!(
                    "HTTP 503: unavailable; retry after {:.3}s",
                    wait.as_secs_f64()
                ),
                wait,
            )
        }
        408 | 500..=599 => Verdict::Retry(format!("HTTP {status}: {}", shown())),
        300..=399 => Verdict::Fatal(format!(
            "HTTP {status}: redirects are not followed (the config names every URL)"
        )),
        _ => Verdict::Fatal(format!("HTTP {status}: {}", shown())),
    }
}

/// Discord's 429 body.
#[derive(Deserialize)]
struct DiscordLimit {
    retry_after: f64,
}

/// Checks a body against what the endpoint kind expects.
pub(crate) fn check_body(kind: WebhookKind, body: &RawValue) -> Result<(), String> {
    let needs: &[&str] = match kind {
        WebhookKind::Standard => return Ok(()),
        WebhookKind::Discord => &["content", "embeds"],
        WebhookKind::Slack => &["text", "blocks"],
    };
    let object: serde_json::Map<String, serde_json::Value> = serde_json::from_str(body.get())
        .map_err(|_| format!("a {} body must be a JSON object", kind.as_str()))?;
    if needs.iter().any(|k| object.contains_key(*k)) {
        Ok(())
    } else {
        Err(format!(
            "a {} body needs `{}` or `{}`",
            kind.as_str(),
            needs[0],
            needs[1]
        ))
    }
}

/// See the module docs.
#[derive(Debug)]
pub(crate) struct Sink {
    cfg: WebhookConfig,
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
    state: Arc<EndpointState>,
    pause: Pause,
}

impl Sink {
    pub(crate) fn new(
        cfg: WebhookConfig,
        client: reqwest::Client,
        runtime: tokio::runtime::Handle,
        state: Arc<EndpointState>,
    ) -> Self {
        Sink {
            cfg,
            client,
            runtime,
            state,
            pause: Pause::default(),
        }
    }

    /// The request, built here so the signature covers the bytes sent.
    fn request(&self, event: &Event, body: &RawValue) -> reqwest::RequestBuilder {
        let bytes = body.get().as_bytes().to_vec();
        let mut req = self
            .client
            .post(self.cfg.url.expose())
            .timeout(self.cfg.timeout)
            .header(reqwest::header::CONTENT_TYPE, "application/json");
        for (k, v) in &self.cfg.headers {
            req = req.header(k.as_str(), v.as_str());
        }
        if let Some(key) = &self.cfg.key {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let signed = sign(key, &event.id, now, &bytes);
            req = req
                .header("webhook-id", signed.id)
                .header("webhook-timestamp", signed.timestamp)
                .header("webhook-signature", signed.signature);
        }
        req.body(bytes)
    }

    /// Sends and classifies. Network errors never carry the URL.
    fn perform(&self, req: reqwest::RequestBuilder) -> Verdict {
        let kind = self.cfg.kind;
        let answer = block_on(
            &self.runtime,
            self.cfg.timeout + HANDOFF_SLACK,
            async move {
                let mut resp = req.send().await.map_err(|e| e.without_url().to_string())?;
                let status = resp.status().as_u16();
                let retry_after = resp
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                let mut body = Vec::new();
                while body.len() < BODY_READ {
                    match resp.chunk().await {
                        Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                        Ok(None) | Err(_) => break,
                    }
                }
                Ok::<_, String>(verdict(kind, status, retry_after.as_deref(), &body))
            },
        );
        match answer {
            Ok(Ok(v)) => v,
            Ok(Err(network)) => Verdict::Retry(format!("request failed: {network}")),
            Err(_) => Verdict::Retry("no answer from the async runtime (shutting down?)".into()),
        }
    }
}

impl BuiltinHandler for Sink {
    fn deliver(&self, event: &Event, _attempt: u32) -> Result<(), BuiltinError> {
        let fatal = |message: String| {
            self.state.failed(&message);
            BuiltinError::fatal(message)
        };
        if event.event_type != SEND_EVENT {
            return Err(fatal(format!(
                "the webhook sink does not perform `{}` events",
                event.event_type
            )));
        }
        let send: Send = serde_json::from_str(event.payload.get())
            .map_err(|e| fatal(format!("invalid `{SEND_EVENT}` payload: {e}")))?;
        if send.endpoint != self.cfg.name {
            return Err(fatal(format!(
                "the event names endpoint {:?}, not {:?}",
                send.endpoint, self.cfg.name
            )));
        }
        check_body(self.cfg.kind, &send.body)
            .map_err(|e| fatal(format!("invalid `{SEND_EVENT}` payload: {e}")))?;
        if let Some(wait) = self.pause.remaining() {
            return Err(rate_limited(
                format!(
                    "rate limited by the receiver; waiting another {:.1}s",
                    wait.as_secs_f64()
                ),
                wait,
            ));
        }
        match self.perform(self.request(event, &send.body)) {
            Verdict::Sent => {
                self.state.sent();
                Ok(())
            }
            Verdict::Wait(message, wait) => {
                self.pause.until(wait);
                self.state.rate_limited(&message);
                tracing::info!(endpoint = %self.cfg.name, event = %event.id, wait_ms = wait.as_millis() as u64, "Webhook receiver asked to slow down");
                Err(rate_limited(message, wait))
            }
            Verdict::Retry(message) => {
                self.state.failed(&message);
                tracing::warn!(endpoint = %self.cfg.name, event = %event.id, error = %message, "Webhook delivery failed; will retry");
                Err(BuiltinError::retryable(message))
            }
            Verdict::Fatal(message) => {
                tracing::warn!(endpoint = %self.cfg.name, event = %event.id, error = %message, "Webhook refused");
                Err(fatal(message))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: WebhookKind = WebhookKind::Standard;
    const D: WebhookKind = WebhookKind::Discord;

    #[test]
    fn answers_become_verdicts() {
        assert_eq!(verdict(S, 200, None, b""), Verdict::Sent);
        assert_eq!(verdict(S, 204, None, b""), Verdict::Sent);
        let discord =
            br#"{"message": "You are being rate limited.", "retry_after": 0.25, "global": false}"#;
        assert!(matches!(
            verdict(D, 429, Some("1"), discord),
            Verdict::Wait(_, w) if w == Duration::from_millis(250)
        ));
        assert!(matches!(
            verdict(S, 429, Some("3"), b""),
            Verdict::Wait(_, w) if w == Duration::from_secs(3)
        ));
        assert!(matches!(
            verdict(S, 429, Some("Wed, 21 Oct 2015 07:28:00 GMT"), b""),
            Verdict::Wait(_, w) if w == DEFAULT_WAIT
        ));
        assert!(matches!(
            verdict(S, 429, Some("99999999"), b""),
            Verdict::Wait(_, w) if w == MAX_WAIT
        ));
        assert!(matches!(
            verdict(S, 503, Some("2"), b""),
            Verdict::Wait(_, w) if w == Duration::from_secs(2)
        ));
        assert_eq!(
            verdict(S, 502, None, b"bad gateway"),
            Verdict::Retry("HTTP 502: bad gateway".into())
        );
        assert!(matches!(verdict(S, 408, None, b""), Verdict::Retry(_)));
        assert!(matches!(verdict(S, 302, None, b""), Verdict::Fatal(m) if m.contains("redirects")));
        let long = "x".repeat(5000);
        let Verdict::Fatal(m) = verdict(S, 404, None, long.as_bytes()) else {
            panic!()
        };
        assert!(m.starts_with("HTTP 404: xxx") && m.len() < 600, "{m}");
    }

    #[test]
    fn bodies_match_the_kind() {
        let raw = |s: &str| RawValue::from_string(s.to_string()).unwrap();
        assert!(check_body(S, &raw("[1]")).is_ok());
        assert!(check_body(D, &raw(r#"{"content": "hi"}"#)).is_ok());
        assert!(check_body(D, &raw(r#"{"embeds": []}"#)).is_ok());
        let err = check_body(D, &raw(r#"{"text": "hi"}"#)).unwrap_err();
        assert!(err.contains("`content` or `embeds`"), "{err}");
        assert!(check_body(WebhookKind::Slack, &raw(r#"{"text": "hi"}"#)).is_ok());
        let err = check_body(WebhookKind::Slack, &raw("\"hi\"")).unwrap_err();
        assert!(err.contains("JSON object"), "{err}");
    }
}
