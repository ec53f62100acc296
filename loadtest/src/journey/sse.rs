//! An incremental parser for `text/event-stream` (the HTML Living Standard's server-sent
//! events), enough for JupyterHub's spawn progress feed: `data:` lines joined by `\n` make one
//! event, a blank line dispatches it, `:` comments (the hub's keepalives) and other fields are
//! skipped. Lines end with `\n`, `\r\n` or `\r`.

#[derive(Debug, Default)]
pub struct EventStream {
    line: Vec<u8>,
    data: Option<String>,
    last_was_cr: bool,
}

impl EventStream {
    /// Feeds bytes as they arrive; returns the data of every event completed by them.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<String> {
        let mut events = Vec::new();
        for &b in bytes {
            if b == b'\n' && self.last_was_cr {
                self.last_was_cr = false;
                continue;
            }
            self.last_was_cr = b == b'\r';
            if b == b'\n' || b == b'\r' {
                let line = std::mem::take(&mut self.line);
                self.line_done(&line, &mut events);
            } else {
                self.line.push(b);
            }
        }
        events
    }

    fn line_done(&mut self, line: &[u8], events: &mut Vec<String>) {
        if line.is_empty() {
            if let Some(data) = self.data.take() {
                events.push(data);
            }
            return;
        }
        let text = String::from_utf8_lossy(line);
        let (field, value) = match text.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (text.as_ref(), ""),
        };
        if field == "data" {
            match &mut self.data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(value);
                }
                None => self.data = Some(value.to_owned()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_across_chunks() {
        let mut s = EventStream::default();
        assert!(s.feed(b"data: {\"progress\": 0").is_empty());
        assert_eq!(s.feed(b"}\n\n"), vec![r#"{"progress": 0}"#]);
        assert!(s.feed(b":keepalive\n\n").is_empty(), "comments are not events");
        assert_eq!(
            s.feed(b"data: a\r\ndata:b\r\n\r\nevent: x\ndata: c\n\n"),
            vec!["a\nb".to_owned(), "c".to_owned()]
        );
        assert_eq!(s.feed(b"data: d\r\rdata: e\r"), vec!["d"]);
        assert_eq!(s.feed(b"\n\n"), vec!["e"]);
    }
}
