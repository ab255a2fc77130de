//! Process output handling, pure and unit-tested: the per-stream caps (first N bytes of a one-shot
//! exec, newest N bytes of a background process), streaming lossy UTF-8 decoding, and the sniffer
//! that takes the exec wrapper's pid line out of the user's output.

use std::collections::VecDeque;

use berth_runtime::OutputChunk;
use bytes::Bytes;

/// Keeps the first `limit` bytes written to it; `truncated` once anything was dropped.
#[derive(Debug, Clone)]
pub struct HeadBuffer {
    bytes: Vec<u8>,
    limit: usize,
    truncated: bool,
}

impl HeadBuffer {
    pub fn new(limit: usize) -> Self {
        HeadBuffer {
            bytes: Vec::new(),
            limit,
            truncated: false,
        }
    }

    pub fn push(&mut self, chunk: &[u8]) {
        let room = self.limit.saturating_sub(self.bytes.len());
        if chunk.len() > room {
            self.truncated = true;
        }
        self.bytes.extend_from_slice(&chunk[..chunk.len().min(room)]);
    }

    pub fn truncated(&self) -> bool {
        self.truncated
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The kept bytes as text (invalid UTF-8 replaced; a character cut by the cap is dropped).
    pub fn text(&self) -> String {
        let end = if self.truncated {
            complete_prefix_len(&self.bytes)
        } else {
            self.bytes.len()
        };
        String::from_utf8_lossy(&self.bytes[..end]).into_owned()
    }
}

/// Keeps the newest `limit` bytes written to it; `truncated` once older bytes were dropped.
#[derive(Debug, Clone)]
pub struct TailBuffer {
    bytes: VecDeque<u8>,
    limit: usize,
    truncated: bool,
}

impl TailBuffer {
    pub fn new(limit: usize) -> Self {
        TailBuffer {
            bytes: VecDeque::new(),
            limit,
            truncated: false,
        }
    }

    pub fn push(&mut self, chunk: &[u8]) {
        let chunk = if chunk.len() > self.limit {
            self.truncated = true;
            self.bytes.clear();
            &chunk[chunk.len() - self.limit..]
        } else {
            chunk
        };
        let overflow = (self.bytes.len() + chunk.len()).saturating_sub(self.limit);
        if overflow > 0 {
            self.truncated = true;
            self.bytes.drain(..overflow);
        }
        self.bytes.extend(chunk);
    }

    pub fn truncated(&self) -> bool {
        self.truncated
    }

    /// The kept bytes as text; when older bytes were dropped, a character cut at the front is skipped.
    pub fn text(&self) -> String {
        let bytes: Vec<u8> = self.bytes.iter().copied().collect();
        let start = if self.truncated {
            bytes
                .iter()
                .take(3)
                .take_while(|byte| (**byte & 0b1100_0000) == 0b1000_0000)
                .count()
        } else {
            0
        };
        String::from_utf8_lossy(&bytes[start..]).into_owned()
    }
}

/// Decodes a byte stream to text chunk by chunk, never splitting a character across two chunks
/// (an incomplete sequence at the end of a chunk waits for the next one).
#[derive(Debug, Default)]
pub struct Utf8Decoder {
    pending: Vec<u8>,
}

impl Utf8Decoder {
    pub fn decode(&mut self, chunk: &[u8]) -> String {
        self.pending.extend_from_slice(chunk);
        let cut = complete_prefix_len(&self.pending);
        let text = String::from_utf8_lossy(&self.pending[..cut]).into_owned();
        self.pending.drain(..cut);
        text
    }

    /// What is left at the end of the stream (an incomplete character becomes U+FFFD).
    pub fn finish(&mut self) -> String {
        let text = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        text
    }
}

/// Length of the longest prefix of `bytes` that does not end inside an incomplete UTF-8
/// sequence. Invalid bytes in the middle count as complete (they decode to U+FFFD).
fn complete_prefix_len(bytes: &[u8]) -> usize {
    let mut start = 0;
    loop {
        match std::str::from_utf8(&bytes[start..]) {
            Ok(_) => return bytes.len(),
            Err(error) => match error.error_len() {
                None => return start + error.valid_up_to(),
                Some(len) => start += error.valid_up_to() + len,
            },
        }
    }
}

/// The first line the exec wrapper prints before it `exec`s the user's program.
pub const PID_LINE_PREFIX: &[u8] = b"berth-pid:";
/// Longest pid line accepted; anything longer is not the wrapper's.
const PID_LINE_MAX: usize = 40;

/// What the sniffer found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sniffed {
    /// Still reading the first line.
    Undecided,
    Pid(u32),
    /// The first line was not the wrapper's (its bytes were passed on).
    NoPid,
}

