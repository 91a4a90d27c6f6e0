//! Reading records with a bound: a line is never buffered past the record limit, so a file of
//! one 1 GiB line is refused at the limit instead of filling memory.

use crate::{format::Place, validate::ValidationError};
use std::io::{self, BufRead, Read};

/// What a bounded line read found.
pub enum Line {
    /// A line of this many bytes (its newline included) is in the buffer.
    Read(usize),
    /// The end of the input.
    End,
    /// The line passed `limit` bytes; reading stopped there.
    TooLong,
}

/// Reads one line (through `\n`) into `out`, buffering at most `limit` bytes of it plus the
/// newline.
pub fn read_line(reader: &mut impl BufRead, out: &mut Vec<u8>, limit: usize) -> io::Result<Line> {
    let mut total = 0;
    loop {
        let buf = reader.fill_buf()?;
        if buf.is_empty() {
            return Ok(if total == 0 {
                Line::End
            } else {
                Line::Read(total)
            });
        }
        let (take, done) = match buf.iter().position(|b| *b == b'\n') {
            Some(at) => (at + 1, true),
            None => (buf.len(), false),
        };
        let content = total + take - usize::from(done);
        if content > limit {
            return Ok(Line::TooLong);
        }
        out.extend_from_slice(&buf[..take]);
        reader.consume(take);
        total += take;
        if done {
            return Ok(Line::Read(total));
        }
    }
}

/// The error for a line past the record limit.
pub fn too_long(line: u64, limit: usize) -> ValidationError {
    ValidationError::LineTooLong {
        place: Place::Line(line),
        limit,
    }
}

/// A reader that fails once more than `limit` bytes come without a newline: it bounds what a
/// parser that buffers whole records (CSV) can be made to hold.
pub struct LineGuard<R> {
    inner: R,
    limit: usize,
    run: usize,
    line: u64,
}

impl<R> LineGuard<R> {
    pub fn new(inner: R, limit: usize) -> Self {
        Self {
            inner,
            limit,
            run: 0,
            line: 1,
        }
    }
}

/// The payload of the I/O error a [`LineGuard`] raises, so that the caller can name the line.
#[derive(Debug)]
pub struct LineTooLong {
    pub line: u64,
    pub limit: usize,
}

impl std::fmt::Display for LineTooLong {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {} is longer than {} bytes", self.line, self.limit)
    }
}

impl std::error::Error for LineTooLong {}

impl<R: Read> Read for LineGuard<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        for b in &buf[..n] {
            if *b == b'\n' {
                self.run = 0;
                self.line += 1;
            } else {
                self.run += 1;
                if self.run > self.limit {
                    return Err(io::Error::other(LineTooLong {
                        line: self.line,
                        limit: self.limit,
                    }));
                }
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_past_the_limit_is_not_buffered() {
        let input = [vec![b'a'; 10], b"\n".to_vec(), vec![b'b'; 100]].concat();
        let mut reader = io::BufReader::with_capacity(8, &input[..]);
        let mut out = Vec::new();
        assert!(matches!(
            read_line(&mut reader, &mut out, 16).unwrap(),
            Line::Read(11)
        ));
        out.clear();
        assert!(matches!(
            read_line(&mut reader, &mut out, 16).unwrap(),
            Line::TooLong
        ));
        assert!(out.len() <= 16);
    }

    #[test]
    fn the_guard_names_the_long_line() {
        let input = [b"ok\n".to_vec(), vec![b'x'; 50]].concat();
        let mut guard = LineGuard::new(&input[..], 20);
        let err = io::copy(&mut guard, &mut io::sink()).unwrap_err();
        let payload = err
            .get_ref()
            .unwrap()
            .downcast_ref::<LineTooLong>()
            .unwrap();
        assert_eq!((payload.line, payload.limit), (2, 20));
    }
}
