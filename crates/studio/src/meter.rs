//! Metering: a paid request's outputs pass through here on their way to the client, and its
//! receipt (tokens in and out, the fee by the agent's prices, the prompt and the answer) is
//! recorded durably before the last of them is sent, so nothing served goes unbilled and
//! nothing billed was not served. A client that leaves early pays for what was generated.

use crate::{
    keys::Consumer,
    openai::Out,
    store::{NewReceipt, ReceiptRow, Store},
};
use std::sync::Arc;
use tokio::sync::mpsc;

/// What paid requests in flight may still cost (wei), per account and per key.
#[derive(Default)]
pub struct Holds {
    pub accounts: std::collections::HashMap<alloy_primitives::Address, u128>,
    pub keys: std::collections::HashMap<u64, u128>,
}

/// A request's reservation of the most it may cost; released when dropped (the request's
/// receipt, recorded before, counts from then on).
pub struct Hold {
    studio: Arc<crate::Studio>,
    consumer: Consumer,
    amount: u128,
}

impl Hold {
    pub(crate) fn new(studio: Arc<crate::Studio>, consumer: Consumer, amount: u128) -> Self {
        Self {
            studio,
            consumer,
            amount,
        }
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        let mut holds = self.studio.holds.lock();
        let release = |map_value: Option<&mut u128>, amount: u128| {
            if let Some(v) = map_value {
                *v = v.saturating_sub(amount);
            }
        };
        release(holds.accounts.get_mut(&self.consumer.account), self.amount);
        release(holds.keys.get_mut(&self.consumer.key_id), self.amount);
        holds.accounts.retain(|_, v| *v > 0);
        holds.keys.retain(|_, v| *v > 0);
    }
}

/// What a paid request is billed by.
pub struct Ticket {
    pub consumer: Consumer,
    pub agent_id: u64,
    /// The agent's adapter (weights hash).
    pub adapter: String,
    /// The consumer's last receipt this host settled, on chain when the request began.
    pub settled_seq: u64,
    /// Wei per 1,000 input tokens and per 1,000 output tokens.
    pub price_in: u128,
    pub price_out: u128,
    pub prompt: Vec<u32>,
    /// Choices in the request, and choices per prompt.
    pub choices: usize,
    pub n: usize,
    /// What a knowledge agent retrieved for the request.
    pub retrieval: Option<crate::knowledge::Retrieval>,
}

/// The fee for `input` and `output` tokens: what `InferenceSettlement` allows at most.
/// Saturating: prices near `u128::MAX` give the largest fee rather than a wrapped one.
pub fn fee(input: u64, output: u64, price_in: u128, price_out: u128) -> u128 {
    let part = |tokens: u64, price: u128| u128::from(tokens).saturating_mul(price);
    part(input, price_in).saturating_add(part(output, price_out)) / 1000
}

/// Passes `rx` on, recording the request's receipt in `store` before its last output.
pub fn wrap(
    mut rx: mpsc::Receiver<Out>,
    ticket: Ticket,
    store: Arc<Store>,
    hold: Hold,
) -> mpsc::Receiver<Out> {
    let (tx, out) = mpsc::channel(64);
    tokio::spawn(async move {
        // Released when this task ends, after the receipt (if any) is recorded.
        let _hold = hold;
        let mut answer: Vec<u32> = Vec::new();
        let mut prompts_seen = vec![false; ticket.choices.div_ceil(ticket.n.max(1))];
        let (mut input, mut output, mut finished) = (0u64, 0u64, 0usize);
        while let Some(item) = rx.recv().await {
            match &item {
                Out::Text { index, ids, .. } => {
                    output += ids.len() as u64;
                    if *index == 0 {
                        answer.extend(ids);
                    }
                }
                Out::Finish {
                    index,
                    ids,
                    prompt_tokens,
                    ..
                } => {
                    output += ids.len() as u64;
                    if *index == 0 {
                        answer.extend(ids);
                    }
                    let prompt = index / ticket.n.max(1);
                    if !std::mem::replace(&mut prompts_seen[prompt], true) {
                        input += *prompt_tokens as u64;
                    }
                    finished += 1;
                    if finished == ticket.choices {
                        let receipt = record(&store, &ticket, input, output, &answer, true);
                        if let Err(e) = receipt {
                            tracing::error!(error = %e, "could not record a receipt");
                            let _ = tx
                                .send(Out::Failed(format!("the request could not be billed: {e}")))
                                .await;
                            return;
                        }
                    }
                }
                Out::Failed(_) | Out::UnknownModel(_) => {
                    let _ = tx.send(item).await;
                    return;
                }
            }
            if tx.send(item).await.is_err() {
                // The client left: it pays for the prompt and what was generated.
                if finished < ticket.choices {
                    input = input.max(ticket.prompt.len() as u64);
                    if let Err(e) = record(&store, &ticket, input, output, &answer, false) {
                        tracing::error!(error = %e, "could not record a receipt");
                    }
                }
                return;
            }
        }
    });
    out
}

fn record(
    store: &Store,
    ticket: &Ticket,
    input: u64,
    output: u64,
    answer: &[u32],
    complete: bool,
) -> Result<ReceiptRow, crate::store::StoreError> {
    store.record(NewReceipt {
        consumer: ticket.consumer.account,
        key_id: ticket.consumer.key_id,
        agent_id: ticket.agent_id,
        adapter: ticket.adapter.clone(),
        settled_seq: ticket.settled_seq,
        input_tokens: u32::try_from(input).unwrap_or(u32::MAX),
        output_tokens: u32::try_from(output).unwrap_or(u32::MAX),
        fee: fee(input, output, ticket.price_in, ticket.price_out),
        prompt: ticket.prompt.clone(),
        answer: answer.to_vec(),
        created_at: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        complete,
        retrieval: ticket.retrieval.clone(),
    })
}
