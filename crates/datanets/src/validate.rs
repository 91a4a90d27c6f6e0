//! Automated validation of a contribution before anything reaches curators.
//!
//! [`check`] reads the staged file's records in batches and checks each batch's records in
//! parallel: UTF-8, JSON, the datanet's schema, the record size limit, secrets and personal
//! data, near-duplicates of accepted data, and quality signals. Hard failures (bad bytes, bad
//! JSON, a schema violation, a likely secret, too many near-duplicates) end it with an error
//! naming the first offending record; everything else goes into the [`Report`] that is stored
//! with the contribution and shown to curators.

use crate::{
    format::{self, Format, Place, Raw},
    minhash::{self, LshIndex, Signature},
    scan::{self, FindingKind},
};
use alloy_primitives::B256;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::{collections::HashSet, path::Path};

/// How many examples of each kind of flag a report lists (the counts are complete).
const REPORT_EXAMPLES: usize = 20;
/// Longest schema message kept in an error.
const MESSAGE_CHARS: usize = 240;
/// Records shorter than this many characters count as short.
const SHORT_RECORD_CHARS: usize = 16;

/// Why a contribution was refused. Each names what was wrong and, where there is one, where.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ValidationError {
    #[error("cannot tell the format of {0}: use .jsonl, .csv, .parquet, .txt or .md")]
    UnknownFormat(String),
    #[error("the file is larger than the limit of {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("{place}: not valid UTF-8")]
    NotUtf8 { place: Place },
    #[error("{place}: invalid JSON: {message}")]
    BadJson { place: Place, message: String },
    #[error("{place}: a record must be a JSON object")]
    NotAnObject { place: Place },
    #[error("{place}: invalid CSV: {message}")]
    BadCsv { place: Place, message: String },
    #[error("invalid Parquet file: {0}")]
    BadParquet(String),
    #[error("{place}: the record breaks the datanet's schema at '{path}': {message}")]
    Schema {
        place: Place,
        path: String,
        message: String,
    },
    #[error("{place}: the record is {size} bytes, over the limit of {limit}")]
    RecordTooLarge {
        place: Place,
        size: usize,
        limit: usize,
    },
    #[error("{place}: the line is longer than the record limit of {limit} bytes")]
    LineTooLong { place: Place, limit: usize },
    #[error("{place}: the record seems to hold {}; remove it and upload again", .kind.describe())]
    Secret { place: Place, kind: FindingKind },
    #[error("the file holds no records")]
    Empty,
    #[error(
        "{count} of {records} records ({:.0}%) nearly duplicate accepted data (first at {first}: \
         {:.0}% similar to contribution {contribution}); at most {:.0}% may",
        100.0 * *count as f64 / *records as f64, 100.0 * similarity, 100.0 * limit
    )]
    NearDuplicate {
        count: u64,
        records: u64,
        first: Place,
        contribution: u64,
        similarity: f64,
        limit: f64,
    },
    #[error("reading the file: {0}")]
    Io(String),
}

impl ValidationError {
    pub(crate) fn io(e: std::io::Error) -> Self {
        if let Some(long) = e
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<crate::lines::LineTooLong>())
        {
            return crate::lines::too_long(long.line, long.limit);
        }
        Self::Io(e.to_string())
    }
}

/// What validation enforces; the defaults suit most datanets.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Policy {
    /// Largest file accepted, in bytes.
    pub max_bytes: u64,
    /// Largest single record, in bytes.
    pub max_record_bytes: usize,
    /// Estimated Jaccard similarity at which a record counts as a near-duplicate.
    pub near_duplicate_threshold: f64,
    /// The largest share of a file's records that may be near-duplicates of accepted data.
    pub max_near_duplicate_share: f64,
    /// Refuse files with likely secrets (otherwise they are only flagged).
    pub refuse_secrets: bool,
    /// Uploads one contributor may have waiting for their transaction.
    #[serde(default = "default_pending_per_contributor")]
    pub pending_per_contributor: usize,
    /// Bytes one contributor may have waiting for their transaction.
    #[serde(default = "default_pending_bytes_per_contributor")]
    pub pending_bytes_per_contributor: u64,
    /// Uploads all contributors together may have waiting.
    #[serde(default = "default_pending_total")]
    pub pending_total: usize,
    /// Bytes all contributors together may have waiting: addresses are free, so the
    /// per-contributor quota alone does not bound the disk.
    #[serde(default = "default_pending_bytes_total")]
    pub pending_bytes_total: u64,
    /// Prepared calls' blobs (schemas, descriptions, reasons) waiting for their
    /// transactions, at most, and their bytes.
    #[serde(default = "default_drafts_total")]
    pub drafts_total: usize,
    #[serde(default = "default_drafts_bytes_total")]
    pub drafts_bytes_total: u64,
}

fn default_pending_bytes_total() -> u64 {
    Policy::default().pending_bytes_total
}

fn default_pending_per_contributor() -> usize {
    Policy::default().pending_per_contributor
}
fn default_pending_bytes_per_contributor() -> u64 {
    Policy::default().pending_bytes_per_contributor
}
fn default_drafts_total() -> usize {
    Policy::default().drafts_total
}

