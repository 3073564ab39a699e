//! Reading a stdio server's stdout one message at a time, and naming what
//! is wrong with a message that is not one.
//!
//! rmcp drops a line over its 16 MiB limit, and a cut or non-UTF-8 line
//! fails to parse, with only a log line to say so: the call it answered
//! would wait for its timeout and be retried as if the server were slow.
//! The pump in front of rmcp reads with the same limit and checks each
//! line, so a bad reply is reported as what it is, against the call it
//! answered when its id can be read, and never retried as a timeout.

use serde_json::Value;
use tokio::io::{AsyncBufRead, AsyncBufReadExt};

/// The longest message a server may send, as rmcp's stdio transport takes.
pub const MAX_MESSAGE: usize = 16 * 1024 * 1024;
/// Of a line that is too long, this much is kept to find its request id.
const KEEP_OF_OVERSIZED: usize = 64 * 1024;

/// One line of a server's stdout.
#[derive(Debug, PartialEq)]
pub(super) enum Frame {
    /// A JSON-RPC message, passed to rmcp as it came.
    Message(Vec<u8>),
    /// Not meant as protocol (log output on the wrong stream).
    Noise(String),
    /// Meant as a reply but unusable; `id` is the request it answered, when
    /// that much could be read.
    Bad { id: Option<Value>, problem: String },
}

/// Read the next line, never holding more than `max` bytes of it; `None`
/// at the end of the stream.
pub(super) async fn next_frame<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    max: usize,
) -> std::io::Result<Option<Frame>> {
    let mut line = Vec::new();
    let mut total = 0usize;
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            if total == 0 {
                return Ok(None);
            }
            break;
        }
        let (chunk, done) = match available.iter().position(|b| *b == b'\n') {
            Some(i) => (&available[..=i], true),
            None => (available, false),
        };
        let keep = chunk.len().min(max.saturating_sub(line.len()));
        line.extend_from_slice(&chunk[..keep]);
        total += chunk.len() - usize::from(done);
        let n = chunk.len();
        reader.consume(n);
        if done {
            break;
        }
    }
    Ok(Some(classify(line, total, max)))
}

fn classify(mut line: Vec<u8>, total: usize, max: usize) -> Frame {
    if total > max {
        line.truncate(KEEP_OF_OVERSIZED);
        return Frame::Bad {
            id: top_level_id(&line),
            problem: format!(
                "sent a reply of {}, over the {} one message may be; ask the server for less (a narrower query, a page at a time)",
                size(total),
                size(max)
            ),
        };
    }
    while line.last().is_some_and(|b| b.is_ascii_whitespace()) {
        line.pop();
    }
    let start = line.iter().position(|b| !b.is_ascii_whitespace());
    let Some(start) = start else {
        return Frame::Noise(String::new());
    };
    if !matches!(line[start], b'{' | b'[') {
        return Frame::Noise(String::from_utf8_lossy(&line[start..]).into_owned());
    }
    if let Err(e) = std::str::from_utf8(&line) {
        let at = e.valid_up_to();
        return Frame::Bad {
            id: top_level_id(&line),
            problem: format!(
                "sent a reply that is not valid UTF-8 (byte 0x{:02x} at offset {at} of {})",
                line.get(at).copied().unwrap_or(0),
                size(line.len())
            ),
        };
    }
    match serde_json::from_slice::<serde::de::IgnoredAny>(&line) {
        Ok(_) => {
            line.push(b'\n');
            Frame::Message(line)
        }
        Err(e) => Frame::Bad {
            id: top_level_id(&line),
            problem: if e.is_eof() {
                format!(
                    "sent a reply cut off after {} (the JSON ends early)",
                    size(line.len())
                )
            } else {
                format!("sent a reply that is not valid JSON ({e})")
            },
        },
    }
}

fn size(bytes: usize) -> String {
    if bytes >= 1 << 20 {
        format!("{:.1} MiB", bytes as f64 / f64::from(1 << 20))
    } else if bytes >= 1 << 10 {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    } else {
        format!("{bytes} bytes")
    }
}

