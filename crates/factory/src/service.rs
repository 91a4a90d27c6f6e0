//! [`Factory`]: jobs from request to result. Creating a job stores it (`validating_files`)
//! and validates it in the background; a valid job joins the queue; one worker thread runs
//! queued jobs one at a time, oldest first, resuming a job that was running when the process
//! died before anything else.

use crate::{
    data,
    escrow::{Escrow, OnChain},
    job::{self, Event, EventKind, FileObject, Job, JobError, Status},
    runner::Runner,
    spec::{self, CreateJob, Source},
    store::Store,
    FactoryError,
};
use openledger_datanets::Datanets;
use openledger_model::Model;
use openledger_protocol::ProtocolClient;
use serde_json::{json, Value};
use std::{
    collections::{BTreeMap, HashMap},
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Condvar, Mutex,
    },
};
use tokio::sync::broadcast;

/// What the factory accepts, so that no stranger can grow its disk or queue without bound.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Jobs validating or queued at once.
    pub waiting_jobs: usize,
    /// Bytes of one uploaded file.
    pub file_bytes: u64,
    /// Uploaded files kept.
    pub files: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            waiting_jobs: 64,
            file_bytes: 256 << 20,
            files: 1024,
        }
    }
}

/// The account that runs the factory: it signs the job escrow's transactions and is paid
/// `fee` (wei of OPEN) per job.
pub struct Operator {
    pub client: ProtocolClient,
    pub fee: u128,
}

/// The factory service.
pub struct Factory {
    pub(crate) store: Store,
    dir: PathBuf,
    pub(crate) datanets: Arc<Datanets>,
    pub(crate) client: ProtocolClient,
    pub(crate) escrow: Escrow,
    models: BTreeMap<String, PathBuf>,
    loaded: Mutex<HashMap<String, Arc<Model>>>,
    pub(crate) runner: Arc<dyn Runner>,
    /// Set when a job joins the queue; the worker waits on it.
    pub(crate) wake: (Mutex<bool>, Condvar),
    /// The running job's cancel flag.
    pub(crate) cancel: Mutex<Option<(u64, Arc<AtomicBool>)>>,
    events: broadcast::Sender<(u64, Event)>,
    pub(crate) limits: Limits,
    /// Serialises validations: each holds a model and the job's records in memory.
    pub(crate) validating: tokio::sync::Semaphore,
    /// One base-versus-tuned comparison at a time: each runs two generations.
    pub(crate) comparing: tokio::sync::Semaphore,
    /// One publication at a time: checking that no other training data published the same
    /// weights and writing the manifest must not interleave.
    pub(crate) publishing: tokio::sync::Mutex<()>,
    /// The runtime the worker thread sends its transactions on.
    pub(crate) runtime: tokio::runtime::Handle,
}

impl Factory {
    /// Opens the factory in `dir` (its store, job and file directories) over the datanet
    /// service and a chain client, training the base models named in `models`. `operator`
    /// signs the job escrow's transactions and is paid `fee` (wei) per job. Call inside a
    /// tokio runtime.
    pub fn open(
        dir: &Path,
        datanets: Arc<Datanets>,
        client: ProtocolClient,
        operator: Operator,
        models: BTreeMap<String, PathBuf>,
        runner: Arc<dyn Runner>,
        limits: Limits,
    ) -> Result<Arc<Self>, FactoryError> {
        for sub in ["jobs", "files"] {
            std::fs::create_dir_all(dir.join(sub))
                .map_err(|e| FactoryError::Io(format!("creating {}: {e}", dir.display())))?;
        }
        let store = Store::open(&dir.join("factory.redb"))?;
        let escrow = Escrow::open(operator.client, operator.fee, dir).map_err(FactoryError::Io)?;
        Ok(Arc::new(Self {
            store,
            dir: dir.to_path_buf(),
            datanets,
            client,
            escrow,
            models,
            loaded: Mutex::default(),
            runner,
            wake: (Mutex::new(false), Condvar::new()),
            cancel: Mutex::default(),
            events: broadcast::channel(1024).0,
            limits,
            validating: tokio::sync::Semaphore::new(1),
            comparing: tokio::sync::Semaphore::new(1),
            publishing: tokio::sync::Mutex::new(()),
            runtime: tokio::runtime::Handle::current(),
        }))
    }

