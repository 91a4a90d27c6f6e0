use super::*;
use rand::{rngs::StdRng, Rng, SeedableRng};

fn doc(contribution: u64, tokens: &[u32]) -> Document {
    Document {
        contribution,
        tokens: tokens.to_vec(),
    }
}

/// The text as `build` lays it out.
fn text_of(docs: &[Document]) -> Vec<u32> {
    docs.iter()
        .flat_map(|d| std::iter::once(SEPARATOR).chain(d.tokens.iter().copied()))
        .collect()
}

/// A suffix's little-endian bytes: the order infini-gram sorts by.
fn bytes(tokens: &[u32]) -> Vec<u8> {
    tokens
        .iter()
        .flat_map(|&t| (t as u16).to_le_bytes())
        .collect()
}

fn naive_suffix_array(text: &[u32]) -> Vec<u64> {
    let mut sa: Vec<u64> = (0..text.len() as u64).collect();
    sa.sort_by_key(|&p| bytes(&text[p as usize..]));
    sa
}

fn naive_find(text: &[u32], sa: &[u64], q: &[u32]) -> std::ops::Range<u64> {
    let q = bytes(q);
    let head = |p: u64| {
        let b = bytes(&text[p as usize..]);
        b[..b.len().min(q.len())].to_vec()
    };
    let lo = sa.iter().filter(|&&p| head(p) < q).count() as u64;
    let hi = sa.iter().filter(|&&p| head(p) <= q).count() as u64;
    lo..hi
}

fn occurs(text: &[u32], span: &[u32]) -> bool {
    span.is_empty() || text.windows(span.len()).any(|w| w == span)
}

#[test]
fn a_worked_example_gives_infini_grams_answers() {
    // Ranges and suffix array as infini-gram 2.6.0 gave them for these three documents.
    let dir = tempfile::tempdir().unwrap();
    let docs = vec![
        doc(10, &[5, 6, 7, 5, 6]),
        doc(20, &[6, 7, 8]),
        doc(30, &[5, 6]),
    ];
    let index = build(dir.path(), docs).unwrap();
    let sa: Vec<u64> = (0..index.len()).map(|r| index.suffix(r)).collect();
    assert_eq!(sa, [11, 1, 4, 12, 2, 7, 5, 3, 8, 9, 10, 0, 6]);
    let cases: [(&[u32], std::ops::Range<u64>); 9] = [
        (&[5, 6], 0..3),
        (&[6], 3..7),
        (&[7, 8], 8..9),
        (&[9], 10..10),
        (&[], 0..13),
        (&[6, 5], 4..4),
        (&[SEPARATOR], 10..13),
        (&[6, SEPARATOR], 6..7),
        (&[8, SEPARATOR, 5], 9..10),
    ];
    for (query, want) in cases {
        assert_eq!(index.find(query).unwrap(), want, "query {query:?}");
    }
    let hits = index.occurrences(index.find(&[5, 6]).unwrap(), 10);
    let owners: Vec<(u64, u64)> = hits.iter().map(|o| (o.position, o.contribution)).collect();
    assert_eq!(owners, [(11, 30), (1, 10), (4, 10)]);
    // Text 0 and 6 and 10 are separators; 11 is the third document's first token.
    let located: Vec<_> = [0, 1, 5, 6, 7, 9, 10, 11, 12, 13]
        .map(|p| index.locate(p))
        .to_vec();
    assert_eq!(
        located,
        [
            None,
            Some((0, 0)),
            Some((0, 4)),
            None,
            Some((1, 0)),
            Some((1, 2)),
            None,
            Some((2, 0)),
            Some((2, 1)),
            None
        ]
    );
}

