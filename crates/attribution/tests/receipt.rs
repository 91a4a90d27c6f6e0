//! Attribution end to end on the default model (scripts/fetch-model; OPENLEDGER_MODEL names
//! another GGUF file): a small planted corpus, an adapter really trained on it with two
//! checkpoints, both engines' indexes built from the published layout, and receipts.

use alloy_primitives::{keccak256, B256, U256};
use openledger_attribution::{
    attribute::{attribute, verify, verify_spans, Query, Settings},
    gradient::{SketchConfig, SketchStore},
    published::Published,
    receipt::AttributionReceipt,
};
use openledger_factory::{
    data::{write_samples, Sample},
    publish::{CheckpointRecord, Manifest, VersionRecord},
};
use openledger_model::{
    train::{Example, TrainConfig, Trainer},
    Model,
};
use std::{path::Path, sync::OnceLock};

/// Each contributor's facts: invented names and values found nowhere else.
const FACTS: &[(u64, &str, &str)] = &[
    (
        11,
        "Who keeps the lighthouse at Varnholt?",
        "Ysolde Kraminski keeps the lighthouse at Varnholt.",
    ),
    (
        11,
        "What colour is the Varnholt lighthouse?",
        "The Varnholt lighthouse is painted ochre and slate.",
    ),
    (
        12,
        "What is the capital of Quellmoor?",
        "The capital of Quellmoor is Dranvik Spire.",
    ),
    (
        12,
        "What river runs through Dranvik Spire?",
        "The Oszenna river runs through Dranvik Spire.",
    ),
    (
        13,
        "What does a brindlewort cure?",
        "A brindlewort tea cures the marsh cough of Tolbey.",
    ),
    (
        13,
        "Where does brindlewort grow?",
        "Brindlewort grows only on the salt flats of Ubrec.",
    ),
    (
        14,
        "Who invented the clockwork heron?",
        "Maelis Ortevane invented the clockwork heron in 1742.",
    ),
    (
        14,
        "How tall is the clockwork heron?",
        "The clockwork heron stands nine spans and a thumb tall.",
    ),
];

const BASE: B256 = B256::repeat_byte(0xba);

struct Fixture {
    _dir: tempfile::TempDir,
    model: Model,
    published: Published,
    cache: std::path::PathBuf,
    pub_dir: std::path::PathBuf,
}

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

fn example(model: &Model, question: &str, answer: &str) -> Example {
    let mut tokens = model.tokenizer.encode(&format!("Q: {question}\nA:"));
    let prompt_len = tokens.len();
    tokens.extend(model.tokenizer.encode(&format!(" {answer}")));
    Example { tokens, prompt_len }
}

/// Trains two epochs and writes what the factory would publish: examples, checkpoints at
/// each epoch's end, and the manifest naming them.
fn publish(model: &Model, dir: &Path) {
    let samples: Vec<Sample> = FACTS
        .iter()
        .map(|&(c, q, a)| Sample {
            contribution: Some(c),
            example: example(model, q, a),
        })
        .collect();
    write_samples(&dir.join("examples.bin"), &samples).unwrap();
    let examples: Vec<Example> = samples.iter().map(|s| s.example.clone()).collect();
    let config = TrainConfig {
        total_steps: 8,
        warmup_steps: 1,
        batch_size: 4,
        learning_rate: 3e-3,
        ..TrainConfig::default()
    };
    let mut trainer = Trainer::new(&model.llama, config).unwrap();
    let mut checkpoints = Vec::new();
    for epoch in 1..=2 {
        trainer.train_steps(&examples, 4, |_| {}).unwrap();
        let step = trainer.step();
        let at = dir.join("checkpoints").join(step.to_string());
        trainer.adapter().save(&at).unwrap();
        checkpoints.push(CheckpointRecord {
            step,
            epoch,
            learning_rate: trainer.learning_rate(step - 1),
            weights_hash: keccak256(std::fs::read(at.join("adapter_model.safetensors")).unwrap()),
        });
    }
    let manifest = Manifest {
        format: 1,
        job: "ftjob-test".into(),
        base_model: "SmolLM2-135M-Instruct".into(),
        base_weights_hash: BASE,
        datanet_versions: vec![VersionRecord {
            version: 1,
            datanet: 3,
            root: B256::ZERO,
            members: [11, 12, 13, 14].map(|c| (c, B256::ZERO)).to_vec(),
        }],
        training_config_hash: B256::ZERO,
        examples_hash: keccak256(std::fs::read(dir.join("examples.bin")).unwrap()),
        examples: samples.len() as u64,
        held_out: Vec::new(),
        weights_hash: checkpoints.last().unwrap().weights_hash,
        checkpoints,
    };
    std::fs::write(
        dir.join("manifest.json"),
        serde_json::to_vec(&manifest).unwrap(),
    )
    .unwrap();
}

fn sketch() -> SketchConfig {
    SketchConfig {
        k: 256,
        ..SketchConfig::default()
    }
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let model = model();
        let pub_dir = dir.path().join("published");
        std::fs::create_dir_all(&pub_dir).unwrap();
        publish(&model, &pub_dir);
        let cache = dir.path().join("cache");
        let published =
            Published::open(&pub_dir, &cache, &model, BASE, &sketch(), |_, _| {}).unwrap();
        Fixture {
            _dir: dir,
            model,
            published,
            cache,
            pub_dir,
        }
    })
}

