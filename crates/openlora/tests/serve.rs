//! The engine under load on the default model: requests on different adapters and prompt
//! lengths, batched with chunked prefill, get exactly the tokens each gets alone; a client
//! that goes away frees its place; the queue is bounded; a hot adapter does not starve a cold
//! one; deadlines end requests; evicted adapters reload; repeated prefixes are reused without changing the answer.

mod common;

use common::{default_model, random_adapter, ALL};
use openledger_openlora::{
    DirSource, Event, Finish, OpenLora, Params, Request, ServeError, Settings, Vocab,
};
use std::{path::Path, sync::Arc, time::Duration};
use tokio::sync::mpsc::UnboundedReceiver;

fn engine(dir: &Path, settings: Settings) -> (OpenLora, openledger_model::Model) {
    let model = default_model();
    for (i, (name, rank, targets)) in [
        ("alpha", 8, &ALL[..]),
        ("beta", 4, &ALL[..2]),
        ("gamma", 16, &ALL[3..]),
    ]
    .into_iter()
    .enumerate()
    {
        random_adapter(&model, 10 + i as u64, rank, targets)
            .save(&dir.join(name))
            .unwrap();
    }
    let base = common::served_base();
    let source = Arc::new(DirSource::new(vec![dir.to_path_buf()]));
    let vocab = Vocab::new(&model.tokenizer);
    (
        OpenLora::start(base, vocab, source, "test", settings),
        model,
    )
}

fn request(
    model: &openledger_model::Model,
    prompt: &str,
    adapter: Option<&str>,
    max: usize,
) -> Request {
    Request {
        prompt: model.tokenizer.encode(prompt),
        adapters: adapter.map(|a| (a.to_string(), 1.0)).into_iter().collect(),
        max_tokens: max,
        params: Params::default(),
        deadline: None,
    }
}

/// Every token until the end, and how it ended.
fn collect(mut rx: UnboundedReceiver<Event>) -> (Vec<u32>, Finish, usize) {
    let mut tokens = Vec::new();
    loop {
        match rx.blocking_recv().expect("the stream ends with Done") {
            Event::Token { id, .. } => tokens.push(id),
            Event::Done {
                finish,
                cached_tokens,
                ..
            } => return (tokens, finish, cached_tokens),
            Event::Failed(e) => panic!("request failed: {e}"),
            Event::UnknownAdapter(name) => panic!("no adapter {name}"),
        }
    }
}

