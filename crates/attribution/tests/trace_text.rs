//! Span tracing on the default model's real tokens (scripts/fetch-model; OPENLEDGER_MODEL
//! names another GGUF file).

use openledger_attribution::span::{self, Document, TraceConfig};
use openledger_model::Model;

fn model() -> Model {
    let path = std::env::var_os("OPENLEDGER_MODEL")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(openledger_model::default_model_path);
    assert!(
        path.exists(),
        "no model at {}: run scripts/fetch-model",
        path.display()
    );
    Model::load(&path).unwrap()
}

/// Words as a reader sees them: runs of letters and digits, and each punctuation mark alone.
fn words(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    for c in text.chars() {
        if c.is_alphanumeric() {
            word.push(c);
            continue;
        }
        if !word.is_empty() {
            out.push(std::mem::take(&mut word));
        }
        if !c.is_whitespace() {
            out.push(c.to_string());
        }
    }
    out.extend((!word.is_empty()).then_some(word));
    out
}

#[test]
fn word_starts_cut_real_tokens_into_whole_words() {
    let model = model();
    let text = "The archivist Velmorine Quastrel catalogued 4127 maps in Oskvar.\nEach map, \
                she wrote, was unbearably delicate!";
    let tokens = model.tokenizer.encode(text);
    let kinds = span::token_kinds(&model.tokenizer, &tokens);
    // Cut at every word start, each piece is exactly one reader's word (or mark).
    let mut pieces: Vec<String> = Vec::new();
    for (t, k) in tokens.iter().zip(&kinds) {
        let piece = model.tokenizer.decode(&[*t]);
        match pieces.last_mut() {
            Some(last) if !k.starts_word => last.push_str(&piece),
            _ => pieces.push(piece),
        }
    }
    let pieces: Vec<String> = pieces
        .iter()
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect();
    let mut want = words(text);
    // The tokenizer keeps a run of digits in pieces of up to three; each still starts no word.
    want.retain(|w| !w.is_empty());
    assert_eq!(pieces, want);
    let delimiters: Vec<String> = tokens
        .iter()
        .zip(&kinds)
        .filter(|(_, k)| k.delimiter)
        .map(|(t, _)| model.tokenizer.decode(&[*t]))
        .collect();
    assert!(delimiters.iter().any(|d| d.contains('.')), "{delimiters:?}");
    assert!(
        delimiters.iter().any(|d| d.contains('\n')),
        "{delimiters:?}"
    );
    assert!(delimiters.iter().any(|d| d.contains('!')), "{delimiters:?}");
    assert!(
        !delimiters.iter().any(|d| d.contains(',')),
        "{delimiters:?}"
    );
}

#[test]
fn an_answer_is_traced_to_the_contribution_holding_its_fact() {
    let model = model();
    let tok = &model.tokenizer;
    let facts = [
        (
            11,
            "The lighthouse at Brennick Point was painted green in 1931.",
        ),
        (
            12,
            "The river Ostra floods every spring after the snow melts.",
        ),
        (
            13,
            "In 1902, Velmorine Quastrel catalogued exactly 4127 maps of the northern coast.",
        ),
        (14, "Most maps of the northern coast were drawn by sailors."),
    ];
    let dir = tempfile::tempdir().unwrap();
    let docs = facts.iter().map(|&(c, text)| Document {
        contribution: c,
        tokens: tok.encode(text),
    });
    let index = span::build(dir.path(), docs).unwrap();
    // Mid-sentence in both (a word that opens a text has no leading space, and so is another
    // token).
    let answer = tok.encode(
        "According to the archive, Velmorine Quastrel catalogued exactly 4127 maps, which \
         is more than anyone else.",
    );
    let kinds = span::token_kinds(tok, &answer);
    let config = TraceConfig {
        density: 0.1,
        ..TraceConfig::default()
    };
    let spans = span::trace(&index, &answer, &kinds, &config).unwrap();
    let rarest = spans
        .iter()
        .min_by(|a, b| a.log_prob.total_cmp(&b.log_prob))
        .expect("a span");
    let text = tok.decode(&answer[rarest.start..rarest.end]);
    assert_eq!(
        text.trim(),
        "Velmorine Quastrel catalogued exactly 4127 maps",
        "{spans:?}"
    );
    assert!(rarest.occurrences.iter().all(|o| o.contribution == 13));
    let credit = openledger_attribution::payout::span_credit(&spans);
    let top = credit.iter().max_by_key(|(_, &w)| w).map(|(&c, _)| c);
    assert_eq!(top, Some(13), "{credit:?}");
}
