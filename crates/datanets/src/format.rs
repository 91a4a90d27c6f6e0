//! Contribution file formats: recognising them, their canonical bytes, and reading their
//! records as a stream.
//!
//! A contribution's content hash is keccak256 of its canonical bytes. For the text formats
//! (JSONL, CSV, plain text, Markdown) those are the file's bytes with a leading UTF-8 byte
//! order mark removed and every CRLF turned into LF, so that the same data saved on Windows
//! and on Unix is one contribution; Parquet files are binary and hash as they are. The blob
//! store keeps the canonical bytes, so anyone can check a blob against its hash.
//!
//! Records come out in batches, read from the staged canonical file, never the whole file in
//! memory; JSON lines stay raw bytes so that the caller can parse them in parallel.

use alloy_primitives::{Keccak256, B256};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::{
    fmt,
    fs::File,
    io::{BufReader, Read, Write},
    path::Path,
};

use crate::{
    lines::{self, Line, LineGuard},
    validate::ValidationError,
};

/// A text record groups paragraphs until it holds at least this many bytes.
const TEXT_RECORD_BYTES: usize = 1024;
/// Records per batch handed to the checks.
const BATCH_RECORDS: usize = 2048;

/// A contribution file's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// One JSON object per line (chat records included).
    Jsonl,
    /// Comma-separated values with a header row; each row is an object of strings.
    Csv,
    /// Apache Parquet; each row is an object.
    Parquet,
    /// Plain text, split into records at blank lines (`{"text": …}`).
    Text,
    /// Markdown, read like plain text.
    Markdown,
}

impl Format {
    /// The format a file's extension names.
    pub fn from_path(path: &Path) -> Result<Self, ValidationError> {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or_default()
            .to_ascii_lowercase();
        Ok(match ext.as_str() {
            "jsonl" | "ndjson" => Self::Jsonl,
            "csv" => Self::Csv,
            "parquet" => Self::Parquet,
            "txt" | "text" => Self::Text,
            "md" | "markdown" => Self::Markdown,
            _ => return Err(ValidationError::UnknownFormat(path.display().to_string())),
        })
    }

    /// Whether the canonical bytes are normalised text.
    pub fn is_text(self) -> bool {
        !matches!(self, Self::Parquet)
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Jsonl => "JSONL",
            Self::Csv => "CSV",
            Self::Parquet => "Parquet",
            Self::Text => "text",
            Self::Markdown => "Markdown",
        })
    }
}

/// Where a record is in its file, for error messages and reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Place {
    /// A 1-based line of a text file.
    Line(u64),
    /// A 1-based row of a Parquet file.
    Row(u64),
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Line(n) => write!(f, "line {n}"),
            Self::Row(n) => write!(f, "row {n}"),
        }
    }
}

/// A record as read: a JSON line still to parse, or an object built by the reader.
#[derive(Debug)]
pub enum Raw {
    Json(Vec<u8>),
    Value(Value),
}

/// Records read together, and how far into the file (bytes) they reach, for progress.
#[derive(Debug)]
pub struct Batch {
    pub records: Vec<(Place, Raw)>,
    pub through: u64,
}

/// A file's records, batch by batch.
pub type Batches = Box<dyn Iterator<Item = Result<Batch, ValidationError>>>;

/// A reader of canonical bytes over a reader of a file's bytes: for text formats it drops a
/// leading byte order mark and turns CRLF into LF; for Parquet it passes bytes through. It
/// stops with [`ValidationError::TooLarge`] (as an I/O error of kind `FileTooLarge`) once the
/// source passes `limit` bytes.
pub struct Canonical<R> {
    inner: R,
    text: bool,
    limit: u64,
    read: u64,
    first: bool,
    /// A CR at the end of one chunk whose LF may start the next.
    held_cr: bool,
    done: bool,
    raw: Vec<u8>,
    out: Vec<u8>,
    pos: usize,
}

impl<R: Read> Canonical<R> {
    pub fn new(inner: R, format: Format, limit: u64) -> Self {
        Self {
            inner,
            text: format.is_text(),
            limit,
            read: 0,
            first: true,
            held_cr: false,
            done: false,
            raw: vec![0u8; 1 << 20],
            out: Vec::with_capacity(1 << 20),
            pos: 0,
        }
    }

    /// Bytes read from the source so far.
    pub fn source_bytes(&self) -> u64 {
        self.read
    }

    /// Refills `out` with the next canonical chunk; false at the end.
    fn refill(&mut self) -> std::io::Result<bool> {
        self.out.clear();
        self.pos = 0;
        while self.out.is_empty() {
            if self.done {
                return Ok(false);
            }
            let n = self.inner.read(&mut self.raw)?;
            if n == 0 {
                self.done = true;
                if std::mem::take(&mut self.held_cr) {
                    self.out.push(b'\r');
                }
                continue;
            }
            self.read += n as u64;
            if self.read > self.limit {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::FileTooLarge,
                    format!("over the limit of {} bytes", self.limit),
                ));
            }
            let mut chunk = &self.raw[..n];
            if !self.text {
                self.out.extend_from_slice(chunk);
                continue;
            }
            if self.first && chunk.starts_with(&[0xef, 0xbb, 0xbf]) {
                chunk = &chunk[3..];
            }
            self.first = false;
            if std::mem::take(&mut self.held_cr) && chunk.first() != Some(&b'\n') {
                self.out.push(b'\r');
            }
            let mut rest = chunk;
            while let Some(i) = rest.iter().position(|&b| b == b'\r') {
                self.out.extend_from_slice(&rest[..i]);
                match rest.get(i + 1) {
                    Some(b'\n') => {}
                    Some(_) => self.out.push(b'\r'),
                    None => self.held_cr = true,
                }
                rest = &rest[i + 1..];
            }
            self.out.extend_from_slice(rest);
        }
        Ok(true)
    }
}

