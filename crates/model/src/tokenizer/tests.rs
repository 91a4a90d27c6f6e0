//! Unit tests on tiny hand-built vocabularies (no model file).

use std::collections::HashMap;

use candle_core::quantized::gguf_file::Value;

use super::{bpe, StreamDecoder, Tokenizer, TokenizerError};

/// GGUF-like metadata: the 256 byte tokens (id = byte), then `control` tokens (type 3), then
/// `words` (given as plain text), with `merges` (plain text, `left+right`) in rank order.
fn metadata(control: &[&str], words: &[&str], merges: &[&str]) -> HashMap<String, Value> {
    let byte_to_char = bpe::byte_to_char();
    let spell = |s: &str| -> String { s.bytes().map(|b| byte_to_char[b as usize]).collect() };
    let mut tokens: Vec<String> = byte_to_char.iter().map(char::to_string).collect();
    let mut types = vec![1i32; 256];
    for c in control {
        tokens.push((*c).to_owned());
        types.push(3);
    }
    for w in words {
        tokens.push(spell(w));
        types.push(1);
    }
    let strings = |v: Vec<String>| Value::Array(v.into_iter().map(Value::String).collect());
    let merges = merges
        .iter()
        .map(|m| {
            let (l, r) = m.split_once('+').unwrap();
            format!("{} {}", spell(l), spell(r))
        })
        .collect();
    HashMap::from([
        ("tokenizer.ggml.model".into(), Value::String("gpt2".into())),
        ("tokenizer.ggml.pre".into(), Value::String("smollm".into())),
        ("tokenizer.ggml.tokens".into(), strings(tokens)),
        (
            "tokenizer.ggml.token_type".into(),
            Value::Array(types.into_iter().map(Value::I32).collect()),
        ),
        ("tokenizer.ggml.merges".into(), strings(merges)),
        ("tokenizer.ggml.bos_token_id".into(), Value::U32(0)),
        ("tokenizer.ggml.eos_token_id".into(), Value::U32(0)),
    ])
}

fn tokenizer(control: &[&str], words: &[&str], merges: &[&str]) -> Tokenizer {
    Tokenizer::from_gguf(&metadata(control, words, merges)).unwrap()
}

/// The spellings (as plain text) of `ids`, to read failures easily.
fn texts(t: &Tokenizer, ids: &[u32]) -> Vec<String> {
    ids.iter().map(|&id| t.decode(&[id])).collect()
}

#[test]
fn merges_apply_by_rank_then_leftmost() {
    let words = ["ab", "bc", "abc", "cd", "aa"];
    let t = tokenizer(&[], &words, &["b+c", "a+b", "a+bc", "a+a"]);
    assert_eq!(texts(&t, &t.encode("abc")), ["abc"]);
    let t = tokenizer(&[], &words, &["a+b", "b+c", "a+bc"]);
    assert_eq!(texts(&t, &t.encode("abc")), ["ab", "c"]);
    // The lowest rank wins wherever it is, and takes its symbols from other pairs.
    let t = tokenizer(&[], &words, &["c+d", "b+c", "a+b"]);
    assert_eq!(texts(&t, &t.encode("abcd")), ["ab", "cd"]);
    // Equal pairs merge from the left.
    let t = tokenizer(&[], &words, &["a+a"]);
    assert_eq!(texts(&t, &t.encode("aaa")), ["aa", "a"]);
    assert_eq!(texts(&t, &t.encode("aaaaa")), ["aa", "aa", "a"]);
}

/// The textbook BPE: merge the lowest-ranked, leftmost pair until none applies.
fn naive_bpe(word: &str, ranks: &HashMap<(String, String), usize>) -> Vec<String> {
    let mut symbols: Vec<String> = word.chars().map(String::from).collect();
    loop {
        let best = (0..symbols.len().saturating_sub(1))
            .filter_map(|i| {
                Some((
                    *ranks.get(&(symbols[i].clone(), symbols[i + 1].clone()))?,
                    i,
                ))
            })
            .min();
        let Some((_, i)) = best else { return symbols };
        let right = symbols.remove(i + 1);
        symbols[i].push_str(&right);
    }
}

