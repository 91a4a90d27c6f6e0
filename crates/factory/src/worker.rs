//! The worker: one thread that runs queued jobs one at a time, oldest first, resuming a job
//! that was running when the process died before anything else. Starting a job starts it in
//! the escrow (its payer can no longer cancel); its end completes it there (the fee is the
//! operator's, also when the payer cancels mid-run: the work was done) or, if it failed,
//! refunds the payer.

use crate::{
    escrow::OnChain,
    job::{self, Checkpoint, EventKind, Job, JobError, Status},
    runner::{Outcome, Reporter},
    service::Factory,
};
use serde_json::{json, Value};
use std::sync::{
    atomic::{AtomicBool, Ordering},
    Arc,
};

impl Factory {
    /// Runs queued jobs, forever.
    pub(crate) fn work(self: Arc<Self>) {
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

    /// Starts the job in the escrow if it is not started yet; `Err` if its payer took the fee
    /// back.
    fn start_in_escrow(&self, job: &Job) -> Result<(), JobError> {
        let Some(payment) = &job.payment else {
            return Ok(());
        };
        let key = payment.job_key;
        let status = self.runtime.block_on(self.escrow.status(key));
        match status {
            Ok((OnChain::Running, _)) => Ok(()),
            Ok((OnChain::Funded, _)) => {
                let tx = self.runtime.block_on(self.escrow.start(key)).map_err(|e| {
                    JobError::new(
                        "server_error",
                        format!("starting the job in the escrow: {e}"),
                        None,
                    )
                })?;
                self.event(
                    job.seq,
                    "info",
                    format!("Job started in the escrow (transaction {tx})"),
                    EventKind::Message,
                    json!({"start_transaction": tx}),
                );
                Ok(())
            }
            Ok(_) => Err(JobError::new(
                "payment_cancelled",
                "the job fee was taken back from the escrow before the job started",
                None,
            )),
            Err(e) => Err(JobError::new(
                "server_error",
                format!("reading the escrow: {e}"),
                None,
            )),
        }
    }

    /// Completes (or, for a failed job, refunds) the job in the escrow.
    fn settle_in_escrow(&self, job: &Job, failed: bool) {
        let Some(payment) = &job.payment else {
            return;
        };
        let key = payment.job_key;
        match self.runtime.block_on(self.escrow.status(key)) {
            Ok((OnChain::Running, _)) if !failed => {
                match self.runtime.block_on(self.escrow.complete(key)) {
                    Ok(tx) => self.event(
                        job.seq,
                        "info",
                        format!("The job fee was paid to the operator (transaction {tx})"),
                        EventKind::Message,
                        json!({"complete_transaction": tx}),
                    ),
                    Err(e) => {
                        tracing::error!(job = job.seq, error = %e, "cannot complete a job in the escrow")
                    }
                }
            }
            Ok((OnChain::Running | OnChain::Funded, _)) => {
                self.runtime.block_on(self.refund_if_funded(job.seq));
            }
            Ok(_) => {}
            Err(e) => tracing::error!(job = job.seq, error = %e, "cannot read a job's escrow"),
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
        let outcome = self.start_in_escrow(&job).and_then(|()| {
            let model = self.model(&job.spec.model)?;
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
        self.settle_in_escrow(&job, outcome.is_err());
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
