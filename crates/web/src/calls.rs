//! The transactions the app's forms prepare: each route reads a form's fields (as strings,
//! the way a person typed them), says in words what is wrong with any, and answers the call
//! for the person's own wallet to sign: `{to, data, value, what}`. Nothing here signs or
//! sends.
//!
//! | Route | Prepares |
//! |---|---|
//! | `POST /wallet/calls/datanet` | `createDatanet` (schema and description stored first) |
//! | `POST /wallet/calls/review` | `review` of a contribution (the reason stored first) |
//! | `POST /wallet/calls/publish` | `publishVersion` of a datanet's accepted contributions |
//! | `POST /wallet/calls/stake` | `stake` as validator, host or curator of a datanet |
//! | `POST /wallet/calls/unstake` | `requestUnstake` |
//! | `POST /wallet/calls/withdraw` | `withdraw` of an unbonded stake |
//! | `POST /wallet/calls/claim` | `claim` of inference rewards |
//! | `POST /wallet/calls/fund` | `fund` of a fine-tuning job's fee in the factory's escrow |
//! | `POST /wallet/calls/deposit` | `deposit` of OPEN as credit for paid answers |
//! | `POST /wallet/calls/authorize` | `authorize` of a host to take up to an amount of that credit |

use crate::Web;
use alloy_primitives::{Address, Bytes, U256};
use alloy_sol_types::SolCall;
use axum::{
    extract::{rejection::JsonRejection, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::post,
    Json, Router,
};
use openledger_datanets::{Call, DatanetsError, NewDatanet};
use openledger_protocol::{deploy::Addresses, InferenceSettlement, ModelFactory, Staking};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

pub(crate) fn routes() -> Router<Arc<Web>> {
    Router::new()
        .route("/wallet/calls/datanet", post(datanet))
        .route("/wallet/calls/review", post(review))
        .route("/wallet/calls/publish", post(publish))
        .route("/wallet/calls/stake", post(stake))
        .route("/wallet/calls/unstake", post(unstake))
        .route("/wallet/calls/withdraw", post(withdraw))
        .route("/wallet/calls/claim", post(claim))
        .route("/wallet/calls/fund", post(fund))
        .route("/wallet/calls/deposit", post(deposit))
        .route("/wallet/calls/authorize", post(authorize))
}

/// A form that cannot become a transaction, and why.
#[derive(Debug)]
pub(crate) struct Refused(pub(crate) StatusCode, pub(crate) String);

impl Refused {
    pub(crate) fn field(name: &str, why: impl std::fmt::Display) -> Self {
        Self(StatusCode::UNPROCESSABLE_ENTITY, format!("{name}: {why}"))
    }
}

impl From<DatanetsError> for Refused {
    fn from(e: DatanetsError) -> Self {
        let status = match e {
            DatanetsError::UnknownDatanet(_) | DatanetsError::UnknownContribution(_) => {
                StatusCode::NOT_FOUND
            }
            DatanetsError::Chain(_) => StatusCode::BAD_GATEWAY,
            DatanetsError::DraftsFull { .. } => StatusCode::TOO_MANY_REQUESTS,
            _ => StatusCode::UNPROCESSABLE_ENTITY,
        };
        Self(status, e.to_string())
    }
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        (self.0, Json(json!({"error": self.1}))).into_response()
    }
}

pub(crate) type Prepared = Result<Json<Value>, Refused>;

pub(crate) fn prepared(what: &str, to: Address, data: Bytes, value: U256) -> Prepared {
    Ok(Json(
        json!({"what": what, "to": to, "data": data, "value": value}),
    ))
}

fn from_service(what: &str, call: Call) -> Prepared {
    prepared(what, call.to, call.data, call.value)
}

/// The form's fields, or why they cannot be read.
pub(crate) fn fields<T>(body: Result<Json<T>, JsonRejection>) -> Result<T, Refused> {
    body.map(|Json(b)| b).map_err(|e| {
        Refused(
            StatusCode::BAD_REQUEST,
            format!("the form cannot be read: {}", e.body_text()),
        )
    })
}

