//! A delivery's log: records from `hookbox:handler/log` and lines the guest
//! writes to WASI stdout/stderr, all counted against one `log_bytes` budget.
//!
//! Over-budget output is not truncated: the write (or log call) that would
//! pass the budget ends the delivery with `log_limit`, so a flood costs the
//! guest its delivery instead of silently losing lines. Records written
//! before that point are kept in the report.
//!
//! Every record costs [`RECORD_OVERHEAD`] bytes and every field
//! [`FIELD_OVERHEAD`] besides its text, about what holding it takes in the
//! host, so empty records and empty fields are not free: `log_bytes` bounds
//! the memory a delivery's log takes whatever the guest writes.

use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError, StreamResult};

use super::outcome::{LogLevel, LogRecord, LogStream};

/// Largest single write permit handed to the guest; WASI streams use ~64 KiB
/// (a larger permit would let `write-zeroes` make the host allocate more).
const WRITE_PERMIT: usize = 64 * 1024;

/// A stdout/stderr line longer than this is split into several records, so
/// one unterminated write cannot grow a single record without bound.
const MAX_LINE: usize = 16 * 1024;

/// What one record costs besides its text: a `LogRecord` is 56 bytes in
/// the host before its strings (the message and fields vectors, level and
/// stream), and it is stored and serialised with its framing.
pub(crate) const RECORD_OVERHEAD: u64 = 64;
/// What one field costs besides its key and value: two `String`s, 48 bytes.
pub(crate) const FIELD_OVERHEAD: u64 = 48;

/// The log budget was exhausted; carried as the error that ends the call.
#[derive(Debug)]
pub(crate) struct LogFull {
    pub budget: u64,
    /// Records and fields kept before the refused one.
    pub records: usize,
    pub fields: usize,
}

impl std::fmt::Display for LogFull {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "log output exceeded the limit of {} bytes ({} records and {} fields kept; \
             each record counts {RECORD_OVERHEAD} bytes and each field {FIELD_OVERHEAD} \
             besides its text)",
            self.budget, self.records, self.fields
        )
    }
}

impl std::error::Error for LogFull {}

/// Records and byte accounting of the current delivery.
#[derive(Debug, Default)]
pub(crate) struct LogBook {
    budget: u64,
    used: u64,
    records: Vec<LogRecord>,
    /// Fields over all records.
    fields: usize,
    /// Unterminated output per stream: stdout, stderr.
    partial: [Vec<u8>; 2],
    /// Set once the budget was exceeded.
    full: bool,
}

impl LogBook {
    /// Charges `bytes` against the budget.
    fn charge(&mut self, bytes: u64) -> Result<(), LogFull> {
        let next = self.used.saturating_add(bytes);
        if next > self.budget {
            self.full = true;
            return Err(LogFull {
                budget: self.budget,
                records: self.records.len(),
                fields: self.fields,
            });
        }
        self.used = next;
        Ok(())
    }

    /// Appends a `log` record; its message, fields and their overheads
    /// count against the budget.
    pub(crate) fn log(
        &mut self,
        level: LogLevel,
        message: String,
        fields: Vec<(String, String)>,
    ) -> Result<(), LogFull> {
        let text = message.len() + fields.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>();
        let overhead =
            RECORD_OVERHEAD.saturating_add(FIELD_OVERHEAD.saturating_mul(fields.len() as u64));
        self.charge((text as u64).saturating_add(overhead))?;
        self.fields += fields.len();
        self.records.push(LogRecord {
            level,
            message,
            fields,
            stream: LogStream::Log,
        });
        Ok(())
    }

