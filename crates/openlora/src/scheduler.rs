//! The step loop: continuous batching across adapters. One thread owns the running batch;
//! requests join it at any step (after their adapters are resident), leave it the step they
//! finish or their client goes away, and long prompts are prefilled a chunk per step between
//! the decode tokens of the others. Waiting requests queue per adapter mix and are admitted
//! round-robin across mixes, so a hot adapter cannot starve the rest.

use crate::ServeError;
use crate::{
    cache::{loader, AdapterCache, AdapterSource, LoadError},
    engine::{Base, Chunk, Mix, SeqCache, ServedAdapter},
    metrics::Metrics,
    prefix::PrefixCache,
    request::{Event, Finish, Request},
    sample::{Picker, Vocab},
    Settings,
};
use std::{
    collections::{HashMap, HashSet, VecDeque},
    panic::{catch_unwind, AssertUnwindSafe},
    sync::{
        atomic::{AtomicUsize, Ordering},
        mpsc, Arc,
    },
    time::{Duration, Instant},
};
use tokio::sync::mpsc::UnboundedSender;

/// Adapter loads in flight at most.
const MAX_LOADING: usize = 64;

/// Failed adapter loads remembered at most (waiting requests on a forgotten one load again).
const MAX_FAILED: usize = 1024;

pub(crate) enum Command {
    Submit(Box<Pending>),
    Loaded {
        name: String,
        result: Result<Arc<ServedAdapter>, LoadError>,
        seconds: f64,
    },
    Prefetch {
        name: String,
        pin: bool,
    },
    Unpin(String),
    Evict(String),
}

pub(crate) struct Pending {
    pub request: Request,
    pub events: UnboundedSender<Event>,
    pub arrived: Instant,
}

impl Pending {
    /// The mix's key: names and weights, as given.
    fn key(&self) -> String {
        let mut key = String::new();
        for (name, w) in &self.request.adapters {
            key.push_str(name);
            key.push('\u{1f}');
            key.push_str(&w.to_bits().to_string());
            key.push('\u{1e}');
        }
        key
    }
}

struct Running {
    pending: Pending,
    key: String,
    mix: Mix,
    cache: SeqCache,
    /// Prompt, then the tokens generated so far.
    tokens: Vec<u32>,
    prompt_len: usize,
    picker: Picker,
    cached: usize,
    last_token: Option<Instant>,
}

impl Running {
    fn generated(&self) -> usize {
        self.tokens.len() - self.prompt_len
    }

    fn reservation(&self, per_position: usize) -> usize {
        (self.prompt_len + self.pending.request.max_tokens) * per_position
    }
}

pub(crate) struct Scheduler {
    base: Arc<Base>,
    vocab: Arc<Vocab>,
    settings: Settings,
    metrics: Arc<Metrics>,
    queued: Arc<AtomicUsize>,
    commands: mpsc::Receiver<Command>,
    loads: mpsc::Sender<String>,
    cache: AdapterCache,
    prefix: PrefixCache,
    /// Waiting requests per mix, and the mixes in round-robin order.
    queues: HashMap<String, VecDeque<Pending>>,
    ring: VecDeque<String>,
    loading: HashSet<String>,
    pins: HashSet<String>,
    failed: HashMap<String, LoadError>,
    running: Vec<Running>,
}

impl Scheduler {
    #[allow(clippy::too_many_arguments)] // the loop's whole world, built once
    pub fn start(
        base: Arc<Base>,
        vocab: Arc<Vocab>,
        source: Arc<dyn AdapterSource>,
        settings: Settings,
        metrics: Arc<Metrics>,
        queued: Arc<AtomicUsize>,
        commands: mpsc::Receiver<Command>,
        back: mpsc::Sender<Command>,
    ) {
        let (loads, jobs) = mpsc::channel();
        loader(source, base.clone(), jobs, move |name, result, seconds| {
            let _ = back.send(Command::Loaded {
                name,
                result,
                seconds,
            });
        });
        let scheduler = Scheduler {
            cache: AdapterCache::new(settings.cache_bytes, metrics.clone()),
            prefix: PrefixCache::new(settings.prefix_cache_bytes),
            base,
            vocab,
            settings,
            metrics,
            queued,
            commands,
            loads,
            queues: HashMap::new(),
            ring: VecDeque::new(),
            loading: HashSet::new(),
            pins: HashSet::new(),
            failed: HashMap::new(),
            running: Vec::new(),
        };
        std::thread::Builder::new()
            .name("openlora-scheduler".into())
            .spawn(move || scheduler.run())
            .expect("spawning the scheduler");
    }