/// Refuses `text` longer than `max` characters: what the forms store is bounded.
pub(crate) fn at_most(name: &str, text: &str, max: usize) -> Result<(), Refused> {
    if text.chars().count() > max {
        return Err(Refused::field(name, format!("at most {max} characters")));
    }
    Ok(())
}

pub(crate) fn address(name: &str, text: &str) -> Result<Address, Refused> {
    text.trim()
        .parse()
        .map_err(|_| Refused::field(name, format!("{text:?} is not a 0x address")))
}

pub(crate) fn number<T: std::str::FromStr>(name: &str, text: &str) -> Result<T, Refused> {
    text.trim()
        .parse()
        .map_err(|_| Refused::field(name, format!("{text:?} is not a whole number in range")))
}

/// An amount of OPEN as typed (`10`, `0.5`) in wei; at most 18 decimals.
pub(crate) fn open_amount(name: &str, text: &str) -> Result<U256, Refused> {
    let bad = || {
        Refused::field(
            name,
            format!("{text:?} is not an amount of OPEN like 10 or 0.5"),
        )
    };
    let text = text.trim();
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let digits = |s: &str| s.chars().all(|c| c.is_ascii_digit());
    if (whole.is_empty() && fraction.is_empty()) || !digits(whole) || !digits(fraction) {
        return Err(bad());
    }
    if fraction.len() > 18 {
        return Err(Refused::field(name, "OPEN has at most 18 decimals"));
    }
    let unit = U256::from(10u64).pow(U256::from(18));
    let whole = if whole.is_empty() {
        U256::ZERO
    } else {
        U256::from_str_radix(whole, 10).map_err(|_| bad())?
    };
    let fraction = format!("{fraction:0<18}");
    let fraction = U256::from_str_radix(&fraction, 10).map_err(|_| bad())?;
    whole
        .checked_mul(unit)
        .and_then(|w| w.checked_add(fraction))
        .ok_or_else(bad)
}

pub(crate) fn addresses(web: &Web) -> Result<&Addresses, Refused> {
    web.client.addresses().ok_or(Refused(
        StatusCode::SERVICE_UNAVAILABLE,
        "this node does not know the protocol's addresses".into(),
    ))
}

#[derive(Deserialize)]
struct NewDatanetForm {
    name: String,
    #[serde(default)]
    description: String,
    schema: String,
    quorum: String,
    fee: String,
}

async fn datanet(
    State(web): State<Arc<Web>>,
    body: Result<Json<NewDatanetForm>, JsonRejection>,
) -> Prepared {
    let form = fields(body)?;
    if form.name.trim().is_empty() {
        return Err(Refused::field("name", "a datanet needs a name"));
    }
    at_most("name", &form.name, 80)?;
    at_most("description", &form.description, 2_000)?;
    at_most("schema", &form.schema, 64 * 1024)?;
    let schema: Value = serde_json::from_str(&form.schema)
        .map_err(|e| Refused::field("schema", format!("not JSON: {e}")))?;
    let fee = open_amount("fee", &form.fee)?;
    let spec = NewDatanet {
        name: form.name.trim().to_string(),
        description: form.description,
        schema,
        quorum: number("quorum", &form.quorum)?,
        fee: fee
            .try_into()
            .map_err(|_| Refused::field("fee", "too large"))?,
    };
    from_service("createDatanet", web.datanets.prepare_create(&spec).await?)
}

#[derive(Deserialize)]
struct ReviewForm {
    contribution: String,
    decision: String,
    #[serde(default)]
    reason: String,
}

