//! A server-sent events parser for `logs --follow`, fed the response body
//! chunk by chunk. Small enough that a crate would not pay for itself; it
//! follows the WHATWG rules that matter here: `\n`, `\r\n` or `\r` end a
//! line, `:` starts a comment (the daemon's keep-alives), `data:` lines are
//! joined with `\n`, a blank line dispatches the event, and `id` / `retry`
//! are ignored because the client does not reconnect.

/// Longest line accepted; a notice is a few hundred bytes plus an error
/// message bounded by the daemon's `result_bytes` ceiling (1 MiB).
const LINE_BYTES_MAX: usize = 4 << 20;

/// One dispatched event.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct SseEvent {
    /// The `event:` field; `message` when absent.
    pub(crate) event: String,
    /// The `data:` lines, joined with `\n`.
    pub(crate) data: String,
}

/// Incremental parser state: the unfinished line and the event being built.
#[derive(Debug, Default)]
pub(crate) struct SseParser {
    pending: Vec<u8>,
    event: String,
    data: String,
    has_data: bool,
    started: bool,
}

impl SseParser {
    /// Consumes a chunk and returns the events it completed.
    pub(crate) fn feed(&mut self, chunk: &[u8]) -> Result<Vec<SseEvent>, String> {
        self.pending.extend_from_slice(chunk);
        let mut events = Vec::new();
        let mut start = 0;
        let mut i = 0;
        while i < self.pending.len() {
            let end = match self.pending[i] {
                b'\n' => i + 1,
                // A `\r` at the end of the buffer may be half of `\r\n`: wait.
                b'\r' if i + 1 == self.pending.len() => break,
                b'\r' if self.pending[i + 1] == b'\n' => i + 2,
                b'\r' => i + 1,
                _ => {
                    i += 1;
                    continue;
                }
            };
            let line = String::from_utf8_lossy(&self.pending[start..i]).into_owned();
            self.line(&line, &mut events);
            start = end;
            i = end;
        }
        self.pending.drain(..start);
        if self.pending.len() > LINE_BYTES_MAX {
            return Err(format!(
                "the event stream sent a line over {LINE_BYTES_MAX} bytes"
            ));
        }
        Ok(events)
    }

    fn line(&mut self, line: &str, events: &mut Vec<SseEvent>) {
        let line = if self.started {
            line
        } else {
            self.started = true;
            line.strip_prefix('\u{feff}').unwrap_or(line)
        };
        if line.is_empty() {
            if self.has_data {
                let event = if self.event.is_empty() {
                    "message".to_string()
                } else {
                    std::mem::take(&mut self.event)
                };
                events.push(SseEvent {
                    event,
                    data: std::mem::take(&mut self.data),
                });
            }
            self.event.clear();
            self.data.clear();
            self.has_data = false;
            return;
        }
        if line.starts_with(':') {
            return;
        }
        let (name, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match name {
            "event" => self.event = value.to_string(),
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(event: &str, data: &str) -> SseEvent {
        SseEvent {
            event: event.into(),
            data: data.into(),
        }
    }

    #[test]
    fn events_comments_and_multiline_data() {
        let mut p = SseParser::default();
        let got = p
            .feed(b": keep-alive\n\nevent: delivery\ndata: {\"a\":1}\n\ndata:x\ndata: y\nid: 7\nretry: 10\n\n")
            .unwrap();
        assert_eq!(got, [ev("delivery", "{\"a\":1}"), ev("message", "x\ny")]);
    }

    #[test]
    fn chunks_split_anywhere() {
        let stream =
            b"\xef\xbb\xbfevent: delivery\r\ndata: one\r\n\r\nevent: delivery\rdata: two\r\r\n";
        for split in 0..stream.len() {
            let mut p = SseParser::default();
            let mut got = p.feed(&stream[..split]).unwrap();
            got.extend(p.feed(&stream[split..]).unwrap());
            assert_eq!(
                got,
                [ev("delivery", "one"), ev("delivery", "two")],
                "split at {split}"
            );
        }
    }

    #[test]
    fn nothing_dispatched_without_data_or_blank_line() {
        let mut p = SseParser::default();
        assert!(p.feed(b"event: delivery\n\n").unwrap().is_empty());
        assert!(p.feed(b"data: pending").unwrap().is_empty());
        assert!(p.feed(b"\n").unwrap().is_empty());
        assert_eq!(p.feed(b"\n").unwrap(), [ev("message", "pending")]);
    }

    #[test]
    fn overlong_lines_are_refused() {
        let mut p = SseParser::default();
        let big = vec![b'x'; LINE_BYTES_MAX + 1];
        assert!(p.feed(&big).is_err());
    }
}
