//! Every accepted format read into the records the schema sees (and export writes): Parquet
//! rows, CSV rows, text and Markdown paragraphs, JSONL lines; and a Parquet file that is not
//! one is refused by name.

use openledger_datanets::{
    format::{self, Format, Raw},
    validate::{self, Policy},
    Place, ValidationError,
};
use parquet::{
    data_type::{ByteArray, ByteArrayType, Int32Type},
    file::writer::SerializedFileWriter,
    schema::parser::parse_message_type,
};
use serde_json::{json, Value};
use std::{path::Path, sync::Arc};

/// Stages and checks `bytes` as a `format` file; returns the records as read back.
fn read(bytes: &[u8], format: Format) -> Result<Vec<(Place, Value)>, ValidationError> {
    let dir = tempfile::tempdir().unwrap();
    let (source, staged) = (dir.path().join("source"), dir.path().join("staged"));
    std::fs::write(&source, bytes).unwrap();
    let schema = jsonschema::validator_for(&json!({"type": "object"})).unwrap();
    let validated = validate::stage_and_check(
        &source,
        format,
        &staged,
        &schema,
        &Policy::default(),
        None,
        &|_| {},
    )?;
    let checked = validated.checked?;
    assert_eq!(
        checked.report.content_hash,
        alloy_primitives::keccak256(std::fs::read(&staged).unwrap())
    );
    let mut records = Vec::new();
    for batch in format::batches(&staged, format, 1 << 20)? {
        for (place, raw) in batch?.records {
            records.push((
                place,
                match raw {
                    Raw::Json(bytes) => serde_json::from_slice(&bytes).unwrap(),
                    Raw::Value(v) => v,
                },
            ));
        }
    }
    assert_eq!(checked.report.records, records.len() as u64);
    Ok(records)
}

fn parquet_file(path: &Path) {
    let schema = Arc::new(
        parse_message_type(
            "message record { REQUIRED BINARY question (UTF8); REQUIRED INT32 score; }",
        )
        .unwrap(),
    );
    let file = std::fs::File::create(path).unwrap();
    let mut writer = SerializedFileWriter::new(file, schema, Default::default()).unwrap();
    let mut group = writer.next_row_group().unwrap();
    let mut column = group.next_column().unwrap().unwrap();
    let questions: Vec<ByteArray> = [
        "who audited the bridge?",
        "which oracle lagged?",
        "how much was lost?",
    ]
    .iter()
    .map(|q| ByteArray::from(*q))
    .collect();
    column
        .typed::<ByteArrayType>()
        .write_batch(&questions, None, None)
        .unwrap();
    column.close().unwrap();
    let mut column = group.next_column().unwrap().unwrap();
    column
        .typed::<Int32Type>()
        .write_batch(&[5, 3, 4], None, None)
        .unwrap();
    column.close().unwrap();
    group.close().unwrap();
    writer.close().unwrap();
}

#[test]
fn parquet_rows_become_objects() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q.parquet");
    parquet_file(&path);
    let records = read(&std::fs::read(&path).unwrap(), Format::Parquet).unwrap();
    assert_eq!(
        records,
        vec![
            (
                Place::Row(1),
                json!({"question": "who audited the bridge?", "score": 5})
            ),
            (
                Place::Row(2),
                json!({"question": "which oracle lagged?", "score": 3})
            ),
            (
                Place::Row(3),
                json!({"question": "how much was lost?", "score": 4})
            ),
        ]
    );
    let err = read(b"PAR1 this is not parquet", Format::Parquet).unwrap_err();
    assert!(err.to_string().starts_with("invalid Parquet file"), "{err}");
}

#[test]
fn csv_rows_become_objects_of_strings_with_their_lines() {
    let csv =
        b"\xef\xbb\xbfquestion,answer\r\nq1,\"a, with comma\"\r\nq2,\"two\r\nlines\"\r\nq3,x\r\n";
    let records = read(csv, Format::Csv).unwrap();
    assert_eq!(
        records,
        vec![
            (
                Place::Line(2),
                json!({"question": "q1", "answer": "a, with comma"})
            ),
            (
                Place::Line(3),
                json!({"question": "q2", "answer": "two\nlines"})
            ),
            (Place::Line(5), json!({"question": "q3", "answer": "x"})),
        ]
    );
    let err = read(b"a,b\n1,2\n3\n", Format::Csv).unwrap_err();
    assert!(err.to_string().starts_with("line 3: invalid CSV"), "{err}");
}

#[test]
fn text_and_markdown_split_into_paragraph_records_of_a_kilobyte_or_more() {
    let paragraph = |n: usize| {
        format!(
            "Paragraph {n}. {}\n",
            "Some words about reentrancy. ".repeat(20)
        )
    };
    let mut text = String::from("# Title\n\n");
    for n in 0..5 {
        text.push_str(&paragraph(n));
        text.push('\n');
    }
    let records = read(text.as_bytes(), Format::Markdown).unwrap();
    // Paragraphs are 594 bytes: the title and paragraphs 0 and 1 pass 1 KiB together
    // (lines 1-5), then paragraphs 2 and 3 (lines 7-9), and the last stands alone.
    let places: Vec<Place> = records.iter().map(|(p, _)| *p).collect();
    assert_eq!(
        places,
        vec![Place::Line(1), Place::Line(7), Place::Line(11)]
    );
    let joined: Vec<String> = records
        .iter()
        .map(|(_, r)| r["text"].as_str().unwrap().to_string())
        .collect();
    assert!(joined[0].starts_with("# Title\n\nParagraph 0.") && joined[0].contains("Paragraph 1."));
    assert!(joined[1].starts_with("Paragraph 2.") && joined[1].contains("\n\nParagraph 3."));
    assert!(joined[2].starts_with("Paragraph 4.") && !joined[2].ends_with('\n'));
    let err = read(b"fine line\nbad \xff byte\n", Format::Text).unwrap_err();
    assert_eq!(
        err,
        ValidationError::NotUtf8 {
            place: Place::Line(2)
        }
    );
    assert_eq!(
        read(b"\n\n  \n", Format::Text).unwrap_err(),
        ValidationError::Empty
    );
}

