//! The results table, node/anvil ratios, and the JSON form of both.

use crate::{load::Measured, target::Kind};
use serde_json::{json, Value};
use std::{fmt, time::Duration};

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    Transfers,
    ContractCalls,
}

impl Workload {
    fn id(self) -> &'static str {
        match self {
            Workload::Transfers => "transfers",
            Workload::ContractCalls => "contract_calls",
        }
    }
}

impl fmt::Display for Workload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Workload::Transfers => "transfers",
            Workload::ContractCalls => "contract calls",
        })
    }
}

pub struct WorkloadResult {
    pub workload: Workload,
    pub target: Kind,
    pub txs: usize,
    pub seconds: f64,
    pub tx_per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl WorkloadResult {
    pub fn new(workload: Workload, target: Kind, measured: &Measured) -> Self {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        Self {
            workload,
            target,
            txs: measured.latencies.len(),
            seconds: measured.elapsed.as_secs_f64(),
            tx_per_sec: measured.tx_per_sec(),
            p50_ms: ms(measured.percentile(50.0)),
            p99_ms: ms(measured.percentile(99.0)),
            max_ms: ms(measured.percentile(100.0)),
        }
    }

    fn json(&self) -> Value {
        json!({
            "workload": self.workload.id(),
            "target": self.target.to_string(),
            "txs": self.txs,
            "seconds": self.seconds,
            "tx_per_sec": self.tx_per_sec,
            "p50_ms": self.p50_ms,
            "p99_ms": self.p99_ms,
            "max_ms": self.max_ms,
        })
    }
}

/// Node/anvil ratios for one workload: above 1 means the node has more throughput, or
/// longer latency.
struct Ratio {
    workload: Workload,
    tx_per_sec: f64,
    p50: f64,
    p99: f64,
}

fn ratios(results: &[WorkloadResult]) -> Vec<Ratio> {
    let find = |workload, target| {
        results
            .iter()
            .find(|r| r.workload == workload && r.target == target)
    };
    [Workload::Transfers, Workload::ContractCalls]
        .into_iter()
        .filter_map(|workload| {
            let (node, anvil) = (find(workload, Kind::Node)?, find(workload, Kind::Anvil)?);
            Some(Ratio {
                workload,
                tx_per_sec: node.tx_per_sec / anvil.tx_per_sec,
                p50: node.p50_ms / anvil.p50_ms,
                p99: node.p99_ms / anvil.p99_ms,
            })
        })
        .collect()
}

pub fn print(results: &[WorkloadResult]) {
    println!();
    println!(
        "{:<15} {:<6} {:>7} {:>8} {:>9} {:>9} {:>9} {:>9}",
        "workload", "target", "txs", "secs", "tx/s", "p50 ms", "p99 ms", "max ms"
    );
    for r in results {
        println!(
            "{:<15} {:<6} {:>7} {:>8.2} {:>9.0} {:>9.0} {:>9.0} {:>9.0}",
            r.workload.to_string(),
            r.target.to_string(),
            r.txs,
            r.seconds,
            r.tx_per_sec,
            r.p50_ms,
            r.p99_ms,
            r.max_ms
        );
    }
    let ratios = ratios(results);
    if !ratios.is_empty() {
        println!();
        println!("node/anvil ratio (tx/s: higher is better; latency: lower is better)");
        for r in ratios {
            println!(
                "{:<15} tx/s {:.2}x   p50 {:.2}x   p99 {:.2}x",
                r.workload.to_string(),
                r.tx_per_sec,
                r.p50,
                r.p99
            );
        }
    }
}

pub fn json(results: &[WorkloadResult], config: &Value) -> String {
    let ratios: Vec<Value> = ratios(results)
        .iter()
        .map(|r| {
            json!({
                "workload": r.workload.id(),
                "tx_per_sec": r.tx_per_sec,
                "p50": r.p50,
                "p99": r.p99,
            })
        })
        .collect();
    let doc = json!({
        "config": config,
        "results": results.iter().map(WorkloadResult::json).collect::<Vec<_>>(),
        "node_over_anvil": ratios,
    });
    serde_json::to_string_pretty(&doc).expect("JSON values serialize") + "\n"
}
