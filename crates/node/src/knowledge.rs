//! Knowledge datanets: the BM25 index of a datanet version, built from the version's export
//! and kept for the few versions in use. The host searches it for its agents' answers; a
//! validator builds the same index from the same export to check what a receipt says it
//! retrieved.

use openledger_datanets::{search::SearchIndex, Datanets};
use openledger_model::{chat::ChatTemplate, tokenizer::Tokenizer};
use openledger_studio::knowledge::{
    Found, Hit, Knowledge, Markers, Passage, Retrieval, MAX_QUERY_CHARS, RETRIEVED,
};
use std::{
    future::Future,
    io::{BufRead, Seek, Write},
    path::Path,
    sync::Arc,
};
use tokio::sync::OnceCell;

/// Versions whose index is kept (each holds its passages' text, up to 2,000 characters each).
const KEPT: usize = 4;

/// A version's index, once built.
type Slot = Arc<OnceCell<Arc<SearchIndex>>>;

/// The indexes of the versions searched last.
#[derive(Default)]
pub struct Indexes {
    /// Least recently used first. Each version has its own cell, so that concurrent searches
    /// of a new version build it once while searches of other versions go on.
    kept: std::sync::Mutex<Vec<(u64, Slot)>>,
}

impl Indexes {
    /// Version `version`'s index; when not kept, built from what `export` reads (a failed
    /// build is not kept: the next search tries again).
    pub async fn get<F, Fut>(&self, version: u64, export: F) -> Result<Arc<SearchIndex>, String>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Box<dyn BufRead + Send>, String>>,
    {
        let cell = {
            let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
            let entry = match kept.iter().position(|(v, _)| *v == version) {
                Some(at) => kept.remove(at),
                None => (version, Arc::default()),
            };
            let cell = entry.1.clone();
            kept.push(entry);
            if kept.len() > KEPT {
                kept.remove(0);
            }
            cell
        };
        let index = cell
            .get_or_try_init(|| async {
                let reader = export().await?;
                let index = tokio::task::spawn_blocking(move || SearchIndex::from_export(reader))
                    .await
                    .map_err(|e| e.to_string())?
                    .map_err(|e| format!("indexing version {version}: {e}"))?;
                Ok::<_, String>(Arc::new(index))
            })
            .await?;
        Ok(index.clone())
    }
}

/// The `k` best passages of `index` for `query`, best first.
pub fn search(index: &SearchIndex, query: &str, k: usize) -> Vec<Passage> {
    index
        .search(query, k)
        .into_iter()
        .map(|h| Passage {
            hit: Hit {
                contribution: h.contribution,
                record: h.record,
                score: h.score,
            },
            text: index.passages()[h.passage].text.clone(),
        })
        .collect()
}

/// What is wrong with where a retrieval says it searched, if anything: it must be the agent's
/// knowledge datanet `knowledge`, in a version of it (`version_of` is the datanet the
/// version belongs to), for a query no longer than the host searches.
pub fn misplaced(retrieval: &Retrieval, knowledge: u64, version_of: u64) -> Option<String> {
    if knowledge == 0 || retrieval.datanet != knowledge {
        return Some(format!(
            "retrieved from datanet {}, but the agent's knowledge datanet is {knowledge}",
            retrieval.datanet
        ));
    }
    if version_of != knowledge {
        return Some(format!(
            "retrieved from version {}, which is not a version of datanet {knowledge}",
            retrieval.version
        ));
    }
    if retrieval.query.chars().count() > MAX_QUERY_CHARS {
        return Some(format!(
            "the retrieval's query is longer than {MAX_QUERY_CHARS} characters"
        ));
    }
    None
}

/// How a retrieval differs from a search of its version's `index`, if it does.
pub fn mismatch(retrieval: &Retrieval, index: &SearchIndex) -> Option<String> {
    let found: Vec<Hit> = search(index, &retrieval.query, RETRIEVED)
        .into_iter()
        .map(|p| p.hit)
        .collect();
    (found != retrieval.hits).then(|| {
        format!(
            "retrieved {:?} for {:?} in version {}, but a search of it finds {found:?}",
            retrieval.hits, retrieval.query, retrieval.version
        )
    })
}

/// What reads a knowledge agent's query back from a prompt's tokens: the model's tokenizer
/// and where its chat template puts the last user message (from a GGUF file's metadata alone,
/// or a Hugging Face directory).
pub struct PromptReader {
    tokenizer: Tokenizer,
    markers: Markers,
}

impl PromptReader {
    pub fn load(model: &Path) -> anyhow::Result<Self> {
        use anyhow::Context;
        let (tokenizer, template) = if model.is_file() {
            let metadata = openledger_model::weights::read_gguf_metadata(model)?;
            let tokenizer = Tokenizer::from_gguf(&metadata)
                .map_err(|e| anyhow::anyhow!("{}: tokenizer: {e}", model.display()))?;
            let template = metadata
                .get("tokenizer.chat_template")
                .and_then(|v| v.to_string().ok())
                .cloned();
            (tokenizer, template)
        } else {
            let loaded = openledger_model::Model::load(model)?;
            (loaded.tokenizer, loaded.chat_template)
        };
        let template =
            template.with_context(|| format!("{} declares no chat template", model.display()))?;
        let template = ChatTemplate::new(&template)?;
        let (bos, eos) = (
            openledger_studio::piece(&tokenizer, tokenizer.bos_id()),
            openledger_studio::piece(&tokenizer, tokenizer.eos_id()),
        );
        let markers = Markers::new(&template, &bos, &eos)?;
        Ok(Self { tokenizer, markers })
    }