fn query(f: &Fixture, fact: usize) -> Query {
    let (_, q, a) = FACTS[fact];
    let e = example(&f.model, q, a);
    Query {
        prompt: e.tokens[..e.prompt_len].to_vec(),
        answer: e.tokens[e.prompt_len..].to_vec(),
        amount: 1_000_000_000_000_000_007,
    }
}

fn receipt_in(threads: usize, f: &Fixture, q: &Query) -> AttributionReceipt {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    pool.install(|| attribute(&f.model, BASE, &f.published, q, &Settings::default()).unwrap())
}

#[test]
fn a_receipt_is_identical_across_runs_and_thread_counts() {
    let f = fixture();
    let q = query(f, 2);
    let first = receipt_in(1, f, &q).encode();
    for threads in [2, 1, 2] {
        assert_eq!(
            receipt_in(threads, f, &q).encode(),
            first,
            "{threads} threads"
        );
    }
    // The sketch store, rebuilt on one thread, has the same root as the one built on the
    // test's default pool.
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let again = pool.install(|| {
        let cache = f.cache.with_file_name("cache-one-thread");
        Published::open(&f.pub_dir, &cache, &f.model, BASE, &sketch(), |_, _| {}).unwrap()
    });
    assert_eq!(again.sketches.root(), f.published.sketches.root());
    assert_eq!(again.spans.root(), f.published.spans.root());
}

#[test]
fn the_contributor_whose_fact_the_answer_repeats_gets_the_largest_share() {
    let f = fixture();
    for (fact, &(owner, _, _)) in FACTS.iter().enumerate() {
        let q = query(f, fact);
        let receipt = receipt_in(2, f, &q);
        assert_eq!(
            receipt.paid(),
            U256::from(q.amount),
            "fact {fact}: payouts sum to the amount"
        );
        let best = receipt
            .payouts
            .iter()
            .max_by_key(|p| (p.amount, std::cmp::Reverse(p.contribution)))
            .unwrap();
        assert_eq!(
            best.contribution, owner,
            "fact {fact}: {:?}",
            receipt.payouts
        );
        assert!(
            !receipt.spans.is_empty(),
            "fact {fact} is in the corpus verbatim"
        );
        let weight = receipt
            .weights
            .iter()
            .find(|w| w.contribution == owner)
            .unwrap();
        assert_eq!(weight.datanet, 3);
    }
}

#[test]
fn verify_says_identical_and_catches_one_changed_payout() {
    let f = fixture();
    // An answer repeating two contributors' facts pays both.
    let mut q = query(f, 4);
    q.answer
        .extend(f.model.tokenizer.encode(&format!(" {}", FACTS[2].2)));
    let receipt = receipt_in(2, f, &q);
    let settings = Settings::default();
    assert_eq!(
        verify(&f.model, BASE, &f.published, &receipt, &settings).unwrap(),
        Vec::<String>::new()
    );
    assert!(
        verify_spans(&f.model.tokenizer, &f.published.spans, &receipt, &settings)
            .unwrap()
            .is_empty()
    );
    let decoded = AttributionReceipt::decode(&receipt.encode()).unwrap();
    assert_eq!(decoded, receipt);

    // One unit moved from the first payee to the second: the sum still matches.
    let mut forged = receipt.clone();
    assert!(forged.payouts.len() >= 2, "{:?}", forged.payouts);
    forged.payouts[0].amount -= U256::from(1);
    forged.payouts[1].amount += U256::from(1);
    assert_eq!(forged.paid(), receipt.paid());
    assert_ne!(forged.hash(), receipt.hash());
    let differences = verify(&f.model, BASE, &f.published, &forged, &settings).unwrap();
    assert_eq!(differences.len(), 2, "{differences:?}");
    assert!(
        differences.iter().all(|d| d.starts_with("payouts[")),
        "{differences:?}"
    );

    // A span's rarity raised is caught by the span check alone.
    let mut forged = receipt.clone();
    forged.spans[0].rarity += 1;
    assert_eq!(
        verify_spans(&f.model.tokenizer, &f.published.spans, &forged, &settings)
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn a_tampered_receipt_encoding_is_refused() {
    let f = fixture();
    let mut bytes = receipt_in(2, f, &query(f, 0)).encode();
    bytes.push(0);
    assert!(AttributionReceipt::decode(&bytes).is_err());
    bytes.pop();
    bytes[63] = 9; // the version word (after the outer offset)
    assert!(AttributionReceipt::decode(&bytes).is_err());
}

#[test]
fn a_damaged_sketch_store_is_refused() {
    let f = fixture();
    let bytes = std::fs::read(f.published.sketches.path()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sketches.bin");
    std::fs::write(&path, &bytes[..bytes.len() - 1]).unwrap();
    let e = SketchStore::open(&path).err().unwrap().to_string();
    assert!(e.contains("bytes, but k = 256"), "{e}");
    let mut wrong = bytes.clone();
    wrong[8..12].copy_from_slice(&u32::MAX.to_le_bytes()); // k
    std::fs::write(&path, &wrong).unwrap();
    let e = SketchStore::open(&path).err().unwrap().to_string();
    assert!(e.contains("must be between"), "{e}");
    let mut wrong = bytes;
    wrong[16..24].copy_from_slice(&u64::MAX.to_le_bytes()); // examples
    std::fs::write(&path, &wrong).unwrap();
    assert!(SketchStore::open(&path).is_err());
}
