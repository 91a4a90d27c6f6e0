//! Building an index: the text, the suffix array (libsais over byte-swapped tokens), and the
//! files.

use super::{io, packed, Document, Result, SpanError, SpanIndex, FORMAT_VERSION, SEPARATOR};
use std::path::Path;

/// Indexes `documents` into the directory `dir` (created if missing; files already there are
/// replaced) and opens the result. `index.json` is written last, so a build cut short is never
/// opened as an index.
pub fn build(dir: &Path, documents: impl IntoIterator<Item = Document>) -> Result<SpanIndex> {
    let mut text: Vec<u16> = Vec::new();
    let mut starts: Vec<u8> = Vec::new();
    let mut count = 0usize;
    for (d, doc) in documents.into_iter().enumerate() {
        starts.extend_from_slice(&(text.len() as u64).to_le_bytes());
        starts.extend_from_slice(&doc.contribution.to_le_bytes());
        text.push(SEPARATOR as u16);
        for &t in &doc.tokens {
            if t >= SEPARATOR {
                return Err(SpanError::TokenOutOfRange {
                    document: d,
                    token: t,
                });
            }
            text.push(t as u16);
        }
        count += 1;
    }
    let n = text.len() as u64;
    if n > 1 << 40 {
        return Err(SpanError::TooLarge(n));
    }
    let width = packed::width_for(n);
    let suffixes = packed_suffix_array(&text, width)?;

    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let _ = std::fs::remove_file(dir.join("index.json"));
    let tokens: Vec<u8> = text.iter().flat_map(|t| t.to_le_bytes()).collect();
    write(&dir.join("tokens.bin"), &tokens)?;
    write(&dir.join("suffixes.bin"), &suffixes)?;
    write(&dir.join("documents.bin"), &starts)?;
    let meta = serde_json::json!({
        "format": FORMAT_VERSION,
        "tokens": n,
        "documents": count,
        "pointer_bits": width,
        "separator": SEPARATOR,
    });
    write(&dir.join("index.json"), meta.to_string().as_bytes())?;
    SpanIndex::open(dir)
}

fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes).map_err(io(path))
}

/// The suffix array of `text` in infini-gram's order (little-endian bytes of the tokens): the
/// numeric order of byte-swapped tokens; packed at `width` bits per entry.
fn packed_suffix_array(text: &[u16], width: u32) -> Result<Vec<u8>> {
    if text.is_empty() {
        return Ok(packed::pack(std::iter::empty(), 0, width));
    }
    let keys: Vec<u16> = text.iter().map(|t| t.swap_bytes()).collect();
    if let Ok(n) = i32::try_from(keys.len()) {
        let mut sa = vec![0i32; keys.len()];
        // SAFETY: `keys` and `sa` are `n` long; no frequency table is passed.
        let rc = unsafe {
            libsais_sys::libsais16::libsais16(
                keys.as_ptr(),
                sa.as_mut_ptr(),
                n,
                0,
                std::ptr::null_mut(),
            )
        };
        if rc != 0 {
            return Err(SpanError::Sort(rc.into()));
        }
        Ok(packed::pack(
            sa.into_iter().map(|p| p as u64),
            keys.len(),
            width,
        ))
    } else {
        let n = keys.len() as i64;
        let mut sa = vec![0i64; keys.len()];
        // SAFETY: as above, with 64-bit positions.
        let rc = unsafe {
            libsais_sys::libsais16x64::libsais16x64(
                keys.as_ptr(),
                sa.as_mut_ptr(),
                n,
                0,
                std::ptr::null_mut(),
            )
        };
        if rc != 0 {
            return Err(SpanError::Sort(rc));
        }
        Ok(packed::pack(
            sa.into_iter().map(|p| p as u64),
            keys.len(),
            width,
        ))
    }
}
