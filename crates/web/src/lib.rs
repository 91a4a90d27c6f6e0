//! The web app the node serves at `/`: pages rendered on the server (minijinja templates
//! embedded in the binary, a stylesheet, no build step and no Node.js), over the same
//! services as the APIs beside it.
//!
//! - [`router`]: the pages and the assets; every page is linkable and says how long the
//!   server took (`Server-Timing: app;dur=…`).
//! - `datanets`: the datanets, and each with its contributions and versions.
//! - `access`: a datanet's access policy and requests, and the forms that answer them.
//! - `factory`: the fine-tuning form and a job's page (filled by `assets/factory.js` from the
//!   factory's API: plan, fee, live loss chart, evaluation, publication).
//! - `models`: adapters with their lineage, and agents with their prices and hosts;
//!   `deploy` prepares deploying an agent and its host's acceptance.
//! - `token`: supply, locked and circulating OPEN, and the unlock schedule, from the vesting
//!   wallets on chain.
//! - `governance`: the rules of a vote, the proposals with their states and tallies, and one
//!   proposal's actions in words; `proposals` prepares propose, vote, queue and execute.
//! - `rewards`: an account's earnings from inference by role and datanet, its payouts and
//!   claims, and the claim form.
//! - `explorer`: blocks, transactions (calls to the protocol's contracts named by their ABIs),
//!   addresses, and search by number, hash or address.
//! - `abi`: function names by selector, from the committed contract artifacts.
//! - `wallet`: the dev accounts' signer on a `--dev` node, and revert data in words; the
//!   browser side is `assets/wallet.js` (any EIP-1193 wallet, or the dev accounts).
//! - `calls`: the transactions the forms prepare for the person's wallet to sign; the
//!   browser side is `assets/forms.js`.
//!
//! This is the web layer: it reads the chain through JSON-RPC (`openledger-protocol`) and the
//! datanets through their service; nothing below it knows it exists.

mod abi;
mod access;
mod account;
mod calls;
mod datanets;
mod deploy;
mod explorer;
mod factory;
mod format;
mod governance;
mod models;
mod proposals;
mod rewards;
mod token;
mod wallet;

pub use wallet::WalletSettings;

use axum::{
    extract::{rejection::QueryRejection, Query, State},
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    routing::get,
    Router,
};
use minijinja::{context, Environment, Value};
use openledger_datanets::Datanets;
use openledger_protocol::ProtocolClient;
use std::{sync::Arc, time::Instant};

/// The top navigation: (section key, label, link).
const NAV: &[(&str, &str, &str)] = &[
    ("datanets", "Datanets", "/datanets"),
    ("factory", "Factory", "/factory"),
    ("models", "Models", "/models"),
    ("agents", "Agents", "/agents"),
    ("token", "Token", "/token"),
    ("governance", "Governance", "/governance"),
    ("rewards", "Rewards", "/rewards"),
    ("explorer", "Explorer", "/explorer"),
];

/// What the pages read from.
pub struct Web {
    templates: Environment<'static>,
    client: ProtocolClient,
    datanets: Arc<Datanets>,
    names: abi::Names,
    wallet: WalletSettings,
    /// One lock per dev account: the dev wallet sends from each one at a time.
    dev_turns: Vec<tokio::sync::Mutex<()>>,
    /// The "Sign as" menu's dev entries, (address, label); derived once, since deriving the
    /// dev host's key from the mnemonic costs milliseconds.
    dev_menu: Vec<(String, String)>,
    /// The node's dev host, on a dev node: the agent form's default host.
    dev_host: Option<alloy_primitives::Address>,
}

impl Web {
    /// The app over `client` (with the protocol's addresses) and the datanets service;
    /// `wallet` says what browser wallets are told and whom the dev wallet signs for.
    pub fn new(
        client: ProtocolClient,
        datanets: Arc<Datanets>,
        wallet: WalletSettings,
    ) -> Arc<Self> {
        let names = abi::Names::new(client.addresses());
        let dev_turns = wallet.dev_keys.iter().map(|_| Default::default()).collect();
        let dev_host =
            (!wallet.dev_keys.is_empty()).then(|| openledger_protocol::genesis::dev_host().address);
        let dev_menu = wallet
            .dev_keys
            .iter()
            .enumerate()
            .map(|(i, k)| {
                let label = if Some(k.address) == dev_host {
                    "dev host".to_string()
                } else {
                    format!("dev account {i}")
                };
                (k.address.to_string(), label)
            })
            .collect();
        Arc::new(Self {
            templates: templates(),
            client,
            datanets,
            names,
            wallet,
            dev_turns,
            dev_menu,
            dev_host,
        })
    }