async fn review(
    State(web): State<Arc<Web>>,
    body: Result<Json<ReviewForm>, JsonRejection>,
) -> Prepared {
    let form = fields(body)?;
    let approve = match form.decision.as_str() {
        "approve" => true,
        "reject" => false,
        other => {
            return Err(Refused::field(
                "decision",
                format!("{other:?} is neither approve nor reject"),
            ))
        }
    };
    at_most("reason", &form.reason, 1_000)?;
    let contribution = number("contribution", &form.contribution)?;
    let call = web
        .datanets
        .prepare_review(contribution, approve, form.reason.trim())
        .await?;
    from_service("review", call)
}

#[derive(Deserialize)]
struct DatanetForm {
    datanet: String,
}

async fn publish(
    State(web): State<Arc<Web>>,
    body: Result<Json<DatanetForm>, JsonRejection>,
) -> Prepared {
    let form = fields(body)?;
    let (_, call) = web
        .datanets
        .prepare_publish(number("datanet", &form.datanet)?)
        .await?;
    from_service("publishVersion", call)
}

/// A role as the staking contract numbers it, with its subject (a datanet for curators).
fn role(role: &str, datanet: Option<&str>) -> Result<(u8, U256), Refused> {
    match (role, datanet.map(str::trim).filter(|d| !d.is_empty())) {
        ("validator", _) => Ok((0, U256::ZERO)),
        ("host", _) => Ok((2, U256::ZERO)),
        ("curator", Some(d)) => Ok((1, U256::from(number::<u64>("datanet", d)?))),
        ("curator", None) => Err(Refused::field("datanet", "a curator stakes on a datanet")),
        (other, _) => Err(Refused::field(
            "role",
            format!("{other:?} is not validator, curator or host"),
        )),
    }
}

#[derive(Deserialize)]
struct StakeForm {
    role: String,
    #[serde(default)]
    datanet: Option<String>,
    amount: String,
}

async fn stake(
    State(web): State<Arc<Web>>,
    body: Result<Json<StakeForm>, JsonRejection>,
) -> Prepared {
    let form = fields(body)?;
    let (role, subject) = role(&form.role, form.datanet.as_deref())?;
    let amount = open_amount("amount", &form.amount)?;
    if amount.is_zero() {
        return Err(Refused::field("amount", "stake more than nothing"));
    }
    let call = Staking::stakeCall { role, subject };
    prepared(
        "stake",
        addresses(&web)?.staking,
        call.abi_encode().into(),
        amount,
    )
}

async fn unstake(
    State(web): State<Arc<Web>>,
    body: Result<Json<StakeForm>, JsonRejection>,
) -> Prepared {
    let form = fields(body)?;
    let (role, subject) = role(&form.role, form.datanet.as_deref())?;
    let amount = open_amount("amount", &form.amount)?;
    let call = Staking::requestUnstakeCall {
        role,
        subject,
        amount,
    };
    let to = addresses(&web)?.staking;
    prepared("requestUnstake", to, call.abi_encode().into(), U256::ZERO)
}

#[derive(Deserialize)]
struct WithdrawForm {
    id: String,
}

async fn withdraw(
    State(web): State<Arc<Web>>,
    body: Result<Json<WithdrawForm>, JsonRejection>,
) -> Prepared {
    let form = fields(body)?;
    let id = U256::from_str_radix(form.id.trim(), 10)
        .map_err(|_| Refused::field("id", "not a withdrawal id"))?;
    let call = Staking::withdrawCall { id };
    prepared(
        "withdraw",
        addresses(&web)?.staking,
        call.abi_encode().into(),
        U256::ZERO,
    )
}

#[derive(Deserialize)]
struct ClaimForm {
    account: String,
}

async fn claim(
    State(web): State<Arc<Web>>,
    body: Result<Json<ClaimForm>, JsonRejection>,
) -> Prepared {
    let form = fields(body)?;
    let account = address("account", &form.account)?;
    let call = InferenceSettlement::claimCall { account };
    let to = addresses(&web)?.inference_settlement;
    prepared("claim", to, call.abi_encode().into(), U256::ZERO)
}

#[derive(Deserialize)]
struct FundForm {
    operator: String,
    job_key: String,
    /// Wei, as the job's payment states it.
    fee: String,
}

