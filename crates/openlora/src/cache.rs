//! The adapter cache: adapters resolve by name through an [`AdapterSource`] on first use,
//! load on their own thread (never in the step loop), and stay resident under an LRU bounded
//! in bytes; pinned adapters are never evicted.

use crate::{engine::ServedAdapter, metrics::Metrics, ServeError};
use openledger_model::lora::LoraAdapter;
use parking_lot::RwLock;
use std::{
    collections::{BTreeMap, HashMap},
    path::PathBuf,
    sync::Arc,
    time::Instant,
};

/// Where adapters come from, by name.
pub trait AdapterSource: Send + Sync {
    /// Whether `name` can be served (without loading it).
    fn contains(&self, name: &str) -> bool;
    /// Every servable name.
    fn names(&self) -> Vec<String>;
    /// Reads the adapter.
    fn load(&self, name: &str) -> Result<LoraAdapter, ServeError>;
}

/// Adapters in PEFT directories on local disk, by name: every sub-directory of a root that
/// holds an `adapter_config.json`, plus directories registered at run time.
#[derive(Default)]
pub struct DirSource {
    roots: Vec<PathBuf>,
    registered: RwLock<BTreeMap<String, PathBuf>>,
}

impl DirSource {
    /// Serves the adapters under each of `roots` by their directory names.
    pub fn new(roots: Vec<PathBuf>) -> Self {
        Self {
            roots,
            registered: RwLock::new(BTreeMap::new()),
        }
    }

    /// Registers `dir` under `name` (vLLM's `load_lora_adapter`), after checking that it reads.
    pub fn register(&self, name: &str, dir: PathBuf) -> Result<(), ServeError> {
        if name.is_empty() || name.len() > 128 || name.chars().any(char::is_control) {
            return Err(ServeError::Invalid(
                "an adapter name is 1 to 128 printable characters".into(),
            ));
        }
        if looks_published(name) {
            return Err(ServeError::Invalid(
                "names of digits, or of 0x and 64 hex digits, belong to published adapters".into(),
            ));
        }
        LoraAdapter::load(&dir).map_err(|e| ServeError::BadAdapter(e.to_string()))?;
        self.registered.write().insert(name.to_string(), dir);
        Ok(())
    }

    /// Forgets a registered name; false if it was not registered.
    pub fn unregister(&self, name: &str) -> bool {
        self.registered.write().remove(name).is_some()
    }

    fn dir(&self, name: &str) -> Option<PathBuf> {
        if let Some(dir) = self.registered.read().get(name) {
            return Some(dir.clone());
        }
        // A name is one path component: never `..`, never a separator.
        if name.is_empty() || name.starts_with('.') || name.contains(['/', '\\']) {
            return None;
        }
        if looks_published(name) {
            return None;
        }
        self.roots
            .iter()
            .map(|root| root.join(name))
            .find(|dir| dir.join("adapter_config.json").is_file())
    }
}

impl AdapterSource for DirSource {
    fn contains(&self, name: &str) -> bool {
        self.dir(name).is_some()
    }

    fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.registered.read().keys().cloned().collect();
        for root in &self.roots {
            let Ok(entries) = std::fs::read_dir(root) else {
                continue;
            };
            for entry in entries.flatten() {
                if entry.path().join("adapter_config.json").is_file() {
                    if let Some(name) = entry.file_name().to_str() {
                        names.push(name.to_string());
                    }
                }
            }
        }
        names.sort();
        names.dedup();
        names
    }

    fn load(&self, name: &str) -> Result<LoraAdapter, ServeError> {
        let dir = self
            .dir(name)
            .ok_or_else(|| ServeError::UnknownAdapter(name.to_string()))?;
        LoraAdapter::load(&dir).map_err(|e| ServeError::BadAdapter(format!("{name}: {e}")))
    }
}

/// Whether `name` has the form of a published adapter's weights hash (`0x` + 64 hex digits)
/// or of a registry id (decimal digits), which local names may not take.
pub fn looks_published(name: &str) -> bool {
    let hash = name
        .strip_prefix("0x")
        .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()));
    let id = !name.is_empty() && name.len() <= 20 && name.bytes().all(|b| b.is_ascii_digit());
    hash || id
}

struct Entry {
    adapter: Arc<ServedAdapter>,
    used: u64,
    pinned: bool,
}

/// The resident adapters (owned by the scheduler's thread).
pub(crate) struct AdapterCache {
    entries: HashMap<String, Entry>,
    capacity: usize,
    bytes: usize,
    tick: u64,
    metrics: Arc<Metrics>,
}