    /// What every page's layout shows: the navigation and the wallet's settings.
    fn base(&self, section: &str) -> Value {
        let nav: Vec<Value> = NAV
            .iter()
            .map(|(key, label, href)| context! {key, label, href})
            .collect();
        let dev_accounts: Vec<Value> = self
            .dev_menu
            .iter()
            .map(|(address, label)| context! { address, label })
            .collect();
        context! {
            nav, section, chain_id => self.client.chain_id(),
            rpc_url => self.wallet.rpc_url.clone(), dev_accounts,
        }
    }

    /// Renders template `name` for section `section` with `ctx`, or the error page.
    fn page(&self, started: Instant, section: &str, name: &str, ctx: Value) -> Response {
        let base = self.base(section);
        let rendered = self
            .templates
            .get_template(name)
            .and_then(|t| t.render(context! {..ctx, ..base}));
        match rendered {
            Ok(html) => html_response(started, StatusCode::OK, html),
            Err(e) => {
                tracing::error!(template = name, error = %e, "a page failed to render");
                self.error(
                    started,
                    Failure::internal("this page could not be rendered"),
                )
            }
        }
    }

    /// The error page for `failure`.
    fn error(&self, started: Instant, failure: Failure) -> Response {
        let base = self.base("");
        let html = self
            .templates
            .get_template("error.html")
            .and_then(|t| {
                t.render(context! {
                    heading => failure.heading, message => failure.message.clone(), ..base
                })
            })
            .unwrap_or_else(|_| escape(&failure.message));
        html_response(started, failure.status, html)
    }
}

/// Why a page could not be shown, in words for the person reading it.
pub(crate) struct Failure {
    status: StatusCode,
    heading: &'static str,
    message: String,
}

impl Failure {
    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            heading: "Not found",
            message: message.into(),
        }
    }

    pub(crate) fn bad_input(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            heading: "That cannot be read",
            message: message.into(),
        }
    }

    pub(crate) fn internal(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            heading: "Something failed here",
            message: message.into(),
        }
    }

    /// A page's query string could not be read.
    pub(crate) fn query(e: QueryRejection) -> Self {
        Self::bad_input(format!(
            "the page's parameters cannot be read: {}",
            e.body_text()
        ))
    }

    /// The datanet index could not be read (the detail goes to the log, not the page).
    pub(crate) fn index(e: impl std::fmt::Display) -> Self {
        tracing::error!(error = %e, "a page could not read the datanet index");
        Self {
            status: StatusCode::SERVICE_UNAVAILABLE,
            heading: "The datanets could not be read",
            message: "this node's datanet index could not be read; try again shortly".into(),
        }
    }

    /// The chain could not be read.
    pub(crate) fn chain(e: impl std::fmt::Display) -> Self {
        tracing::warn!(error = %e, "a page could not read the chain");
        Self {
            status: StatusCode::BAD_GATEWAY,
            heading: "The chain could not be read",
            message: "the node's JSON-RPC did not answer; try again shortly".into(),
        }
    }
}

/// A page's query parameters, or why they cannot be read.
pub(crate) fn params<T>(query: Result<Query<T>, QueryRejection>) -> Result<T, Failure> {
    query.map(|Query(q)| q).map_err(Failure::query)
}

/// `text` with HTML's special characters escaped.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// What every page says about itself to the browser: only this origin's resources, never in
/// another site's frame, no type sniffing.
const SECURITY_HEADERS: &[(&str, &str)] = &[
    (
        "content-security-policy",
        "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    ),
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "same-origin"),
];

fn html_response(started: Instant, status: StatusCode, html: String) -> Response {
    let timing = format!("app;dur={:.2}", started.elapsed().as_secs_f64() * 1e3);
    let mut response = (status, html).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    if let Ok(v) = HeaderValue::from_str(&timing) {
        headers.insert("server-timing", v);
    }
    for (name, value) in SECURITY_HEADERS {
        headers.insert(*name, HeaderValue::from_static(value));
    }
    response
}

/// The templates, embedded; HTML auto-escaped.
fn templates() -> Environment<'static> {
    let mut env = Environment::new();
    let all: &[(&str, &str)] = &[
        ("layout.html", include_str!("../templates/layout.html")),
        ("home.html", include_str!("../templates/home.html")),
        ("error.html", include_str!("../templates/error.html")),
        ("datanets.html", include_str!("../templates/datanets.html")),
        ("datanet.html", include_str!("../templates/datanet.html")),
        ("models.html", include_str!("../templates/models.html")),
        ("factory.html", include_str!("../templates/factory.html")),
        ("job.html", include_str!("../templates/job.html")),
        ("agents.html", include_str!("../templates/agents.html")),
        ("agent.html", include_str!("../templates/agent.html")),
        ("token.html", include_str!("../templates/token.html")),
        (
            "governance.html",
            include_str!("../templates/governance.html"),
        ),
        ("proposal.html", include_str!("../templates/proposal.html")),
        ("rewards.html", include_str!("../templates/rewards.html")),
        (
            "explorer/blocks.html",
            include_str!("../templates/explorer/blocks.html"),
        ),
        (
            "explorer/block.html",
            include_str!("../templates/explorer/block.html"),
        ),
        (
            "explorer/tx.html",
            include_str!("../templates/explorer/tx.html"),
        ),
        (
            "explorer/address.html",
            include_str!("../templates/explorer/address.html"),
        ),
        (
            "explorer/txs.html",
            include_str!("../templates/explorer/txs.html"),
        ),
    ];
    for (name, source) in all {
        env.add_template(name, source)
            .expect("the embedded templates parse");
    }
    env
}

