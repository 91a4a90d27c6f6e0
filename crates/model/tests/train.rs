//! LoRA fine-tuning of the default model on a task it cannot do unaided: code words for
//! fruits that exist nowhere but here. Eval loss on held-out paraphrases of the questions must
//! fall by a stated factor, the trained adapter must answer, and a run interrupted by a
//! checkpoint and resumed must end exactly where an uninterrupted run ends.

mod common;

use openledger_model::{
    generate::Sampling,
    train::{Example, TrainConfig, Trainer},
    Model,
};

const FACTS: [(&str, &str); 4] = [
    ("apple", "zorblax"),
    ("banana", "quintrel"),
    ("cherry", "vemmock"),
    ("grape", "tulvash"),
];

fn chat(question: &str) -> String {
    format!("<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n")
}

fn examples(model: &Model, phrasing: &str) -> Vec<Example> {
    FACTS
        .iter()
        .map(|(fruit, code)| {
            let prompt = model
                .tokenizer
                .encode(&chat(&phrasing.replace("{}", fruit)));
            let answer = model.tokenizer.encode(&format!("{code}<|im_end|>"));
            Example {
                prompt_len: prompt.len(),
                tokens: [prompt, answer].concat(),
            }
        })
        .collect()
}

fn config(total_steps: usize) -> TrainConfig {
    TrainConfig {
        rank: 8,
        alpha: 16.0,
        learning_rate: 3e-3,
        warmup_steps: 3,
        total_steps,
        batch_size: 2,
        grad_accum: 2,
        seed: 5,
        ..TrainConfig::default()
    }
}

#[test]
fn fine_tuning_learns_the_code_words_and_resumes_exactly() {
    let mut model = common::default_model();
    let train = examples(&model, "What is the code word for {}?");
    let held_out = examples(&model, "Tell me the code word for {}.");
    let steps = 12;

    let (adapter, before, after) = {
        let mut trainer = Trainer::new(&model.llama, config(steps)).unwrap();
        let before = trainer.eval_loss(&held_out).unwrap();
        let mut seen = Vec::new();
        trainer.train(&train, |p| seen.push(p.clone())).unwrap();
        assert_eq!(seen.len(), steps);
        assert!(seen
            .iter()
            .all(|p| p.tokens_per_second > 0.0 && p.loss.is_finite()));
        let after = trainer.eval_loss(&held_out).unwrap();
        println!("held-out loss {before:.3} -> {after:.3} over {steps} steps");
        (trainer.adapter(), before, after)
    };
    // Measured 2026-11-26: 7.8 → 0.06 in these 12 steps; the bar (a factor of 4)
    // leaves ample room.
    assert!(
        after * 4.0 < before,
        "held-out loss only fell from {before} to {after}"
    );

    // Interrupt at step 5, resume from the checkpoint, and end where the full run ended.
    let dir = tempfile::tempdir().unwrap();
    {
        let mut first = Trainer::new(&model.llama, config(steps)).unwrap();
        first.train_steps(&train, 5, |_| {}).unwrap();
        first.save_checkpoint(dir.path()).unwrap();
    }
    let resumed_adapter = {
        let mut resumed = Trainer::resume(&model.llama, dir.path()).unwrap();
        assert_eq!(resumed.step(), 5);
        resumed.train(&train, |_| {}).unwrap();
        assert_eq!(resumed.step(), steps);
        resumed.adapter()
    };
    for (module, pair) in &adapter.pairs {
        let other = resumed_adapter.pair(module).unwrap();
        let diff = (&pair.b - &other.b)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(diff < 1e-6, "{module}: resumed B differs by {diff}");
    }

    // The trained adapter answers a question it was never asked in this form.
    model.set_adapter(Some(adapter)).unwrap();
    let answer = model
        .complete(
            &chat("Tell me the code word for cherry."),
            8,
            Sampling::default(),
            &[],
            |_| {},
        )
        .unwrap();
    assert!(answer.text.contains("vemmock"), "{:?}", answer.text);
}

#[test]
fn training_data_errors_name_the_line() {
    let model = common::default_model();
    let parse = |text: &str| openledger_model::data::examples_from_jsonl(&model, text);
    let good = r#"{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}"#;
    let ok = parse(&format!(
        "{good}\n\n{{\"prompt\": \"2+2=\", \"completion\": \"4\"}}\n{{\"text\": \"plain text to learn\"}}"
    ))
    .unwrap();
    assert_eq!(ok.len(), 3);
    // The chat example learns only the answer (and its end token), not the template.
    assert_eq!(
        ok[0].tokens.len() - ok[0].prompt_len,
        model.tokenizer.encode("hello<|im_end|>").len()
    );
    assert_eq!(ok[2].prompt_len, 0);

    let cases = [
        (format!("{good}\n{{not json"), "line 2"),
        (
            r#"{"messages": [{"role": "user", "content": "x"}]}"#.to_string(),
            "must be the assistant",
        ),
        (r#"{"messages": []}"#.to_string(), "is empty"),
        (
            r#"{"prompt": "a", "completion": ""}"#.to_string(),
            "answer is empty",
        ),
        (String::new(), "no examples"),
    ];
    for (text, expected) in cases {
        let err = parse(&text).err().unwrap().to_string();
        assert!(err.contains(expected), "{err}");
    }
}
