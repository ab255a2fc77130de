//! A server-sent events (`text/event-stream`) parser that takes the body in arbitrary chunks:
//! lines may be split anywhere (also inside a UTF-8 character or between `\r` and `\n`), and
//! an event's several `data:` lines are joined with `\n`, as the WHATWG spec says.

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field; `message` when the event named none.
    pub event: String,
    /// The `data:` lines joined with `\n`.
    pub data: String,
}

/// Incremental parser: feed it chunks with [`SseParser::push`], then call
/// [`SseParser::finish`] at the end of the body.
#[derive(Debug, Default)]
pub struct SseParser {
    /// Bytes of a line not yet terminated.
    buffer: Vec<u8>,
    /// The buffer ended with `\r`: a `\n` at the start of the next chunk belongs to it.
    skip_newline: bool,
    event: Option<String>,
    data: Option<String>,
}

impl SseParser {
    pub fn new() -> Self {
        SseParser::default()
    }

    /// Parses `chunk` and returns the events it completes.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<SseEvent> {
        let mut events = Vec::new();
        let mut rest = chunk;
        if self.skip_newline {
            self.skip_newline = false;
            if let Some(tail) = rest.strip_prefix(b"\n") {
                rest = tail;
            }
        }
        while let Some(end) = rest.iter().position(|&byte| byte == b'\n' || byte == b'\r') {
            self.buffer.extend_from_slice(&rest[..end]);
            let line = std::mem::take(&mut self.buffer);
            if let Some(event) = self.line(&String::from_utf8_lossy(&line)) {
                events.push(event);
            }
            let terminator = rest[end];
            rest = &rest[end + 1..];
            if terminator == b'\r' {
                match rest.first() {
                    Some(b'\n') => rest = &rest[1..],
                    Some(_) => {}
                    None => self.skip_newline = true,
                }
            }
        }
        self.buffer.extend_from_slice(rest);
        events
    }

    /// Ends the body: an unterminated last line counts, and a last event that was never followed
    /// by a blank line is still dispatched (servers that close right after `data:` lose nothing).
    pub fn finish(&mut self) -> Option<SseEvent> {
        if !self.buffer.is_empty() {
            let line = std::mem::take(&mut self.buffer);
            if let Some(event) = self.line(&String::from_utf8_lossy(&line)) {
                return Some(event);
            }
        }
        self.dispatch()
    }

    /// Applies one line; a blank line dispatches the event being built.
    fn line(&mut self, line: &str) -> Option<SseEvent> {
        if line.is_empty() {
            return self.dispatch();
        }
        if line.starts_with(':') {
            return None;
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field {
            "event" => self.event = Some(value.to_owned()),
            "data" => match &mut self.data {
                Some(data) => {
                    data.push('\n');
                    data.push_str(value);
                }
                None => self.data = Some(value.to_owned()),
            },
            // `id` and `retry` matter only to reconnecting browsers.
            _ => {}
        }
        None
    }

    fn dispatch(&mut self) -> Option<SseEvent> {
        let event = self.event.take();
        let data = self.data.take()?;
        Some(SseEvent {
            event: event
                .filter(|name| !name.is_empty())
                .unwrap_or_else(|| "message".to_owned()),
            data,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(name: &str, data: &str) -> SseEvent {
        SseEvent {
            event: name.to_owned(),
            data: data.to_owned(),
        }
    }

    /// Feeds `input` in chunks of `size` bytes and collects every event, `finish` included.
    fn parse_in_chunks(input: &[u8], size: usize) -> Vec<SseEvent> {
        let mut parser = SseParser::new();
        let mut events = Vec::new();
        for chunk in input.chunks(size) {
            events.extend(parser.push(chunk));
        }
        events.extend(parser.finish());
        events
    }

    #[test]
    fn events_with_names_and_multi_line_data() {
        let input = b"event: stdout\ndata: \"hi\\n\"\n\nevent: stderr\ndata: a\ndata: b\n\ndata:plain\n\n";
        assert_eq!(
            parse_in_chunks(input, input.len()),
            [
                event("stdout", "\"hi\\n\""),
                event("stderr", "a\nb"),
                event("message", "plain")
            ]
        );
    }

    #[test]
    fn any_chunking_gives_the_same_events() {
        let input =
            "event: stdout\r\ndata: \"é ✓\"\r\n\r\n: keep-alive\r\nevent: exit\rdata: {\"exit_code\":7}\r\r".as_bytes();
        let expected = [event("stdout", "\"é ✓\""), event("exit", "{\"exit_code\":7}")];
        for size in 1..=input.len() {
            assert_eq!(parse_in_chunks(input, size), expected, "chunks of {size}");
        }
    }

    #[test]
    fn comments_unknown_fields_and_events_without_data_are_skipped() {
        let input = b": comment\nid: 3\nretry: 10\n\nevent: lonely\n\ndata\n\nevent:x\ndata:  two spaces\n\n";
        assert_eq!(
            parse_in_chunks(input, 3),
            [event("message", ""), event("x", " two spaces")]
        );
    }

    #[test]
    fn the_last_event_counts_without_a_trailing_blank_line() {
        assert_eq!(parse_in_chunks(b"event: exit\ndata: {}", 4), [event("exit", "{}")]);
        assert_eq!(parse_in_chunks(b"event: exit\n", 4), []);
    }

    #[test]
    fn a_crlf_split_between_chunks_is_one_line_end() {
        let mut parser = SseParser::new();
        assert_eq!(parser.push(b"data: a\r"), []);
        // The `\n` completes the `\r`, then the blank line dispatches.
        assert_eq!(parser.push(b"\n\r\n"), [event("message", "a")]);
        assert_eq!(parser.finish(), None);
    }
}
