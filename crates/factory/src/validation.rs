//! Validating a job before it joins the queue: its files (every source read and checked, every
//! record rendered and tokenized, the prepared data written), then its fee (the payer funds
//! the job's key in the escrow), then the payer's access to every permissioned datanet. A job
//! that fails any of them fails with OpenAI's `error{code, message, param}`, and a fee already
//! paid is refunded.

use crate::{
    data::{self, Record, Report},
    escrow::OnChain,
    estimate,
    job::{self, EventKind, JobError, Status},
    service::Factory,
    spec::{self, Source},
};
use alloy_primitives::Address;
use serde_json::json;
use std::{sync::Arc, time::Duration};

/// How long a validated job waits for its fee before it fails.
const PAYMENT_WAIT: Duration = Duration::from_secs(3600);
/// How often the escrow is read while waiting.
const PAYMENT_POLL: Duration = Duration::from_millis(250);

fn server(message: impl Into<String>) -> JobError {
    JobError::new("server_error", message, None)
}

type Validated = (Vec<u64>, Report, spec::Plan, Address);

impl Factory {
    pub(crate) fn spawn_validation(self: &Arc<Self>, seq: u64) {
        let factory = self.clone();
        tokio::spawn(async move {
            let files = {
                let _permit = factory.validating.acquire().await;
                factory.validate_files(seq).await
            };
            let outcome = match files {
                Ok((versions, report, plan)) => {
                    factory.files_validated(seq, &report, &plan);
                    match factory.await_payment(seq).await {
                        Ok(payer) => factory
                            .check_access(seq, &versions, payer)
                            .await
                            .map(|()| (versions, report, plan, payer)),
                        Err(e) => Err(e),
                    }
                }
                Err(e) => Err(e),
            };
            factory.finish_validation(seq, outcome).await;
        });
    }