fn default_drafts_bytes_total() -> u64 {
    Policy::default().drafts_bytes_total
}

fn default_pending_total() -> usize {
    Policy::default().pending_total
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            max_bytes: 1 << 30,
            max_record_bytes: 1 << 20,
            near_duplicate_threshold: 0.8,
            max_near_duplicate_share: 0.2,
            refuse_secrets: true,
            pending_per_contributor: 8,
            pending_bytes_per_contributor: 2 << 30,
            pending_total: 1024,
            pending_bytes_total: 16 << 30,
            drafts_total: 1024,
            drafts_bytes_total: 64 << 20,
        }
    }
}

/// A flagged record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Flag {
    pub place: Place,
    pub kind: FindingKind,
}

/// A record that nearly duplicates accepted data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NearDuplicate {
    pub place: Place,
    pub contribution: u64,
    pub similarity: f64,
}

/// Simple quality signals.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Quality {
    pub mean_chars: f64,
    pub min_chars: usize,
    pub max_chars: usize,
    /// Records with fewer than 16 characters of text.
    pub short_records: u64,
    /// Records whose text repeats an earlier record of the same file exactly.
    pub repeated_records: u64,
}

/// The validation report stored with a contribution and shown to curators.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub format: Format,
    pub bytes: u64,
    pub records: u64,
    pub content_hash: B256,
    pub near_duplicates: u64,
    pub near_duplicate_examples: Vec<NearDuplicate>,
    pub secrets: u64,
    pub personal_data: u64,
    pub flags: Vec<Flag>,
    pub quality: Quality,
}

/// A checked file: its report and its records' MinHash signatures (for the near-duplicate
/// index, once accepted).
#[derive(Debug)]
pub struct Checked {
    pub report: Report,
    pub signatures: Vec<Signature>,
}

/// What one record's checks found.
struct RecordCheck {
    place: Place,
    chars: usize,
    text_hash: u64,
    signature: Option<Signature>,
    findings: Vec<FindingKind>,
    near: Option<minhash::Match>,
}

/// A staged and checked file.
#[derive(Debug)]
pub struct Validated {
    pub content_hash: B256,
    /// Canonical bytes.
    pub size: u64,
    /// The records' verdict (the report's hash and size are filled in).
    pub checked: Result<Checked, ValidationError>,
}

