//! The HTTP half of the Zulip REST API: one [`Client`] per realm, HTTP
//! Basic auth with the bot's email and API key, bounded waits and bounded
//! answers. The only code that talks to a Zulip server; replies are read by
//! [`super::protocol`].

use std::time::Duration;

use reqwest::Method;
use reqwest::header::RETRY_AFTER;
use serde::de::DeserializeOwned;

use super::config::RealmConfig;
use super::protocol::{Events, Failure, Me, Received, Registered, Success, parse_reply};
use crate::connectors::Secret;

/// Largest `GET /events` answer read: a queue that filled up during an
/// outage is handed out in one answer.
const MAX_EVENTS_BODY: usize = 64 << 20;
/// Largest answer of any other call. `register` asks for no initial state
/// (`fetch_event_types=[]`), so its answer is the queue id and a few
/// server facts whatever the realm's size; `users/me` is one user; the
/// sink's calls answer an id or nothing. A realm of thousands of members
/// no longer reaches this cap (its member list is never asked for).
const MAX_BODY: usize = 1 << 20;
/// Bound on establishing a connection (the request timeouts bound the rest).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A realm's REST client. Cheap to clone.
#[derive(Clone, Debug)]
pub(crate) struct Client {
    http: reqwest::Client,
    /// `<site>/api/v1`.
    api: String,
    email: String,
    key: Secret,
    request_timeout: Duration,
}

impl Client {
    pub(crate) fn new(realm: &RealmConfig) -> Result<Client, String> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("Hookbox/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(CONNECT_TIMEOUT)
            .build()
            .map_err(|e| format!("[[zulip]] {:?}: HTTP client: {}", realm.name, chain(&e)))?;
        Ok(Client {
            http,
            api: format!("{}/api/v1", realm.site),
            email: realm.email.clone(),
            key: realm.api_key.clone(),
            request_timeout: realm.request_timeout,
        })
    }

    /// `POST /register`: a new event queue for `event_types` (all when
    /// `None`), without any initial state: Hookbox uses none of it, and for
    /// a large realm it is megabytes (every member, channel, subscription).
    pub(crate) async fn register(
        &self,
        event_types: Option<&[String]>,
        all_public_streams: bool,
    ) -> Result<Registered, Failure> {
        let mut form = vec![
            ("all_public_streams", all_public_streams.to_string()),
            ("fetch_event_types", "[]".to_string()),
        ];
        if let Some(types) = event_types {
            let json = serde_json::to_string(types)
                .map_err(|e| Failure::Malformed(format!("event_types: {e}")))?;
            form.push(("event_types", json));
        }
        self.call(
            Method::POST,
            "/register",
            &[],
            &form,
            self.request_timeout,
            MAX_BODY,
        )
        .await
    }

    /// `GET /events`: the events after `last_event_id`, waiting up to
    /// `wait` for some unless `dont_block`.
    pub(crate) async fn events(
        &self,
        queue_id: &str,
        last_event_id: i64,
        dont_block: bool,
        wait: Duration,
    ) -> Result<Vec<Received>, Failure> {
        let query = [
            ("queue_id", queue_id.to_string()),
            ("last_event_id", last_event_id.to_string()),
            ("dont_block", dont_block.to_string()),
        ];
        let events: Events = self
            .call(Method::GET, "/events", &query, &[], wait, MAX_EVENTS_BODY)
            .await?;
        events.into_received()
    }

    /// `GET /users/me`: the bot's own user id.
    pub(crate) async fn me(&self) -> Result<Me, Failure> {
        self.call(
            Method::GET,
            "/users/me",
            &[],
            &[],
            self.request_timeout,
            MAX_BODY,
        )
        .await
    }

    /// `DELETE /events`: frees a queue we no longer poll.
    pub(crate) async fn delete_queue(&self, queue_id: &str) -> Result<(), Failure> {
        let query = [("queue_id", queue_id.to_string())];
        let _: Success = self
            .call(
                Method::DELETE,
                "/events",
                &query,
                &[],
                self.request_timeout,
                MAX_BODY,
            )
            .await?;
        Ok(())
    }

    /// A form-encoded call whose answer body we do not need.
    pub(crate) async fn send(
        &self,
        method: Method,
        path: &str,
        form: &[(&str, String)],
    ) -> Result<(), Failure> {
        let _: Success = self
            .call(method, path, &[], form, self.request_timeout, MAX_BODY)
            .await?;
        Ok(())
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        form: &[(&str, String)],
        timeout: Duration,
        max_body: usize,
    ) -> Result<T, Failure> {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.api))
            .basic_auth(&self.email, Some(self.key.expose()))
            .timeout(timeout);
        if !query.is_empty() {
            request = request.query(query);
        }
        if !form.is_empty() {
            request = request.form(form);
        }
        let mut response = request
            .send()
            .await
            .map_err(|e| network(&e, path, timeout))?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| network(&e, path, timeout))?
        {
            if body.len() + chunk.len() > max_body {
                return Err(Failure::Malformed(format!(
                    "{path}: answer over {max_body} bytes"
                )));
            }
            body.extend_from_slice(&chunk);
        }
        parse_reply(status, retry_after.as_deref(), &body)
    }
}

fn network(e: &reqwest::Error, path: &str, timeout: Duration) -> Failure {
    if e.is_timeout() {
        Failure::Network(format!("{path}: no answer within {timeout:?}"))
    } else {
        Failure::Network(format!("{path}: {}", chain(e)))
    }
}

/// An error with its sources (reqwest's own message alone rarely says why).
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}