    /// The files: the sources are readable and on chain, every record renders and tokenizes,
    /// and the prepared data is on disk.
    async fn validate_files(
        self: &Arc<Self>,
        seq: u64,
    ) -> Result<(Vec<u64>, Report, spec::Plan), JobError> {
        let job = self
            .store
            .job(seq)
            .map_err(|e| server(e.to_string()))?
            .ok_or_else(|| server("the job vanished"))?;
        let factory = self.clone();
        let name = job.spec.model.clone();
        let model = tokio::task::spawn_blocking(move || factory.model(&name))
            .await
            .map_err(|e| server(e.to_string()))??;
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
                let file = job::parse_file_id(id).unwrap_or(0);
                data::gather_file(&self.file_path(file), 0, id, &mut out).map_err(|e| {
                    JobError {
                        param: Some("validation_file".into()),
                        ..e
                    }
                })?;
                Some(out)
            }
            None => None,
        };
        let dir = self.job_dir(seq);
        let hyper = job.spec.hyperparameters.clone();
        tokio::task::spawn_blocking(move || {
            let (mut all, mut report) = data::prepare(&model, &records, cutoff, sources)?;
            let mut from_file = None;
            if let Some(records) = eval_records {
                // Held-out examples from a validation file come first; the split then takes
                // exactly those.
                let (mut held, _) = data::prepare(&model, &records, cutoff, Vec::new())?;
                from_file = Some(held.len());
                held.append(&mut all);
                all = held;
            }
            let plan = hyper.plan(all.len() - from_file.unwrap_or(0), from_file);
            report.estimate = Some(estimate::estimate(model.config(), &report, &plan, &hyper));
            std::fs::create_dir_all(&dir)
                .and_then(|()| data::write_samples(&dir.join("data.bin"), &all))
                .map_err(|e| server(format!("writing the prepared data: {e}")))?;
            Ok((versions, report, plan))
        })
        .await
        .map_err(|e| server(e.to_string()))?
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
            .map_err(|e| server(format!("datanet index: {e}")))?;
        for (i, source) in sources.iter().enumerate() {
            let report = match source {
                Source::Datanet { datanet, version } => {
                    let version = match version {
                        Some(v) => *v,
                        None => self.latest_version(*datanet)?,
                    };
                    versions.push(version);
                    let (datanets, client) = (&self.datanets, &self.client);
                    data::gather_version(datanets, client, i, *datanet, version, &mut records)
                        .await?
                }
                Source::File { id } => {
                    let file = job::parse_file_id(id).unwrap_or(0);
                    data::gather_file(&self.file_path(file), i, id, &mut records)?
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
            .map_err(|e| server(e.to_string()))?;
        versions.iter().map(|v| v.id).max().ok_or_else(|| {
            JobError::new(
                "invalid_training_file",
                format!("datanet:{datanet} has no published version"),
                Some("training_file"),
            )
        })
    }

    fn files_validated(&self, seq: u64, report: &Report, plan: &spec::Plan) {
        let seconds = report.estimate.as_ref().map_or(0.0, |e| e.seconds);
        self.event(
            seq,
            "info",
            format!(
                "Files validated: {} examples, {} tokens ({} cut to the cutoff length); {} \
                 training steps, about {seconds:.0} s",
                report.examples, report.tokens, report.truncated, plan.total_steps,
            ),
            EventKind::Message,
            json!({"report": report, "plan": plan}),
        );
    }

    /// Waits until the job's key is funded in the escrow; returns the payer.
    async fn await_payment(&self, seq: u64) -> Result<Address, JobError> {
        let job = self
            .store
            .job(seq)
            .ok()
            .flatten()
            .ok_or_else(|| server("the job vanished"))?;
        let payment = job
            .payment
            .ok_or_else(|| server("the job has no payment"))?;
        let deadline = tokio::time::Instant::now() + PAYMENT_WAIT;
        let mut told = false;
        loop {
            match self.escrow.status(payment.job_key).await {
                Ok((OnChain::Funded | OnChain::Running, payer)) => return Ok(payer),
                Ok((OnChain::Unfunded, _)) => {}
                Ok(_) => {
                    return Err(JobError::new(
                        "payment_cancelled",
                        "the job fee was taken back from the escrow before the job started",
                        None,
                    ))
                }
                Err(e) => tracing::warn!(job = seq, error = %e, "cannot read the job escrow"),
            }
            let status = self.store.job(seq).ok().flatten().map(|j| j.status);
            if status != Some(Status::ValidatingFiles) {
                return Err(JobError::new("cancelled", "the job was cancelled", None));
            }
            if !told {
                told = true;
                self.event(
                    seq,
                    "info",
                    format!(
                        "Waiting for the job fee: send {} wei of OPEN with \
                         ModelFactory({}).fund({}, {})",
                        payment.fee, payment.escrow, payment.operator, payment.job_key
                    ),
                    EventKind::Message,
                    json!({"payment": {
                        "escrow": payment.escrow, "operator": payment.operator,
                        "job_key": payment.job_key, "fee": payment.fee.to_string(),
                    }}),
                );
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(JobError::new(
                    "payment_required",
                    format!(
                        "the job fee was not paid within {} minutes",
                        PAYMENT_WAIT.as_secs() / 60
                    ),
                    None,
                ));
            }
            tokio::time::sleep(PAYMENT_POLL).await;
        }
    }

    /// The payer may train on every datanet the job reads.
    async fn check_access(
        &self,
        seq: u64,
        versions: &[u64],
        payer: Address,
    ) -> Result<(), JobError> {
        let job = self
            .store
            .job(seq)
            .ok()
            .flatten()
            .ok_or_else(|| server("the job vanished"))?;
        let datanets = job.spec.sources.iter().filter_map(|s| match s {
            Source::Datanet { datanet, .. } => Some(*datanet),
            Source::File { .. } => None,
        });
        for (datanet, version) in datanets.zip(versions) {
            let allowed = self
                .escrow
                .has_access(datanet, payer)
                .await
                .map_err(|e| server(format!("reading datanet {datanet}'s access: {e}")))?;
            if !allowed {
                return Err(JobError::new(
                    "datanet_access_denied",
                    format!(
                        "datanet:{datanet}@{version} is permissioned and {payer} holds no access \
                         grant for it: request access from its owner first"
                    ),
                    Some("training_file"),
                ));
            }
        }
        Ok(())
    }

    async fn finish_validation(&self, seq: u64, outcome: Result<Validated, JobError>) {
        if matches!(&outcome, Err(e) if e.code != "cancelled") {
            // The fee goes back before the job reads as failed, so that whoever sees the
            // failure also sees the refund.
            self.refund_if_funded(seq).await;
        }
        let mut queued = false;
        let result = self.store.update_job(seq, |job| {
            if job.status != Status::ValidatingFiles {
                return; // cancelled meanwhile
            }
            match &outcome {
                Ok((versions, report, plan, payer)) => {
                    job.versions = versions.clone();
                    job.report = Some(report.clone());
                    job.plan = Some(*plan);
                    if let Some(p) = job.payment.as_mut() {
                        p.payer = Some(*payer);
                    }
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
            Ok((_, _, _, payer)) if queued => {
                self.event(
                    seq,
                    "info",
                    format!("Job fee paid by {payer}; job enqueued"),
                    EventKind::Message,
                    json!({"payer": payer}),
                );
                self.wake();
            }
            Err(error) if error.code != "cancelled" => {
                self.event(
                    seq,
                    "error",
                    format!("Validation failed: {}", error.message),
                    EventKind::Message,
                    json!({"error": error, "status": "failed"}),
                );
            }
            _ => {}
        }
    }
}
