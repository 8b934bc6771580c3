//! Framing: bounded request lines. A line longer than the limit is
//! consumed up to its newline and reported, so the stream stays in step.

use tokio::io::{AsyncBufRead, AsyncBufReadExt};

/// The result of reading one request line.
pub enum ReadLine {
    /// A complete line is in the buffer (without its newline).
    Line,
    /// The line was longer than the limit; it was consumed and dropped.
    TooLong,
    /// The input ended before any byte of a new line.
    Eof,
}

/// The line buffer a connection keeps between lines.
pub const KEPT_LINE_BYTES: usize = 16 * 1024;

/// A request line being read. It keeps its state between reads, so a read
/// that is cancelled (by a timeout or a shutdown signal) resumes where it
/// stopped, also in the middle of skipping an over-long line.
#[derive(Debug, Default)]
pub struct LineBuffer {
    bytes: Vec<u8>,
    too_long: bool,
    started: bool,
}

impl LineBuffer {
    /// The line read, without its newline.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Makes room for the next line. After a long line the buffer gives
    /// its memory back: an idle connection holds at most
    /// [`KEPT_LINE_BYTES`], whatever its longest line was.
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.bytes.shrink_to(KEPT_LINE_BYTES);
        self.too_long = false;
        self.started = false;
    }
}

/// Reads one line of at most `max` bytes into `line`; a longer line is
/// consumed up to its newline, so the stream stays in step. A last line
/// without a newline counts as a line. Call [`LineBuffer::clear`] after
/// each complete line.
pub async fn read_line(
    input: &mut (impl AsyncBufRead + Unpin),
    line: &mut LineBuffer,
    max: usize,
) -> std::io::Result<ReadLine> {
    loop {
        let available = input.fill_buf().await?;
        if available.is_empty() {
            // End of input ends the last line too, if there is one.
            return Ok(match (line.started, line.too_long) {
                (false, _) => ReadLine::Eof,
                (true, true) => ReadLine::TooLong,
                (true, false) => ReadLine::Line,
            });
        }
        line.started = true;
        let (chunk, done) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (&available[..i], Some(i + 1)),
            None => (available, None),
        };
        if !line.too_long {
            if line.bytes.len() + chunk.len() > max {
                line.too_long = true;
                line.bytes.clear();
            } else {
                line.bytes.extend_from_slice(chunk);
            }
        }
        let consumed = done.unwrap_or(available.len());
        input.consume(consumed);
        if done.is_some() {
            return Ok(if line.too_long { ReadLine::TooLong } else { ReadLine::Line });
        }
    }
}