    /// The query of the conversation `prompt` renders (empty if it does not end with a user's
    /// message).
    pub fn query(&self, prompt: &[u32]) -> String {
        self.markers.query(&self.tokenizer.decode(prompt))
    }
}

/// Search over the datanets this node indexes, for the agents it hosts.
pub struct HostKnowledge {
    datanets: Arc<Datanets>,
    indexes: Indexes,
}

impl HostKnowledge {
    pub fn new(datanets: Arc<Datanets>) -> Arc<Self> {
        Arc::new(Self {
            datanets,
            indexes: Indexes::default(),
        })
    }

    /// `datanet`'s latest version whose contents are its accepted contributions (as the
    /// index checked when it was published).
    fn latest(&self, datanet: u64) -> Result<Option<u64>, String> {
        let versions = self
            .datanets
            .index()
            .versions(Some(datanet))
            .map_err(|e| e.to_string())?;
        Ok(versions
            .iter()
            .filter(|v| v.matches_accepted != Some(false))
            .map(|v| v.id)
            .max())
    }

    /// Version `version`'s export, in a scratch file.
    async fn export(&self, version: u64) -> Result<Box<dyn BufRead + Send>, String> {
        let io = |e: std::io::Error| format!("exporting version {version}: {e}");
        let mut file = tempfile::tempfile().map_err(io)?;
        {
            let mut out = std::io::BufWriter::new(&mut file);
            self.datanets
                .export(version, &mut out)
                .await
                .map_err(|e| e.to_string())?;
            out.flush().map_err(io)?;
        }
        file.rewind().map_err(io)?;
        Ok(Box::new(std::io::BufReader::new(file)))
    }
}

impl Knowledge for HostKnowledge {
    fn retrieve(
        &self,
        datanet: u64,
        query: String,
        k: usize,
    ) -> futures_util::future::BoxFuture<'_, Result<Option<Found>, String>> {
        Box::pin(async move {
            let Some(version) = self.latest(datanet)? else {
                return Ok(None);
            };
            let index = self.indexes.get(version, || self.export(version)).await?;
            let passages = tokio::task::spawn_blocking(move || search(&index, &query, k))
                .await
                .map_err(|e| e.to_string())?;
            Ok(Some(Found { version, passages }))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn export(text: &'static str) -> Result<Box<dyn BufRead + Send>, String> {
        Ok(Box::new(text.as_bytes()))
    }

    #[tokio::test]
    async fn an_index_is_built_once_per_version_and_the_least_recent_is_dropped() {
        let indexes = Indexes::default();
        let line = r#"{"contribution": 4, "record": {"text": "amber harbour"}}"#;
        let built = std::sync::atomic::AtomicUsize::new(0);
        let get = |version: u64| {
            let built = &built;
            let indexes = &indexes;
            async move {
                indexes
                    .get(version, || async move {
                        built.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        export(line)
                    })
                    .await
                    .unwrap()
            }
        };
        let index = get(1).await;
        let found = search(&index, "harbour", 3);
        assert_eq!(found.len(), 1);
        assert_eq!(
            (found[0].hit.contribution, found[0].text.as_str()),
            (4, "amber harbour")
        );
        get(1).await;
        assert_eq!(built.load(std::sync::atomic::Ordering::SeqCst), 1);
        for v in 2..=(KEPT as u64 + 1) {
            get(v).await;
        }
        // Version 1 was the least recently used of five: rebuilt when asked again.
        get(1).await;
        assert_eq!(built.load(std::sync::atomic::Ordering::SeqCst), KEPT + 2);
        let bad = indexes
            .get(99, || async { export("not json\n") })
            .await
            .err()
            .unwrap();
        assert!(bad.contains("indexing version 99"), "{bad}");
    }

    #[test]
    fn a_retrieval_is_checked_against_the_agents_datanet_and_a_search_of_its_version() {
        let text = concat!(
            r#"{"contribution": 3, "record": {"text": "The keeper of the lighthouse is Ann."}}"#,
            "\n",
            r#"{"contribution": 5, "record": {"text": "Harbour fees are paid in spring."}}"#,
            "\n",
        );
        let index = SearchIndex::from_export(text.as_bytes()).unwrap();
        let query = "Who keeps the lighthouse?".to_string();
        let found = search(&index, &query, RETRIEVED);
        let honest = Retrieval {
            datanet: 2,
            version: 7,
            query,
            hits: found.iter().map(|p| p.hit).collect(),
        };
        assert_eq!(honest.hits.len(), 1);
        assert_eq!(misplaced(&honest, 2, 2), None);
        assert_eq!(mismatch(&honest, &index), None);
        // Another datanet, a version of another datanet, an over-long query.
        assert!(misplaced(&honest, 3, 3)
            .unwrap()
            .contains("knowledge datanet is 3"));
        assert!(misplaced(&honest, 0, 2).is_some());
        assert!(misplaced(&honest, 2, 9)
            .unwrap()
            .contains("not a version of datanet 2"));
        let long = Retrieval {
            query: "x".repeat(MAX_QUERY_CHARS + 1),
            ..honest.clone()
        };
        assert!(misplaced(&long, 2, 2).unwrap().contains("longer than"));
        // A hit moved to another contribution, an inflated score, an extra hit, a dropped one.
        let mut forged = Vec::new();
        for change in 0..4 {
            let mut r = honest.clone();
            match change {
                0 => r.hits[0].contribution = 5,
                1 => r.hits[0].score += 1,
                2 => r.hits.push(Hit {
                    contribution: 5,
                    record: 0,
                    score: 1,
                }),
                _ => r.hits.clear(),
            }
            forged.push(r);
        }
        for r in &forged {
            let problem = mismatch(r, &index).expect("caught");
            assert!(problem.contains("a search of it finds"), "{problem}");
        }
    }
}
