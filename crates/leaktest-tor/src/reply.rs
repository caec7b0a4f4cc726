//! Control-port reply grammar (control-spec §2.3, §4): status lines `NNN-`, `NNN+` with a
//! dot-terminated data block, `NNN ` ending a reply; and the quoted strings used in commands
//! and replies. Everything here is pure and never panics on wire input.

use crate::error::{Result, TorError};

/// The longest single line we accept; a longer one means a broken or hostile peer.
pub const MAX_LINE: usize = 1 << 20;
/// The largest reply we accept (a full `ns/all` is a few MiB).
pub const MAX_REPLY: usize = 128 << 20;

/// Status code of asynchronous event replies.
pub const EVENT_STATUS: u16 = 650;

/// One line of a reply, with the data block that followed a `NNN+` line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplyLine {
    pub status: u16,
    /// The text after the status and separator.
    pub text: String,
    /// For a `NNN+` line: the data block, dot-unstuffed, lines joined with `\n`.
    pub data: Option<String>,
}

/// A complete reply: zero or more mid/data lines and the end line (always last).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub lines: Vec<ReplyLine>,
}

impl Reply {
    /// The status of the end line.
    pub fn status(&self) -> u16 {
        self.lines.last().map_or(0, |l| l.status)
    }
    /// 2xx.
    pub fn is_ok(&self) -> bool {
        (200..300).contains(&self.status())
    }
    /// An asynchronous event (650).
    pub fn is_event(&self) -> bool {
        self.status() == EVENT_STATUS
    }
    /// The end line's text (e.g. `OK`, or the error message).
    pub fn message(&self) -> &str {
        self.lines.last().map_or("", |l| l.text.as_str())
    }
    /// For an event: its name (first word of the first line).
    pub fn event_name(&self) -> Option<&str> {
        if !self.is_event() {
            return None;
        }
        let first = self.lines.first()?;
        let word = first.text.split([' ', '=']).next()?;
        Some(word)
    }
}

/// Splits a byte stream into lines (CRLF or bare LF), keeping partial lines across reads, so a
/// read that times out mid-line loses nothing.
#[derive(Default, Debug)]
pub struct LineBuffer {
    buf: Vec<u8>,
    /// Bytes before this index were already handed out.
    start: usize,
}

impl LineBuffer {
    /// Appends freshly read bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete line without its terminator, if one is buffered.
    pub fn next_line(&mut self) -> Result<Option<Vec<u8>>> {
        let pending = &self.buf[self.start..];
        match memchr_nl(pending) {
            Some(i) => {
                let mut line = pending[..i].to_vec();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                self.start += i + 1;
                if self.start > 64 * 1024 && self.start * 2 > self.buf.len() {
                    self.buf.drain(..self.start);
                    self.start = 0;
                }
                if line.len() > MAX_LINE {
                    return Err(TorError::Protocol(format!(
                        "line longer than {MAX_LINE} bytes"
                    )));
                }
                Ok(Some(line))
            }
            None if pending.len() > MAX_LINE => Err(TorError::Protocol(format!(
                "line longer than {MAX_LINE} bytes"
            ))),
            None => Ok(None),
        }
    }
}

fn memchr_nl(b: &[u8]) -> Option<usize> {
    b.iter().position(|&c| c == b'\n')
}

/// Assembles lines into replies.
#[derive(Default, Debug)]
pub struct ReplyParser {
    lines: Vec<ReplyLine>,
    /// A data block being read: (status, text, accumulated data, lines so far).
    data: Option<(u16, String, String, usize)>,
    size: usize,
}

impl ReplyParser {
    /// Feeds one line (without terminator); returns a reply when this line completed one.
    pub fn push_line(&mut self, line: &[u8]) -> Result<Option<Reply>> {
        self.size = self.size.saturating_add(line.len() + 2);
        if self.size > MAX_REPLY {
            self.reset();
            return Err(TorError::Protocol(format!(
                "reply larger than {MAX_REPLY} bytes"
            )));
        }
        if let Some((_, _, data, count)) = self.data.as_mut() {
            if line == b"." {
                let (status, text, data, _) = self.data.take().unwrap_or_default();
                self.lines.push(ReplyLine {
                    status,
                    text,
                    data: Some(data),
                });
                return Ok(None);
            }
            // Dot-unstuffing: a data line that starts with '.' had one added by the sender.
            let content = line.strip_prefix(b".").unwrap_or(line);
            // Joined with '\n': empty lines (even leading ones) are kept.
            if *count > 0 {
                data.push('\n');
            }
            *count += 1;
            data.push_str(&String::from_utf8_lossy(content));
            return Ok(None);
        }
        if line.len() < 3 || !line[..3].iter().all(u8::is_ascii_digit) {
            self.reset();
            return Err(TorError::Protocol(format!(
                "expected a status line, got {:?}",
                String::from_utf8_lossy(&line[..line.len().min(80)])
            )));
        }
        let status = line[..3]
            .iter()
            .fold(0u16, |acc, d| acc * 10 + u16::from(d - b'0'));
        let sep = line.get(3).copied().unwrap_or(b' ');
        let text = String::from_utf8_lossy(line.get(4..).unwrap_or(&[])).into_owned();
        match sep {
            b'-' => {
                self.lines.push(ReplyLine {
                    status,
                    text,
                    data: None,
                });
                Ok(None)
            }
            b'+' => {
                self.data = Some((status, text, String::new(), 0));
                Ok(None)
            }
            b' ' => {
                self.lines.push(ReplyLine {
                    status,
                    text,
                    data: None,
                });
                self.size = 0;
                Ok(Some(Reply {
                    lines: std::mem::take(&mut self.lines),
                }))
            }
            other => {
                self.reset();
                Err(TorError::Protocol(format!(
                    "unknown status separator {:?}",
                    char::from(other)
                )))
            }
        }
    }

