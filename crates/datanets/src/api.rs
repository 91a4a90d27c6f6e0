//! The datanets REST API (JSON), served by the node.
//!
//! The service never holds anyone's key: every route that changes the chain stores what goes
//! off chain and answers with the transaction (`{to, data, value}`) for the caller's wallet
//! to sign and send; the indexer then sees it land. Uploads stream the file as the request
//! body. Errors answer `{"error": "…"}` with a 4xx status for bad requests and 5xx for the
//! service's own failures.
//!
//! | Route | Does |
//! |---|---|
//! | `GET /api/info` | chain id, registry address (the EIP-712 domain) and validation policy |
//! | `GET /api/datanets` | list datanets |
//! | `POST /api/datanets` | store schema and description → `createDatanet` call |
//! | `GET /api/datanets/{id}` | a datanet, its description, schema and counts |
//! | `GET /api/datanets/{id}/contributions` | its contributions |
//! | `PUT /api/datanets/{id}/uploads?contributor=0x…&format=jsonl[&progress=true]` | validate and store a file → upload (report, hash); with `progress`, NDJSON progress lines first |
//! | `POST /api/datanets/{id}/uploads/{hash}/metadata` | attach signed metadata → `contribute` call |
//! | `GET /api/datanets/{id}/queue` | pending contributions with reports |
//! | `POST /api/contributions/{id}/reviews` | store a reason (`{approve, reason}`) → `review` call |
//! | `POST /api/datanets/{id}/versions` | build the next version → `publishVersion` call |
//! | `GET /api/datanets/{id}/versions` | its versions |
//! | `GET /api/versions/{id}/proofs/{contribution}` | a membership proof |
//! | `POST /api/proofs/verify` | check a proof here and by the contract |
//! | `GET /api/versions/{id}/export` | the version as JSONL training data |

use crate::{
    format::Format, index::Status, metadata::UploadAuthError, Datanets, DatanetsError, NewDatanet,
    Proof, SignedMetadata, UploadRequest,
};
use alloy_primitives::{Address, B256};
use axum::{
    body::Body,
    extract::{Path, Query, State},
    http::{header, HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post, put},
    Json, Router,
};
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::{json, Value};
use std::{io::Write, sync::Arc};

type Shared = State<Arc<Datanets>>;

/// The routes, under `/api`.
pub fn router(service: Arc<Datanets>) -> Router {
    Router::new()
        .route("/api/info", get(info))
        .route("/api/datanets", get(list).post(create))
        .route("/api/datanets/{id}", get(show))
        .route("/api/datanets/{id}/contributions", get(contributions))
        .route("/api/datanets/{id}/uploads", put(upload))
        .route("/api/datanets/{id}/uploads/{hash}/metadata", post(attach))
        .route("/api/datanets/{id}/queue", get(queue))
        .route("/api/contributions/{id}/reviews", post(review))
        .route("/api/datanets/{id}/versions", get(versions).post(publish))
        .route("/api/versions/{id}/proofs/{contribution}", get(prove))
        .route("/api/proofs/verify", post(verify))
        .route("/api/versions/{id}/export", get(export))
        .with_state(service)
}

/// An error as the API answers it.
struct ApiError(StatusCode, String);

