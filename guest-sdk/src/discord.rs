//! Discord webhook messages: content and embeds (title, description, URL,
//! colour, fields, footer, timestamp), sent to a `kind = "discord"`
//! endpoint with [`Message::send`]. Hookbox waits what Discord's 429
//! `retry_after` asks before trying again.
//!
//! ```
//! use hookbox_sdk::discord::{Embed, Message};
//!
//! # let mut host = hookbox_sdk::testing::TestHost::new();
//! # host.within("acme", || -> Result<(), hookbox_sdk::HandlerError> {
//! Message::new()
//!     .username("Tickets")
//!     .embed(
//!         Embed::new("T-9: Printer on fire")
//!             .description("Opened by ann")
//!             .color(0xE74C3C)
//!             .field("Priority", "urgent", true)
//!             .timestamp("2024-05-01T12:00:00Z"),
//!     )
//!     .send("acme-discord")?;
//! # Ok(()) }).unwrap();
//! let body = &host.emitted()[0].payload_value()["body"];
//! assert_eq!(body["embeds"][0]["color"], 0xE74C3C);
//! assert_eq!(body["embeds"][0]["fields"][0]["inline"], true);
//! ```

use serde::Serialize;

use crate::emit::EmitError;

/// A Discord webhook message.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[must_use]
pub struct Message {
    /// Plain text (up to 2000 characters).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// Overrides the webhook's user name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Overrides the webhook's avatar.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub avatar_url: Option<String>,
    /// Up to 10 embeds.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub embeds: Vec<Embed>,
}

/// A rich embed.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[must_use]
pub struct Embed {
    /// The title.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// The text under the title.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Where the title links to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The side bar's colour, `0xRRGGBB`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub color: Option<u32>,
    /// Name/value pairs.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<EmbedField>,
    /// The footer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub footer: Option<EmbedFooter>,
    /// An ISO-8601 time shown in the footer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<String>,
}

/// One field of an embed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EmbedField {
    /// Its name.
    pub name: String,
    /// Its value.
    pub value: String,
    /// Shown beside the previous inline field.
    pub inline: bool,
}

/// An embed's footer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EmbedFooter {
    /// Its text.
    pub text: String,
}

impl Message {
    /// An empty message (set `content` or add an embed).
    pub fn new() -> Self {
        Message::default()
    }

    /// Sets the text.
    pub fn content(mut self, content: impl Into<String>) -> Self {
        self.content = Some(content.into());
        self
    }

    /// Overrides the user name.
    pub fn username(mut self, username: impl Into<String>) -> Self {
        self.username = Some(username.into());
        self
    }

    /// Overrides the avatar.
    pub fn avatar_url(mut self, url: impl Into<String>) -> Self {
        self.avatar_url = Some(url.into());
        self
    }

    /// Adds an embed.
    pub fn embed(mut self, embed: Embed) -> Self {
        self.embeds.push(embed);
        self
    }

    /// Queues it for the Discord endpoint `endpoint`.
    pub fn send(&self, endpoint: &str) -> Result<(), EmitError> {
        crate::webhook::send(endpoint, self)
    }
}

impl Embed {
    /// An embed titled `title`.
    pub fn new(title: impl Into<String>) -> Self {
        Embed {
            title: Some(title.into()),
            ..Embed::default()
        }
    }

    /// Sets the description.
    pub fn description(mut self, text: impl Into<String>) -> Self {
        self.description = Some(text.into());
        self
    }

    /// Links the title.
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.url = Some(url.into());
        self
    }

    /// Sets the colour (`0xRRGGBB`).
    pub fn color(mut self, rgb: u32) -> Self {
        self.color = Some(rgb & 0x00FF_FFFF);
        self
    }

    /// Adds a field.
    pub fn field(
        mut self,
        name: impl Into<String>,
        value: impl Into<String>,
        inline: bool,
    ) -> Self {
        self.fields.push(EmbedField {
            name: name.into(),
            value: value.into(),
            inline,
        });
        self
    }

    /// Sets the footer text.
    pub fn footer(mut self, text: impl Into<String>) -> Self {
        self.footer = Some(EmbedFooter { text: text.into() });
        self
    }

    /// Sets the timestamp (ISO-8601).
    pub fn timestamp(mut self, iso8601: impl Into<String>) -> Self {
        self.timestamp = Some(iso8601.into());
        self
    }
}