#[test]
fn heap_merging_agrees_with_the_textbook_algorithm() {
    // Every string over {a, b, c} of length 2..=4 is a token; merges pair them in a scrambled
    // order, so that merges compete and heap entries go stale.
    let mut words = vec![String::new()];
    let mut all = Vec::new();
    for _ in 0..4 {
        words = words
            .iter()
            .flat_map(|w| ["a", "b", "c"].map(|c| format!("{w}{c}")))
            .collect();
        all.extend(words.iter().filter(|w| w.len() >= 2).cloned());
    }
    let mut merges = Vec::new();
    for w in &all {
        for split in 1..w.len() {
            merges.push(format!("{}+{}", &w[..split], &w[split..]));
        }
    }
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for i in (1..merges.len()).rev() {
        merges.swap(i, (next() % (i as u64 + 1)) as usize);
    }
    merges.truncate(merges.len() / 2);
    let ranks: HashMap<(String, String), usize> = merges
        .iter()
        .enumerate()
        .map(|(rank, m)| {
            let (l, r) = m.split_once('+').unwrap();
            ((l.to_owned(), r.to_owned()), rank)
        })
        .collect();
    let word_refs: Vec<&str> = all.iter().map(String::as_str).collect();
    let merge_refs: Vec<&str> = merges.iter().map(String::as_str).collect();
    let t = tokenizer(&[], &word_refs, &merge_refs);
    for _ in 0..2000 {
        let len = 1 + next() as usize % 40;
        let word: String = (0..len)
            .map(|_| ['a', 'b', 'c'][next() as usize % 3])
            .collect();
        assert_eq!(
            texts(&t, &t.encode(&word)),
            naive_bpe(&word, &ranks),
            "{word}"
        );
    }
}

#[test]
fn digits_stand_alone_even_where_a_merge_exists() {
    let t = tokenizer(&[], &["12", " 7", "a1"], &["1+2", " +7", "a+1"]);
    assert_eq!(texts(&t, &t.encode("a12")), ["a", "1", "2"]);
    assert_eq!(texts(&t, &t.encode(" 7")), [" ", "7"]);
    assert_eq!(
        texts(&t, &t.encode("x 3.14")),
        ["x", " ", "3", ".", "1", "4"]
    );
}

#[test]
fn control_tokens_are_found_leftmost_longest() {
    let t = tokenizer(&["<|end|>", "<|a|>", "<|a|>b"], &[], &[]);
    let end = t.token_id("<|end|>").unwrap();
    assert!(t.is_special(end) && !t.is_special(u32::from(b'x')));
    let ids = t.encode("x<|end|>y <|a|>bc");
    assert_eq!(texts(&t, &ids), ["x", "<|end|>", "y", " ", "<|a|>b", "c"]);
    assert_eq!(t.decode(&ids), "x<|end|>y <|a|>bc");
    // A partial control token is plain text.
    assert_eq!(t.encode("<|end").len(), 5);
}

#[test]
fn decodes_bytes_and_streams_whole_chars_only() {
    let t = tokenizer(&[], &[], &[]);
    let ids = t.encode("é€😀 ok");
    assert_eq!(t.decode(&ids), "é€😀 ok");
    assert_eq!(t.decode(&ids[..1]), "\u{fffd}");
    let mut stream = StreamDecoder::new();
    let pieces: Vec<String> = ids.iter().map(|&id| stream.push(&t, id)).collect();
    assert_eq!(
        pieces,
        ["", "é", "", "", "€", "", "", "", "😀", " ", "o", "k"]
    );
    assert_eq!(stream.finish(), "");
    // An invalid byte shows at once; a char left unfinished shows at the end.
    assert_eq!(stream.push(&t, 0xff), "\u{fffd}");
    assert_eq!(stream.push(&t, 0xe2), "");
    assert_eq!(stream.push(&t, u32::from(b'a')), "\u{fffd}a");
    assert_eq!(stream.push(&t, 0xe2), "");
    assert_eq!(stream.finish(), "\u{fffd}");
}

#[test]
fn refuses_what_it_cannot_match() {
    let mut md = metadata(&[], &[], &[]);
    md.insert("tokenizer.ggml.model".into(), Value::String("llama".into()));
    let err = Tokenizer::from_gguf(&md).unwrap_err();
    assert!(matches!(err, TokenizerError::UnsupportedModel(ref m) if m == "llama"));
    assert!(err.to_string().contains("gpt2"), "{err}");

    let mut md = metadata(&[], &[], &[]);
    md.insert("tokenizer.ggml.pre".into(), Value::String("qwen2".into()));
    let err = Tokenizer::from_gguf(&md).unwrap_err();
    assert!(matches!(err, TokenizerError::UnsupportedPreTokenizer(_)));

    let md = metadata(&[], &[], &["a+b"]);
    let err = Tokenizer::from_gguf(&md).unwrap_err();
    assert!(
        matches!(err, TokenizerError::BadMerge { index: 0, .. }),
        "{err}"
    );

    let mut md = metadata(&[], &[], &[]);
    md.remove("tokenizer.ggml.tokens");
    let err = Tokenizer::from_gguf(&md).unwrap_err();
    assert_eq!(
        err.to_string(),
        "GGUF metadata has no `tokenizer.ggml.tokens`"
    );

    let mut md = metadata(&[], &[], &[]);
    md.insert("tokenizer.ggml.eos_token_id".into(), Value::U32(999));
    let err = Tokenizer::from_gguf(&md).unwrap_err();
    assert!(matches!(err, TokenizerError::IdOutOfRange { id: 999, .. }));
}

#[test]
fn is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Tokenizer>();
}