impl From<DatanetsError> for ApiError {
    fn from(e: DatanetsError) -> Self {
        use DatanetsError::*;
        let status = match &e {
            UnknownDatanet(_) | UnknownContribution(_) | UnknownVersion(_) => StatusCode::NOT_FOUND,
            ExactDuplicate { .. } => StatusCode::CONFLICT,
            Validation(_)
            | Metadata(_)
            | BadSchema(_)
            | TooLarge { .. }
            | NotInVersion { .. }
            | NothingToPublish { .. }
            | NoUpload { .. }
            | MissingSchema { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            UploadAuth(crate::metadata::UploadAuthError::Missing) => StatusCode::UNAUTHORIZED,
            UploadAuth(_) => StatusCode::FORBIDDEN,
            ContributorQuota { .. }
            | PendingFull { .. }
            | PendingBytesFull { .. }
            | DraftsFull { .. }
            | Busy { .. } => StatusCode::TOO_MANY_REQUESTS,
            Chain(_) => StatusCode::BAD_GATEWAY,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Self(status, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({"error": self.1}))).into_response()
    }
}

type Answer = Result<Json<Value>, ApiError>;

fn to_json(value: impl serde::Serialize) -> Answer {
    Ok(Json(
        serde_json::to_value(value).expect("API values serialise"),
    ))
}

async fn info(State(s): Shared) -> Answer {
    to_json(json!({
        "chain_id": s.domain().chain_id,
        "registry": s.domain().verifying_contract,
        "policy": s.policy(),
    }))
}

async fn list(State(s): Shared) -> Answer {
    s.sync().await?;
    let mut out = Vec::new();
    for d in s.index().datanets().map_err(DatanetsError::from)? {
        let description = s.description(&d).await?;
        out.push(json!({"datanet": d, "description": description}));
    }
    to_json(out)
}

async fn create(State(s): Shared, Json(spec): Json<NewDatanet>) -> Answer {
    to_json(s.prepare_create(&spec).await?)
}

async fn show(State(s): Shared, Path(id): Path<u64>) -> Answer {
    s.sync().await?;
    let d = s.datanet(id)?;
    let description = s.description(&d).await?;
    let schema = s.schema(&d).await.ok();
    let rows = s.index().contributions(id).map_err(DatanetsError::from)?;
    let count = |status| rows.iter().filter(|c| c.status == status).count();
    to_json(json!({
        "datanet": d,
        "description": description,
        "schema": schema,
        "contributions": {
            "pending": count(Status::Pending),
            "accepted": count(Status::Accepted),
            "rejected": count(Status::Rejected),
            "poisoned": count(Status::Poisoned),
            "withdrawn": count(Status::Withdrawn),
        },
        "versions": s.index().versions(Some(id)).map_err(DatanetsError::from)?.len(),
    }))
}

async fn contributions(State(s): Shared, Path(id): Path<u64>) -> Answer {
    s.sync().await?;
    s.datanet(id)?;
    to_json(s.index().contributions(id).map_err(DatanetsError::from)?)
}

#[derive(Deserialize)]
struct UploadQuery {
    contributor: Address,
    format: Format,
    /// Answer as NDJSON: `{"progress": {stage, done, total}}` lines while the file is
    /// checked, then `{"result": upload}` or `{"error": "…"}`.
    #[serde(default)]
    progress: bool,
}

/// How long an upload may send nothing before it is dropped.
const UPLOAD_IDLE: std::time::Duration = std::time::Duration::from_secs(30);

/// The upload's signature (`X-Upload-Signature`, 65 bytes hex) and its deadline
/// (`X-Upload-Deadline`, unix seconds), from the request's headers.
fn upload_auth(headers: &HeaderMap) -> Result<(Vec<u8>, u64), DatanetsError> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let (Some(signature), Some(deadline)) = (text("x-upload-signature"), text("x-upload-deadline"))
    else {
        return Err(UploadAuthError::Missing.into());
    };
    let signature =
        alloy_primitives::hex::decode(signature).map_err(|_| UploadAuthError::Malformed)?;
    let deadline = deadline.parse().map_err(|_| UploadAuthError::Malformed)?;
    Ok((signature, deadline))
}

async fn upload(
    State(s): Shared,
    Path(id): Path<u64>,
    Query(q): Query<UploadQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    // Checked before a byte is stored: a slot, a signature to verify, room in the quotas.
    let slot = s.upload_slot()?;
    let (signature, deadline) = upload_auth(&headers)?;
    s.sync().await?;
    s.datanet(id)?;
    s.check_quotas(q.contributor, 0).await?;
    // The body streams into a scratch file, hashed on the way, refused as soon as it passes
    // the size limit.
    let mut file = tempfile::NamedTempFile::new_in(s.staging_dir())
        .map_err(|e| DatanetsError::Io(format!("staging an upload: {e}")))?;
    let mut stream = body.into_data_stream();
    let (mut size, mut hasher) = (0u64, alloy_primitives::Keccak256::new());
    let limit = s.policy().max_bytes;
    loop {
        // A client that stops sending frees its slot instead of holding it.
        let next = tokio::time::timeout(UPLOAD_IDLE, stream.next()).await;
        let Ok(next) = next else {
            return Err(ApiError(
                StatusCode::REQUEST_TIMEOUT,
                format!("the upload sent nothing for {} s", UPLOAD_IDLE.as_secs()),
            ));
        };
        let Some(chunk) = next else { break };
        let chunk = chunk.map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.to_string()))?;
        size += chunk.len() as u64;
        if size > limit {
            return Err(
                DatanetsError::Validation(crate::ValidationError::TooLarge { limit }).into(),
            );
        }
        hasher.update(&chunk);
        file.write_all(&chunk)
            .map_err(|e| DatanetsError::Io(format!("staging an upload: {e}")))?;
    }
    file.flush()
        .map_err(|e| DatanetsError::Io(format!("staging an upload: {e}")))?;
    // Only the contributor's key can store an upload under its address.
    let request = UploadRequest {
        datanetId: alloy_primitives::U256::from(id),
        contributor: q.contributor,
        fileHash: hasher.finalize(),
        size,
        deadline,
    };
    request
        .verify(s.domain(), &signature, crate::service::now())
        .map_err(DatanetsError::from)?;
    if !q.progress {
        let uploaded = s.upload(id, file.path(), q.format, q.contributor).await?;
        drop(slot);
        return Ok(to_json(uploaded)?.into_response());
    }
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Value>();
    let progress: crate::Progress = Arc::new(move |stage, done, total| {
        let _ = tx.send(json!({"progress": {"stage": stage, "done": done, "total": total}}));
    });
    let task = tokio::spawn(async move {
        let answer = s
            .upload_reporting(id, file.path(), q.format, q.contributor, Some(progress))
            .await;
        drop((file, slot));
        match answer {
            Ok(uploaded) => json!({"result": uploaded}),
            Err(e) => json!({"error": e.to_string()}),
        }
    });
    // Progress lines until the upload's observer is dropped, then its answer.
    let lines = futures_util::stream::unfold((rx, Some(task)), |(mut rx, task)| async move {
        if let Some(line) = rx.recv().await {
            return Some((line, (rx, task)));
        }
        let answer = task?
            .await
            .unwrap_or_else(|e| json!({"error": e.to_string()}));
        Some((answer, (rx, None)))
    })
    .map(|line| Ok::<_, std::convert::Infallible>(format!("{line}\n")));
    Ok((
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(lines),
    )
        .into_response())
}

