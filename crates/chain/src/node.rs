//! A running node: the chain, its block timer and its servers.

use crate::{
    chain::{Chain, OpenError},
    genesis::Genesis,
    mempool::PoolLimits,
    rpc::{self, Rpc, RpcLimits},
};
use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

/// How to run a node.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub data_dir: PathBuf,
    pub genesis: Genesis,
    pub http_addr: SocketAddr,
    pub metrics_addr: Option<SocketAddr>,
    /// Zero: a block as soon as transactions arrive.
    pub block_time: Duration,
    pub dev: bool,
    /// The mempool's bounds.
    pub pool: PoolLimits,
    /// The JSON-RPC server's bounds.
    pub rpc: RpcLimits,
}

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Open(#[from] OpenError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A started node.
pub struct Node {
    pub chain: Arc<Chain>,
    pub http_addr: SocketAddr,
    pub metrics_addr: Option<SocketAddr>,
}

impl Node {
    /// Opens the chain and starts block production and the servers (inside a Tokio runtime).
    pub async fn start(config: NodeConfig) -> Result<Self, StartError> {
        let chain = Chain::open_with(&config.data_dir, config.genesis, config.dev, config.pool)?;
        let service = Rpc::new(chain.clone(), config.rpc);
        let listen = |addr: SocketAddr| move |source| StartError::Listen { addr, source };
        let http_addr = rpc::serve(config.http_addr, rpc::router(service.clone()))
            .await
            .map_err(listen(config.http_addr))?;
        let metrics_addr = match config.metrics_addr {
            Some(addr) => Some(
                rpc::serve(addr, rpc::metrics_router(service.clone()))
                    .await
                    .map_err(listen(addr))?,
            ),
            None => None,
        };
        tokio::spawn(sequence(chain.clone(), config.block_time));
        Ok(Self {
            chain,
            http_addr,
            metrics_addr,
        })
    }
}

/// Produces blocks: on a fixed interval, or whenever transactions wait when the interval is 0.
async fn sequence(chain: Arc<Chain>, block_time: Duration) {
    let mut ticker = (!block_time.is_zero()).then(|| {
        let mut t = tokio::time::interval(block_time);
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        t
    });
    // With no interval, keep producing while blocks fill up; once a block comes out empty the
    // pool holds only transactions that cannot run yet (nonce gaps, low fee caps), so wait
    // for a new arrival instead of spinning out empty blocks.
    let mut last_had_txs = true;
    loop {
        match &mut ticker {
            Some(ticker) => {
                ticker.tick().await;
            }
            None => {
                if !last_had_txs || !chain.has_pending() {
                    chain.tx_arrived.notified().await;
                }
            }
        }
        let producer = chain.clone();
        match tokio::task::spawn_blocking(move || producer.produce_block()).await {
            Ok(Ok(block)) => last_had_txs = !block.txs.is_empty(),
            Ok(Err(e)) => {
                // The block could not be made durable: stopping is the only safe answer,
                // since nothing past the last durable block may be reported.
                let durable = chain.head().header.number;
                tracing::error!(
                    error = %e,
                    "could not make block {} durable; stopping. The store still holds block \
                     {durable} whole: free space (or fix the disk) and restart, and the node \
                     resumes from there with its pending transactions",
                    durable + 1
                );
                std::process::exit(70);
            }
            Err(e) => {
                tracing::error!(error = %e, "block production panicked; stopping");
                std::process::exit(70);
            }
        }
    }
}