    fn run(mut self) {
        loop {
            if self.running.is_empty() {
                // Nothing to step: wait for work (waking now and then for deadlines and
                // clients that left while waiting).
                let wait = if self.ring.is_empty() {
                    Duration::from_secs(3600)
                } else {
                    Duration::from_millis(50)
                };
                match self.commands.recv_timeout(wait) {
                    Ok(command) => self.handle(command),
                    Err(mpsc::RecvTimeoutError::Timeout) => {}
                    Err(mpsc::RecvTimeoutError::Disconnected) => return,
                }
            }
            while let Ok(command) = self.commands.try_recv() {
                self.handle(command);
            }
            self.reap();
            self.admit();
            if !self.running.is_empty() {
                self.step();
            }
            self.publish();
        }
    }

    fn handle(&mut self, command: Command) {
        match command {
            Command::Submit(pending) => {
                for (name, _) in &pending.request.adapters {
                    if self.cache.contains(name) {
                        self.metrics.cache_hit();
                    } else {
                        self.metrics.cache_miss();
                        self.request_load(name);
                    }
                }
                let key = pending.key();
                // One turn per mix: the ring holds each key once (at most queue_len keys).
                if !self.ring.contains(&key) {
                    self.ring.push_back(key.clone());
                }
                self.queues.entry(key).or_default().push_back(*pending);
            }
            Command::Loaded {
                name,
                result,
                seconds,
            } => {
                self.loading.remove(&name);
                let result = result.and_then(|a| {
                    self.cache
                        .insert(&name, a, self.pins.contains(&name))
                        .map_err(|e| LoadError::Failed(e.to_string()))
                });
                match result {
                    Ok(()) => {
                        self.metrics.load_time(seconds);
                        self.failed.remove(&name);
                    }
                    Err(e) => {
                        tracing::warn!(adapter = %name, error = ?e, "adapter failed to load");
                        // Strangers can name any number of missing adapters: keep few.
                        if self.failed.len() >= MAX_FAILED {
                            self.failed.clear();
                        }
                        self.failed.insert(name, e);
                    }
                }
            }
            Command::Prefetch { name, pin } => {
                if pin {
                    self.pins.insert(name.clone());
                    self.cache.pin(&name, true);
                }
                if !self.cache.contains(&name) {
                    self.request_load(&name);
                }
            }
            Command::Unpin(name) => {
                self.pins.remove(&name);
                self.cache.pin(&name, false);
            }
            Command::Evict(name) => {
                self.pins.remove(&name);
                self.cache.remove(&name);
                self.failed.remove(&name);
                // Keys and values computed with the old weights must not serve the new ones.
                self.prefix.forget(&name);
            }
        }
    }

    fn request_load(&mut self, name: &str) {
        // A bounded number in flight: requests naming missing adapters cannot queue unbounded
        // work on the loader; the rest are asked for again when their turn comes (`admit`).
        if self.loading.len() >= MAX_LOADING && !self.loading.contains(name) {
            return;
        }
        if self.loading.insert(name.to_string()) {
            self.failed.remove(name);
            let _ = self.loads.send(name.to_string());
        }
    }

    /// Drops requests whose clients left, and ends those past their deadline.
    fn reap(&mut self) {
        let now = Instant::now();
        let late = |p: &Pending| p.request.deadline.is_some_and(|d| d <= now);
        let mut left = 0;
        for queue in self.queues.values_mut() {
            queue.retain(|p| {
                if p.events.is_closed() {
                    left += 1;
                    return false;
                }
                if late(p) {
                    let _ = p.events.send(Event::Done {
                        finish: Finish::Deadline,
                        prompt_tokens: p.request.prompt.len(),
                        completion_tokens: 0,
                        cached_tokens: 0,
                    });
                    left += 1;
                    return false;
                }
                true
            });
        }
        self.queued.fetch_sub(left, Ordering::SeqCst);
        self.queues.retain(|_, q| !q.is_empty());
        let mut i = 0;
        while i < self.running.len() {
            let r = &self.running[i];
            if r.pending.events.is_closed() {
                self.running.swap_remove(i);
            } else if late(&r.pending) {
                let r = self.running.swap_remove(i);
                self.finish(r, Finish::Deadline);
            } else {
                i += 1;
            }
        }
    }

