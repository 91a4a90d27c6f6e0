//! The datanets: the list (newest first, paged) and a datanet's own page with its
//! description, schema, contributions (paged, with their review state and a proof of
//! inclusion in the latest version) and versions (roots, whether each matches the accepted
//! contributions, export). Read from the node's datanet index as it is: the node keeps it in
//! step with the chain every two seconds.

use crate::{format, Failure, Web};
use alloy_primitives::U256;
use axum::{
    extract::{rejection::QueryRejection, Path, Query, State},
    response::Response,
    routing::get,
    Router,
};
use minijinja::{context, Value};
use openledger_datanets::{DatanetRow, Status};
use std::{sync::Arc, time::Instant};

/// Datanets, or a datanet's contributions, per page.
const PER_PAGE: usize = 25;

pub fn routes() -> Router<Arc<Web>> {
    Router::new()
        .route("/datanets", get(list))
        .route("/datanets/{id}", get(datanet))
}

#[derive(serde::Deserialize)]
struct Page {
    before: Option<u64>,
}

/// Where a page of ids sits among `ids` (ascending): the newest-first page before `before`,
/// the cursor to the older page, and whether a newer page exists with its cursor (`None`
/// for the newest page itself).
struct Paged {
    shown: Vec<u64>,
    older: Option<u64>,
    newer: Option<Option<u64>>,
}

fn paged(ids: &[u64], before: Option<u64>) -> Paged {
    let limit = before.unwrap_or(u64::MAX);
    let shown: Vec<u64> = ids
        .iter()
        .rev()
        .copied()
        .filter(|&id| id < limit)
        .take(PER_PAGE)
        .collect();
    let older = shown
        .last()
        .filter(|&&last| ids.first().is_some_and(|&first| first < last))
        .copied();
    let newer = before.and_then(|before| {
        let above: Vec<u64> = ids
            .iter()
            .copied()
            .filter(|&id| id >= before)
            .take(PER_PAGE + 1)
            .collect();
        match above.len() {
            0 => None,
            n if n > PER_PAGE => Some(Some(above[PER_PAGE - 1] + 1)),
            _ => Some(None),
        }
    });
    Paged {
        shown,
        older,
        newer,
    }
}

/// A datanet's description field, cut for a table.
pub(crate) async fn described(web: &Web, d: &DatanetRow) -> (String, String) {
    let description = web.datanets.description(d).await.ok().flatten();
    let text = |k: &str| {
        description
            .as_ref()
            .and_then(|v| v.get(k))
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    (text("name"), text("description"))
}

async fn list(State(web): State<Arc<Web>>, page: Result<Query<Page>, QueryRejection>) -> Response {
    let started = Instant::now();
    let page = match crate::params(page) {
        Ok(page) => page,
        Err(f) => return web.error(started, f),
    };
    let rows = match web.datanets.index().datanets() {
        Ok(rows) => rows,
        Err(e) => return web.error(started, Failure::index(e)),
    };
    let ids: Vec<u64> = rows.iter().map(|d| d.id).collect();
    let p = paged(&ids, page.before);
    let mut list = Vec::with_capacity(p.shown.len());
    for d in rows.iter().rev().filter(|d| p.shown.contains(&d.id)) {
        let (name, description) = described(&web, d).await;
        list.push(context! {
            id => d.id,
            name => format::short(&name, 80),
            description => format::short(&description, 80),
            owner => d.owner.to_string(),
            quorum => d.quorum,
            fee => format::open(U256::from(d.fee)),
        });
    }
    let (has_newer, newer) = (p.newer.is_some(), p.newer.flatten());
    let ctx = context! {
        datanets => list, older => p.older, newer, has_newer, any => !rows.is_empty(),
    };
    web.page(started, "datanets", "datanets.html", ctx)
}

fn status(s: Status) -> &'static str {
    match s {
        Status::Pending => "pending review",
        Status::Accepted => "accepted",
        Status::Rejected => "rejected",
        Status::Poisoned => "poisoned",
        Status::Withdrawn => "withdrawn",
    }
}

async fn datanet(
    State(web): State<Arc<Web>>,
    Path(raw): Path<String>,
    page: Result<Query<Page>, QueryRejection>,
) -> Response {
    let started = Instant::now();
    let page = match crate::params(page) {
        Ok(page) => page,
        Err(f) => return web.error(started, f),
    };
    let Ok(id) = raw.parse::<u64>() else {
        let text = format::short(&raw, 40);
        return web.error(
            started,
            Failure::bad_input(format!("{text:?} is not a datanet id")),
        );
    };
    match datanet_page(&web, id, page.before).await {
        Ok(ctx) => web.page(started, "datanets", "datanet.html", ctx),
        Err(f) => web.error(started, f),
    }
}