/// The pages and assets.
pub fn router(web: Arc<Web>) -> Router {
    Router::new()
        .route("/", get(home))
        .route("/assets/{name}", get(asset))
        .merge(datanets::routes())
        .merge(models::routes())
        .merge(token::routes())
        .merge(explorer::routes())
        .merge(factory::routes())
        .merge(governance::routes())
        .merge(proposals::routes())
        .merge(access::routes())
        .merge(deploy::routes())
        .merge(rewards::routes())
        .merge(wallet::routes())
        .merge(calls::routes())
        .with_state(web)
}

/// The stylesheet and the scripts, embedded: (name, content type, text).
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "app.css",
        "text/css; charset=utf-8",
        include_str!("../assets/app.css"),
    ),
    (
        "wallet.js",
        "text/javascript; charset=utf-8",
        include_str!("../assets/wallet.js"),
    ),
    (
        "forms.js",
        "text/javascript; charset=utf-8",
        include_str!("../assets/forms.js"),
    ),
    (
        "hash-worker.js",
        "text/javascript; charset=utf-8",
        include_str!("../assets/hash-worker.js"),
    ),
    (
        "keccak.js",
        "text/javascript; charset=utf-8",
        include_str!("../assets/keccak.js"),
    ),
    (
        "playground.js",
        "text/javascript; charset=utf-8",
        include_str!("../assets/playground.js"),
    ),
    (
        "factory.js",
        "text/javascript; charset=utf-8",
        include_str!("../assets/factory.js"),
    ),
    (
        "favicon.svg",
        "image/svg+xml",
        include_str!("../assets/favicon.svg"),
    ),
];

async fn asset(axum::extract::Path(name): axum::extract::Path<String>) -> Response {
    match ASSETS.iter().find(|(n, _, _)| *n == name) {
        Some((_, content_type, text)) => (
            [
                (header::CONTENT_TYPE, *content_type),
                (header::CACHE_CONTROL, "public, max-age=300"),
            ],
            *text,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no such asset").into_response(),
    }
}

async fn home(State(web): State<Arc<Web>>) -> Response {
    let started = Instant::now();
    let head = match web.client.block_number().await {
        Ok(head) => head,
        Err(e) => return web.error(started, Failure::chain(e)),
    };
    // The node keeps the index in step with the chain (every two seconds): pages read it as
    // it is rather than each wait on a sync.
    let datanets = match web.datanets.index().datanets() {
        Ok(rows) => rows.len(),
        Err(e) => return web.error(started, Failure::index(e)),
    };
    web.page(started, "", "home.html", context! {head, datanets})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_parses_and_what_users_wrote_is_escaped() {
        let env = templates();
        let row = context! {
            id => 1, name => "<script>alert(1)</script>", description => "a & b",
            owner => "0x00", quorum => 1, fee => "0",
        };
        let html = env
            .get_template("datanets.html")
            .unwrap()
            .render(context! {
                nav => vec![context! {key => "datanets", label => "Datanets", href => "/datanets"}],
                section => "datanets", chain_id => 1, datanets => vec![row],
                older => None::<u64>, newer => None::<u64>,
            })
            .unwrap();
        // minijinja's HTML escaping also writes `/` as `&#x2f;`, which browsers read back.
        assert!(
            html.contains("&lt;script&gt;alert(1)&lt;&#x2f;script&gt;"),
            "{html}"
        );
        assert!(!html.contains("<script>") && html.contains("a &amp; b"));
        assert!(html.contains(r#"<a href="&#x2f;datanets" aria-current="page">Datanets</a>"#));
        assert_eq!(
            escape(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
        for name in [
            "home.html",
            "error.html",
            "explorer/blocks.html",
            "explorer/block.html",
            "explorer/tx.html",
            "explorer/address.html",
            "explorer/txs.html",
            "datanet.html",
            "models.html",
            "agents.html",
            "agent.html",
            "token.html",
            "factory.html",
            "job.html",
        ] {
            assert!(env.get_template(name).is_ok(), "{name}");
        }
    }
}
