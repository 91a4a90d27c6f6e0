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
