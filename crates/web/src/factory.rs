//! The factory's pages: a form to fine-tune on a datanet version, and a job's page. The job
//! page is a shell the browser fills from the factory's own API (`/v1/fine_tuning/jobs/…`): the
//! validation report and plan (the pre-flight estimate, before the fee is paid), the loss chart
//! live from the job's event stream (replayed from the start after a reload), the evaluation
//! with base and tuned answers side by side, and publication.

use crate::{Failure, Web};
use axum::{
    extract::{Path, State},
    response::Response,
    routing::get,
    Router,
};
use minijinja::{context, Value};
use std::{sync::Arc, time::Instant};

/// Versions offered in the form, newest first.
const VERSIONS_OFFERED: usize = 100;

pub(crate) fn routes() -> Router<Arc<Web>> {
    Router::new()
        .route("/factory", get(factory))
        .route("/factory/jobs/{id}", get(job))
}

async fn factory(State(web): State<Arc<Web>>) -> Response {
    let started = Instant::now();
    match versions(&web).await {
        Ok(versions) => web.page(started, "factory", "factory.html", context! {versions}),
        Err(f) => web.error(started, f),
    }
}

/// The datanet versions a job may train on, newest first, with their datanets' names.
async fn versions(web: &Web) -> Result<Vec<Value>, Failure> {
    let index = web.datanets.index();
    let rows = index.versions(None).map_err(Failure::index)?;
    let offered: Vec<_> = rows.iter().rev().take(VERSIONS_OFFERED).collect();
    let mut names = std::collections::HashMap::new();
    for v in &offered {
        if names.contains_key(&v.datanet) {
            continue;
        }
        let name = match index.datanet(v.datanet).map_err(Failure::index)? {
            Some(d) => crate::datanets::described(web, &d).await.0,
            None => String::new(),
        };
        names.insert(v.datanet, name);
    }
    Ok(offered
        .iter()
        .map(|v| {
            context! {
                id => v.id, datanet => v.datanet, count => v.count,
                name => names.get(&v.datanet).cloned().unwrap_or_default(),
            }
        })
        .collect())
}

async fn job(State(web): State<Arc<Web>>, Path(id): Path<String>) -> Response {
    let started = Instant::now();
    // Job ids are `ftjob-N`; anything else cannot be one.
    let valid = id
        .strip_prefix("ftjob-")
        .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()));
    if !valid {
        let text = crate::format::short(&id, 40);
        return web.error(
            started,
            Failure::bad_input(format!("{text:?} is not a job id (ftjob-N)")),
        );
    }
    web.page(started, "factory", "job.html", context! {job => id})
}
