//! Parquet contributions: rows read one row group at a time and turned into JSON objects.

use crate::{
    format::{Batch, Place, Raw},
    validate::ValidationError,
};
use parquet::file::{reader::FileReader, serialized_reader::SerializedFileReader};
use std::fs::File;

/// Rows per batch.
const BATCH_ROWS: usize = 2048;

/// The rows of a Parquet file, in batches.
pub fn rows(
    file: File,
) -> Result<impl Iterator<Item = Result<Batch, ValidationError>>, ValidationError> {
    let size = file.metadata().map_err(ValidationError::io)?.len();
    let reader = unpanicked(|| SerializedFileReader::new(file), "its footer")?.map_err(bad)?;
    let total = reader.metadata().file_metadata().num_rows().max(0) as u64;
    if total == 0 {
        return Err(ValidationError::Empty);
    }
    check_sizes(reader.metadata(), size)?;
    unpanicked(|| check_pages(&reader), "its pages")??;
    let mut rows = reader.into_iter();
    let mut row = 0u64;
    let mut broken = false;
    Ok(std::iter::from_fn(move || {
        let mut batch = Vec::new();
        while !broken && batch.len() < BATCH_ROWS {
            let next = unpanicked(|| rows.next(), &format!("row {}", row + 1));
            match next {
                Ok(None) => break,
                Ok(Some(Ok(r))) => {
                    row += 1;
                    batch.push((Place::Row(row), Raw::Value(r.to_json_value())));
                }
                Ok(Some(Err(e))) => {
                    broken = true;
                    return Some(Err(ValidationError::BadParquet(format!(
                        "row {}: {e}",
                        row + 1
                    ))));
                }
                Err(e) => {
                    broken = true;
                    return Some(Err(e));
                }
            }
        }
        (!batch.is_empty()).then_some(Ok(Batch {
            records: batch,
            // Rows are not bytes; progress is the share of rows read, in the file's size.
            through: size * row / total,
        }))
    }))
}

/// The most values (or uncompressed bytes) a file may declare per byte it holds. The reader
/// sizes its buffers from these declarations, and a damaged footer claiming billions of values
/// made it ask for tens of gigabytes, which aborts the process instead of failing; honest
/// tables compress far less than this.
const MAX_EXPANSION: u64 = 64;

/// Refuses a file whose footer declares more rows, values or uncompressed bytes than its size
/// can hold (at `MAX_EXPANSION` per byte, and at least a mebibyte's worth).
fn check_sizes(
    metadata: &parquet::file::metadata::ParquetMetaData,
    file_size: u64,
) -> Result<(), ValidationError> {
    let bound = file_size.max(1 << 20).saturating_mul(MAX_EXPANSION);
    let over = |what: &str, declared: i64| -> Result<(), ValidationError> {
        if declared < 0 || declared as u64 > bound {
            return Err(ValidationError::BadParquet(format!(
                "the footer declares {declared} {what}, more than a {file_size}-byte file can \
                 hold"
            )));
        }
        Ok(())
    };
    over("rows", metadata.file_metadata().num_rows())?;
    for group in metadata.row_groups() {
        over("rows in a row group", group.num_rows())?;
        over("bytes in a row group", group.total_byte_size())?;
        for column in group.columns() {
            over("values in a column chunk", column.num_values())?;
            over(
                "uncompressed bytes in a column chunk",
                column.uncompressed_size(),
            )?;
        }
    }
    Ok(())
}

/// Reads every page header once before any row: a dictionary page declaring more values than
/// its bytes can hold made the reader size its dictionary from the claim (28.9 GB in the case
/// the fuzzer found), which aborts the process.
fn check_pages(reader: &SerializedFileReader<File>) -> Result<(), ValidationError> {
    use parquet::column::page::Page;
    for g in 0..reader.num_row_groups() {
        let group = reader.get_row_group(g).map_err(bad)?;
        for c in 0..group.num_columns() {
            let mut pages = group.get_column_page_reader(c).map_err(bad)?;
            while let Some(page) = pages.get_next_page().map_err(bad)? {
                if let Page::DictionaryPage {
                    buf, num_values, ..
                } = &page
                {
                    // Every dictionary value takes at least a bit.
                    if u64::from(*num_values) > buf.len() as u64 * 8 + 8 {
                        return Err(ValidationError::BadParquet(format!(
                            "a dictionary page declares {num_values} values in {} bytes",
                            buf.len()
                        )));
                    }
                }
            }
        }
    }
    Ok(())
}

/// Runs a step of the Parquet reader, turning a panic (the crate panics on some damaged files,
/// truncated ones among them) into an error that names where reading stopped.
fn unpanicked<T>(step: impl FnOnce() -> T, at: &str) -> Result<T, ValidationError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(step)).map_err(|panic| {
        let why = panic
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| panic.downcast_ref::<&str>().copied())
            .unwrap_or("the reader failed");
        ValidationError::BadParquet(format!("the file is damaged at {at}: {why}"))
    })
}

fn bad(e: parquet::errors::ParquetError) -> ValidationError {
    ValidationError::BadParquet(e.to_string())
}