async fn fund(
    State(web): State<Arc<Web>>,
    body: Result<Json<FundForm>, JsonRejection>,
) -> Prepared {
    let form = fields(body)?;
    let operator = address("operator", &form.operator)?;
    let job_key = form
        .job_key
        .trim()
        .parse()
        .map_err(|_| Refused::field("job_key", "not a 32-byte hex key"))?;
    let fee = U256::from_str_radix(form.fee.trim(), 10)
        .map_err(|_| Refused::field("fee", "not an amount in wei"))?;
    let call = ModelFactory::fundCall {
        operator,
        jobKey: job_key,
    };
    let to = addresses(&web)?.model_factory;
    prepared("fund", to, call.abi_encode().into(), fee)
}

#[derive(Deserialize)]
struct CreditForm {
    amount: String,
    #[serde(default)]
    host: String,
    /// The consumer, whose allowance for the host grows by `amount` (when given).
    #[serde(default)]
    account: Option<String>,
}

async fn deposit(
    State(web): State<Arc<Web>>,
    body: Result<Json<CreditForm>, JsonRejection>,
) -> Prepared {
    let form = fields(body)?;
    let amount = open_amount("amount", &form.amount)?;
    if amount.is_zero() {
        return Err(Refused::field("amount", "deposit more than nothing"));
    }
    let call = InferenceSettlement::depositCall {};
    let to = addresses(&web)?.inference_settlement;
    prepared("deposit", to, call.abi_encode().into(), amount)
}

async fn authorize(
    State(web): State<Arc<Web>>,
    body: Result<Json<CreditForm>, JsonRejection>,
) -> Prepared {
    let form = fields(body)?;
    let host = address("host", &form.host)?;
    let to = addresses(&web)?.inference_settlement;
    let mut allowance = open_amount("amount", &form.amount)?;
    // `authorize` replaces the allowance: adding credit for a host keeps what it had left.
    if let Some(account) = form.account.as_deref().filter(|a| !a.trim().is_empty()) {
        let consumer = address("account", account)?;
        let call = InferenceSettlement::authorizationCall { consumer, host };
        let current = web.client.call(to, call).await.map_err(|e| {
            Refused(
                StatusCode::BAD_GATEWAY,
                format!("the allowance could not be read: {e}"),
            )
        })?;
        allowance = allowance.saturating_add(U256::from(current.allowance));
    }
    let allowance: u128 = allowance
        .try_into()
        .map_err(|_| Refused::field("amount", "too large"))?;
    let call = InferenceSettlement::authorizeCall { host, allowance };
    prepared("authorize", to, call.abi_encode().into(), U256::ZERO)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_of_open_are_read_as_typed_or_refused_in_words() {
        let wei = |s: &str| open_amount("amount", s).map_err(|r| r.1);
        let unit = U256::from(10u64).pow(U256::from(18));
        assert_eq!(wei("10").unwrap(), unit * U256::from(10));
        assert_eq!(wei(" 0.5 ").unwrap(), unit / U256::from(2));
        assert_eq!(wei(".25").unwrap(), unit / U256::from(4));
        assert_eq!(wei("0.000000000000000001").unwrap(), U256::from(1));
        for bad in ["", ".", "-1", "1e3", "1.2.3", "ten", "0x10"] {
            assert!(
                wei(bad).unwrap_err().contains("is not an amount of OPEN"),
                "{bad}"
            );
        }
        assert!(wei("1.0000000000000000001")
            .unwrap_err()
            .contains("18 decimals"));
        assert!(wei(&"9".repeat(80)).is_err());
    }

    #[test]
    fn roles_need_their_subject() {
        assert_eq!(role("curator", Some("3")).ok(), Some((1, U256::from(3))));
        assert_eq!(role("host", Some("")).ok(), Some((2, U256::ZERO)));
        assert!(role("curator", Some(" ")).is_err());
        assert!(role("owner", None).is_err());
    }
}
