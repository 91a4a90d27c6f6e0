//! Cold adapter loads as the server's loader thread does them (read the directory, convert
//! for serving), on an otherwise idle process. Prints the p50 and p99 in milliseconds.
//!
//! `cargo run --release -p openledger-openlora --example load -- MODEL.gguf ADAPTERS_DIR [COUNT]`

use openledger_model::lora::LoraAdapter;
use openledger_openlora::engine::{Base, ServedAdapter};

fn main() {
    let mut args = std::env::args().skip(1);
    let usage = "usage: load MODEL.gguf ADAPTERS_DIR [COUNT]";
    let model = args.next().expect(usage);
    let dir = std::path::PathBuf::from(args.next().expect(usage));
    let count: usize = args.next().map_or(64, |s| s.parse().expect("a count"));
    let raw = openledger_model::weights::read_gguf_raw(std::path::Path::new(&model))
        .expect("reading the model");
    let base = Base::from_gguf(&raw).expect("a servable model");
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .expect("the adapters' directory")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("adapter_config.json").exists())
        .collect();
    names.sort();
    let mut ms: Vec<f64> = names
        .iter()
        .take(count)
        .map(|path| {
            let t = std::time::Instant::now();
            let adapter = LoraAdapter::load(path).expect("an adapter");
            std::hint::black_box(ServedAdapter::new(&adapter, &base).expect("servable"));
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    ms.sort_by(f64::total_cmp);
    let at = |q: f64| ms[((ms.len() - 1) as f64 * q).round() as usize];
    println!(
        "{} loads: p50 {:.2} ms, p99 {:.2} ms",
        ms.len(),
        at(0.5),
        at(0.99)
    );
}