/// Takes the wrapper's `berth-pid:N` line out of the output: it is the first line of stderr, or of
/// stdout with a terminal (where both streams are one). Everything else passes through unchanged.
#[derive(Debug)]
pub struct PidSniffer {
    tty: bool,
    line: Vec<u8>,
    state: Sniffed,
}

impl PidSniffer {
    pub fn new(tty: bool) -> Self {
        PidSniffer {
            tty,
            line: Vec::new(),
            state: Sniffed::Undecided,
        }
    }

    pub fn state(&self) -> Sniffed {
        self.state
    }

    /// Feeds one chunk; returns what should reach the user now.
    pub fn feed(&mut self, chunk: OutputChunk) -> Vec<OutputChunk> {
        if self.state != Sniffed::Undecided {
            return vec![chunk];
        }
        let bytes = match (&chunk, self.tty) {
            (OutputChunk::Stderr(bytes), false) | (OutputChunk::Stdout(bytes), true) => bytes.clone(),
            _ => return vec![chunk],
        };
        self.line.extend_from_slice(&bytes);
        let seen = self.line.len().min(PID_LINE_PREFIX.len());
        if self.line[..seen] != PID_LINE_PREFIX[..seen] {
            return self.give_up();
        }
        let Some(newline) = self.line.iter().position(|byte| *byte == b'\n') else {
            if self.line.len() > PID_LINE_MAX {
                return self.give_up();
            }
            return Vec::new();
        };
        let line = &self.line[PID_LINE_PREFIX.len()..newline];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let pid = std::str::from_utf8(line)
            .ok()
            .filter(|text| !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|text| text.parse::<u32>().ok());
        match pid {
            Some(pid) => {
                self.state = Sniffed::Pid(pid);
                let rest = self.line.split_off(newline + 1);
                self.line.clear();
                if rest.is_empty() {
                    Vec::new()
                } else {
                    vec![self.rewrap(Bytes::from(rest))]
                }
            }
            None => self.give_up(),
        }
    }

    /// The stream ended: anything held back is passed on.
    pub fn finish(&mut self) -> Vec<OutputChunk> {
        if self.state == Sniffed::Undecided {
            return self.give_up();
        }
        Vec::new()
    }

    fn give_up(&mut self) -> Vec<OutputChunk> {
        self.state = Sniffed::NoPid;
        let held = std::mem::take(&mut self.line);
        if held.is_empty() {
            Vec::new()
        } else {
            vec![self.rewrap(Bytes::from(held))]
        }
    }

    fn rewrap(&self, bytes: Bytes) -> OutputChunk {
        if self.tty {
            OutputChunk::Stdout(bytes)
        } else {
            OutputChunk::Stderr(bytes)
        }
    }
}

/// How the engine reports, on stdout, an exec whose program could not be started.
const ENGINE_START_ERROR: &[u8] = b"OCI runtime exec failed";