impl<R: Read> Read for Canonical<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.pos == self.out.len() && !self.refill()? {
            return Ok(0);
        }
        let n = buf.len().min(self.out.len() - self.pos);
        buf[..n].copy_from_slice(&self.out[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Maps a read error of a [`Canonical`] reader back to what it means.
fn read_error(e: std::io::Error, limit: u64) -> ValidationError {
    if e.kind() == std::io::ErrorKind::FileTooLarge {
        ValidationError::TooLarge { limit }
    } else {
        ValidationError::io(e)
    }
}

/// Copies `source` into `staged` as canonical bytes, hashing them on the way; refuses a
/// source larger than `limit` bytes as soon as it passes the limit. Returns the content hash
/// and the canonical size.
pub fn stage(
    source: &mut impl Read,
    format: Format,
    staged: &mut impl Write,
    limit: u64,
) -> Result<(B256, u64), ValidationError> {
    let mut canonical = Canonical::new(source, format, limit);
    let mut hasher = Keccak256::new();
    let mut size = 0u64;
    while canonical.refill().map_err(|e| read_error(e, limit))? {
        hasher.update(&canonical.out);
        staged
            .write_all(&canonical.out)
            .map_err(ValidationError::io)?;
        size += canonical.out.len() as u64;
    }
    Ok((hasher.finalize(), size))
}

/// Reads the staged file's records in batches of (place, raw record).
pub fn batches(path: &Path, format: Format, max_record: usize) -> Result<Batches, ValidationError> {
    let file = File::open(path).map_err(ValidationError::io)?;
    match format {
        Format::Parquet => Ok(Box::new(crate::parquet::rows(file)?)),
        _ => batches_of(file, format, max_record),
    }
}

/// Reads the records of a text format from `reader` in batches; no line is buffered past
/// `max_record` bytes.
pub fn batches_of(
    reader: impl Read + Send + 'static,
    format: Format,
    max_record: usize,
) -> Result<Batches, ValidationError> {
    Ok(match format {
        Format::Jsonl => Box::new(JsonLines {
            reader: BufReader::with_capacity(1 << 20, Box::new(reader)),
            line: 0,
            through: 0,
            max_record,
        }),
        Format::Text | Format::Markdown => Box::new(TextParagraphs {
            reader: BufReader::with_capacity(1 << 20, Box::new(reader)),
            line: 0,
            through: 0,
            done: false,
            max_record,
        }),
        Format::Csv => Box::new(CsvRows::new(LineGuard::new(reader, max_record))?),
        Format::Parquet => {
            return Err(ValidationError::BadParquet(
                "Parquet is read from a file, not a stream".into(),
            ))
        }
    })
}

/// A boxed byte source, so that files and canonicalising readers share the readers below.
type Source = Box<dyn Read + Send>;

struct JsonLines {
    reader: BufReader<Source>,
    line: u64,
    through: u64,
    max_record: usize,
}

impl Iterator for JsonLines {
    type Item = Result<Batch, ValidationError>;

    fn next(&mut self) -> Option<Self::Item> {
        let mut batch = Vec::new();
        while batch.len() < BATCH_RECORDS {
            let mut bytes = Vec::new();
            match lines::read_line(&mut self.reader, &mut bytes, self.max_record) {
                Ok(Line::End) => break,
                Ok(Line::Read(n)) => self.through += n as u64,
                Ok(Line::TooLong) => {
                    return Some(Err(lines::too_long(self.line + 1, self.max_record)))
                }
                Err(e) => return Some(Err(ValidationError::io(e))),
            }
            self.line += 1;
            if bytes.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            batch.push((Place::Line(self.line), Raw::Json(bytes)));
        }
        (!batch.is_empty()).then_some(Ok(Batch {
            records: batch,
            through: self.through,
        }))
    }
}

struct TextParagraphs {
    reader: BufReader<Source>,
    line: u64,
    through: u64,
    done: bool,
    max_record: usize,
}

impl Iterator for TextParagraphs {
    type Item = Result<Batch, ValidationError>;

    fn next(&mut self) -> Option<Self::Item> {
        let mut batch = Vec::new();
        let mut text = String::new();
        let mut start = 0;
        let mut bytes = Vec::new();
        while !self.done && batch.len() < BATCH_RECORDS {
            bytes.clear();
            let n = match lines::read_line(&mut self.reader, &mut bytes, self.max_record) {
                Ok(Line::Read(n)) => n,
                Ok(Line::End) => {
                    self.done = true;
                    break;
                }
                Ok(Line::TooLong) => {
                    return Some(Err(lines::too_long(self.line + 1, self.max_record)))
                }
                Err(e) => return Some(Err(ValidationError::io(e))),
            };
            self.through += n as u64;
            self.line += 1;
            let Ok(line) = std::str::from_utf8(&bytes) else {
                return Some(Err(ValidationError::NotUtf8 {
                    place: Place::Line(self.line),
                }));
            };
            let blank = line.trim().is_empty();
            if blank && text.len() >= TEXT_RECORD_BYTES {
                batch.push((Place::Line(start), text_record(&mut text)));
                continue;
            }
            if text.is_empty() {
                if blank {
                    continue;
                }
                start = self.line;
            }
            if text.len() + line.len() > self.max_record {
                // A paragraph is one record: it may not grow past the limit either.
                return Some(Err(ValidationError::RecordTooLarge {
                    place: Place::Line(start),
                    size: text.len() + line.len(),
                    limit: self.max_record,
                }));
            }
            text.push_str(line);
        }
        if !text.trim().is_empty() {
            batch.push((Place::Line(start), text_record(&mut text)));
        }
        (!batch.is_empty()).then_some(Ok(Batch {
            records: batch,
            through: self.through,
        }))
    }
}

fn text_record(text: &mut String) -> Raw {
    let body = std::mem::take(text);
    let mut record = Map::new();
    record.insert("text".into(), Value::String(body.trim_end().to_string()));
    Raw::Value(Value::Object(record))
}

struct CsvRows {
    reader: csv::Reader<Source>,
    headers: Vec<String>,
}

impl CsvRows {
    fn new(source: impl Read + Send + 'static) -> Result<Self, ValidationError> {
        let source: Source = Box::new(source);
        let mut reader = csv::ReaderBuilder::new()
            .flexible(false)
            .from_reader(source);
        let headers = reader.headers().map_err(csv_error)?;
        let headers: Vec<String> = headers.iter().map(str::to_string).collect();
        if headers.iter().all(String::is_empty) {
            return Err(ValidationError::BadCsv {
                place: Place::Line(1),
                message: "the first row must name the columns".into(),
            });
        }
        Ok(Self { reader, headers })
    }
}

impl Iterator for CsvRows {
    type Item = Result<Batch, ValidationError>;

    fn next(&mut self) -> Option<Self::Item> {
        let mut batch = Vec::new();
        let mut row = csv::StringRecord::new();
        while batch.len() < BATCH_RECORDS {
            match self.reader.read_record(&mut row) {
                Ok(false) => break,
                Ok(true) => {}
                Err(e) => return Some(Err(csv_error(e))),
            }
            let line = row.position().map_or(0, csv::Position::line);
            let record: Map<String, Value> = self
                .headers
                .iter()
                .zip(row.iter())
                .map(|(k, v)| (k.clone(), Value::String(v.to_string())))
                .collect();
            batch.push((Place::Line(line), Raw::Value(Value::Object(record))));
        }
        (!batch.is_empty()).then_some(Ok(Batch {
            records: batch,
            through: self.reader.position().byte(),
        }))
    }
}

fn csv_error(e: csv::Error) -> ValidationError {
    let place = Place::Line(e.position().map_or(0, csv::Position::line));
    let message = e.to_string();
    match e.into_kind() {
        csv::ErrorKind::Utf8 { .. } => ValidationError::NotUtf8 { place },
        csv::ErrorKind::Io(io) if io.kind() == std::io::ErrorKind::FileTooLarge => {
            ValidationError::Io("over the size limit".into())
        }
        csv::ErrorKind::Io(io) => ValidationError::io(io),
        _ => ValidationError::BadCsv { place, message },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canonical(input: &[u8], format: Format) -> Vec<u8> {
        let mut out = Vec::new();
        // Tiny reads put CRs on chunk edges.
        struct Dribble<'a>(&'a [u8]);
        impl Read for Dribble<'_> {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                let n = self.0.len().min(buf.len()).min(3);
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let (hash, size) = stage(&mut Dribble(input), format, &mut out, 1 << 20).unwrap();
        assert_eq!(hash, alloy_primitives::keccak256(&out));
        assert_eq!(size, out.len() as u64);
        out
    }

    #[test]
    fn text_is_canonicalised_and_binary_is_not() {
        let windows = b"\xef\xbb\xbfa,b\r\n1,2\r\nlone\rcr\r";
        assert_eq!(canonical(windows, Format::Csv), b"a,b\n1,2\nlone\rcr\r");
        assert_eq!(canonical(windows, Format::Parquet), windows);
        assert_eq!(
            canonical(b"a\r\nb\r\n", Format::Jsonl),
            canonical(b"a\nb\n", Format::Jsonl)
        );
    }

    #[test]
    fn the_size_limit_stops_reading() {
        let err = stage(&mut &[b'x'; 100][..], Format::Text, &mut Vec::new(), 99).unwrap_err();
        assert_eq!(err, ValidationError::TooLarge { limit: 99 });
    }
}
