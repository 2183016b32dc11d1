//! Stdin lines read with a bound, for `serve` and `send` (SPEC §6).
//!
//! A line longer than the bound is never held whole: once it passes the bound its bytes are
//! counted and dropped up to the next newline, so memory stays at the bound plus the reader's
//! own buffer whatever the input, and the next line is read normally.

use std::io::{self, BufRead};

/// One line of input.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Line {
    /// A line within the bound, without its newline.
    Text(Vec<u8>),
    /// A line longer than the bound: its length in bytes (without the newline); its bytes
    /// were dropped as they were read.
    TooLong(u64),
}

/// Reads lines of at most `max` bytes from a [`BufRead`].
#[derive(Debug)]
pub(crate) struct BoundedLines<R> {
    input: R,
    max: usize,
    buf: Vec<u8>,
}

impl<R: BufRead> BoundedLines<R> {
    /// Lines of `input`, each at most `max` bytes.
    pub(crate) fn new(input: R, max: usize) -> Self {
        BoundedLines { input, max, buf: Vec::new() }
    }

    /// The next line, `None` at end of input. A last line without a newline counts.
    ///
    /// # Errors
    ///
    /// A read error of the input (interrupted reads are retried).
    pub(crate) fn next_line(&mut self) -> io::Result<Option<Line>> {
        self.buf.clear();
        let mut len: u64 = 0;
        let mut too_long = false;
        let mut seen_any = false;
        loop {
            let chunk = match self.input.fill_buf() {
                Ok(chunk) => chunk,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if chunk.is_empty() {
                // End of input.
                if !seen_any {
                    return Ok(None);
                }
                break;
            }
            seen_any = true;
            let (part, found_newline) = match chunk.iter().position(|&b| b == b'\n') {
                Some(at) => (&chunk[..at], true),
                None => (chunk, false),
            };
            len += part.len() as u64;
            if !too_long {
                if len > self.max as u64 {
                    too_long = true;
                    self.buf = Vec::new();
                } else {
                    self.buf.extend_from_slice(part);
                }
            }
            let used = part.len() + usize::from(found_newline);
            self.input.consume(used);
            if found_newline {
                break;
            }
        }
        Ok(Some(if too_long { Line::TooLong(len) } else { Line::Text(std::mem::take(&mut self.buf)) }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(input: &[u8], max: usize, reader_cap: usize) -> io::Result<Vec<Line>> {
        let mut lines = BoundedLines::new(io::BufReader::with_capacity(reader_cap, input), max);
        let mut out = Vec::new();
        while let Some(line) = lines.next_line()? {
            out.push(line);
        }
        Ok(out)
    }

    #[test]
    fn lines_within_the_bound_are_returned_whole() -> io::Result<()> {
        for cap in [1, 3, 8192] {
            let got = all(b"{\"a\":1}\n\nlast", 16, cap)?;
            assert_eq!(got, [Line::Text(b"{\"a\":1}".to_vec()), Line::Text(Vec::new()), Line::Text(b"last".to_vec())]);
        }
        Ok(())
    }

    #[test]
    fn a_long_line_is_skipped_and_the_next_one_is_read() -> io::Result<()> {
        for cap in [1, 5, 8192] {
            let input = [&b"exactly8\n"[..], &[b'x'; 100], b"\nok\n", &[b'y'; 9]].concat();
            let got = all(&input, 8, cap)?;
            assert_eq!(
                got,
                [Line::Text(b"exactly8".to_vec()), Line::TooLong(100), Line::Text(b"ok".to_vec()), Line::TooLong(9)],
                "reader capacity {cap}"
            );
        }
        Ok(())
    }

    #[test]
    fn a_long_line_is_never_held_whole() -> io::Result<()> {
        // 4 MiB without a newline through an 8 KiB reader: the buffer never passes the bound.
        struct Endless(u64);
        impl io::Read for Endless {
            fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
                let n = out.len().min(usize::try_from(self.0).unwrap_or(usize::MAX));
                out[..n].fill(b'z');
                self.0 -= n as u64;
                Ok(n)
            }
        }
        let mut lines = BoundedLines::new(io::BufReader::new(Endless(4 << 20)), 1024);
        assert_eq!(lines.next_line()?, Some(Line::TooLong(4 << 20)));
        assert!(lines.buf.capacity() <= 1024, "held {} bytes", lines.buf.capacity());
        assert_eq!(lines.next_line()?, None);
        Ok(())
    }
}
