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
    let reader = SerializedFileReader::new(file).map_err(bad)?;
    let total = reader.metadata().file_metadata().num_rows().max(0) as u64;
    if total == 0 {
        return Err(ValidationError::Empty);
    }
    let mut rows = reader.into_iter();
    let mut row = 0u64;
    Ok(std::iter::from_fn(move || {
        let mut batch = Vec::new();
        while batch.len() < BATCH_ROWS {
            match rows.next() {
                None => break,
                Some(Ok(r)) => {
                    row += 1;
                    batch.push((Place::Row(row), Raw::Value(r.to_json_value())));
                }
                Some(Err(e)) => return Some(Err(bad(e))),
            }
        }
        (!batch.is_empty()).then_some(Ok(Batch {
            records: batch,
            // Rows are not bytes; progress is the share of rows read, in the file's size.
            through: size * row / total,
        }))
    }))
}

fn bad(e: parquet::errors::ParquetError) -> ValidationError {
    ValidationError::BadParquet(e.to_string())
}