    /// Sets the operator's fee on chain, starts the worker thread and re-validates jobs that
    /// were validating when the process stopped. Call once.
    pub async fn start(self: &Arc<Self>) -> Result<(), FactoryError> {
        self.escrow
            .ensure_fee()
            .await
            .map_err(|e| FactoryError::Io(format!("setting the operator's job fee: {e}")))?;
        for job in self.store.unfinished()? {
            if job.status == Status::ValidatingFiles {
                self.spawn_validation(job.seq);
            }
        }
        let factory = self.clone();
        std::thread::Builder::new()
            .name("factory-worker".into())
            .spawn(move || factory.work())
            .map_err(|e| FactoryError::Io(format!("starting the worker: {e}")))?;
        Ok(())
    }

    /// The base models this factory trains, by name.
    pub fn models(&self) -> Vec<String> {
        self.models.keys().cloned().collect()
    }

    pub(crate) fn job_dir(&self, seq: u64) -> PathBuf {
        self.dir.join("jobs").join(seq.to_string())
    }

    pub(crate) fn file_path(&self, seq: u64) -> PathBuf {
        self.dir.join("files").join(format!("{seq}.jsonl"))
    }

    pub(crate) fn files_dir(&self) -> PathBuf {
        self.dir.join("files")
    }

    /// The blob store adapters are published to (the datanets').
    pub(crate) fn datanets_store(&self) -> &openledger_datanets::store::Store {
        self.datanets.store()
    }

    /// Where base model `name` is read from.
    pub(crate) fn model_path(&self, name: &str) -> Option<PathBuf> {
        self.models.get(name).cloned()
    }

    /// A loaded base model (loaded on first use, then kept).
    pub fn model(&self, name: &str) -> Result<Arc<Model>, JobError> {
        if let Some(m) = self.loaded.lock().expect("not poisoned").get(name) {
            return Ok(m.clone());
        }
        let path = self
            .models
            .get(name)
            .ok_or_else(|| JobError::new("invalid_model", format!("no model {name}"), None))?;
        let model = Model::load(path)
            .map_err(|e| JobError::new("server_error", format!("loading {name}: {e}"), None))?;
        let model = Arc::new(model);
        self.loaded
            .lock()
            .expect("not poisoned")
            .insert(name.to_string(), model.clone());
        Ok(model)
    }

