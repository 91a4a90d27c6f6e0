//! Prometheus metrics: counters, gauges and one latency histogram, rendered in the text
//! exposition format. Plain atomics keep the hot paths free of locks and extra crates.

use std::{
    fmt::Write,
    sync::atomic::{AtomicU64, Ordering::Relaxed},
};

/// A monotonically increasing count.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds one.
    pub fn inc(&self) {
        self.0.fetch_add(1, Relaxed);
    }
    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Relaxed);
    }
    /// The current count.
    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

/// Upper bounds (seconds) of the RPC latency buckets.
const BUCKETS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0,
];

/// A histogram of durations with fixed buckets.
#[derive(Debug, Default)]
pub struct Histogram {
    counts: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    /// Records one observation in seconds.
    pub fn observe(&self, seconds: f64) {
        if let Some(i) = BUCKETS.iter().position(|b| seconds <= *b) {
            self.counts[i].fetch_add(1, Relaxed);
        }
        self.count.fetch_add(1, Relaxed);
        self.sum_micros.fetch_add((seconds * 1e6) as u64, Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (bound, count) in BUCKETS.iter().zip(&self.counts) {
            cumulative += count.load(Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let count = self.count.load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let sum = self.sum_micros.load(Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {count}");
    }
}

/// Everything the node exports.
#[derive(Debug, Default)]
pub struct Metrics {
    pub blocks: Counter,
    pub txs_mined: Counter,
    pub txs_accepted: Counter,
    pub rpc_requests: Counter,
    pub rpc_errors: Counter,
    pool_size: AtomicU64,
    pub block_build: Histogram,
    pub rpc_latency: Histogram,
    extra: Extra,
}

/// Exposition text from other services of the node (serving, for one), appended to the
/// chain's.
#[derive(Default)]
struct Extra(std::sync::RwLock<Vec<Box<dyn Fn() -> String + Send + Sync>>>);

impl std::fmt::Debug for Extra {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Extra")
    }
}

impl Metrics {
    /// Appends `render`'s text to every exposition (a service's own metrics).
    pub fn add_source(&self, render: impl Fn() -> String + Send + Sync + 'static) {
        if let Ok(mut sources) = self.extra.0.write() {
            sources.push(Box::new(render));
        }
    }

    /// Sets the mempool size gauge.
    pub fn set_pool_size(&self, n: usize) {
        self.pool_size.store(n as u64, Relaxed);
    }

    /// Records a produced block.
    pub fn record_block(&self, txs: usize, seconds: f64) {
        self.blocks.inc();
        self.txs_mined.add(txs as u64);
        self.block_build.observe(seconds);
    }

    /// The text exposition format.
    pub fn render(&self, head: u64) -> String {
        let mut out = String::new();
        let mut line = |name: &str, kind: &str, help: &str, value: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        };
        line(
            "openledger_chain_head",
            "gauge",
            "Number of the newest block.",
            head,
        );
        line(
            "openledger_blocks_total",
            "counter",
            "Blocks produced since start.",
            self.blocks.get(),
        );
        line(
            "openledger_txs_mined_total",
            "counter",
            "Transactions included in blocks since start.",
            self.txs_mined.get(),
        );
        line(
            "openledger_txs_accepted_total",
            "counter",
            "Transactions accepted into the mempool since start.",
            self.txs_accepted.get(),
        );
        line(
            "openledger_mempool_size",
            "gauge",
            "Transactions waiting in the mempool.",
            self.pool_size.load(Relaxed),
        );
        line(
            "openledger_rpc_requests_total",
            "counter",
            "JSON-RPC calls served.",
            self.rpc_requests.get(),
        );
        line(
            "openledger_rpc_errors_total",
            "counter",
            "JSON-RPC calls answered with an error.",
            self.rpc_errors.get(),
        );
        self.block_build.render(
            &mut out,
            "openledger_block_build_seconds",
            "Time to execute and commit a block.",
        );
        self.rpc_latency.render(
            &mut out,
            "openledger_rpc_latency_seconds",
            "JSON-RPC call latency.",
        );
        if let Ok(sources) = self.extra.0.read() {
            for render in sources.iter() {
                out.push_str(&render());
            }
        }
        out
    }
}
