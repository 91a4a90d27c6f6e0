//! The factory's REST API, shaped like OpenAI's fine-tuning and files APIs so that the
//! official clients drive it unchanged. Errors answer OpenAI's
//! `{"error": {"message", "type", "param", "code"}}`.
//!
//! | Route | Does |
//! |---|---|
//! | `POST /v1/fine_tuning/jobs` | create a job (validated in the background) |
//! | `GET /v1/fine_tuning/jobs?after=&limit=` | jobs, newest first |
//! | `GET /v1/fine_tuning/jobs/{id}` | one job, with its report, plan, progress and evaluation |
//! | `POST /v1/fine_tuning/jobs/{id}/cancel` | cancel (at once if not started, else at the next step) |
//! | `GET /v1/fine_tuning/jobs/{id}/events?after=&limit=` | events, newest first |
//! | `GET /v1/fine_tuning/jobs/{id}/events?stream=true` | every event, oldest first, as server-sent events until the job ends |
//! | `GET /v1/fine_tuning/jobs/{id}/checkpoints` | checkpoints, newest first |
//! | `POST /v1/fine_tuning/jobs/{id}/publish` | store the adapter and its lineage → `registerAdapter` call |
//! | `POST /v1/fine_tuning/jobs/{id}/compare` | `{"prompt", "max_tokens"}` → the base model's and the adapter's greedy answers |
//! | `GET /api/adapters/{weights hash}/{file}` | a published adapter's files (PEFT files, `manifest.json`, `examples.bin`, `training_config.json`, `checkpoints/<step>/…`) |
//! | `POST /v1/files` | upload JSONL (multipart, `purpose=fine-tune`) |
//! | `GET /v1/files`, `GET /v1/files/{id}`, `DELETE /v1/files/{id}` | uploaded files |
//!
//! In dev mode the API is open; otherwise every request needs `Authorization: Bearer <key>`
//! with one of the node's API keys.

use crate::{
    job::{self, FileObject},
    spec::CreateJob,
    Factory, FactoryError,
};
use axum::{
    extract::{DefaultBodyLimit, Multipart, Path, Query, Request, State},
    http::{header, StatusCode},
    middleware::{self, Next},
    response::{
        sse::{Event as SseEvent, KeepAlive, Sse},
        IntoResponse, Response,
    },
    routing::{get, post},
    Json, Router,
};
use serde::Deserialize;
use serde_json::{json, Value};
use std::{collections::VecDeque, io::Write, sync::Arc, time::Duration};

type Shared = State<Arc<Factory>>;

/// Who may call the API.
#[derive(Debug, Clone)]
pub enum Access {
    /// Anyone (dev mode).
    Open,
    /// Whoever sends one of these keys as `Authorization: Bearer <key>` (none: nobody).
    Keys(Vec<String>),
}

/// The routes, under `/v1`.
pub fn router(factory: Arc<Factory>, access: Access) -> Router {
    let upload_limit = factory.limits.file_bytes as usize + (1 << 20);
    let access = Arc::new(access);
    Router::new()
        .route("/v1/fine_tuning/jobs", post(create).get(list))
        .route("/v1/fine_tuning/jobs/{id}", get(retrieve))
        .route("/v1/fine_tuning/jobs/{id}/cancel", post(cancel))
        .route("/v1/fine_tuning/jobs/{id}/events", get(events))
        .route("/v1/fine_tuning/jobs/{id}/checkpoints", get(checkpoints))
        .route("/v1/fine_tuning/jobs/{id}/publish", post(publish))
        .route("/v1/fine_tuning/jobs/{id}/compare", post(compare))
        .route("/api/adapters/{hash}/{*file}", get(adapter_file))
        .route(
            "/v1/files",
            post(upload)
                .get(files)
                .layer(DefaultBodyLimit::max(upload_limit)),
        )
        .route("/v1/files/{id}", get(file).delete(delete_file))
        .route_layer(middleware::from_fn_with_state(access, authorize))
        .with_state(factory)
}