/// The `id` member of the outermost object in `bytes`, which may be cut or
/// damaged anywhere after it: strings and nesting are followed so that an
/// `id` inside the result is never taken for the request's.
pub(super) fn top_level_id(bytes: &[u8]) -> Option<Value> {
    let mut depth = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                let end = string_end(bytes, i)?;
                if depth == 1 && &bytes[i..=end] == b"\"id\"" {
                    let mut j = end + 1;
                    while bytes.get(j).is_some_and(|b| b.is_ascii_whitespace()) {
                        j += 1;
                    }
                    if bytes.get(j) == Some(&b':') {
                        return value_at(bytes, j + 1);
                    }
                }
                i = end + 1;
                continue;
            }
            b'{' | b'[' => depth += 1,
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    None
}

/// Where the string starting at `start` (a quote) ends (its closing quote).
fn string_end(bytes: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return Some(i),
            _ => i += 1,
        }
    }
    None
}

/// A JSON number or string starting at (or after whitespace from) `from`.
fn value_at(bytes: &[u8], from: usize) -> Option<Value> {
    let mut i = from;
    while bytes.get(i).is_some_and(|b| b.is_ascii_whitespace()) {
        i += 1;
    }
    let end = match bytes.get(i)? {
        b'"' => string_end(bytes, i)? + 1,
        b'-' | b'0'..=b'9' => {
            let mut j = i + 1;
            while bytes.get(j).is_some_and(|b| b.is_ascii_digit()) {
                j += 1;
            }
            j
        }
        _ => return None,
    };
    serde_json::from_slice(&bytes[i..end]).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    async fn frames(input: &[u8], max: usize) -> Vec<Frame> {
        let mut reader = tokio::io::BufReader::with_capacity(7, input);
        let mut out = Vec::new();
        while let Some(f) = next_frame(&mut reader, max).await.expect("read") {
            out.push(f);
        }
        out
    }

    #[tokio::test]
    async fn messages_noise_and_bad_replies_are_told_apart() {
        let input = b"{\"jsonrpc\":\"2.0\",\"id\":3,\"result\":{}}\nhello\n{\"jsonrpc\":\"2.0\",\"id\":4,\"res\n\n";
        let got = frames(input, 1000).await;
        assert_eq!(
            got[0],
            Frame::Message(b"{\"jsonrpc\":\"2.0\",\"id\":3,\"result\":{}}\n".to_vec())
        );
        assert_eq!(got[1], Frame::Noise("hello".into()));
        match &got[2] {
            Frame::Bad { id, problem } => {
                assert_eq!(id, &Some(json!(4)));
                assert!(problem.contains("cut off"), "{problem}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn an_oversized_line_is_dropped_without_being_held() {
        let mut input = b"{\"id\":\"a-1\",\"result\":{\"text\":\"".to_vec();
        input.extend(std::iter::repeat_n(b'x', 5000));
        input.extend_from_slice(b"\"}}\n{\"id\":2}\n");
        let got = frames(&input, 100).await;
        match &got[0] {
            Frame::Bad { id, problem } => {
                assert_eq!(id, &Some(json!("a-1")));
                assert!(problem.contains("over the 100 bytes"), "{problem}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(got[1], Frame::Message(b"{\"id\":2}\n".to_vec()));
    }

    #[tokio::test]
    async fn bytes_that_are_not_utf8_are_named() {
        let got = frames(b"{\"id\":7,\"result\":\"\xff\"}\n", 1000).await;
        match &got[0] {
            Frame::Bad { id, problem } => {
                assert_eq!(id, &Some(json!(7)));
                assert!(problem.contains("0xff"), "{problem}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn only_the_outer_id_counts() {
        assert_eq!(
            top_level_id(br#"{"result":{"id":9,"s":"\"id\":8"},"id":1"#),
            Some(json!(1))
        );
        assert_eq!(top_level_id(br#"{"result":{"id":9}"#), None);
    }
}
