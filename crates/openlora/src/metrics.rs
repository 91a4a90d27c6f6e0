//! Serving metrics in Prometheus's text format, under vLLM's names (so dashboards and
//! gateways written for vLLM read them unchanged), plus the adapter cache's own.

use parking_lot::Mutex;
use std::{
    fmt::Write,
    sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed},
};

const LATENCY_BUCKETS: [f64; 16] = [
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0, 30.0,
];

struct Histogram {
    counts: [u64; LATENCY_BUCKETS.len()],
    sum: f64,
    count: u64,
}

impl Histogram {
    const fn new() -> Self {
        Self {
            counts: [0; LATENCY_BUCKETS.len()],
            sum: 0.0,
            count: 0,
        }
    }

    fn observe(&mut self, v: f64) {
        for (c, b) in self.counts.iter_mut().zip(LATENCY_BUCKETS) {
            if v <= b {
                *c += 1;
            }
        }
        self.sum += v;
        self.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, help: &str, labels: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (c, b) in self.counts.iter().zip(LATENCY_BUCKETS) {
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{b}\"}} {c}");
        }
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {}", self.count);
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", self.sum);
        let _ = writeln!(out, "{name}_count{{{labels}}} {}", self.count);
    }
}

#[derive(Default)]
struct Lora {
    running: Vec<String>,
    waiting: Vec<String>,
}

/// What the engine counts.
pub struct Metrics {
    model: String,
    max_lora: usize,
    running: AtomicUsize,
    waiting: AtomicUsize,
    prompt_tokens: AtomicU64,
    generation_tokens: AtomicU64,
    hits: AtomicU64,
    misses: AtomicU64,
    evictions: AtomicU64,
    resident: AtomicUsize,
    resident_bytes: AtomicUsize,
    ttft: Mutex<Histogram>,
    itl: Mutex<Histogram>,
    e2e: Mutex<Histogram>,
    queue: Mutex<Histogram>,
    load: Mutex<Histogram>,
    lora: Mutex<Lora>,
}

impl Metrics {
    pub(crate) fn new(model: &str, max_lora: usize) -> Self {
        Self {
            model: model.replace(['"', '\\', '\n'], "_"),
            max_lora,
            running: AtomicUsize::new(0),
            waiting: AtomicUsize::new(0),
            prompt_tokens: AtomicU64::new(0),
            generation_tokens: AtomicU64::new(0),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
            resident: AtomicUsize::new(0),
            resident_bytes: AtomicUsize::new(0),
            ttft: Mutex::new(Histogram::new()),
            itl: Mutex::new(Histogram::new()),
            e2e: Mutex::new(Histogram::new()),
            queue: Mutex::new(Histogram::new()),
            load: Mutex::new(Histogram::new()),
            lora: Mutex::new(Lora::default()),
        }
    }

    pub(crate) fn cache_hit(&self) {
        self.hits.fetch_add(1, Relaxed);
    }
    pub(crate) fn cache_miss(&self) {
        self.misses.fetch_add(1, Relaxed);
    }
    pub(crate) fn cache_eviction(&self) {
        self.evictions.fetch_add(1, Relaxed);
    }
    pub(crate) fn set_resident(&self, adapters: usize, bytes: usize) {
        self.resident.store(adapters, Relaxed);
        self.resident_bytes.store(bytes, Relaxed);
    }
    pub(crate) fn load_time(&self, seconds: f64) {
        self.load.lock().observe(seconds);
    }
    pub(crate) fn queue_time(&self, seconds: f64) {
        self.queue.lock().observe(seconds);
    }
    pub(crate) fn first_token(&self, seconds: f64) {
        self.ttft.lock().observe(seconds);
    }
    pub(crate) fn inter_token(&self, seconds: f64) {
        self.itl.lock().observe(seconds);
    }
    pub(crate) fn finished(&self, seconds: f64, prompt: usize, generated: usize) {
        self.e2e.lock().observe(seconds);
        self.prompt_tokens.fetch_add(prompt as u64, Relaxed);
        self.generation_tokens.fetch_add(generated as u64, Relaxed);
    }
    pub(crate) fn set_load(
        &self,
        running: usize,
        waiting: usize,
        lora_running: Vec<String>,
        lora_waiting: Vec<String>,
    ) {
        self.running.store(running, Relaxed);
        self.waiting.store(waiting, Relaxed);
        *self.lora.lock() = Lora {
            running: lora_running,
            waiting: lora_waiting,
        };
    }