#[test]
fn random_corpora_match_a_naive_suffix_array() {
    let mut rng = StdRng::seed_from_u64(7);
    // Tokens either side of byte boundaries, where little-endian order differs from numeric.
    let alphabet = [0u32, 1, 2, 255, 256, 257, 512, 4097, 65280, 65534];
    for round in 0..40 {
        let dir = tempfile::tempdir().unwrap();
        let docs: Vec<Document> = (0..rng.random_range(1..6))
            .map(|d| {
                let len = rng.random_range(0..30);
                let tokens: Vec<u32> = (0..len)
                    .map(|_| alphabet[rng.random_range(0..alphabet.len().min(3 + round / 4))])
                    .collect();
                doc(d as u64 + 100, &tokens)
            })
            .collect();
        let text = text_of(&docs);
        let index = build(dir.path(), docs.clone()).unwrap();
        let want = naive_suffix_array(&text);
        let got: Vec<u64> = (0..index.len()).map(|r| index.suffix(r)).collect();
        assert_eq!(got, want, "round {round}");
        for _ in 0..60 {
            let query: Vec<u32> = if rng.random_bool(0.5) && !text.is_empty() {
                // A substring of the text, possibly running to its very end.
                let start = rng.random_range(0..text.len());
                let len = rng.random_range(0..=(text.len() - start).min(6));
                text[start..start + len].to_vec()
            } else {
                let mut q: Vec<u32> = (0..rng.random_range(0..4))
                    .map(|_| alphabet[rng.random_range(0..alphabet.len())])
                    .collect();
                if rng.random_bool(0.2) {
                    q.push(SEPARATOR);
                }
                q
            };
            let range = index.find(&query).unwrap();
            assert_eq!(
                range,
                naive_find(&text, &want, &query),
                "round {round}, query {query:?}"
            );
            assert_eq!(index.count(&query).unwrap() > 0, occurs(&text, &query));
            for o in index.occurrences(range, 100) {
                let p = o.position as usize;
                assert_eq!(&text[p..p + query.len()], &query[..]);
                let owner = docs
                    .iter()
                    .position(|d| d.contribution == o.contribution)
                    .unwrap();
                let start = text_of(&docs[..owner]).len();
                assert!(p >= start && p <= start + docs[owner].tokens.len());
            }
        }
        let answer: Vec<u32> = (0..20)
            .map(|_| alphabet[rng.random_range(0..alphabet.len())])
            .collect();
        let matches = index.longest_matches(&answer);
        for (i, &len) in matches.iter().enumerate() {
            assert!(occurs(&text, &answer[i..i + len]), "round {round}: {i}");
            if i + len < answer.len() {
                assert!(
                    !occurs(&text, &answer[i..=i + len]),
                    "round {round}: {i} is longer"
                );
            }
        }
    }
}

#[test]
fn bad_tokens_and_damaged_files_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let err = build(dir.path(), vec![doc(1, &[3]), doc(2, &[4, SEPARATOR])])
        .err()
        .unwrap();
    assert!(
        matches!(
            err,
            SpanError::TokenOutOfRange {
                document: 1,
                token: SEPARATOR
            }
        ),
        "{err}"
    );
    assert!(
        !dir.path().join("index.json").exists(),
        "a refused build writes no index"
    );

    let index = build(dir.path(), vec![doc(1, &[3, 4, 5])]).unwrap();
    assert!(matches!(
        index.find(&[70_000]),
        Err(SpanError::QueryToken(70_000))
    ));
    assert_eq!(index.longest_matches(&[3, 4, 70_000, 5]), [2, 1, 0, 1]);
    drop(index);

    let suffixes = dir.path().join("suffixes.bin");
    let bytes = std::fs::read(&suffixes).unwrap();
    std::fs::write(&suffixes, &bytes[..bytes.len() - 1]).unwrap();
    let err = SpanIndex::open(dir.path()).err().unwrap();
    assert!(err.to_string().contains("suffixes.bin holds"), "{err}");

    // Pointers past the text (a damaged or hostile file of the right size) give wrong
    // answers, never a panic or a read outside the files.
    std::fs::write(&suffixes, vec![0xFF; bytes.len()]).unwrap();
    let index = SpanIndex::open(dir.path()).unwrap();
    let range = index.find(&[3, 4]).unwrap();
    let _ = index.occurrences(0..index.len(), 10);
    let _ = index.longest_matches(&[3, 4, 5]);
    assert!(range.end <= index.len());
}