    /// Appends an event and tells the streams.
    pub(crate) fn event(
        &self,
        seq: u64,
        level: &str,
        message: String,
        kind: EventKind,
        data: Value,
    ) {
        match self.store.add_event(seq, level, message, kind, data) {
            Ok(event) => {
                let _ = self.events.send((seq, event));
            }
            Err(e) => tracing::error!(job = seq, error = %e, "cannot store a job event"),
        }
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<(u64, Event)> {
        self.events.subscribe()
    }

    /// Creates a job from an OpenAI-shaped request: checks the request, stores the job and
    /// starts validating its files.
    pub fn create(self: &Arc<Self>, request: CreateJob) -> Result<Job, FactoryError> {
        let default_seed = rand::random::<u32>() as u64;
        let spec = spec::resolve(&request, &self.models(), default_seed)?;
        for source in spec.sources.iter() {
            if let Source::File { id } = source {
                self.file(id)?;
            }
        }
        if let Some(id) = &spec.validation_file {
            self.file(id)?;
        }
        let waiting = self
            .store
            .unfinished()?
            .iter()
            .filter(|j| j.status != Status::Running)
            .count();
        if waiting >= self.limits.waiting_jobs {
            return Err(FactoryError::Busy(format!(
                "the factory holds the most jobs waiting to run ({}); try again later",
                self.limits.waiting_jobs
            )));
        }
        let escrow = &self.escrow;
        let job = self.store.insert_job(|seq| Job {
            payment: Some(escrow.payment(seq)),
            ..Job::new(0, job::now(), Status::ValidatingFiles, spec)
        })?;
        self.event(
            job.seq,
            "info",
            format!(
                "Validating training file: {}",
                data::describe(&job.spec.sources)
            ),
            EventKind::Message,
            json!({}),
        );
        self.spawn_validation(job.seq);
        Ok(job)
    }

    pub(crate) fn wake(&self) {
        let (lock, signal) = &self.wake;
        *lock.lock().expect("not poisoned") = true;
        signal.notify_all();
    }

    /// A job by id (`ftjob-N` or `N`).
    pub fn job(&self, id: &str) -> Result<Job, FactoryError> {
        job::parse_job_id(id)
            .and_then(|seq| self.store.job(seq).transpose())
            .transpose()?
            .ok_or_else(|| FactoryError::NotFound(format!("no fine-tuning job {id}")))
    }

    /// Cancels a job: at once if it has not started, else at its next step boundary.
    pub fn cancel(self: &Arc<Self>, id: &str) -> Result<Job, FactoryError> {
        let seq = self.job(id)?.seq;
        let mut refused = None;
        let job = self
            .store
            .update_job(seq, |job| match job.status {
                Status::ValidatingFiles | Status::Queued => {
                    job.status = Status::Cancelled;
                    job.finished_at = Some(job::now());
                    job.error = None;
                }
                Status::Running => job.cancel_requested = true,
                done => refused = Some(done),
            })?
            .ok_or_else(|| FactoryError::NotFound(format!("no fine-tuning job {id}")))?;
        if let Some(status) = refused {
            return Err(FactoryError::InvalidRequest {
                param: None,
                message: format!("job {id} is already {}", status.as_str()),
            });
        }
        if let Some((running, flag)) = &*self.cancel.lock().expect("not poisoned") {
            if *running == seq {
                flag.store(true, Ordering::SeqCst);
            }
        }
        let message = if job.status == Status::Cancelled {
            "Job cancelled"
        } else {
            "Cancellation requested: the job stops at its next step"
        };
        let data = if job.status == Status::Cancelled {
            json!({"status": "cancelled"})
        } else {
            json!({})
        };
        self.event(seq, "info", message.into(), EventKind::Message, data);
        if job.status == Status::Cancelled {
            // Cancelled before it started: the fee goes back if it was paid.
            let factory = self.clone();
            tokio::spawn(async move { factory.refund_if_funded(seq).await });
        }
        Ok(job)
    }

    /// Refunds a job's fee if the escrow holds it, and says so in the job's events.
    pub(crate) async fn refund_if_funded(&self, seq: u64) {
        let Some(key) = self
            .store
            .job(seq)
            .ok()
            .flatten()
            .and_then(|j| j.payment.map(|p| p.job_key))
        else {
            return;
        };
        match self.escrow.status(key).await {
            Ok((OnChain::Funded | OnChain::Running, payer)) => {
                match self.escrow.refund(key).await {
                    Ok(tx) => self.event(
                        seq,
                        "info",
                        format!("The job fee was refunded to {payer} (transaction {tx})"),
                        EventKind::Message,
                        json!({"refund_transaction": tx}),
                    ),
                    Err(e) => self.event(
                        seq,
                        "error",
                        format!("Refunding the job fee failed: {e}"),
                        EventKind::Message,
                        json!({}),
                    ),
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(job = seq, error = %e, "cannot read a job's escrow"),
        }
    }

    /// An uploaded file's record.
    pub fn file(&self, id: &str) -> Result<FileObject, FactoryError> {
        job::parse_file_id(id)
            .and_then(|seq| self.store.file(seq).transpose())
            .transpose()?
            .ok_or_else(|| FactoryError::NotFound(format!("no file {id}")))
    }
}