    /// Requests running and waiting now.
    pub fn load(&self) -> (usize, usize) {
        (self.running.load(Relaxed), self.waiting.load(Relaxed))
    }

    /// Cache hits and misses so far.
    pub fn cache_counts(&self) -> (u64, u64) {
        (self.hits.load(Relaxed), self.misses.load(Relaxed))
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let l = format!("model_name=\"{}\"", self.model);
        let gauge = |out: &mut String, name: &str, help: &str, v: String| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name}{{{l}}} {v}"
            );
        };
        let counter = |out: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name}{{{l}}} {v}"
            );
        };
        gauge(
            &mut out,
            "vllm:num_requests_running",
            "Requests in the running batch.",
            self.running.load(Relaxed).to_string(),
        );
        gauge(
            &mut out,
            "vllm:num_requests_waiting",
            "Requests waiting to run.",
            self.waiting.load(Relaxed).to_string(),
        );
        counter(
            &mut out,
            "vllm:prompt_tokens_total",
            "Prompt tokens processed.",
            self.prompt_tokens.load(Relaxed),
        );
        counter(
            &mut out,
            "vllm:generation_tokens_total",
            "Tokens generated.",
            self.generation_tokens.load(Relaxed),
        );
        self.ttft.lock().render(
            &mut out,
            "vllm:time_to_first_token_seconds",
            "Time to first token.",
            &l,
        );
        self.itl.lock().render(
            &mut out,
            "vllm:inter_token_latency_seconds",
            "Time between tokens of a stream.",
            &l,
        );
        self.e2e.lock().render(
            &mut out,
            "vllm:e2e_request_latency_seconds",
            "Request latency, arrival to last token.",
            &l,
        );
        self.queue.lock().render(
            &mut out,
            "vllm:request_queue_time_seconds",
            "Time waiting before running.",
            &l,
        );
        {
            let lora = self.lora.lock();
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64());
            let _ = writeln!(
                out,
                "# HELP vllm:lora_requests_info Adapters of running and waiting requests.\n# TYPE vllm:lora_requests_info gauge\nvllm:lora_requests_info{{max_lora=\"{}\",running_lora_adapters=\"{}\",waiting_lora_adapters=\"{}\"}} {now}",
                self.max_lora,
                label(&lora.running),
                label(&lora.waiting)
            );
        }
        self.load.lock().render(
            &mut out,
            "openlora_adapter_load_seconds",
            "Time to load an adapter into the cache.",
            &l,
        );
        counter(
            &mut out,
            "openlora_adapter_cache_hits_total",
            "Adapter lookups served from memory.",
            self.hits.load(Relaxed),
        );
        counter(
            &mut out,
            "openlora_adapter_cache_misses_total",
            "Adapter lookups that had to load.",
            self.misses.load(Relaxed),
        );
        counter(
            &mut out,
            "openlora_adapter_cache_evictions_total",
            "Adapters evicted to make room.",
            self.evictions.load(Relaxed),
        );
        gauge(
            &mut out,
            "openlora_adapter_cache_resident_bytes",
            "Bytes of resident adapters.",
            self.resident_bytes.load(Relaxed).to_string(),
        );
        gauge(
            &mut out,
            "openlora_adapter_cache_resident_adapters",
            "Resident adapters.",
            self.resident.load(Relaxed).to_string(),
        );
        out
    }
}

fn label(names: &[String]) -> String {
    let mut names: Vec<&str> = names.iter().map(String::as_str).collect();
    names.sort_unstable();
    names.dedup();
    names.join(",").replace(['"', '\\', '\n'], "_")
}