    /// Appends raw output; every byte (newlines included) counts, and each
    /// line it ends costs [`RECORD_OVERHEAD`] too. The lines before one
    /// past the budget are kept.
    fn write(&mut self, stream: LogStream, bytes: &[u8]) -> Result<(), LogFull> {
        self.charge(bytes.len() as u64)?;
        let idx = stream_index(stream);
        let mut buf = std::mem::take(&mut self.partial[idx]);
        let mut result = Ok(());
        for &b in bytes {
            let end = if b == b'\n' {
                true
            } else {
                buf.push(b);
                buf.len() >= MAX_LINE
            };
            if end {
                result = self.charge(RECORD_OVERHEAD);
                if result.is_err() {
                    break;
                }
                self.push_line(stream, &buf);
                buf.clear();
            }
        }
        self.partial[idx] = buf;
        result
    }

    fn push_line(&mut self, stream: LogStream, line: &[u8]) {
        let text = String::from_utf8_lossy(line);
        let text = text.strip_suffix('\r').unwrap_or(&text);
        self.records.push(LogRecord {
            level: if stream == LogStream::Stderr {
                LogLevel::Warn
            } else {
                LogLevel::Info
            },
            message: text.to_string(),
            fields: Vec::new(),
            stream,
        });
    }

    /// Whether the budget was exceeded during this delivery.
    pub(crate) fn is_full(&self) -> bool {
        self.full
    }

    /// The last stderr lines (up to `max` bytes), e.g. a guest's panic message.
    pub(crate) fn stderr_tail(&self, max: usize) -> String {
        let mut lines: Vec<&str> = Vec::new();
        let mut size = 0;
        for r in self.records.iter().rev() {
            if r.stream != LogStream::Stderr {
                continue;
            }
            if size + r.message.len() > max {
                break;
            }
            size += r.message.len() + 1;
            lines.push(&r.message);
        }
        lines.reverse();
        lines.join("\n")
    }
}

fn stream_index(stream: LogStream) -> usize {
    usize::from(stream == LogStream::Stderr)
}

/// The log shared by the store's host functions and its stdout/stderr pipes.
#[derive(Clone, Debug, Default)]
pub(crate) struct SharedLog(Arc<Mutex<LogBook>>);

impl SharedLog {
    pub(crate) fn lock(&self) -> MutexGuard<'_, LogBook> {
        // The book is plain data; a panic elsewhere cannot leave it torn.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts a delivery with an empty log and a fresh budget.
    pub(crate) fn begin(&self, budget: u64) {
        *self.lock() = LogBook {
            budget,
            ..LogBook::default()
        };
    }

    /// Ends the delivery: flushes unterminated lines and takes the records.
    pub(crate) fn finish(&self) -> Vec<LogRecord> {
        let mut book = self.lock();
        for stream in [LogStream::Stdout, LogStream::Stderr] {
            let rest = std::mem::take(&mut book.partial[stream_index(stream)]);
            if !rest.is_empty() {
                book.push_line(stream, &rest);
            }
        }
        std::mem::take(&mut book.records)
    }

    /// A WASI stdout/stderr implementation writing into this log.
    pub(crate) fn pipe(&self, stream: LogStream) -> Pipe {
        Pipe {
            log: self.clone(),
            stream,
        }
    }
}

/// WASI stdout or stderr of one store.
#[derive(Clone, Debug)]
pub(crate) struct Pipe {
    log: SharedLog,
    stream: LogStream,
}

impl Pipe {
    fn write_bytes(&self, bytes: &[u8]) -> Result<(), LogFull> {
        self.log.lock().write(self.stream, bytes)
    }
}

