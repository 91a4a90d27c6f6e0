//! A damaged index row is an error, never a panic, and the next sync rebuilds the index from
//! the chain's logs to the same view.

mod common;

use common::*;
use openledger_datanets::{index::IndexError, Policy};
use redb::{Database, TableDefinition};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecodable_index_row_triggers_a_rebuild_from_the_logs() {
    let world = World::start().await;
    let owner = world.account(1).await;
    let service = world.service("svc", Policy::default()).await;
    let id = service.create(&owner, &chat_datanet(1)).await.unwrap();
    service.sync().await.unwrap();
    let before = service.index().datanets().unwrap();
    assert_eq!(before.len(), 1);
    drop(service);

    // Damage the datanet's row in the index file.
    {
        let db = Database::create(world.dir.path().join("svc").join("index.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let table: TableDefinition<u64, &[u8]> = TableDefinition::new("datanets");
            let mut rows = txn.open_table(table).unwrap();
            rows.insert(id, b"{not json".as_slice()).unwrap();
        }
        txn.commit().unwrap();
    }

    let service = world.service("svc", Policy::default()).await;
    let err = service.index().datanets().unwrap_err();
    assert!(
        matches!(
            err,
            IndexError::Corrupt {
                table: "datanet",
                ..
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string().contains("rebuilt from the chain's logs"),
        "{err}"
    );
    assert!(service.index().needs_rebuild());
    service.sync().await.unwrap();
    assert!(!service.index().needs_rebuild());
    assert_eq!(service.index().datanets().unwrap(), before);
}

/// The index recomputes every published root from the accepted set it holds and flags a
/// version whose owner published anything else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_published_root_is_recomputed_and_a_mismatch_flagged() {
    use alloy_primitives::{B256, U256};
    use openledger_protocol::datanet_registry::DatanetRegistry;
    let world = World::start().await;
    let (owner, alice, curator) = (
        world.account(1).await,
        world.account(2).await,
        world.account(3).await,
    );
    let service = world.service("svc", Policy::default()).await;
    let datanet = service.create(&owner, &chat_datanet(1)).await.unwrap();
    world.stake_curator(&curator, datanet).await;
    let path = world.dir.path().join("a.jsonl");
    write_jsonl(
        &path,
        &(0..3).map(|n| chat_line(n, "r")).collect::<Vec<_>>(),
    );
    let c = service
        .contribute(&alice, datanet, &path, "CC0-1.0", &[])
        .await
        .unwrap();
    service.review(&curator, c.id, true, "fine").await.unwrap();
    let honest = service.publish(&owner, datanet).await.unwrap();
    // The owner publishes a root of its own making, over the same count.
    let forged = DatanetRegistry::publishVersionCall {
        datanetId: U256::from(datanet),
        root: B256::repeat_byte(0x77),
        count: 1,
        uri: "forged".into(),
    };
    owner
        .send(world.addresses.datanet_registry, forged, U256::ZERO)
        .await
        .unwrap();
    service.sync().await.unwrap();
    let versions = service.index().versions(Some(datanet)).unwrap();
    assert_eq!(versions.len(), 2);
    assert_eq!(versions[0].id, honest.version);
    assert_eq!(versions[0].matches_accepted, Some(true));
    assert_eq!(versions[1].matches_accepted, Some(false));
}