/// Middleware refusing requests without one of `access`'s keys (other APIs on the node use
/// it too: `middleware::from_fn_with_state(Arc::new(access), authorize)`).
pub async fn authorize(
    State(access): State<Arc<Access>>,
    request: Request,
    next: Next,
) -> Response {
    let keys = match &*access {
        Access::Open => return next.run(request).await,
        Access::Keys(keys) => keys,
    };
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(key) if keys.iter().any(|k| k == key) => next.run(request).await,
        _ => error(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            "invalid_api_key",
            None,
            "a valid API key is needed: Authorization: Bearer <key>",
        ),
    }
}

fn error(
    status: StatusCode,
    kind: &str,
    code: &str,
    param: Option<&str>,
    message: &str,
) -> Response {
    let body = json!({"error": {"message": message, "type": kind, "param": param, "code": code}});
    (status, Json(body)).into_response()
}

/// An error as the API answers it.
struct ApiError(FactoryError);

impl From<FactoryError> for ApiError {
    fn from(e: FactoryError) -> Self {
        ApiError(e)
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        ApiError(e.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let message = self.0.to_string();
        match &self.0 {
            FactoryError::InvalidRequest { param, .. } => error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "invalid_request",
                param.as_deref(),
                &message,
            ),
            FactoryError::NotFound(_) => error(
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                "not_found",
                None,
                &message,
            ),
            FactoryError::Busy(_) => {
                let mut response = error(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limit_error",
                    "queue_full",
                    None,
                    &message,
                );
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, header::HeaderValue::from_static("60"));
                response
            }
            FactoryError::Store(_) | FactoryError::Io(_) => error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "server_error",
                None,
                &message,
            ),
        }
    }
}

type ApiResult = Result<Response, ApiError>;

fn bad_request(param: Option<&str>, message: impl Into<String>) -> ApiError {
    ApiError(FactoryError::InvalidRequest {
        param: param.map(str::to_string),
        message: message.into(),
    })
}

async fn create(State(factory): Shared, body: axum::body::Bytes) -> ApiResult {
    let request: CreateJob = serde_json::from_slice(&body)
        .map_err(|e| bad_request(None, format!("the request body is not a valid job: {e}")))?;
    let job = factory.create(request)?;
    Ok(Json(job.to_openai()).into_response())
}

#[derive(Deserialize)]
struct Page {
    after: Option<String>,
    limit: Option<usize>,
    #[serde(default)]
    stream: Option<bool>,
}

impl Page {
    fn limit(&self) -> Result<usize, ApiError> {
        match self.limit {
            None => Ok(20),
            Some(n @ 1..=100) => Ok(n),
            Some(n) => Err(bad_request(
                Some("limit"),
                format!("limit {n} must be between 1 and 100"),
            )),
        }
    }
}

fn list_of(data: Vec<Value>, has_more: bool) -> Response {
    Json(json!({"object": "list", "data": data, "has_more": has_more})).into_response()
}

async fn list(State(factory): Shared, Query(page): Query<Page>) -> ApiResult {
    let after = match &page.after {
        Some(id) => Some(
            job::parse_job_id(id)
                .ok_or_else(|| bad_request(Some("after"), format!("{id} is not a job id")))?,
        ),
        None => None,
    };
    let (jobs, more) = factory.store.jobs(after, page.limit()?)?;
    Ok(list_of(
        jobs.iter().map(job::Job::to_openai).collect(),
        more,
    ))
}

async fn retrieve(State(factory): Shared, Path(id): Path<String>) -> ApiResult {
    Ok(Json(factory.job(&id)?.to_openai()).into_response())
}

async fn cancel(State(factory): Shared, Path(id): Path<String>) -> ApiResult {
    Ok(Json(factory.cancel(&id)?.to_openai()).into_response())
}