#[test]
fn a_mixed_batch_gives_each_request_its_tokens_alone() {
    let dir = tempfile::tempdir().unwrap();
    let settings = Settings {
        step_tokens: 8,       // prompts prefill in chunks between the others' decode tokens
        cache_bytes: 8 << 20, // alpha and gamma do not fit together: one is evicted and reloads
        ..Settings::default()
    };
    let (engine, model) = engine(dir.path(), settings);
    let jobs = [
        ("Name three colours of the rainbow, please", Some("alpha")),
        ("Hi", Some("beta")),
        (
            "Explain in one sentence why the sky looks blue during the day",
            None,
        ),
        ("The quick brown fox", Some("gamma")),
        ("What is 12 times 12?", Some("alpha")),
    ];
    let together: Vec<_> = jobs
        .iter()
        .map(|(p, a)| engine.submit(request(&model, p, *a, 12)).unwrap())
        .collect();
    let together: Vec<_> = together.into_iter().map(collect).collect();
    for ((p, a), (tokens, finish, _)) in jobs.iter().zip(&together) {
        let alone = collect(engine.submit(request(&model, p, *a, 12)).unwrap());
        assert_eq!(&alone.0, tokens, "{p:?} on {a:?}");
        assert_eq!(alone.1, *finish);
        assert!(!tokens.is_empty());
    }
    // The adapters change the answers.
    let base = collect(engine.submit(request(&model, jobs[0].0, None, 12)).unwrap());
    assert_ne!(base.0, together[0].0);
    let text = engine.metrics().render();
    assert!(text.contains("vllm:generation_tokens_total{model_name=\"test\"}"));
    let evictions = text
        .lines()
        .find(|l| l.starts_with("openlora_adapter_cache_evictions_total"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap();
    assert!(evictions > 0, "{text}");
}

#[test]
fn a_client_that_leaves_frees_its_place_and_the_queue_is_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let settings = Settings {
        max_batch: 1,
        queue_len: 1,
        ..Settings::default()
    };
    let (engine, model) = engine(dir.path(), settings);
    let mut long = engine
        .submit(request(&model, "Tell me a very long story", None, 100_000))
        .unwrap();
    assert!(matches!(long.blocking_recv(), Some(Event::Token { .. })));
    // The long one runs; one may wait; the next is refused.
    let waiting = engine
        .submit(request(&model, "Hello", Some("beta"), 4))
        .unwrap();
    let refused = engine.submit(request(&model, "Hello", None, 4));
    assert!(
        matches!(refused, Err(ServeError::QueueFull(_))),
        "{refused:?}"
    );
    // The client goes away: the waiting request runs to its end.
    drop(long);
    let (tokens, finish, _) = collect(waiting);
    assert_eq!((tokens.len(), finish), (4, Finish::Length));
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(engine.metrics().load(), (0, 0));
    // A deadline ends a request mid-answer.
    let mut late = request(&model, "Count to a million", None, 100_000);
    late.deadline = Some(std::time::Instant::now() + Duration::from_millis(300));
    late.params.ignore_eos = true;
    let (tokens, finish, _) = collect(engine.submit(late).unwrap());
    assert_eq!(finish, Finish::Deadline);
    assert!(!tokens.is_empty() && tokens.len() < 100_000);
    // An ensemble past the limit, and weights that are not numbers, are refused up front.
    let mut many = request(&model, "Hello", None, 4);
    many.adapters = vec![("alpha".to_string(), 0.1); 9];
    assert!(matches!(engine.submit(many), Err(ServeError::Invalid(_))));
    let mut nan = request(&model, "Hello", Some("alpha"), 4);
    nan.adapters[0].1 = f32::NAN;
    assert!(matches!(engine.submit(nan), Err(ServeError::Invalid(_))));
    // Unknown adapters are refused up front.
    let unknown = engine.submit(request(&model, "Hello", Some("../alpha"), 4));
    assert!(
        matches!(unknown, Err(ServeError::UnknownAdapter(_))),
        "{unknown:?}"
    );
}

#[test]
fn a_hot_adapter_does_not_starve_a_cold_one_and_prefixes_are_reused() {
    let dir = tempfile::tempdir().unwrap();
    let settings = Settings {
        max_batch: 1,
        ..Settings::default()
    };
    let (engine, model) = engine(dir.path(), settings);
    // Occupy the batch, queue five on alpha, then one on beta.
    let first = engine
        .submit(request(&model, "One", Some("alpha"), 6))
        .unwrap();
    let hot: Vec<_> = (0..5)
        .map(|i| {
            engine
                .submit(request(&model, &format!("Hot {i}"), Some("alpha"), 6))
                .unwrap()
        })
        .collect();
    let cold = engine
        .submit(request(&model, "Cold", Some("beta"), 6))
        .unwrap();
    collect(first);
    // With one place in the batch, requests run one after another: beta's turn comes after
    // at most one more alpha request, not after all five.
    let (order_tx, order_rx) = std::sync::mpsc::channel();
    let mut handles = Vec::new();
    for (label, rx) in hot.into_iter().map(|r| ("hot", r)).chain([("cold", cold)]) {
        let tx = order_tx.clone();
        handles.push(std::thread::spawn(move || {
            collect(rx);
            tx.send(label).unwrap();
        }));
    }
    drop(order_tx);
    let order: Vec<&str> = order_rx.iter().collect();
    let cold_at = order.iter().position(|&l| l == "cold").unwrap();
    assert!(cold_at <= 1, "{order:?}");

    // A long shared prefix is served from the prefix cache, with the same answer.
    let system = "You are a careful assistant who answers in one short sentence. ".repeat(4);
    let a = collect(
        engine
            .submit(request(
                &model,
                &format!("{system}Who wrote Hamlet?"),
                None,
                8,
            ))
            .unwrap(),
    );
    let b = collect(
        engine
            .submit(request(
                &model,
                &format!("{system}Who wrote Hamlet?"),
                None,
                8,
            ))
            .unwrap(),
    );
    let c = collect(
        engine
            .submit(request(&model, &format!("{system}Name a planet."), None, 8))
            .unwrap(),
    );
    assert_eq!(a.2, 0);
    assert!(b.2 > 0 && c.2 >= 16, "cached {} and {}", b.2, c.2);
    assert_eq!(a.0, b.0);
}
