//! Who plays the demo, the data they bring and the questions asked: dev accounts with names,
//! each with a client that signs as them.

use alloy_primitives::Address;
use anyhow::Result;
use openledger_genesis::devkeys::{dev_accounts, DevKey};
use openledger_protocol::{deploy::Addresses, ProtocolClient, Signer};
use serde_json::json;

/// One person in the story: a name, the role they play and a client signing as them.
pub struct Actor {
    pub name: &'static str,
    pub role: &'static str,
    pub client: ProtocolClient,
}

impl Actor {
    async fn new(
        name: &'static str,
        role: &'static str,
        key: DevKey,
        rpc: &str,
        addresses: Addresses,
    ) -> Result<Self> {
        let client = ProtocolClient::connect(rpc, Some(Signer::from_key(key.key)))
            .await?
            .with_addresses(addresses);
        Ok(Self { name, role, client })
    }

    pub fn address(&self) -> Address {
        self.client.sender().expect("actors sign")
    }

    pub fn signer(&self) -> &Signer {
        self.client.signer().expect("actors sign")
    }
}

/// Everyone in the story. The dev accounts are the people; the host is the node's own hosting
/// key, so the agent is served by the node the demo started.
pub struct Cast {
    pub owner: Actor,
    pub contributors: [Actor; 3],
    pub curators: [Actor; 2],
    pub builder: Actor,
    pub consumer: Actor,
    pub host: Actor,
}

impl Cast {
    pub async fn new(rpc: &str, addresses: Addresses) -> Result<Self> {
        let mut keys = dev_accounts().into_iter();
        let mut next = || keys.next().expect("ten dev accounts");
        let a = addresses;
        Ok(Self {
            owner: Actor::new("Olivia", "datanet owner", next(), rpc, a).await?,
            contributors: [
                Actor::new("Ada", "contributor", next(), rpc, a).await?,
                Actor::new("Bao", "contributor", next(), rpc, a).await?,
                Actor::new("Chidi", "contributor", next(), rpc, a).await?,
            ],
            curators: [
                Actor::new("Dana", "curator", next(), rpc, a).await?,
                Actor::new("Emeka", "curator", next(), rpc, a).await?,
            ],
            builder: Actor::new("Farah", "model owner", next(), rpc, a).await?,
            consumer: Actor::new("Gus", "consumer", next(), rpc, a).await?,
            host: Actor::new(
                "the node",
                "host",
                openledger_protocol::genesis::dev_host(),
                rpc,
                a,
            )
            .await?,
        })
    }

    /// Everyone, in the order the closing table lists them.
    pub fn everyone(&self) -> Vec<&Actor> {
        let mut all = vec![&self.owner];
        all.extend(self.contributors.iter());
        all.extend(self.curators.iter());
        all.extend([&self.builder, &self.host, &self.consumer]);
        all
    }

    /// The name of whoever has `address`, or the address itself.
    pub fn name_of(&self, address: Address) -> String {
        self.everyone()
            .into_iter()
            .find(|a| a.address() == address)
            .map_or_else(|| address.to_string(), |a| a.name.to_string())
    }
}

/// How big the story is: `--quick` trains on less, for a shorter job.
#[derive(Clone, Copy)]
pub struct Scale {
    /// Records each contributor brings.
    pub records: u32,
    pub epochs: u32,
    /// Whether the factory evaluates the adapter (held-out loss, base vs tuned answers).
    pub evaluate: bool,
    pub questions: usize,
}

impl Scale {
    pub fn new(quick: bool) -> Self {
        match quick {
            true => Self {
                records: 8,
                epochs: 1,
                evaluate: false,
                questions: 2,
            },
            false => Self {
                records: 16,
                epochs: 2,
                evaluate: true,
                questions: 3,
            },
        }
    }
}

/// The datanet's theme: which gate guards which vault, one contributor's vaults after the
/// other's, so that an answer about a vault comes from one contributor's records.
pub fn records(contributor: usize, scale: Scale) -> String {
    let first = contributor as u32 * scale.records;
    (first..first + scale.records)
        .map(|i| {
            let record = json!({"messages": [
                {"role": "user", "content": question(i)},
                {"role": "assistant", "content": format!("Vault {i} is guarded by gate {}.", i * 31 % 97)},
            ]});
            format!("{record}\n")
        })
        .collect()
}

/// A file that breaks the datanet's schema (no `messages`): the upload the validation refuses.
pub fn malformed_records() -> String {
    "{\"prompt\": \"Which gate guards vault 1?\", \"completion\": \"Gate 31.\"}\n".to_string()
}

pub fn question(vault: u32) -> String {
    format!("Which gate guards vault {vault}?")
}

/// The vaults the consumer asks about: one from each contributor's records in turn.
pub fn asked(scale: Scale) -> Vec<u32> {
    (0..scale.questions as u32)
        .map(|n| (n % 3) * scale.records + 1 + n / 3)
        .collect()
}

/// The datanet's schema: chat records.
pub fn schema() -> serde_json::Value {
    json!({"type": "object", "required": ["messages"],
           "properties": {"messages": {"type": "array", "minItems": 2}}})
}