/// Stages `source` into `staged` as canonical bytes, hashed, and checks its records. For the
/// text formats both read the source at once (staging on its own thread), so hashing costs
/// no extra time; Parquet is staged first and read back. Fails only if staging fails (too
/// large, unreadable); the records' verdict is in [`Validated::checked`], so that a caller can
/// look at the content hash (a file already contributed) before the verdict.
pub fn stage_and_check(
    source: &Path,
    format: Format,
    staged: &Path,
    schema: &jsonschema::Validator,
    policy: &Policy,
    accepted: Option<&LshIndex>,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Validated, ValidationError> {
    let open = || std::fs::File::open(source).map_err(ValidationError::io);
    let stage = || {
        let mut out =
            std::io::BufWriter::new(std::fs::File::create(staged).map_err(ValidationError::io)?);
        let hashed = format::stage(&mut open()?, format, &mut out, policy.max_bytes)?;
        std::io::Write::flush(&mut out).map_err(ValidationError::io)?;
        Ok(hashed)
    };
    let (hashed, checked) = if format.is_text() {
        std::thread::scope(|scope| {
            let stager = scope.spawn(stage);
            let checked = open().and_then(|file| {
                let reader = format::Canonical::new(file, format, policy.max_bytes);
                check(
                    format::batches_of(reader, format, policy.max_record_bytes)?,
                    format,
                    schema,
                    policy,
                    accepted,
                    progress,
                )
            });
            (stager.join().expect("staging does not panic"), checked)
        })
    } else {
        let hashed = stage();
        let checked = hashed.as_ref().map_err(Clone::clone).and_then(|_| {
            check(
                format::batches(staged, format, policy.max_record_bytes)?,
                format,
                schema,
                policy,
                accepted,
                progress,
            )
        });
        (hashed, checked)
    };
    let (content_hash, size) = hashed?;
    Ok(Validated {
        content_hash,
        size,
        checked: checked.map(|mut c| {
            c.report.content_hash = content_hash;
            c.report.bytes = size;
            c
        }),
    })
}

/// Checks a file's records, telling `progress` how far into the file (bytes) it has read.
/// The report's content hash and size are left for the caller (zero here).
pub fn check(
    batches: format::Batches,
    format: Format,
    schema: &jsonschema::Validator,
    policy: &Policy,
    accepted: Option<&LshIndex>,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Checked, ValidationError> {
    let mut report = Report {
        format,
        bytes: 0,
        records: 0,
        content_hash: B256::ZERO,
        near_duplicates: 0,
        near_duplicate_examples: Vec::new(),
        secrets: 0,
        personal_data: 0,
        flags: Vec::new(),
        quality: Quality {
            min_chars: usize::MAX,
            ..Quality::default()
        },
    };
    let mut signatures = Vec::new();
    let mut seen = HashSet::new();
    let mut total_chars = 0u64;
    let mut first_near: Option<NearDuplicate> = None;
    for batch in batches {
        let batch = batch?;
        progress(batch.through);
        let checks: Vec<Result<RecordCheck, ValidationError>> = batch
            .records
            .into_par_iter()
            .map(|(place, raw)| check_record(place, raw, schema, policy, accepted))
            .collect();
        for result in checks {
            let c = result?;
            report.records += 1;
            total_chars += c.chars as u64;
            let q = &mut report.quality;
            q.min_chars = q.min_chars.min(c.chars);
            q.max_chars = q.max_chars.max(c.chars);
            q.short_records += u64::from(c.chars < SHORT_RECORD_CHARS);
            q.repeated_records += u64::from(!seen.insert(c.text_hash));
            for kind in c.findings {
                if kind.is_secret() {
                    if policy.refuse_secrets {
                        return Err(ValidationError::Secret {
                            place: c.place,
                            kind,
                        });
                    }
                    report.secrets += 1;
                } else {
                    report.personal_data += 1;
                }
                if report.flags.len() < REPORT_EXAMPLES {
                    report.flags.push(Flag {
                        place: c.place,
                        kind,
                    });
                }
            }
            if let Some(m) = c.near {
                report.near_duplicates += 1;
                let near = NearDuplicate {
                    place: c.place,
                    contribution: m.owner,
                    similarity: m.similarity,
                };
                first_near.get_or_insert(near.clone());
                if report.near_duplicate_examples.len() < REPORT_EXAMPLES {
                    report.near_duplicate_examples.push(near);
                }
            }
            signatures.extend(c.signature);
        }
    }
    if report.records == 0 {
        return Err(ValidationError::Empty);
    }
    report.quality.mean_chars = total_chars as f64 / report.records as f64;
    let share = report.near_duplicates as f64 / report.records as f64;
    if let Some(first) = first_near.filter(|_| share > policy.max_near_duplicate_share) {
        return Err(ValidationError::NearDuplicate {
            count: report.near_duplicates,
            records: report.records,
            first: first.place,
            contribution: first.contribution,
            similarity: first.similarity,
            limit: policy.max_near_duplicate_share,
        });
    }
    Ok(Checked { report, signatures })
}

fn check_record(
    place: Place,
    raw: Raw,
    schema: &jsonschema::Validator,
    policy: &Policy,
    accepted: Option<&LshIndex>,
) -> Result<RecordCheck, ValidationError> {
    let record = match raw {
        Raw::Json(bytes) => {
            if bytes.len() > policy.max_record_bytes {
                return Err(ValidationError::RecordTooLarge {
                    place,
                    size: bytes.len(),
                    limit: policy.max_record_bytes,
                });
            }
            let text =
                std::str::from_utf8(&bytes).map_err(|_| ValidationError::NotUtf8 { place })?;
            serde_json::from_str::<Value>(text).map_err(|e| ValidationError::BadJson {
                place,
                message: e.to_string(),
            })?
        }
        Raw::Value(value) => value,
    };
    if !record.is_object() {
        return Err(ValidationError::NotAnObject { place });
    }
    if let Err(e) = schema.validate(&record) {
        let path = e.instance_path().to_string();
        let mut message = e.to_string();
        // Messages quote the offending value, which may be a whole record.
        if message.len() > MESSAGE_CHARS {
            let cut = (0..=MESSAGE_CHARS)
                .rev()
                .find(|i| message.is_char_boundary(*i))
                .unwrap_or(0);
            message.truncate(cut);
            message.push('…');
        }
        return Err(ValidationError::Schema {
            place,
            path: if path.is_empty() { "/".into() } else { path },
            message,
        });
    }
    let text = record_text(&record);
    if text.len() > policy.max_record_bytes {
        return Err(ValidationError::RecordTooLarge {
            place,
            size: text.len(),
            limit: policy.max_record_bytes,
        });
    }
    let signature = minhash::signature(&text);
    let near = match (accepted, &signature) {
        (Some(index), Some(sig)) => index.query(sig),
        _ => None,
    };
    Ok(RecordCheck {
        place,
        chars: text.chars().count(),
        text_hash: {
            // Only compared within one file, so any fixed fast hash does.
            let mut h = std::hash::DefaultHasher::new();
            std::hash::Hash::hash(&text, &mut h);
            std::hash::Hasher::finish(&h)
        },
        signature,
        findings: scan::scan(&text),
        near,
    })
}

/// A record's text: its string values, depth first, one per line (for chat records, the
/// messages' roles and contents).
pub fn record_text(record: &Value) -> String {
    fn walk(value: &Value, out: &mut String) {
        match value {
            Value::String(s) => {
                if !out.is_empty() {
                    out.push('\n');
                }
                out.push_str(s);
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, out)),
            Value::Object(map) => map.values().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut out = String::new();
    walk(record, &mut out);
    out
}