async fn events(
    State(factory): Shared,
    Path(id): Path<String>,
    Query(page): Query<Page>,
) -> ApiResult {
    let job = factory.job(&id)?;
    if page.stream == Some(true) {
        let after = match &page.after {
            Some(a) => job::parse_event_id(job.seq, a).ok_or_else(|| {
                bad_request(Some("after"), format!("{a} is not an event of {id}"))
            })?,
            None => 0,
        };
        return Ok(stream_events(factory, job.seq, after).into_response());
    }
    let before =
        match &page.after {
            Some(a) => Some(job::parse_event_id(job.seq, a).ok_or_else(|| {
                bad_request(Some("after"), format!("{a} is not an event of {id}"))
            })?),
            None => None,
        };
    let (events, more) = factory
        .store
        .events_before(job.seq, before, page.limit()?)?;
    Ok(list_of(
        events.iter().map(|e| e.to_openai(job.seq)).collect(),
        more,
    ))
}

/// What an event stream holds between polls.
struct Streaming {
    factory: Arc<Factory>,
    seq: u64,
    last: u64,
    pending: VecDeque<job::Event>,
    wake: tokio::sync::broadcast::Receiver<(u64, job::Event)>,
    ended: bool,
    done_sent: bool,
}

/// Every event of job `seq` after number `after`, oldest first, as they happen; the stream
/// ends (with `data: [DONE]`) after the event that finishes the job. It reads the store, so
/// a client that reconnects with the last id it saw misses nothing.
fn stream_events(
    factory: Arc<Factory>,
    seq: u64,
    after: u64,
) -> Sse<impl futures_util::Stream<Item = Result<SseEvent, std::convert::Infallible>>> {
    let state = Streaming {
        wake: factory.subscribe(),
        factory,
        seq,
        last: after,
        pending: VecDeque::new(),
        ended: false,
        done_sent: false,
    };
    let stream = futures_util::stream::unfold(state, |mut st| async move {
        loop {
            if let Some(event) = st.pending.pop_front() {
                let ends = event
                    .data
                    .get("status")
                    .and_then(Value::as_str)
                    .is_some_and(|s| matches!(s, "succeeded" | "failed" | "cancelled"));
                st.ended |= ends;
                let sse = SseEvent::default()
                    .id(job::event_id(st.seq, event.n))
                    .data(event.to_openai(st.seq).to_string());
                return Some((Ok(sse), st));
            }
            if st.ended {
                if st.done_sent {
                    return None;
                }
                st.done_sent = true;
                return Some((Ok(SseEvent::default().data("[DONE]")), st));
            }
            match st.factory.store.events_since(st.seq, st.last, 256) {
                Ok(events) if !events.is_empty() => {
                    st.last = events.last().map_or(st.last, |e| e.n);
                    st.pending.extend(events);
                    continue;
                }
                Ok(_) => {}
                Err(_) => st.ended = true,
            }
            if st.ended {
                continue;
            }
            // Nothing new: wait for any event (or a while), then read the store again.
            let _ = tokio::time::timeout(Duration::from_secs(5), st.wake.recv()).await;
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

async fn checkpoints(
    State(factory): Shared,
    Path(id): Path<String>,
    Query(page): Query<Page>,
) -> ApiResult {
    let job = factory.job(&id)?;
    let limit = page.limit()?;
    let mut all = factory.store.checkpoints(job.seq)?;
    all.reverse();
    if let Some(after) = &page.after {
        let step = after
            .rsplit('-')
            .next()
            .and_then(|s| s.parse::<usize>().ok())
            .ok_or_else(|| bad_request(Some("after"), format!("{after} is not a checkpoint id")))?;
        all.retain(|c| c.step < step);
    }
    let more = all.len() > limit;
    all.truncate(limit);
    Ok(list_of(
        all.iter().map(|c| c.to_openai(&job)).collect(),
        more,
    ))
}

async fn upload(State(factory): Shared, mut form: Multipart) -> ApiResult {
    let count = factory.store.files()?.len();
    if count >= factory.limits.files {
        return Err(bad_request(
            None,
            format!(
                "the factory holds the most files it keeps ({}); delete some first",
                factory.limits.files
            ),
        ));
    }
    let mut purpose = None;
    let mut stored: Option<(tempfile::NamedTempFile, u64, String)> = None;
    while let Some(mut field) = form
        .next_field()
        .await
        .map_err(|e| bad_request(None, format!("the form is malformed: {e}")))?
    {
        match field.name() {
            Some("purpose") => {
                purpose = Some(
                    field
                        .text()
                        .await
                        .map_err(|e| bad_request(Some("purpose"), e.to_string()))?,
                )
            }
            Some("file") => {
                let filename = field.file_name().unwrap_or("upload.jsonl").to_string();
                let mut tmp = tempfile::NamedTempFile::new_in(factory.files_dir())
                    .map_err(|e| ApiError(FactoryError::Io(e.to_string())))?;
                let mut bytes = 0u64;
                while let Some(chunk) = field
                    .chunk()
                    .await
                    .map_err(|e| bad_request(Some("file"), format!("reading the file: {e}")))?
                {
                    bytes += chunk.len() as u64;
                    if bytes > factory.limits.file_bytes {
                        return Err(bad_request(
                            Some("file"),
                            format!(
                                "the file is over the limit of {} bytes",
                                factory.limits.file_bytes
                            ),
                        ));
                    }
                    tmp.write_all(&chunk)
                        .map_err(|e| ApiError(FactoryError::Io(e.to_string())))?;
                }
                stored = Some((tmp, bytes, filename));
            }
            _ => {}
        }
    }
    match purpose.as_deref() {
        Some("fine-tune") => {}
        Some(other) => {
            return Err(bad_request(
                Some("purpose"),
                format!("purpose {other:?} is not supported; use \"fine-tune\""),
            ))
        }
        None => {
            return Err(bad_request(
                Some("purpose"),
                "the form has no purpose field",
            ))
        }
    }
    let (tmp, bytes, filename) =
        stored.ok_or_else(|| bad_request(Some("file"), "the form has no file field"))?;
    let records = check_jsonl(tmp.path())?;
    let seq = factory.store.reserve_file()?;
    tmp.persist(factory.file_path(seq))
        .map_err(|e| ApiError(FactoryError::Io(e.to_string())))?;
    let file = FileObject {
        seq,
        bytes,
        created_at: job::now(),
        filename,
        records,
    };
    factory.store.put_file(&file)?;
    Ok(Json(file.to_openai()).into_response())
}

/// Every non-empty line must be a JSON object; returns how many there are.
fn check_jsonl(path: &std::path::Path) -> Result<u64, ApiError> {
    use std::io::BufRead;
    let file = std::fs::File::open(path).map_err(|e| ApiError(FactoryError::Io(e.to_string())))?;
    let mut records = 0;
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line =
            line.map_err(|_| bad_request(Some("file"), format!("line {}: not UTF-8", i + 1)))?;
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Value>(&line) {
            Ok(Value::Object(_)) => records += 1,
            Ok(_) => {
                return Err(bad_request(
                    Some("file"),
                    format!("line {}: a record must be a JSON object", i + 1),
                ))
            }
            Err(e) => {
                return Err(bad_request(
                    Some("file"),
                    format!("line {}: not JSON: {e}", i + 1),
                ))
            }
        }
    }
    if records == 0 {
        return Err(bad_request(Some("file"), "the file holds no records"));
    }
    Ok(records)
}

async fn files(State(factory): Shared) -> ApiResult {
    let files = factory.store.files()?;
    Ok(list_of(
        files.iter().map(FileObject::to_openai).collect(),
        false,
    ))
}

async fn file(State(factory): Shared, Path(id): Path<String>) -> ApiResult {
    Ok(Json(factory.file(&id)?.to_openai()).into_response())
}

async fn delete_file(State(factory): Shared, Path(id): Path<String>) -> ApiResult {
    let file = factory.file(&id)?;
    factory.store.delete_file(file.seq)?;
    let _ = std::fs::remove_file(factory.file_path(file.seq));
    Ok(Json(json!({"id": id, "object": "file", "deleted": true})).into_response())
}

async fn publish(State(factory): Shared, Path(id): Path<String>) -> ApiResult {
    let job = factory.job(&id)?;
    let publication = factory.publish(job.seq).await.map_err(|e| {
        if e.code == "invalid_request" {
            bad_request(None, e.message)
        } else {
            ApiError(FactoryError::Io(e.message))
        }
    })?;
    factory
        .store
        .update_job(job.seq, |j| j.publication = Some(publication.clone()))?;
    let registry = factory
        .registry_address()
        .map_err(|e| ApiError(FactoryError::Io(e.message)))?;
    Ok(Json(json!({
        "object": "fine_tuning.job.publication",
        "fine_tuning_job_id": job.id(),
        "fine_tuned_model": job.model_name(),
        "publication": publication,
        "call": publication.call(registry),
    }))
    .into_response())
}

/// A published adapter's file, streamed from the blob store.
async fn adapter_file(
    State(factory): Shared,
    Path((hash, file)): Path<(String, String)>,
) -> ApiResult {
    let hash: alloy_primitives::B256 = hash
        .parse()
        .map_err(|_| bad_request(Some("hash"), format!("{hash} is not a weights hash")))?;
    // Only the names publication writes: nothing else in the store is served.
    let known = [
        "adapter_config.json",
        "adapter_model.safetensors",
        "manifest.json",
        "training_config.json",
        "examples.bin",
    ];
    let checkpoint = file
        .strip_prefix("checkpoints/")
        .and_then(|rest| rest.split_once('/'))
        .is_some_and(|(step, name)| {
            step.parse::<u64>().is_ok()
                && matches!(name, "adapter_config.json" | "adapter_model.safetensors")
        });
    if !known.contains(&file.as_str()) && !checkpoint {
        return Err(bad_request(
            Some("file"),
            format!("{file} is not an adapter file"),
        ));
    }
    let key = format!("{}/{file}", crate::publish::adapter_prefix(hash));
    let store = factory.datanets_store();
    if !store
        .exists(&key)
        .await
        .map_err(|e| ApiError(FactoryError::Io(e.to_string())))?
    {
        return Err(ApiError(FactoryError::NotFound(format!(
            "no published adapter file {key}"
        ))));
    }
    let stream = store
        .stream(&key)
        .await
        .map_err(|e| ApiError(FactoryError::Io(e.to_string())))?;
    Ok((
        [(header::CONTENT_TYPE, "application/octet-stream")],
        axum::body::Body::from_stream(stream),
    )
        .into_response())
}

#[derive(Deserialize)]
struct CompareRequest {
    prompt: String,
    #[serde(default = "default_compare_tokens")]
    max_tokens: usize,
}

fn default_compare_tokens() -> usize {
    128
}

async fn compare(
    State(factory): Shared,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult {
    let request: CompareRequest = serde_json::from_slice(&body).map_err(|e| {
        bad_request(
            None,
            format!("expected {{\"prompt\", \"max_tokens\"}}: {e}"),
        )
    })?;
    let job = factory.job(&id)?;
    let (base, tuned) = factory
        .compare(job.seq, request.prompt.clone(), request.max_tokens)
        .await
        .map_err(|e| match e.code.as_str() {
            "invalid_request" => bad_request(None, e.message),
            "busy" => ApiError(FactoryError::Busy(e.message)),
            _ => ApiError(FactoryError::Io(e.message)),
        })?;
    Ok(Json(json!({"prompt": request.prompt, "base": base, "tuned": tuned})).into_response())
}
