//! Fuzz targets for the contribution readers (JSONL, CSV, text, Markdown, Parquet): whatever
//! the bytes, staging and checking a file ends in records or an error naming the problem, never
//! a panic. Each runs for `OPENLEDGER_FUZZ_SECS` seconds (the harness is the chain's).

#[path = "../../chain/tests/common/fuzz.rs"]
mod fuzz;

use openledger_datanets::{
    format::{self, Format},
    validate::{self, Policy},
};
use serde_json::json;

/// Stages and checks `bytes` as a `format` file, then reads the staged records back.
fn check(bytes: &[u8], format: Format, dir: &std::path::Path) {
    let (source, staged) = (dir.join("source"), dir.join("staged"));
    std::fs::write(&source, bytes).unwrap();
    let schema = jsonschema::validator_for(&json!({"type": "object"})).unwrap();
    let policy = Policy {
        max_record_bytes: 4096,
        ..Policy::default()
    };
    let Ok(validated) =
        validate::stage_and_check(&source, format, &staged, &schema, &policy, None, &|_| {})
    else {
        return;
    };
    if validated.checked.is_err() {
        return;
    }
    let batches =
        format::batches(&staged, format, policy.max_record_bytes).expect("a checked file reads");
    for batch in batches {
        batch.expect("a checked file's records read back");
    }
}

fn run(name: &str, format: Format, seeds: &[Vec<u8>]) {
    // The parquet crate panics on some damaged files; the reader catches those and answers an
    // error. Keep their reports (thousands in a long run) out of the output.
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let in_parquet = info
            .location()
            .is_some_and(|l| l.file().contains("/parquet-"));
        if !in_parquet {
            report(info);
        }
    }));
    let dir = tempfile::tempdir().unwrap();
    fuzz::run(name, seeds, 100, |input| check(input, format, dir.path()));
}

#[test]
fn fuzz_jsonl() {
    let seeds = [
        b"{\"a\": 1}\n{\"b\": [1, 2, {\"c\": \"d\"}]}\n".to_vec(),
        b"\xef\xbb\xbf{\"x\": \"\\u00e9\"}\r\n\r\n{\"y\": null}".to_vec(),
    ];
    run("jsonl", Format::Jsonl, &seeds);
}

#[test]
fn fuzz_csv() {
    let seeds = [
        b"question,answer\n\"a, b\",c\n\"multi\nline\",\"quote \"\"x\"\"\"\n".to_vec(),
        b"a;b\n1;2\n".to_vec(),
    ];
    run("csv", Format::Csv, &seeds);
}

#[test]
fn fuzz_text_and_markdown() {
    let seeds = [
        b"# Title\n\nA paragraph of text.\n\nAnother one\nover two lines.\n".to_vec(),
        "caf\u{e9} \u{2014} unicode\n\n\n".as_bytes().to_vec(),
    ];
    run("text", Format::Text, &seeds);
    run("markdown", Format::Markdown, &seeds);
}

#[test]
fn fuzz_parquet() {
    use parquet::{
        data_type::{ByteArray, ByteArrayType, Int32Type},
        file::writer::SerializedFileWriter,
        schema::parser::parse_message_type,
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("seed.parquet");
    let schema = std::sync::Arc::new(
        parse_message_type("message r { REQUIRED BINARY q (UTF8); OPTIONAL INT32 s; }").unwrap(),
    );
    let mut writer = SerializedFileWriter::new(
        std::fs::File::create(&path).unwrap(),
        schema,
        Default::default(),
    )
    .unwrap();
    let mut group = writer.next_row_group().unwrap();
    let mut column = group.next_column().unwrap().unwrap();
    let qs: Vec<ByteArray> = ["who?", "what?", "when?"]
        .iter()
        .map(|q| ByteArray::from(*q))
        .collect();
    column
        .typed::<ByteArrayType>()
        .write_batch(&qs, None, None)
        .unwrap();
    column.close().unwrap();
    let mut column = group.next_column().unwrap().unwrap();
    column
        .typed::<Int32Type>()
        .write_batch(&[5, 4], Some(&[1, 0, 1]), None)
        .unwrap();
    column.close().unwrap();
    group.close().unwrap();
    writer.close().unwrap();
    run("parquet", Format::Parquet, &[std::fs::read(&path).unwrap()]);
}