    /// True when no reply is partially assembled.
    pub fn is_idle(&self) -> bool {
        self.lines.is_empty() && self.data.is_none()
    }

    fn reset(&mut self) {
        self.lines.clear();
        self.data = None;
        self.size = 0;
    }
}

/// Parses every reply in `bytes` (a convenience for tests and recorded transcripts).
pub fn parse_replies(bytes: &[u8]) -> Result<Vec<Reply>> {
    let mut lines = LineBuffer::default();
    let mut parser = ReplyParser::default();
    lines.push(bytes);
    let mut out = Vec::new();
    while let Some(line) = lines.next_line()? {
        if let Some(reply) = parser.push_line(&line)? {
            out.push(reply);
        }
    }
    Ok(out)
}

/// Quotes a string as a control-spec QuotedString.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Reads a QuotedString at the start of `s` (which must begin with `"`): returns the unescaped
/// value and the rest after the closing quote. Accepts C escapes as Tor writes them
/// (`\n \r \t \" \\ \'`, octal `\NNN`, hex `\xHH`).
pub fn unquote_prefix(s: &str) -> Option<(String, &str)> {
    let b = s.as_bytes();
    if b.first() != Some(&b'"') {
        return None;
    }
    let mut out = Vec::with_capacity(b.len());
    let mut i = 1;
    while i < b.len() {
        match b[i] {
            b'"' => return Some((String::from_utf8_lossy(&out).into_owned(), &s[i + 1..])),
            b'\\' => {
                let c = *b.get(i + 1)?;
                i += 2;
                match c {
                    b'n' => out.push(b'\n'),
                    b'r' => out.push(b'\r'),
                    b't' => out.push(b'\t'),
                    b'x' => {
                        let hex = s.get(i..i + 2)?;
                        out.push(u8::from_str_radix(hex, 16).ok()?);
                        i += 2;
                    }
                    b'0'..=b'7' => {
                        let mut v: u32 = u32::from(c - b'0');
                        let mut n = 1;
                        while n < 3 && i < b.len() && (b'0'..=b'7').contains(&b[i]) {
                            v = v * 8 + u32::from(b[i] - b'0');
                            i += 1;
                            n += 1;
                        }
                        out.push(u8::try_from(v).ok()?);
                    }
                    other => out.push(other),
                }
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    None
}

/// A value that may be quoted: unquoted if it is exactly one QuotedString, else as is.
pub fn maybe_unquote(s: &str) -> String {
    match unquote_prefix(s) {
        Some((v, rest)) if rest.trim().is_empty() => v,
        _ => s.to_string(),
    }
}

/// Splits `KEY=VALUE` pairs of a reply line (`METHODS=COOKIE,SAFECOOKIE COOKIEFILE="/x y"`);
/// values may be QuotedStrings. Words without `=` are returned with an empty value.
pub fn key_values(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = s.trim_start();
    while !rest.is_empty() {
        let end = rest.find([' ', '=']).unwrap_or(rest.len());
        let key = &rest[..end];
        rest = &rest[end..];
        if let Some(after) = rest.strip_prefix('=') {
            if after.starts_with('"') {
                match unquote_prefix(after) {
                    Some((v, r)) => {
                        out.push((key.to_string(), v));
                        rest = r;
                    }
                    None => {
                        // Unterminated quote: take the rest verbatim rather than fail.
                        out.push((key.to_string(), after.to_string()));
                        rest = "";
                    }
                }
            } else {
                let vend = after.find(' ').unwrap_or(after.len());
                out.push((key.to_string(), after[..vend].to_string()));
                rest = &after[vend..];
            }
        } else {
            out.push((key.to_string(), String::new()));
        }
        rest = rest.trim_start();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_line_reply() {
        let r = parse_replies(b"250 OK\r\n").unwrap();
        assert_eq!(r.len(), 1);
        assert!(r[0].is_ok());
        assert_eq!(r[0].message(), "OK");
    }

    #[test]
    fn mid_data_and_end_lines_with_dot_unstuffing() {
        let wire = b"250-version=0.4.9.11\r\n250+config-text=\r\nSocksPort 0\r\n..hidden\r\n.\r\n250 OK\r\n";
        let r = parse_replies(wire).unwrap();
        assert_eq!(r.len(), 1);
        let lines = &r[0].lines;
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0].text, "version=0.4.9.11");
        assert_eq!(lines[1].text, "config-text=");
        assert_eq!(lines[1].data.as_deref(), Some("SocksPort 0\n.hidden"));
        assert_eq!(lines[2].text, "OK");
    }

    #[test]
    fn empty_data_block() {
        let r = parse_replies(b"250+ns/all=\r\n.\r\n250 OK\r\n").unwrap();
        assert_eq!(r[0].lines[0].data.as_deref(), Some(""));
        // Empty lines inside a block are kept, even at the start.
        let r = parse_replies(b"250+k=\r\n\r\n\r\nx\r\n.\r\n250 OK\r\n").unwrap();
        assert_eq!(r[0].lines[0].data.as_deref(), Some("\n\nx"));
    }

    #[test]
    fn errors_and_events_are_separate_replies() {
        let wire = b"650 BW 10 20\r\n552 Unrecognized key \"nonexist\"\r\n650+NEWCONSENSUS\r\nr a b c d e 1.2.3.4 9001 0\r\n.\r\n650 OK\r\n";
        let r = parse_replies(wire).unwrap();
        assert_eq!(r.len(), 3);
        assert!(r[0].is_event());
        assert_eq!(r[0].event_name(), Some("BW"));
        assert_eq!(r[1].status(), 552);
        assert!(!r[1].is_ok());
        assert_eq!(r[2].event_name(), Some("NEWCONSENSUS"));
        assert_eq!(
            r[2].lines[0].data.as_deref(),
            Some("r a b c d e 1.2.3.4 9001 0")
        );
    }

    #[test]
    fn partial_lines_survive_split_reads() {
        let mut lb = LineBuffer::default();
        let mut p = ReplyParser::default();
        let wire = b"250-PROTOCOLINFO 1\r\n250 OK\r\n";
        let mut got = Vec::new();
        for chunk in wire.chunks(3) {
            lb.push(chunk);
            while let Some(line) = lb.next_line().unwrap() {
                if let Some(r) = p.push_line(&line).unwrap() {
                    got.push(r);
                }
            }
        }
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].lines[0].text, "PROTOCOLINFO 1");
        assert!(p.is_idle());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bad in [
            &b"hello\r\n"[..],
            b"25\r\n",
            b"250*x\r\n",
            b"\xff\xfe\r\n",
            b"\r\n",
        ] {
            assert!(parse_replies(bad).is_err(), "{bad:?}");
        }
        // A bare status code ends a reply.
        assert_eq!(parse_replies(b"250\r\n").unwrap()[0].status(), 250);
    }

    #[test]
    fn overlong_line_is_rejected() {
        let mut lb = LineBuffer::default();
        lb.push(&vec![b'a'; MAX_LINE + 1]);
        assert!(lb.next_line().is_err());
    }

    #[test]
    fn quoting_round_trips() {
        for s in ["*:80", "a \"b\" c\\d", "tab\there\nnl", ""] {
            let q = quote(s);
            let (v, rest) = unquote_prefix(&q).unwrap();
            assert_eq!(v, s);
            assert_eq!(rest, "");
        }
        assert_eq!(
            unquote_prefix(r#""\101\x42\'" tail"#).unwrap(),
            ("AB'".into(), " tail")
        );
        assert!(unquote_prefix("\"unterminated").is_none());
        assert!(unquote_prefix("\"bad\\x4").is_none());
        assert!(unquote_prefix("\"bad\\777\"").is_none());
    }

    #[test]
    fn key_values_with_quotes() {
        let kv = key_values(
            r#"METHODS=COOKIE,SAFECOOKIE COOKIEFILE="/var/lib/tor/control auth\"cookie" FLAG"#,
        );
        assert_eq!(
            kv,
            vec![
                ("METHODS".into(), "COOKIE,SAFECOOKIE".into()),
                (
                    "COOKIEFILE".into(),
                    "/var/lib/tor/control auth\"cookie".into()
                ),
                ("FLAG".into(), String::new()),
            ]
        );
    }
}