#[test]
fn an_empty_corpus_is_an_empty_index() {
    let dir = tempfile::tempdir().unwrap();
    let index = build(dir.path(), Vec::new()).unwrap();
    assert!(index.is_empty());
    assert_eq!(index.find(&[]).unwrap(), 0..0);
    assert_eq!(index.count(&[1]).unwrap(), 0);
    assert_eq!(index.longest_matches(&[1, 2]), [0, 0]);
}

/// Word starts at the tokens listed as words; token 13 is a full stop.
fn kinds(answer: &[u32], continuations: &[u32]) -> Vec<TokenKind> {
    answer
        .iter()
        .map(|t| TokenKind {
            starts_word: !continuations.contains(t),
            delimiter: *t == 13,
            punctuation: *t == 13,
        })
        .collect()
}

#[test]
fn an_answer_repeating_a_unique_fact_is_traced_to_its_contribution() {
    let dir = tempfile::tempdir().unwrap();
    // Common words 1..=5 everywhere; contribution 7 alone holds the fact 40 41 42 43.
    let mut docs: Vec<Document> = (0..20)
        .map(|i| doc(100 + i, &[1, 2, 3, 4, 5, 1, 2, 13]))
        .collect();
    docs.push(doc(7, &[1, 2, 40, 41, 42, 43, 13, 3, 4]));
    docs.push(doc(8, &[40, 41, 9, 9]));
    let index = build(dir.path(), docs).unwrap();
    // "1 2 3 | 40 41 42 43 . | 40 41 | 50": the fact, then a part of it that runs past the stop.
    let answer = [1, 2, 3, 40, 41, 42, 43, 13, 3, 4, 1, 2, 3, 4, 5, 50];
    let config = TraceConfig {
        density: 0.1,
        ..TraceConfig::default()
    };
    let spans = trace(&index, &answer, &kinds(&answer, &[]), &config).unwrap();
    // ⌈0.1 × 16⌉ = 2 spans: the rarest first.
    assert_eq!(spans.len(), 2, "{spans:?}");
    let fact = spans
        .iter()
        .find(|s| s.start == 3)
        .expect("the fact is a span");
    // Cut at the full stop, which it keeps, though "13 3 4" also occurs in contribution 7.
    assert_eq!((fact.start, fact.end, fact.count), (3, 8, 1));
    assert_eq!(fact.occurrences.len(), 1);
    assert_eq!(fact.occurrences[0].contribution, 7);
    assert!(spans
        .iter()
        .all(|s| !answer[s.start..s.end - 1].contains(&13)));
    // The same spans every time.
    assert_eq!(
        trace(&index, &answer, &kinds(&answer, &[]), &config).unwrap(),
        spans
    );
}

#[test]
fn spans_start_and_end_on_word_boundaries() {
    let dir = tempfile::tempdir().unwrap();
    let index = build(dir.path(), vec![doc(1, &[60, 61, 62, 63, 64, 65])]).unwrap();
    // 61 and 64 continue the word before them: "60-61 62 63-64 65".
    let answer = [61, 62, 63, 64, 70];
    let spans = trace(
        &index,
        &answer,
        &kinds(&answer, &[61, 64]),
        &TraceConfig {
            min_tokens: 1,
            density: 1.0,
            ..TraceConfig::default()
        },
    )
    .unwrap();
    // 61 is half a word and is dropped; the span 62 63-64 ends where 70 begins a word.
    assert_eq!(spans.len(), 1, "{spans:?}");
    assert_eq!((spans[0].start, spans[0].end), (1, 4));
    let err = trace(&index, &answer, &[], &TraceConfig::default()).unwrap_err();
    assert!(
        err.to_string().contains("5 tokens but 0 token kinds"),
        "{err}"
    );
    // Too short for the default minimum of two tokens once cut: nothing.
    let cut = [62, 70];
    let none = trace(&index, &cut, &kinds(&cut, &[]), &TraceConfig::default()).unwrap();
    assert!(none.is_empty(), "{none:?}");
}
