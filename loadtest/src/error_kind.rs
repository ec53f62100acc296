//! What went wrong with a request, as a small closed set of kinds that reports count.
//!
//! The kind names (`connect_refused`, `timeout`, `status_503`, …) are part of the JSON schema
//! (docs/edgeload.md), so they are stable: add kinds, never rename them.

use std::collections::BTreeMap;
use std::fmt;
use std::io;

/// One failed request. A response with a 4xx/5xx status is an error *and* a completed request
/// (its latency is recorded); every other kind means no response arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ErrorKind {
    /// The TCP connection was refused (nothing listens on the port).
    ConnectRefused,
    /// Any other failure to open the connection (unreachable, address in use, …).
    ConnectFailed,
    /// The TLS handshake was refused: a certificate not trusted, no protocol in common (ALPN).
    Tls,
    /// No complete response within `--timeout` (connect included).
    Timeout,
    /// The peer reset the connection.
    Reset,
    /// The connection closed before a complete response.
    Closed,
    /// The response could not be parsed, or HTTP/2 signalled a protocol error.
    Protocol,
    /// Any other I/O error.
    Io,
    /// A response with a 4xx or 5xx status code.
    Status(u16),
}

impl ErrorKind {
    /// Classifies a failure to connect.
    pub fn from_connect(e: &io::Error) -> ErrorKind {
        match e.kind() {
            io::ErrorKind::ConnectionRefused => ErrorKind::ConnectRefused,
            io::ErrorKind::TimedOut => ErrorKind::Timeout,
            _ => ErrorKind::ConnectFailed,
        }
    }

    /// Classifies a failure after the connection was open.
    pub fn from_io(e: &io::Error) -> ErrorKind {
        match e.kind() {
            io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe => ErrorKind::Reset,
            io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionAborted => ErrorKind::Closed,
            io::ErrorKind::TimedOut => ErrorKind::Timeout,
            _ => ErrorKind::Io,
        }
    }

    /// Classifies a hyper error, looking through its sources for the I/O error beneath.
    pub fn from_hyper(e: &hyper::Error) -> ErrorKind {
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            if let Some(io) = s.downcast_ref::<io::Error>() {
                return ErrorKind::from_io(io);
            }
            source = s.source();
        }
        if e.is_timeout() {
            ErrorKind::Timeout
        } else if e.is_parse() || e.is_parse_status() {
            ErrorKind::Protocol
        } else if e.is_incomplete_message() || e.is_closed() || e.is_canceled() {
            ErrorKind::Closed
        } else {
            ErrorKind::Protocol
        }
    }

    /// The error kind for a response status, or `None` for 1xx–3xx.
    pub fn from_status(status: u16) -> Option<ErrorKind> {
        (status >= 400).then_some(ErrorKind::Status(status))
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            ErrorKind::ConnectRefused => "connect_refused",
            ErrorKind::ConnectFailed => "connect_failed",
            ErrorKind::Tls => "tls",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Reset => "reset",
            ErrorKind::Closed => "closed",
            ErrorKind::Protocol => "protocol",
            ErrorKind::Io => "io",
            ErrorKind::Status(code) => return write!(f, "status_{code}"),
        };
        f.write_str(name)
    }
}

/// Errors counted by kind. Few distinct kinds occur in a run, so this stays tiny.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErrorCounts(BTreeMap<ErrorKind, u64>);

impl ErrorCounts {
    pub fn add(&mut self, kind: ErrorKind, n: u64) {
        *self.0.entry(kind).or_insert(0) += n;
    }

    pub fn merge(&mut self, other: &ErrorCounts) {
        for (&k, &n) in &other.0 {
            self.add(k, n);
        }
    }

    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn clear(&mut self) {
        self.0.clear();
    }

    /// Kinds in a stable order (connection errors first, then statuses by code).
    pub fn iter(&self) -> impl Iterator<Item = (ErrorKind, u64)> + '_ {
        self.0.iter().map(|(&k, &n)| (k, n))
    }

    /// `{"connect_refused": 3, "status_500": 12}` for the JSON report.
    pub fn to_json(&self) -> serde_json::Map<String, serde_json::Value> {
        self.iter().map(|(k, n)| (k.to_string(), n.into())).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_stable() {
        let cases = [
            (ErrorKind::ConnectRefused, "connect_refused"),
            (ErrorKind::ConnectFailed, "connect_failed"),
            (ErrorKind::Tls, "tls"),
            (ErrorKind::Timeout, "timeout"),
            (ErrorKind::Reset, "reset"),
            (ErrorKind::Closed, "closed"),
            (ErrorKind::Protocol, "protocol"),
            (ErrorKind::Io, "io"),
            (ErrorKind::Status(503), "status_503"),
        ];
        for (kind, name) in cases {
            assert_eq!(kind.to_string(), name);
        }
    }

    #[test]
    fn io_errors_are_classified() {
        let e = |k| io::Error::new(k, "x");
        assert_eq!(
            ErrorKind::from_connect(&e(io::ErrorKind::ConnectionRefused)),
            ErrorKind::ConnectRefused
        );
        assert_eq!(
            ErrorKind::from_connect(&e(io::ErrorKind::AddrNotAvailable)),
            ErrorKind::ConnectFailed
        );
        assert_eq!(ErrorKind::from_io(&e(io::ErrorKind::ConnectionReset)), ErrorKind::Reset);
        assert_eq!(ErrorKind::from_io(&e(io::ErrorKind::UnexpectedEof)), ErrorKind::Closed);
        assert_eq!(ErrorKind::from_io(&e(io::ErrorKind::Other)), ErrorKind::Io);
    }

    #[test]
    fn only_4xx_and_5xx_are_errors() {
        assert_eq!(ErrorKind::from_status(200), None);
        assert_eq!(ErrorKind::from_status(304), None);
        assert_eq!(ErrorKind::from_status(404), Some(ErrorKind::Status(404)));
        assert_eq!(ErrorKind::from_status(500), Some(ErrorKind::Status(500)));
    }

    #[test]
    fn counts_merge_and_sort() {
        let mut a = ErrorCounts::default();
        a.add(ErrorKind::Status(500), 2);
        let mut b = ErrorCounts::default();
        b.add(ErrorKind::ConnectRefused, 1);
        b.add(ErrorKind::Status(500), 3);
        a.merge(&b);
        assert_eq!(a.total(), 6);
        let json = serde_json::Value::Object(a.to_json()).to_string();
        assert_eq!(json, r#"{"connect_refused":1,"status_500":5}"#);
    }
}
