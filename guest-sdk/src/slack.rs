//! Slack incoming-webhook messages: `text` and Block Kit `blocks`, sent to
//! a `kind = "slack"` endpoint with [`Message::send`].
//!
//! ```
//! use hookbox_sdk::slack::Message;
//!
//! # let mut host = hookbox_sdk::testing::TestHost::new();
//! # host.within("acme", || -> Result<(), hookbox_sdk::HandlerError> {
//! Message::text("Ticket T-9 opened")
//!     .header("New ticket")
//!     .section("*Printer on fire* — priority urgent")
//!     .send("acme-slack")?;
//! # Ok(()) }).unwrap();
//! let body = &host.emitted()[0].payload_value()["body"];
//! assert_eq!(body["text"], "Ticket T-9 opened");
//! assert_eq!(body["blocks"][1]["text"]["type"], "mrkdwn");
//! ```

use serde::Serialize;
use serde_json::{Value, json};

use crate::emit::EmitError;

/// A message for a Slack incoming webhook.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[must_use]
pub struct Message {
    /// The text (the notification text when there are blocks).
    pub text: String,
    /// Block Kit blocks.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub blocks: Vec<Value>,
}

impl Message {
    /// A message with `text`.
    pub fn text(text: impl Into<String>) -> Self {
        Message {
            text: text.into(),
            blocks: Vec::new(),
        }
    }

    /// Adds a header block (plain text).
    pub fn header(self, text: impl Into<String>) -> Self {
        self.block(json!({"type": "header", "text": {"type": "plain_text", "text": text.into()}}))
    }

    /// Adds a section block (mrkdwn).
    pub fn section(self, markdown: impl Into<String>) -> Self {
        self.block(json!({"type": "section", "text": {"type": "mrkdwn", "text": markdown.into()}}))
    }

    /// Adds a context block (small mrkdwn text).
    pub fn context(self, markdown: impl Into<String>) -> Self {
        self.block(
            json!({"type": "context", "elements": [{"type": "mrkdwn", "text": markdown.into()}]}),
        )
    }

    /// Adds any Block Kit block.
    pub fn block(mut self, block: Value) -> Self {
        self.blocks.push(block);
        self
    }

    /// Queues it for the Slack endpoint `endpoint`.
    pub fn send(&self, endpoint: &str) -> Result<(), EmitError> {
        crate::webhook::send(endpoint, self)
    }
}