async fn attach(
    State(s): Shared,
    Path((id, hash)): Path<(u64, B256)>,
    Json(signed): Json<SignedMetadata>,
) -> Answer {
    to_json(s.attach(id, hash, &signed).await?)
}

async fn queue(State(s): Shared, Path(id): Path<u64>) -> Answer {
    to_json(s.queue(id).await?)
}

#[derive(Deserialize)]
struct ReviewBody {
    approve: bool,
    #[serde(default)]
    reason: String,
}

async fn review(State(s): Shared, Path(id): Path<u64>, Json(body): Json<ReviewBody>) -> Answer {
    to_json(s.prepare_review(id, body.approve, &body.reason).await?)
}

async fn publish(State(s): Shared, Path(id): Path<u64>) -> Answer {
    let (published, call) = s.prepare_publish(id).await?;
    to_json(json!({"root": published.root, "count": published.count, "call": call}))
}

async fn versions(State(s): Shared, Path(id): Path<u64>) -> Answer {
    s.sync().await?;
    s.datanet(id)?;
    to_json(s.index().versions(Some(id)).map_err(DatanetsError::from)?)
}

async fn prove(State(s): Shared, Path((id, contribution)): Path<(u64, u64)>) -> Answer {
    to_json(s.prove(id, contribution).await?)
}

async fn verify(State(s): Shared, Json(proof): Json<Proof>) -> Answer {
    let (here, on_chain) = s.verify(&proof).await?;
    to_json(json!({"here": here, "on_chain": on_chain}))
}

/// The export is written to a scratch file first (every blob is checked against its hash
/// before anything goes out, so a bad one fails the request cleanly), then streamed from it in
/// chunks: memory stays flat whatever the version's size.
async fn export(State(s): Shared, Path(id): Path<u64>) -> Result<Response, ApiError> {
    let io = |e: std::io::Error| DatanetsError::Io(format!("exporting: {e}"));
    let file = tempfile::NamedTempFile::new_in(s.staging_dir()).map_err(io)?;
    let mut out = std::io::BufWriter::new(file.reopen().map_err(io)?);
    s.export(id, &mut out).await?;
    out.flush().map_err(io)?;
    drop(out);
    let reader = file.reopen().map_err(io)?;
    let chunks = futures_util::stream::unfold(Some((reader, file)), |state| async move {
        let (mut reader, file) = state?;
        let read = tokio::task::spawn_blocking(move || {
            let mut buf = vec![0u8; 1 << 20];
            let n = std::io::Read::read(&mut reader, &mut buf)?;
            buf.truncate(n);
            Ok::<_, std::io::Error>((buf, reader))
        })
        .await
        .map_err(std::io::Error::other)
        .and_then(|r| r);
        match read {
            Ok((buf, _)) if buf.is_empty() => None,
            Ok((buf, reader)) => Some((Ok(buf), Some((reader, file)))),
            Err(e) => Some((Err(e), None)),
        }
    });
    Ok((
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(chunks),
    )
        .into_response())
}