    /// Moves waiting requests into the batch, one mix at a time in turn.
    fn admit(&mut self) {
        let per_position = self.base.kv_bytes_per_position();
        let mut reserved: usize = self
            .running
            .iter()
            .map(|r| r.reservation(per_position))
            .sum();
        let mut turns = self.ring.len();
        while turns > 0 && self.running.len() < self.settings.max_batch {
            turns -= 1;
            let Some(key) = self.ring.pop_front() else {
                break;
            };
            let Some(queue) = self.queues.get_mut(&key) else {
                continue;
            };
            let Some(front) = queue.front() else {
                self.queues.remove(&key);
                continue;
            };
            let names: Vec<String> = front
                .request
                .adapters
                .iter()
                .map(|(n, _)| n.clone())
                .collect();
            if let Some((name, error)) = names
                .iter()
                .find_map(|n| self.failed.get(n).map(|e| (n, e)))
            {
                let event = match error {
                    LoadError::Unknown => Event::UnknownAdapter(name.clone()),
                    LoadError::Failed(e) => {
                        Event::Failed(format!("the adapter could not be loaded: {e}"))
                    }
                };
                for p in queue.drain(..) {
                    let _ = p.events.send(event.clone());
                    self.queued.fetch_sub(1, Ordering::SeqCst);
                }
                self.queues.remove(&key);
                continue;
            }
            let missing: Vec<String> = names
                .iter()
                .filter(|n| !self.cache.contains(n))
                .cloned()
                .collect();
            if !missing.is_empty() {
                for name in missing {
                    self.request_load(&name);
                }
                self.ring.push_back(key);
                continue;
            }
            let need = (front.request.prompt.len() + front.request.max_tokens) * per_position;
            if reserved + need > self.settings.kv_bytes && !self.running.is_empty() {
                self.ring.push_front(key);
                break;
            }
            let pending = queue.pop_front().expect("the front exists");
            if queue.is_empty() {
                self.queues.remove(&key);
            } else {
                self.ring.push_back(key.clone());
            }
            self.queued.fetch_sub(1, Ordering::SeqCst);
            reserved += need;
            let mix: Mix = pending
                .request
                .adapters
                .iter()
                .map(|(n, w)| (self.cache.get(n).expect("resident"), *w))
                .collect();
            self.begin(pending, key, mix);
        }
    }

    fn begin(&mut self, pending: Pending, key: String, mix: Mix) {
        self.metrics
            .queue_time(pending.arrived.elapsed().as_secs_f64());
        let prompt = pending.request.prompt.clone();
        let cache = self.prefix.lookup(&key, &prompt).unwrap_or_default();
        let cached = cache.len();
        self.running.push(Running {
            picker: Picker::new(pending.request.params.clone()),
            prompt_len: prompt.len(),
            tokens: prompt,
            pending,
            key,
            mix,
            cache,
            cached,
            last_token: None,
        });
    }

    fn publish(&self) {
        let running: Vec<String> = self
            .running
            .iter()
            .flat_map(|r| r.pending.request.adapters.iter().map(|(n, _)| n.clone()))
            .collect();
        let waiting: Vec<String> = self
            .queues
            .values()
            .flat_map(|q| {
                q.iter()
                    .flat_map(|p| p.request.adapters.iter().map(|(n, _)| n.clone()))
            })
            .collect();
        let count = self.queues.values().map(VecDeque::len).sum();
        self.metrics
            .set_load(self.running.len(), count, running, waiting);
    }