/// The engine writes its "could not start" message to the exec's stdout; berth moves it to
/// stderr, where a shell would have put it. Applies to the first chunk of an exec without a terminal.
pub fn relocate_start_error(chunk: OutputChunk) -> OutputChunk {
    match chunk {
        OutputChunk::Stdout(bytes) if bytes.starts_with(ENGINE_START_ERROR) => OutputChunk::Stderr(bytes),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(text: &str) -> OutputChunk {
        OutputChunk::Stdout(Bytes::from(text.to_owned()))
    }

    fn err(text: &str) -> OutputChunk {
        OutputChunk::Stderr(Bytes::from(text.to_owned()))
    }

    #[test]
    fn head_buffer_keeps_the_first_bytes_and_says_when_it_cut() {
        let mut buffer = HeadBuffer::new(5);
        buffer.push(b"abc");
        assert!(!buffer.truncated());
        buffer.push(b"de");
        assert!(!buffer.truncated(), "exactly at the cap is not a cut");
        buffer.push(b"f");
        assert!(buffer.truncated());
        assert_eq!(buffer.text(), "abcde");
        let mut zero = HeadBuffer::new(0);
        zero.push(b"");
        assert!(!zero.truncated());
        zero.push(b"x");
        assert!(zero.truncated());
        assert_eq!(zero.text(), "");
    }

    #[test]
    fn head_buffer_drops_a_character_cut_by_the_cap() {
        let mut buffer = HeadBuffer::new(4);
        buffer.push("ab€".as_bytes()); // € is 3 bytes: only 2 fit
        assert!(buffer.truncated());
        assert_eq!(buffer.text(), "ab");
    }

    #[test]
    fn tail_buffer_keeps_the_newest_bytes() {
        let mut buffer = TailBuffer::new(4);
        buffer.push(b"ab");
        buffer.push(b"cd");
        assert!(!buffer.truncated());
        assert_eq!(buffer.text(), "abcd");
        buffer.push(b"ef");
        assert!(buffer.truncated());
        assert_eq!(buffer.text(), "cdef");
        buffer.push(b"0123456789");
        assert_eq!(buffer.text(), "6789");
    }

    #[test]
    fn tail_buffer_skips_a_character_cut_at_the_front() {
        let mut buffer = TailBuffer::new(4);
        buffer.push("x€y".as_bytes()); // 5 bytes: the first byte goes, then a 3-byte € fits
        assert_eq!(buffer.text(), "€y");
        buffer.push(b"z"); // drops the €'s first byte: its two continuation bytes are skipped
        assert_eq!(buffer.text(), "yz");
    }

    #[test]
    fn utf8_decoder_never_splits_a_character() {
        let bytes = "h€llo".as_bytes();
        let mut decoder = Utf8Decoder::default();
        let mut text = String::new();
        for byte in bytes {
            text.push_str(&decoder.decode(std::slice::from_ref(byte)));
            assert!(!text.contains('\u{fffd}'));
        }
        text.push_str(&decoder.finish());
        assert_eq!(text, "h€llo");
        // Invalid bytes in the middle are replaced, and decoding goes on.
        let mut decoder = Utf8Decoder::default();
        assert_eq!(decoder.decode(b"a\xffb\xe2\x82"), "a\u{fffd}b");
        assert_eq!(decoder.decode(b"\xac!"), "€!");
        assert_eq!(decoder.decode(b"\xe2"), "");
        assert_eq!(decoder.finish(), "\u{fffd}");
    }

    #[test]
    fn sniffer_takes_the_pid_line_out_of_stderr() {
        let mut sniffer = PidSniffer::new(false);
        assert_eq!(sniffer.feed(out("early")), vec![out("early")]);
        assert_eq!(sniffer.feed(err("berth-p")), vec![]);
        assert_eq!(sniffer.state(), Sniffed::Undecided);
        assert_eq!(sniffer.feed(err("id:42\nwarning")), vec![err("warning")]);
        assert_eq!(sniffer.state(), Sniffed::Pid(42));
        assert_eq!(sniffer.feed(err("berth-pid:7\n")), vec![err("berth-pid:7\n")]);
        assert_eq!(sniffer.finish(), vec![]);
    }

    #[test]
    fn sniffer_reads_the_terminal_line_from_stdout() {
        let mut sniffer = PidSniffer::new(true);
        assert_eq!(sniffer.feed(out("berth-pid:9\r\n$ ")), vec![out("$ ")]);
        assert_eq!(sniffer.state(), Sniffed::Pid(9));
    }

    #[test]
    fn sniffer_passes_on_a_line_that_is_not_the_wrappers() {
        let mut sniffer = PidSniffer::new(false);
        assert_eq!(sniffer.feed(err("sh: not found\n")), vec![err("sh: not found\n")]);
        assert_eq!(sniffer.state(), Sniffed::NoPid);

        let mut sniffer = PidSniffer::new(false);
        assert_eq!(sniffer.feed(err("berth-pid:x1\n")), vec![err("berth-pid:x1\n")]);
        assert_eq!(sniffer.state(), Sniffed::NoPid);

        let mut sniffer = PidSniffer::new(false);
        let long = format!("berth-pid:{}", "1".repeat(60));
        assert_eq!(sniffer.feed(err(&long)), vec![err(&long)]);
        assert_eq!(sniffer.state(), Sniffed::NoPid);

        let mut sniffer = PidSniffer::new(false);
        assert_eq!(sniffer.feed(err("berth-pid:1")), vec![]);
        assert_eq!(
            sniffer.finish(),
            vec![err("berth-pid:1")],
            "held bytes are flushed at the end"
        );
        assert_eq!(sniffer.state(), Sniffed::NoPid);
    }

    #[test]
    fn engine_start_errors_move_to_stderr() {
        let message = "OCI runtime exec failed: exec failed: executable file not found in $PATH: unknown\r\n";
        assert_eq!(relocate_start_error(out(message)), err(message));
        assert_eq!(relocate_start_error(out("hello")), out("hello"));
        assert_eq!(relocate_start_error(err("x")), err("x"));
    }
}