async fn datanet_page(web: &Web, id: u64, before: Option<u64>) -> Result<Value, Failure> {
    let index = web.datanets.index();
    let Some(d) = index.datanet(id).map_err(Failure::index)? else {
        return Err(Failure::not_found(format!(
            "there is no datanet {id} (yet: this node's index follows the chain every two seconds)"
        )));
    };
    let (name, description) = described(web, &d).await;
    let schema = web
        .datanets
        .schema(&d)
        .await
        .ok()
        .and_then(|s| serde_json::to_string_pretty(&s).ok());
    let contributions = index.contributions(id).map_err(Failure::index)?;
    let versions = index.versions(Some(id)).map_err(Failure::index)?;
    // The latest version's members (cached by the service): the contributions a proof exists for.
    let latest = versions.last().map(|v| v.id);
    let members = match latest {
        Some(v) => web.datanets.members(v).await.unwrap_or_default(),
        None => Vec::new(),
    };
    let ids: Vec<u64> = contributions.iter().map(|c| c.id).collect();
    let p = paged(&ids, before);
    let rows: Vec<Value> = contributions
        .iter()
        .rev()
        .filter(|c| p.shown.contains(&c.id))
        .map(|c| {
            let proof = latest
                .filter(|_| members.binary_search(&c.id).is_ok())
                .map(|version| format!("/api/versions/{version}/proofs/{}", c.id));
            context! {
                id => c.id,
                contributor => c.contributor.to_string(),
                size => c.size,
                status => status(c.status),
                approvals => c.approvals.len(),
                rejections => c.rejections.len(),
                challenged => c.challenged,
                block => c.block,
                proof,
            }
        })
        .collect();
    let versions: Vec<Value> = versions
        .iter()
        .rev()
        .map(|v| {
            context! {
                id => v.id, count => v.count, root => v.root.to_string(), block => v.block,
                matches => v.matches_accepted,
            }
        })
        .collect();
    let datanet = context! {
        id, name, description, schema,
        owner => d.owner.to_string(),
        quorum => d.quorum,
        fee => format::open(U256::from(d.fee)),
        created => d.created_block,
        accepted => contributions.iter().filter(|c| c.status == Status::Accepted).count(),
        pending => contributions.iter().filter(|c| c.status == Status::Pending).count(),
        total => contributions.len(),
    };
    let (has_newer, newer) = (p.newer.is_some(), p.newer.flatten());
    // What a new version would change: accepted contributions that no version holds yet, and
    // members of the latest version that are no longer accepted (poisoned, say).
    let accepted: Vec<u64> = contributions
        .iter()
        .filter(|c| c.status == Status::Accepted)
        .map(|c| c.id)
        .collect();
    let unpublished = accepted
        .iter()
        .filter(|id| members.binary_search(id).is_err())
        .count();
    let dropped = members
        .iter()
        .filter(|id| accepted.binary_search(id).is_err())
        .count();
    let queue = review_queue(web, id).await;
    // The rest of the page stands without it: the failure is logged where it happens.
    let access = crate::access::of(web, id).await.ok();
    Ok(context! {
        datanet, contributions => rows, versions, older => p.older, newer, has_newer,
        queue, unpublished, dropped, access,
    })
}

/// Pending contributions shown for review at most.
const QUEUE_SHOWN: usize = 25;

/// The oldest pending contributions with their reports, for curators; empty where the queue
/// cannot be read (the page still shows the rest).
async fn review_queue(web: &Web, id: u64) -> Vec<Value> {
    let queue = match web.datanets.queue_first(id, QUEUE_SHOWN).await {
        Ok(q) => q,
        Err(e) => {
            tracing::warn!(datanet = id, error = %e, "the review queue could not be read");
            return Vec::new();
        }
    };
    queue
        .iter()
        .map(|entry| {
            let c = &entry.contribution;
            let report = entry.report.as_ref().map(|r| {
                context! {
                    records => r.records, bytes => r.bytes, flags => r.flags.len(),
                    near_duplicates => r.near_duplicates, secrets => r.secrets,
                    personal_data => r.personal_data,
                }
            });
            let licence = entry.metadata.as_ref().map(|m| m.metadata.licence.clone());
            context! {
                id => c.id, contributor => c.contributor.to_string(),
                approvals => c.approvals.len(), rejections => c.rejections.len(),
                report, licence,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_walk_every_id_once_newest_first() {
        let ids: Vec<u64> = (1..=60).collect();
        let first = paged(&ids, None);
        assert_eq!(first.shown.first(), Some(&60));
        assert_eq!(first.shown.len(), PER_PAGE);
        assert!(first.newer.is_none());
        let second = paged(&ids, first.older);
        assert_eq!(second.shown.first(), Some(&35));
        assert_eq!(second.newer, Some(None), "the newest page is the bare list");
        let third = paged(&ids, second.older);
        assert_eq!(third.shown, (1..=10).rev().collect::<Vec<_>>());
        assert_eq!(third.older, None);
        assert_eq!(
            third.newer,
            Some(Some(36)),
            "back to the page starting at 35"
        );
        let mut all: Vec<u64> = [first.shown, second.shown, third.shown].concat();
        all.sort_unstable();
        assert_eq!(all, ids);
        assert!(paged(&[], None).shown.is_empty());
    }
}
