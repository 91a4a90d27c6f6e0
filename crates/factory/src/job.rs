//! A job as the store keeps it, its events and checkpoints, and the OpenAI-shaped objects
//! the API answers with.

use crate::{
    data::Report,
    escrow::Payment,
    publish::Publication,
    spec::{Plan, TrainingSpec},
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// Where a job stands (OpenAI's statuses).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    ValidatingFiles,
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl Status {
    /// Whether the job will never change again.
    pub fn is_final(self) -> bool {
        matches!(self, Status::Succeeded | Status::Failed | Status::Cancelled)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Status::ValidatingFiles => "validating_files",
            Status::Queued => "queued",
            Status::Running => "running",
            Status::Succeeded => "succeeded",
            Status::Failed => "failed",
            Status::Cancelled => "cancelled",
        }
    }
}

/// Why a job failed, as OpenAI reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobError {
    pub code: String,
    pub message: String,
    pub param: Option<String>,
}

impl JobError {
    pub fn new(code: &str, message: impl Into<String>, param: Option<&str>) -> Self {
        Self {
            code: code.into(),
            message: message.into(),
            param: param.map(str::to_string),
        }
    }
}

/// A base model's and the tuned adapter's answers to one held-out prompt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    pub prompt: String,
    pub reference: String,
    pub base: String,
    pub tuned: String,
}

/// The evaluation of a finished run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    /// Held-out loss before training and after.
    pub eval_loss_before: Option<f64>,
    pub eval_loss: Option<f64>,
    pub perplexity: Option<f64>,
    /// Mean ROUGE-L F of greedy answers against the held-out references.
    pub rouge_l: Option<f64>,
    pub rouge_l_samples: usize,
    pub comparisons: Vec<Comparison>,
}

/// A fine-tuning job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub seq: u64,
    pub created_at: u64,
    pub status: Status,
    pub spec: TrainingSpec,
    /// The datanet versions the job trains on, once validation resolved them.
    #[serde(default)]
    pub versions: Vec<u64>,
    pub report: Option<Report>,
    pub plan: Option<Plan>,
    pub error: Option<JobError>,
    pub started_at: Option<u64>,
    pub finished_at: Option<u64>,
    pub estimated_finish: Option<u64>,
    pub step: usize,
    pub trained_tokens: u64,
    pub cancel_requested: bool,
    pub evaluation: Option<Evaluation>,
    pub fine_tuned_model: Option<String>,
    /// The job fee's escrow.
    pub payment: Option<Payment>,
    /// Where the adapter and its lineage were published, once they were.
    #[serde(default)]
    pub publication: Option<Publication>,
}

/// `ftjob-<n>`, and back.
pub fn job_id(seq: u64) -> String {
    format!("ftjob-{seq}")
}

pub fn parse_job_id(id: &str) -> Option<u64> {
    id.strip_prefix("ftjob-").unwrap_or(id).parse().ok()
}

pub fn file_id(seq: u64) -> String {
    format!("file-{seq}")
}

pub fn parse_file_id(id: &str) -> Option<u64> {
    id.strip_prefix("file-")?.parse().ok()
}

impl Job {
    /// A job just created with `spec`, in `status`, with nothing run or recorded yet.
    pub fn new(seq: u64, created_at: u64, status: Status, spec: TrainingSpec) -> Self {
        Self {
            seq,
            created_at,
            status,
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
            payment: None,
            publication: None,
        }
    }

    pub fn id(&self) -> String {
        job_id(self.seq)
    }

    /// The fine-tuned model's name: `ft:<base>:<suffix>:<job id>` (OpenAI's form).
    pub fn model_name(&self) -> String {
        format!(
            "ft:{}:{}:{}",
            self.spec.model,
            self.spec.suffix.as_deref().unwrap_or("openledger"),
            self.id()
        )
    }

