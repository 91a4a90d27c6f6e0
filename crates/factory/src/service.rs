//! [`Factory`]: jobs from request to result. Creating a job stores it (`validating_files`)
//! and validates it in the background; a valid job joins the queue; one worker thread runs
//! queued jobs one at a time, oldest first, resuming a job that was running when the process
//! died before anything else.

use crate::{
    data::{self, Record, Report},
    estimate,
    job::{self, Checkpoint, Event, EventKind, FileObject, Job, JobError, Status},
    runner::{Outcome, Reporter, Runner},
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

/// The factory service.
pub struct Factory {
    pub(crate) store: Store,
    dir: PathBuf,
    datanets: Arc<Datanets>,
    client: ProtocolClient,
    models: BTreeMap<String, PathBuf>,
    loaded: Mutex<HashMap<String, Arc<Model>>>,
    runner: Arc<dyn Runner>,
    /// Set when a job joins the queue; the worker waits on it.
    wake: (Mutex<bool>, Condvar),
    /// The running job's cancel flag.
    cancel: Mutex<Option<(u64, Arc<AtomicBool>)>>,
    events: broadcast::Sender<(u64, Event)>,
    pub(crate) limits: Limits,
    /// Serialises validations: each holds a model and the job's records in memory.
    validating: tokio::sync::Semaphore,
}

impl Factory {
    /// Opens the factory in `dir` (its store, job and file directories) over the datanet
    /// service and a chain client, training the base models named in `models`.
    pub fn open(
        dir: &Path,
        datanets: Arc<Datanets>,
        client: ProtocolClient,
        models: BTreeMap<String, PathBuf>,
        runner: Arc<dyn Runner>,
        limits: Limits,
    ) -> Result<Arc<Self>, FactoryError> {
        for sub in ["jobs", "files"] {
            std::fs::create_dir_all(dir.join(sub))
                .map_err(|e| FactoryError::Io(format!("creating {}: {e}", dir.display())))?;
        }
        let store = Store::open(&dir.join("factory.redb"))?;
        Ok(Arc::new(Self {
            store,
            dir: dir.to_path_buf(),
            datanets,
            client,
            models,
            loaded: Mutex::default(),
            runner,
            wake: (Mutex::new(false), Condvar::new()),
            cancel: Mutex::default(),
            events: broadcast::channel(1024).0,
            limits,
            validating: tokio::sync::Semaphore::new(1),
        }))
    }

    /// Starts the worker thread and re-validates jobs that were validating when the process
    /// stopped. Call once, inside a tokio runtime.
    pub fn start(self: &Arc<Self>) -> Result<(), FactoryError> {
        for job in self.store.unfinished()? {
            if job.status == Status::ValidatingFiles {
                self.spawn_validation(job.seq);
            }
        }
        let factory = self.clone();
        let runtime = tokio::runtime::Handle::current();
        std::thread::Builder::new()
            .name("factory-worker".into())
            .spawn(move || {
                let _entered = runtime.enter();
                factory.work()
            })
            .map_err(|e| FactoryError::Io(format!("starting the worker: {e}")))?;
        Ok(())
    }

    /// The base models this factory trains, by name.
    pub fn models(&self) -> Vec<String> {
        self.models.keys().cloned().collect()
    }

    fn job_dir(&self, seq: u64) -> PathBuf {
        self.dir.join("jobs").join(seq.to_string())
    }

    pub(crate) fn file_path(&self, seq: u64) -> PathBuf {
        self.dir.join("files").join(format!("{seq}.jsonl"))
    }

    pub(crate) fn files_dir(&self) -> PathBuf {
        self.dir.join("files")
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
            return Err(FactoryError::Busy {
                limit: self.limits.waiting_jobs,
            });
        }
        let job = self.store.insert_job(Job {
            seq: 0,
            created_at: job::now(),
            status: Status::ValidatingFiles,
            spec,
            versions: Vec::new(),
            report: None,
            plan: None,
            error: None,
            started_at: None,
            finished_at: None,
            estimated_finish: None,
            step: 0,
            trained_tokens: 0,
            cancel_requested: false,
            evaluation: None,
            fine_tuned_model: None,
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

    fn spawn_validation(self: &Arc<Self>, seq: u64) {
        let factory = self.clone();
        tokio::spawn(async move {
            let _permit = factory.validating.acquire().await;
            let outcome = factory.validate(seq).await;
            factory.finish_validation(seq, outcome);
        });
    }

    /// Validation: the sources are readable and on chain, every record renders and
    /// tokenizes, and the prepared data is on disk; returns what the job is updated with.
    async fn validate(
        self: &Arc<Self>,
        seq: u64,
    ) -> Result<(Vec<u64>, Report, spec::Plan), JobError> {
        let job = self
            .store
            .job(seq)
            .map_err(|e| JobError::new("server_error", e.to_string(), None))?
            .ok_or_else(|| JobError::new("server_error", "the job vanished", None))?;
        let factory = self.clone();
        let name = job.spec.model.clone();
        let model = tokio::task::spawn_blocking(move || factory.model(&name))
            .await
            .map_err(|e| JobError::new("server_error", e.to_string(), None))??;
        let cutoff = job.spec.hyperparameters.cutoff_length;
        let context = model.config().max_position_embeddings;
        if cutoff > context {
            return Err(JobError::new(
                "invalid_hyperparameters",
                format!("cutoff_length {cutoff} exceeds the model's context of {context}"),
                Some("hyperparameters.cutoff_length"),
            ));
        }
        let (records, sources, versions) = self.gather(&job.spec.sources).await?;
        let eval_records = match &job.spec.validation_file {
            Some(id) => {
                let mut out = Vec::new();
                let seq = job::parse_file_id(id).unwrap_or(0);
                data::gather_file(&self.file_path(seq), 0, id, &mut out).map_err(|e| JobError {
                    param: Some("validation_file".into()),
                    ..e
                })?;
                Some(out)
            }
            None => None,
        };
        let dir = self.job_dir(seq);
        let hyper = job.spec.hyperparameters.clone();
        let worker_model = model.clone();
        tokio::task::spawn_blocking(move || {
            let (samples, mut report) = data::prepare(&worker_model, &records, cutoff, sources)?;
            let eval = eval_records
                .map(|r| data::prepare(&worker_model, &r, cutoff, Vec::new()))
                .transpose()?;
            let mut all = samples;
            let from_file = eval.as_ref().map(|(s, _)| s.len());
            if let Some((eval_samples, _)) = eval {
                // Held-out examples from a validation file come first; the split then takes
                // exactly those.
                let mut joined = eval_samples;
                joined.extend(all);
                all = joined;
            }
            let plan = hyper.plan(all.len() - from_file.unwrap_or(0), from_file);
            report.estimate = Some(estimate::estimate(
                worker_model.config(),
                &report,
                &plan,
                &hyper,
            ));
            std::fs::create_dir_all(&dir)
                .and_then(|()| data::write_samples(&dir.join("data.bin"), &all))
                .map_err(|e| JobError::new("server_error", format!("prepared data: {e}"), None))?;
            Ok((versions, report, plan))
        })
        .await
        .map_err(|e| JobError::new("server_error", e.to_string(), None))?
    }

    /// Reads every source's records; datanet versions are checked against the chain.
    async fn gather(
        &self,
        sources: &[Source],
    ) -> Result<(Vec<Record>, Vec<data::SourceReport>, Vec<u64>), JobError> {
        let mut records = Vec::new();
        let mut reports = Vec::new();
        let mut versions = Vec::new();
        self.datanets
            .sync()
            .await
            .map_err(|e| JobError::new("server_error", format!("datanet index: {e}"), None))?;
        for (i, source) in sources.iter().enumerate() {
            let report = match source {
                Source::Datanet { datanet, version } => {
                    let version = match version {
                        Some(v) => *v,
                        None => self.latest_version(*datanet)?,
                    };
                    versions.push(version);
                    data::gather_version(
                        &self.datanets,
                        &self.client,
                        i,
                        *datanet,
                        version,
                        &mut records,
                    )
                    .await?
                }
                Source::File { id } => {
                    let seq = job::parse_file_id(id).unwrap_or(0);
                    data::gather_file(&self.file_path(seq), i, id, &mut records)?
                }
            };
            reports.push(report);
        }
        Ok((records, reports, versions))
    }

    fn latest_version(&self, datanet: u64) -> Result<u64, JobError> {
        let versions = self
            .datanets
            .index()
            .versions(Some(datanet))
            .map_err(|e| JobError::new("server_error", e.to_string(), None))?;
        versions.iter().map(|v| v.id).max().ok_or_else(|| {
            JobError::new(
                "invalid_training_file",
                format!("datanet:{datanet} has no published version"),
                Some("training_file"),
            )
        })
    }

    fn finish_validation(
        &self,
        seq: u64,
        outcome: Result<(Vec<u64>, Report, spec::Plan), JobError>,
    ) {
        let mut queued = false;
        let result = self.store.update_job(seq, |job| {
            if job.status != Status::ValidatingFiles {
                return; // cancelled meanwhile
            }
            match &outcome {
                Ok((versions, report, plan)) => {
                    job.versions = versions.clone();
                    job.report = Some(report.clone());
                    job.plan = Some(*plan);
                    job.status = Status::Queued;
                    queued = true;
                }
                Err(error) => {
                    job.error = Some(error.clone());
                    job.status = Status::Failed;
                    job.finished_at = Some(job::now());
                }
            }
        });
        if let Err(e) = result {
            tracing::error!(job = seq, error = %e, "cannot record a job's validation");
            return;
        }
        match outcome {
            Ok((_, report, plan)) if queued => {
                let estimate = report.estimate.clone();
                self.event(
                    seq,
                    "info",
                    format!(
                        "Files validated: {} examples, {} tokens ({} cut to the cutoff length); \
                         {} training steps, about {:.0} s",
                        report.examples,
                        report.tokens,
                        report.truncated,
                        plan.total_steps,
                        estimate.as_ref().map_or(0.0, |e| e.seconds)
                    ),
                    EventKind::Message,
                    json!({"report": report, "plan": plan}),
                );
                self.event(
                    seq,
                    "info",
                    "Job enqueued".into(),
                    EventKind::Message,
                    json!({}),
                );
                self.wake();
            }
            Err(error) => self.event(
                seq,
                "error",
                format!("Validation failed: {}", error.message),
                EventKind::Message,
                json!({"error": error, "status": "failed"}),
            ),
            Ok(_) => {}
        }
    }

    fn wake(&self) {
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
    pub fn cancel(&self, id: &str) -> Result<Job, FactoryError> {
        let seq = self.job(id)?.seq;
        let mut refused = None;
        let job = self
            .store
            .update_job(seq, |job| match job.status {
                Status::ValidatingFiles | Status::Queued => {
                    job.status = Status::Cancelled;
                    job.finished_at = Some(job::now());
                }
                Status::Running => job.cancel_requested = true,
                done => refused = Some(done),
            })?
            .ok_or_else(|| FactoryError::NotFound(format!("no fine-tuning job {id}")))?;
        if let Some(status) = refused {
            return Err(FactoryError::InvalidRequest {
                param: None,
                message: format!("job {id} has already {}", status.as_str()),
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
        Ok(job)
    }

    /// An uploaded file's record.
    pub fn file(&self, id: &str) -> Result<FileObject, FactoryError> {
        job::parse_file_id(id)
            .and_then(|seq| self.store.file(seq).transpose())
            .transpose()?
            .ok_or_else(|| FactoryError::NotFound(format!("no file {id}")))
    }

    /// The worker: runs queued jobs one at a time, forever.
    fn work(self: Arc<Self>) {
        loop {
            let next = match self.store.unfinished() {
                Ok(jobs) => jobs
                    .into_iter()
                    .filter(|j| matches!(j.status, Status::Queued | Status::Running))
                    // A job that was running when the process died goes first.
                    .min_by_key(|j| (j.status != Status::Running, j.seq)),
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the job queue");
                    None
                }
            };
            match next {
                Some(job) => self.run(job),
                None => {
                    let (lock, signal) = &self.wake;
                    let mut woken = lock.lock().expect("not poisoned");
                    if !*woken {
                        woken = signal
                            .wait_timeout(woken, std::time::Duration::from_secs(2))
                            .expect("not poisoned")
                            .0;
                    }
                    *woken = false;
                }
            }
        }
    }

    /// Runs one job to its end and records how it ended.
    fn run(self: &Arc<Self>, job: Job) {
        let seq = job.seq;
        let flag = Arc::new(AtomicBool::new(job.cancel_requested));
        *self.cancel.lock().expect("not poisoned") = Some((seq, flag.clone()));
        let resumed = job.status == Status::Running;
        let job = match self.store.update_job(seq, |j| {
            j.status = Status::Running;
            j.started_at.get_or_insert(job::now());
        }) {
            Ok(Some(job)) => job,
            _ => return,
        };
        if !resumed {
            self.event(
                seq,
                "info",
                "Fine-tuning job started".into(),
                EventKind::Message,
                json!({"status": "running"}),
            );
        }
        let reporter = JobReporter {
            factory: self,
            seq,
            flag,
        };
        let outcome = self.model(&job.spec.model).and_then(|model| {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.runner.run(&job, &model, &self.job_dir(seq), &reporter)
            }))
            .unwrap_or_else(|_| {
                Err(JobError::new(
                    "server_error",
                    "the training run panicked",
                    None,
                ))
            })
        });
        *self.cancel.lock().expect("not poisoned") = None;
        self.record_outcome(&job, outcome);
    }

    fn record_outcome(&self, job: &Job, outcome: Result<Outcome, JobError>) {
        let seq = job.seq;
        let name = job.model_name();
        let (status, message, data) = match &outcome {
            Ok(Outcome::Finished { .. }) => (
                Status::Succeeded,
                format!("New fine-tuned model created: {name}"),
                json!({"status": "succeeded", "fine_tuned_model": name}),
            ),
            Ok(Outcome::Cancelled) => (
                Status::Cancelled,
                "Job cancelled".to_string(),
                json!({"status": "cancelled"}),
            ),
            Err(e) => (
                Status::Failed,
                format!("Fine-tuning failed: {}", e.message),
                json!({"status": "failed", "error": e}),
            ),
        };
        let result = self.store.update_job(seq, |j| {
            j.status = status;
            j.finished_at = Some(job::now());
            j.estimated_finish = None;
            match outcome {
                Ok(Outcome::Finished {
                    evaluation,
                    trained_tokens,
                }) => {
                    j.evaluation = Some(evaluation);
                    j.trained_tokens = trained_tokens;
                    j.fine_tuned_model = Some(name.clone());
                }
                Ok(Outcome::Cancelled) => {}
                Err(e) => j.error = Some(e),
            }
        });
        if let Err(e) = result {
            tracing::error!(job = seq, error = %e, "cannot record how a job ended");
        }
        let level = if status == Status::Failed {
            "error"
        } else {
            "info"
        };
        self.event(seq, level, message, EventKind::Message, data);
    }
}

/// Tells the factory what a run of job `seq` reports.
struct JobReporter<'f> {
    factory: &'f Factory,
    seq: u64,
    flag: Arc<AtomicBool>,
}

impl Reporter for JobReporter<'_> {
    fn event(&self, level: &str, message: String, kind: EventKind, data: Value) {
        self.factory.event(self.seq, level, message, kind, data);
    }

    fn progress(&self, step: usize, trained_tokens: u64, estimated_finish: Option<u64>) {
        let result = self.factory.store.update_job(self.seq, |j| {
            j.step = step;
            j.trained_tokens = trained_tokens;
            j.estimated_finish = estimated_finish;
        });
        if let Err(e) = result {
            tracing::error!(job = self.seq, error = %e, "cannot record a job's progress");
        }
    }

    fn checkpoint(&self, checkpoint: Checkpoint) {
        if let Err(e) = self.factory.store.put_checkpoint(self.seq, &checkpoint) {
            tracing::error!(job = self.seq, error = %e, "cannot record a checkpoint");
        }
    }

    fn cancelled(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }
}
