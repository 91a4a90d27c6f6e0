//! `openledger factory verify ADAPTER_ID`: an adapter's lineage recomputed from its stored
//! files against what the chain says. Each check prints a line; any failure fails the command.

use crate::rest::Api;
use alloy_primitives::{keccak256, B256, U256};
use anyhow::{bail, Context, Result};
use openledger_datanets::merkle::VersionTree;
use openledger_factory::publish::Manifest;
use openledger_protocol::{
    datanet_registry::DatanetRegistry, model_registry::ModelRegistry, ProtocolClient,
};
use std::collections::HashSet;

/// The checks, printed as they pass or fail.
struct Checks {
    failed: usize,
}

impl Checks {
    fn check(&mut self, ok: bool, what: String) {
        println!("{} {what}", if ok { "ok  " } else { "FAIL" });
        if !ok {
            self.failed += 1;
        }
    }
}

pub async fn run(api: &Api, client: &ProtocolClient, adapter: u64) -> Result<()> {
    let addresses = client
        .addresses()
        .context("verifying needs the protocol's addresses (--addresses)")?;
    let (models, datanets) = (addresses.model_registry, addresses.datanet_registry);
    let on_chain = client
        .call(
            models,
            ModelRegistry::adapterCall {
                adapterId: U256::from(adapter),
            },
        )
        .await?;
    let (record, lineage) = (on_chain._0, on_chain.datanetVersions);
    if record.status == 0 {
        bail!("adapter {adapter} is not registered");
    }
    let registered = client
        .events::<ModelRegistry::AdapterRegistered>(models, 0, None)
        .await?
        .into_iter()
        .find(|(_, e)| e.adapterId == U256::from(adapter))
        .context("the registry holds no AdapterRegistered event for it")?
        .1;
    let prefix = registered
        .uri
        .strip_prefix("openledger:adapters/")
        .with_context(|| format!("{:?} is not a published adapter's URI", registered.uri))?
        .to_string();
    let file = |name: String| {
        let path = format!("/api/adapters/{prefix}/{name}");
        async move {
            api.get_bytes(&path)
                .await
                .with_context(|| format!("fetching {name}"))
        }
    };
    let mut checks = Checks { failed: 0 };
    println!("adapter {adapter}: {}", registered.uri);

    let weights = file("adapter_model.safetensors".into()).await?;
    checks.check(
        keccak256(&weights) == record.weightsHash,
        format!(
            "weights hash {} = keccak256(adapter_model.safetensors)",
            record.weightsHash
        ),
    );
    let config = file("training_config.json".into()).await?;
    checks.check(
        keccak256(&config) == record.trainingConfigHash,
        format!("training config hash {}", record.trainingConfigHash),
    );
    let manifest_bytes = file("manifest.json".into()).await?;
    checks.check(
        keccak256(&manifest_bytes) == record.manifestHash,
        format!("manifest hash {}", record.manifestHash),
    );
    let manifest: Manifest =
        serde_json::from_slice(&manifest_bytes).context("manifest.json does not parse")?;
    checks.check(
        manifest.weights_hash == record.weightsHash
            && manifest.training_config_hash == record.trainingConfigHash,
        "the manifest names the same weights and config".into(),
    );
    let base = client
        .call(
            models,
            ModelRegistry::baseModelCall {
                baseModelId: U256::from(record.baseModelId),
            },
        )
        .await?;
    checks.check(
        base.weightsHash == manifest.base_weights_hash,
        format!(
            "base model {} ({}) has weights {}",
            record.baseModelId, manifest.base_model, base.weightsHash
        ),
    );
    let examples = file("examples.bin".into()).await?;
    checks.check(
        keccak256(&examples) == manifest.examples_hash,
        format!(
            "examples hash {} ({} examples)",
            manifest.examples_hash, manifest.examples
        ),
    );
    for c in &manifest.checkpoints {
        let bytes = file(format!("checkpoints/{}/adapter_model.safetensors", c.step)).await?;
        checks.check(
            keccak256(&bytes) == c.weights_hash,
            format!(
                "checkpoint at step {} (epoch {}, learning rate {:.3e})",
                c.step, c.epoch, c.learning_rate
            ),
        );
    }

    let listed: Vec<u64> = manifest
        .datanet_versions
        .iter()
        .map(|v| v.version)
        .collect();
    let lineage: Vec<u64> = lineage.iter().map(|v| v.saturating_to()).collect();
    checks.check(
        listed == lineage,
        format!("datanet versions {lineage:?} on chain = the manifest's"),
    );
    let mut members = HashSet::new();
    for v in &manifest.datanet_versions {
        let row = client
            .call(
                datanets,
                DatanetRegistry::versionCall {
                    versionId: U256::from(v.version),
                },
            )
            .await?;
        let root = VersionTree::build(v.members.clone())
            .map(|t| t.root())
            .unwrap_or(B256::ZERO);
        checks.check(
            root == row.root
                && u64::from(row.datanetId) == v.datanet
                && row.count == v.members.len() as u64,
            format!(
                "version {} of datanet {}: root {} recomputed from its {} members",
                v.version,
                v.datanet,
                row.root,
                v.members.len()
            ),
        );
        members.extend(v.members.iter().map(|(id, _)| *id));
    }
    let samples = read_examples(&examples)?;
    let from_files = samples.iter().filter(|c| c.is_none()).count();
    let outside = samples
        .iter()
        .flatten()
        .filter(|c| !members.contains(c))
        .count();
    checks.check(
        outside == 0 && samples.len() as u64 == manifest.examples,
        format!(
            "every example's contribution is in those versions ({} from datanets, {from_files} \
             from uploaded files)",
            samples.len() - from_files
        ),
    );
    if checks.failed > 0 {
        bail!(
            "{} checks failed: adapter {adapter}'s lineage does not hold",
            checks.failed
        );
    }
    println!("adapter {adapter}: every check holds");
    Ok(())
}

/// The contribution of each example in an `examples.bin`.
fn read_examples(bytes: &[u8]) -> Result<Vec<Option<u64>>> {
    let samples =
        openledger_factory::data::parse_samples(bytes).context("examples.bin does not parse")?;
    Ok(samples.into_iter().map(|s| s.contribution).collect())
}