    /// The job as OpenAI's `fine_tuning.job` object.
    pub fn to_openai(&self) -> Value {
        let h = &self.spec.hyperparameters;
        let hyper = json!({
            "n_epochs": h.n_epochs,
            "batch_size": h.batch_size,
            "learning_rate_multiplier": h.learning_rate_multiplier,
            "learning_rate": h.learning_rate,
            "lora_rank": h.lora_rank,
            "lora_alpha": h.lora_alpha,
            "lora_dropout": h.lora_dropout,
            "lora_target_modules": h.lora_target_modules,
            "cutoff_length": h.cutoff_length,
            "warmup_steps": self.plan.map(|p| p.warmup_steps).or(h.warmup_steps),
            "gradient_accumulation_steps": h.gradient_accumulation_steps,
            "eval_split": h.eval_split,
            "eval_interval": self.plan.map(|p| p.eval_interval).or(h.eval_interval),
            "weight_decay": h.weight_decay,
            "max_grad_norm": h.max_grad_norm,
            "eval_samples": h.eval_samples,
            "compare_samples": h.compare_samples,
            "eval_max_tokens": h.eval_max_tokens,
        });
        let training_file = self
            .spec
            .sources
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",");
        json!({
            "object": "fine_tuning.job",
            "id": self.id(),
            "model": self.spec.model,
            "created_at": self.created_at,
            "finished_at": self.finished_at,
            "fine_tuned_model": self.fine_tuned_model,
            "organization_id": "org-openledger",
            "result_files": [],
            "status": self.status.as_str(),
            "validation_file": self.spec.validation_file,
            "training_file": training_file,
            "hyperparameters": {
                "n_epochs": h.n_epochs,
                "batch_size": h.batch_size,
                "learning_rate_multiplier": h.learning_rate_multiplier,
            },
            "method": {"type": "supervised", "supervised": {"hyperparameters": hyper}},
            "trained_tokens": (self.status == Status::Succeeded).then_some(self.trained_tokens),
            "integrations": [],
            "seed": h.seed,
            "estimated_finish": self.estimated_finish,
            "metadata": self.spec.metadata,
            "user_provided_suffix": self.spec.suffix,
            "error": self.error,
            // Extensions: what validation found, the run's plan and progress, the evaluation.
            "datanet_versions": self.versions,
            "validation_report": self.report,
            "plan": self.plan,
            "step": self.step,
            "evaluation": self.evaluation,
            "publication": self.publication,
            "payment": self.payment.as_ref().map(|p| json!({
                "escrow": p.escrow,
                "operator": p.operator,
                "job_key": p.job_key,
                "fee": p.fee.to_string(),
                "payer": p.payer,
            })),
        })
    }
}

/// What an event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Message,
    Metrics,
}

/// One event of a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// The job's own sequence of events, from 1.
    pub n: u64,
    pub created_at: u64,
    pub level: String,
    pub message: String,
    pub kind: EventKind,
    pub data: Value,
}

impl Event {
    pub fn to_openai(&self, job: u64) -> Value {
        json!({
            "object": "fine_tuning.job.event",
            "id": event_id(job, self.n),
            "created_at": self.created_at,
            "level": self.level,
            "message": self.message,
            "type": self.kind,
            "data": self.data,
        })
    }
}

pub fn event_id(job: u64, n: u64) -> String {
    format!("ftevent-{job}-{n}")
}

/// The event number in an event id of `job`.
pub fn parse_event_id(job: u64, id: &str) -> Option<u64> {
    let rest = id.strip_prefix("ftevent-")?;
    let (j, n) = rest.split_once('-')?;
    (j.parse::<u64>().ok()? == job).then(|| n.parse().ok())?
}

/// A checkpoint of a run: the adapter after `step` steps, with the metrics there.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub step: usize,
    pub created_at: u64,
    pub train_loss: f64,
    pub eval_loss: Option<f64>,
    /// Whether this checkpoint ends an epoch (those are kept for attribution).
    pub epoch_end: bool,
    pub learning_rate: f64,
}

impl Checkpoint {
    pub fn to_openai(&self, job: &Job) -> Value {
        json!({
            "object": "fine_tuning.job.checkpoint",
            "id": format!("ftckpt-{}-{}", job.seq, self.step),
            "created_at": self.created_at,
            "fine_tuned_model_checkpoint": format!("{}:ckpt-step-{}", job.model_name(), self.step),
            "fine_tuning_job_id": job.id(),
            "step_number": self.step,
            "metrics": {
                "step": self.step,
                "train_loss": self.train_loss,
                "valid_loss": self.eval_loss,
                "full_valid_loss": self.eval_loss,
            },
            "epoch_end": self.epoch_end,
        })
    }
}

/// A file uploaded for fine-tuning.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileObject {
    pub seq: u64,
    pub bytes: u64,
    pub created_at: u64,
    pub filename: String,
    pub records: u64,
}

impl FileObject {
    pub fn to_openai(&self) -> Value {
        json!({
            "object": "file",
            "id": file_id(self.seq),
            "bytes": self.bytes,
            "created_at": self.created_at,
            "filename": self.filename,
            "purpose": "fine-tune",
            "status": "processed",
            "status_details": null,
        })
    }
}

pub(crate) fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
