//! `openledger receipts [ID]`: an account's paid answers as the host metered them. One
//! receipt is shown with what it cost, its attribution explained (the answer's spans traced to
//! the contributions paid for it, and their shares in basis points) and how far its
//! settlement has come.

use crate::rest::Api;
use anyhow::{Context, Result};
use serde_json::Value;

#[derive(clap::Args)]
pub struct ReceiptsArgs {
    /// The receipt to show; without one, the most recent receipts are listed.
    pub id: Option<u64>,
    /// The host's REST API.
    #[arg(
        long,
        env = "OPENLEDGER_API_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    pub api_url: String,
    /// An API key of the account that paid (as `openledger` or the OpenAI client uses it).
    #[arg(long, env = "OPENLEDGER_API_KEY")]
    pub api_key: String,
}

pub async fn run(args: ReceiptsArgs) -> Result<()> {
    let api = Api::new(&args.api_url)?;
    let auth = [("authorization", format!("Bearer {}", args.api_key))];
    let path = match args.id {
        Some(id) => format!("/v1/receipts/{id}"),
        None => "/v1/receipts?limit=20".to_string(),
    };
    let (status, body) = api.get_with(&path, &auth).await?;
    if status != 200 {
        let message = body["error"]["message"]
            .as_str()
            .unwrap_or("no reason given");
        anyhow::bail!("{path}: {status}: {message}");
    }
    if args.id.is_none() {
        for r in body["data"].as_array().context("no receipts listed")? {
            println!(
                "receipt {:>6}  {}  seq {:>4}  {:>5} in {:>5} out  fee {} wei  {}",
                r["id"],
                r["agent"].as_str().unwrap_or("?"),
                r["seq"],
                r["input_tokens"],
                r["output_tokens"],
                r["fee"].as_str().unwrap_or("?"),
                settlement(r)
            );
        }
        return Ok(());
    }
    show(&api, &body).await
}

fn settlement(r: &Value) -> String {
    match (r["batch"].as_u64(), r["released"].as_bool()) {
        (None, _) => "not settled yet".into(),
        (Some(0), _) => "settled (batch not recorded)".into(),
        (Some(b), Some(true)) => format!("settled in batch {b}, released"),
        (Some(b), _) => format!("settled in batch {b}, in escrow for its challenge window"),
    }
}

async fn show(api: &Api, r: &Value) -> Result<()> {
    println!(
        "receipt {} of {} (adapter {}), sequence number {}",
        r["id"],
        r["agent"].as_str().unwrap_or("?"),
        r["adapter"].as_str().unwrap_or("?"),
        r["seq"]
    );
    println!(
        "{} input and {} output tokens, fee {} wei{}",
        r["input_tokens"],
        r["output_tokens"],
        r["fee"].as_str().unwrap_or("?"),
        if r["complete"].as_bool() == Some(false) {
            " (the client left before the answer ended)"
        } else {
            ""
        }
    );
    println!("settlement: {}", settlement(r));
    let a = &r["attribution"];
    match a["status"].as_str() {
        Some("attributed") => {
            println!("attribution {}:", a["hash"].as_str().unwrap_or("?"));
            for c in a["credits"].as_array().into_iter().flatten() {
                println!(
                    "  contribution {}: {} basis points",
                    c["contribution"], c["basis_points"]
                );
            }
            if let Some(receipt) = a["receipt"].as_str() {
                let body = serde_json::json!({ "receipt": receipt });
                let explained = api.post("/api/attribution/receipts/explain", &body).await?;
                crate::attribution::print_explanation(&explained);
            }
        }
        Some("unattributed") => println!(
            "not attributed ({}): the contributors' share goes to the treasury",
            a["reason"].as_str().unwrap_or("no reason recorded")
        ),
        _ => println!("attribution: not made yet (it follows the answer within seconds)"),
    }
    Ok(())
}