impl AdapterCache {
    pub fn new(capacity: usize, metrics: Arc<Metrics>) -> Self {
        Self {
            entries: HashMap::new(),
            capacity,
            bytes: 0,
            tick: 0,
            metrics,
        }
    }

    /// The resident adapter, marked used; counts a hit or a miss.
    pub fn get(&mut self, name: &str) -> Option<Arc<ServedAdapter>> {
        self.tick += 1;
        match self.entries.get_mut(name) {
            Some(e) => {
                e.used = self.tick;
                self.metrics.cache_hit();
                Some(e.adapter.clone())
            }
            None => {
                self.metrics.cache_miss();
                None
            }
        }
    }

    pub fn contains(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }

    /// Makes `adapter` resident, evicting the least recently used unpinned adapters to fit.
    pub fn insert(
        &mut self,
        name: &str,
        adapter: Arc<ServedAdapter>,
        pinned: bool,
    ) -> Result<(), ServeError> {
        let size = adapter.bytes();
        if size > self.capacity {
            return Err(ServeError::BadAdapter(format!(
                "{name} takes {size} bytes, more than the whole adapter cache ({} bytes)",
                self.capacity
            )));
        }
        self.remove(name);
        while self.bytes + size > self.capacity {
            let victim = self
                .entries
                .iter()
                .filter(|(_, e)| !e.pinned)
                .min_by_key(|(_, e)| e.used)
                .map(|(n, _)| n.clone());
            match victim {
                Some(v) => {
                    self.remove(&v);
                    self.metrics.cache_eviction();
                }
                None => {
                    return Err(ServeError::BadAdapter(format!(
                        "the adapter cache is full of pinned adapters; {name} does not fit"
                    )))
                }
            }
        }
        self.tick += 1;
        self.bytes += size;
        self.entries.insert(
            name.to_string(),
            Entry {
                adapter,
                used: self.tick,
                pinned,
            },
        );
        self.metrics.set_resident(self.entries.len(), self.bytes);
        Ok(())
    }

    /// Pins or unpins a resident adapter; false if it is not resident.
    pub fn pin(&mut self, name: &str, pinned: bool) -> bool {
        self.entries
            .get_mut(name)
            .map(|e| e.pinned = pinned)
            .is_some()
    }

    pub fn remove(&mut self, name: &str) {
        if let Some(e) = self.entries.remove(name) {
            self.bytes -= e.adapter.bytes();
            self.metrics.set_resident(self.entries.len(), self.bytes);
        }
    }
}

/// Why an adapter did not load.
#[derive(Debug, Clone)]
pub(crate) enum LoadError {
    /// The source has no such adapter.
    Unknown,
    Failed(String),
}

/// Loads adapters on a thread of its own and hands them back through `done`.
pub(crate) fn loader(
    source: Arc<dyn AdapterSource>,
    base: Arc<crate::engine::Base>,
    jobs: std::sync::mpsc::Receiver<String>,
    done: impl Fn(String, Result<Arc<ServedAdapter>, LoadError>, f64) + Send + 'static,
) {
    std::thread::Builder::new()
        .name("openlora-loader".into())
        .spawn(move || {
            for name in jobs {
                let start = Instant::now();
                // A hostile file must not take the loader down with it.
                let loaded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    source
                        .load(&name)
                        .and_then(|a| ServedAdapter::new(&a, &base))
                }));
                let result = match loaded {
                    Ok(Ok(a)) => Ok(Arc::new(a)),
                    Ok(Err(ServeError::UnknownAdapter(_))) => Err(LoadError::Unknown),
                    Ok(Err(e)) => Err(LoadError::Failed(e.to_string())),
                    Err(_) => Err(LoadError::Failed("the adapter could not be read".into())),
                };
                done(name, result, start.elapsed().as_secs_f64());
            }
        })
        .expect("spawning the adapter loader");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_names_cannot_take_a_published_adapters_name_or_leave_the_roots() {
        let source = DirSource::new(vec![std::env::temp_dir()]);
        let hash = format!("0x{}", "ab".repeat(32));
        let refused = source.register(&hash, std::env::temp_dir());
        assert!(
            matches!(refused, Err(ServeError::Invalid(_))),
            "{refused:?}"
        );
        assert!(!source.contains(&hash));
        for name in ["..", "../etc", "a/b", ".hidden", ""] {
            assert!(!source.contains(name), "{name}");
        }
    }
}