    /// One forward step: a decode token for every sequence past its prompt, then prompt
    /// chunks from what is left of the step's token budget.
    fn step(&mut self) {
        let mut budget = self.settings.step_tokens.max(1);
        let mut plan: Vec<(usize, usize)> = Vec::new(); // (running index, tokens to feed)
        for (i, r) in self.running.iter().enumerate() {
            if r.tokens.len() - r.cache.len() == 1 {
                plan.push((i, 1));
                budget = budget.saturating_sub(1);
            }
        }
        for (i, r) in self.running.iter().enumerate() {
            let due = r.tokens.len() - r.cache.len();
            if due > 1 && budget > 0 {
                let n = due.min(budget);
                plan.push((i, n));
                budget -= n;
            }
        }
        if plan.is_empty() {
            return;
        }
        plan.sort_unstable();
        let mut chunks: Vec<Chunk> = Vec::with_capacity(plan.len());
        let mut wants: Vec<usize> = Vec::new();
        let mut plan_iter = plan.iter().peekable();
        for (i, r) in self.running.iter_mut().enumerate() {
            let Some(&&(j, n)) = plan_iter.peek() else {
                break;
            };
            if j != i {
                continue;
            }
            plan_iter.next();
            let from = r.cache.len();
            let logits = from + n == r.tokens.len();
            if logits {
                wants.push(i);
            }
            chunks.push(Chunk {
                tokens: &r.tokens[from..from + n],
                cache: &mut r.cache,
                mix: &r.mix,
                logits,
            });
        }
        // A panic in the pass (a bug, a hostile adapter's shapes) fails this step's sequences,
        // not the server.
        let result = catch_unwind(AssertUnwindSafe(|| self.base.forward(&mut chunks)))
            .unwrap_or_else(|_| Err(ServeError::Model("the serving pass failed".into())));
        drop(chunks);
        let logits = match result {
            Ok(l) => l,
            Err(e) => {
                // A step that fails fails its sequences, not the server.
                for i in plan.iter().rev().map(|p| p.0) {
                    let r = self.running.swap_remove(i);
                    let _ = r.pending.events.send(Event::Failed(e.to_string()));
                }
                return;
            }
        };
        let mut done: Vec<(usize, Option<Finish>)> = Vec::new();
        for (i, logits) in wants.into_iter().zip(logits) {
            match catch_unwind(AssertUnwindSafe(|| self.emit(i, &logits))) {
                Ok(Some(finish)) => done.push((i, Some(finish))),
                Ok(None) => {}
                Err(_) => done.push((i, None)),
            }
        }
        for (i, finish) in done.into_iter().rev() {
            let r = self.running.swap_remove(i);
            match finish {
                Some(finish) => self.finish(r, finish),
                None => {
                    let _ = r
                        .pending
                        .events
                        .send(Event::Failed("choosing the next token failed".into()));
                }
            }
        }
    }

    /// Picks and sends sequence `i`'s next token; `Some` when the sequence is over.
    fn emit(&mut self, i: usize, logits: &[f32]) -> Option<Finish> {
        let max_positions = self.base.max_positions();
        let r = &mut self.running[i];
        if r.generated() == 0 && r.cache.len() == r.prompt_len {
            self.prefix.insert(&r.key, &r.tokens, &r.cache);
        }
        let (id, logprob) = r.picker.pick(logits, &self.vocab);
        if self.vocab.eos.contains(&id) {
            return Some(Finish::Stop);
        }
        let now = Instant::now();
        match r.last_token {
            None => self
                .metrics
                .first_token(now.duration_since(r.pending.arrived).as_secs_f64()),
            Some(t) => self
                .metrics
                .inter_token(now.duration_since(t).as_secs_f64()),
        }
        r.last_token = Some(now);
        r.tokens.push(id);
        if r.pending.events.send(Event::Token { id, logprob }).is_err() {
            return Some(Finish::Stop);
        }
        if r.generated() >= r.pending.request.max_tokens || r.tokens.len() >= max_positions {
            return Some(Finish::Length);
        }
        None
    }

    fn finish(&self, r: Running, finish: Finish) {
        self.metrics.finished(
            r.pending.arrived.elapsed().as_secs_f64(),
            r.prompt_len,
            r.generated(),
        );
        let _ = r.pending.events.send(Event::Done {
            finish,
            prompt_tokens: r.prompt_len,
            completion_tokens: r.generated(),
            cached_tokens: r.cached,
        });
    }
}