#[test]
fn blank_jsonl_lines_are_skipped_but_counted() {
    let records = read(b"{\"a\": 1}\n\n{\"a\": 2}\r\n", Format::Jsonl).unwrap();
    assert_eq!(
        records,
        vec![
            (Place::Line(1), json!({"a": 1})),
            (Place::Line(3), json!({"a": 2}))
        ]
    );
    let err = read(b"[1, 2]\n", Format::Jsonl).unwrap_err();
    assert_eq!(
        err,
        ValidationError::NotAnObject {
            place: Place::Line(1)
        }
    );
}

/// A damaged Parquet file (truncated data under an intact footer, or any byte flipped) is
/// refused with an error, never a panic; the parquet crate panics on some such files.
#[test]
fn damaged_parquet_is_refused_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q.parquet");
    parquet_file(&path);
    let good = std::fs::read(&path).unwrap();
    let footer = u32::from_le_bytes(good[good.len() - 8..good.len() - 4].try_into().unwrap());
    let data_end = good.len() - 8 - footer as usize;
    let mut damaged = Vec::new();
    for cut in 4..data_end {
        // The data pages cut short and zero-filled, the footer still pointing into them.
        let mut bytes = good.clone();
        bytes[cut..data_end].fill(0);
        damaged.push(bytes);
    }
    for at in 4..good.len() - 8 {
        let mut bytes = good.clone();
        bytes[at] ^= 0xff;
        damaged.push(bytes);
    }
    let mut refused = 0;
    for bytes in damaged {
        match read(&bytes, Format::Parquet) {
            Ok(_) => {}
            Err(e) => {
                let message = e.to_string();
                assert!(
                    message.contains("Parquet")
                        || message.contains("row")
                        || message.contains("schema"),
                    "{message}"
                );
                refused += 1;
            }
        }
    }
    assert!(refused > 0);
}

/// One line of a gigabyte is refused at the record limit, naming the line, without being read
/// into memory.
#[test]
fn a_gigabyte_line_is_refused_at_the_record_limit() {
    use std::io::Read;
    let limit = 1 << 20;
    for format in [Format::Jsonl, Format::Text, Format::Csv] {
        let huge = b"header\n".chain(std::io::repeat(b'a').take(1 << 30));
        let mut batches = format::batches_of(huge, format, limit).unwrap();
        let err = batches
            .find_map(Result::err)
            .expect("the long line is refused");
        assert!(
            matches!(
                &err,
                ValidationError::LineTooLong {
                    place: Place::Line(2),
                    ..
                }
            ),
            "{format}: {err}"
        );
    }
}

/// A footer that claims billions of values made the parquet crate try to allocate tens of
/// gigabytes, which aborts the whole process (found by the fuzzer): such a file is refused
/// from its footer, before any row is read.
#[test]
fn a_parquet_footer_declaring_more_than_the_file_can_hold_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q.parquet");
    parquet_file(&path);
    let good = std::fs::read(&path).unwrap();
    // Rewrite the row count in the footer (thrift field 3 of FileMetaData, an i64 zigzag
    // varint holding 3 rows = 0x06) to a huge count of the same encoded length would be
    // fragile; instead check the bound directly on a file whose declared size is honest but
    // tiny next to an absurd claim, through the public reader.
    let refused = read(&good, Format::Parquet);
    assert!(refused.is_ok(), "an honest file still reads");
    let footer_len =
        u32::from_le_bytes(good[good.len() - 8..good.len() - 4].try_into().unwrap()) as usize;
    let footer_start = good.len() - 8 - footer_len;
    // Find the varint 0x06 (3 rows) tagged as field 3 (i64: type 6, delta 1 → 0x16) and
    // widen it to 2^40 rows, re-encoding the footer length.
    let footer = &good[footer_start..good.len() - 8];
    let at = footer
        .windows(2)
        .rposition(|w| w == [0x16, 0x06])
        .expect("the footer's num_rows field");
    let huge = [0x80, 0x80, 0x80, 0x80, 0x80, 0x40]; // zigzag(2^40) as a varint
    let mut new_footer = footer[..at + 1].to_vec();
    new_footer.extend(huge);
    new_footer.extend(&footer[at + 2..]);
    let mut bytes = good[..footer_start].to_vec();
    bytes.extend(&new_footer);
    bytes.extend((new_footer.len() as u32).to_le_bytes());
    bytes.extend(b"PAR1");
    let err = read(&bytes, Format::Parquet).unwrap_err().to_string();
    assert!(
        err.contains("more than a") && err.contains("file can hold"),
        "{err}"
    );
}