impl IsTerminal for Pipe {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for Pipe {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl OutputStream for Pipe {
    fn write(&mut self, bytes: bytes::Bytes) -> StreamResult<()> {
        self.write_bytes(&bytes)
            .map_err(|full| StreamError::Trap(wasmtime::Error::new(full)))
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(WRITE_PERMIT)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for Pipe {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for Pipe {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Poll::Ready(
            self.write_bytes(buf)
                .map(|()| buf.len())
                .map_err(std::io::Error::other),
        )
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_become_records_and_partials_flush_at_the_end() {
        let log = SharedLog::default();
        log.begin(1000);
        let out = log.pipe(LogStream::Stdout);
        let err = log.pipe(LogStream::Stderr);
        out.write_bytes(b"hello\nwor").unwrap();
        err.write_bytes(b"oops\r\n").unwrap();
        out.write_bytes(b"ld").unwrap();
        let records = log.finish();
        let got: Vec<_> = records
            .iter()
            .map(|r| (r.stream, r.level, r.message.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (LogStream::Stdout, LogLevel::Info, "hello"),
                (LogStream::Stderr, LogLevel::Warn, "oops"),
                (LogStream::Stdout, LogLevel::Info, "world"),
            ]
        );
    }

    #[test]
    fn budget_is_shared_and_exact() {
        let log = SharedLog::default();
        log.begin(10 + 2 * RECORD_OVERHEAD + FIELD_OVERHEAD);
        log.lock()
            .log(LogLevel::Info, "abc".into(), vec![("k".into(), "v".into())])
            .unwrap(); // 5 bytes + a record + a field
        log.pipe(LogStream::Stdout).write_bytes(b"1234\n").unwrap(); // 10: at the limit
        assert!(!log.lock().is_full());
        let err = log.pipe(LogStream::Stderr).write_bytes(b"x").unwrap_err();
        assert_eq!(err.budget, 10 + 2 * RECORD_OVERHEAD + FIELD_OVERHEAD);
        assert_eq!((err.records, err.fields), (2, 1));
        assert!(log.lock().is_full());
        assert_eq!(log.finish().len(), 2);
    }

    #[test]
    fn log_record_past_budget_is_refused_not_truncated() {
        let log = SharedLog::default();
        log.begin(4 + RECORD_OVERHEAD);
        assert!(
            log.lock()
                .log(LogLevel::Info, "12345".into(), vec![])
                .is_err()
        );
        assert!(log.finish().is_empty());
    }

    #[test]
    fn empty_records_fields_and_lines_are_not_free() {
        let log = SharedLog::default();
        log.begin(10 * RECORD_OVERHEAD);
        for _ in 0..10 {
            log.lock()
                .log(LogLevel::Info, String::new(), vec![])
                .unwrap();
        }
        assert!(
            log.lock()
                .log(LogLevel::Info, String::new(), vec![])
                .is_err()
        );
        assert_eq!(log.finish().len(), 10);

        log.begin(RECORD_OVERHEAD + 1000 * FIELD_OVERHEAD);
        let fields = vec![(String::new(), String::new()); 1001];
        let err = log
            .lock()
            .log(LogLevel::Info, String::new(), fields)
            .unwrap_err();
        assert_eq!((err.records, err.fields), (0, 0));
        assert!(err.to_string().contains("each field 48"), "{err}");

        // Empty lines: one byte and one record each; the lines before the
        // refused one are kept.
        log.begin(3 * (1 + RECORD_OVERHEAD) + 1);
        let err = log
            .pipe(LogStream::Stdout)
            .write_bytes(&[b'\n'; 4])
            .unwrap_err();
        assert_eq!(err.records, 3);
        assert_eq!(log.finish().len(), 3);
    }

    #[test]
    fn long_lines_are_split() {
        let log = SharedLog::default();
        log.begin(u64::MAX);
        log.pipe(LogStream::Stdout)
            .write_bytes(&vec![b'x'; MAX_LINE + 1])
            .unwrap();
        let records = log.finish();
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].message.len(), MAX_LINE);
    }

    #[test]
    fn stderr_tail_keeps_the_last_lines() {
        let log = SharedLog::default();
        log.begin(1000);
        log.pipe(LogStream::Stderr)
            .write_bytes(b"first\npanicked at src/lib.rs:3:5:\nboom\n")
            .unwrap();
        let tail = log.lock().stderr_tail(35);
        assert_eq!(tail, "panicked at src/lib.rs:3:5:\nboom");
    }
}
