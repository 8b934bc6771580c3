//! The store conformance suite (`toolgate::state::conformance`) against
//! every store: in memory and on disk.

use std::sync::Arc;
use std::time::Duration;

use toolgate::state::conformance;
use toolgate::state::{
    ApprovalStore, DurableSessions, KillStore, KillSwitch, Ledger, MemorySessions, SessionStore,
};

use crate::util::tempdir::TempDir;

#[test]
fn memory_stores_conform() {
    conformance::sessions(&|clock| Arc::new(MemorySessions::with_clock(clock)) as Arc<dyn SessionStore>)
        .unwrap();
    conformance::kills(&|| Arc::new(KillSwitch::in_memory()) as Arc<dyn KillStore>).unwrap();
    conformance::approvals(&|clock| {
        Arc::new(Ledger::with_clock(Duration::from_secs(60), clock)) as Arc<dyn ApprovalStore>
    })
    .unwrap();
}

#[test]
fn durable_stores_conform() {
    let dir = TempDir::new();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let fresh = |name: &str| {
        let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        dir.path().join(format!("{n}-{name}"))
    };
    conformance::sessions(&|clock| {
        Arc::new(DurableSessions::open_with_clock(&fresh("state.redb"), clock).unwrap())
            as Arc<dyn SessionStore>
    })
    .unwrap();
    conformance::kills(&|| {
        Arc::new(KillSwitch::persistent(fresh("kills.json")).unwrap()) as Arc<dyn KillStore>
    })
    .unwrap();
    conformance::approvals(&|clock| {
        let file = fresh("approvals.json");
        Arc::new(Ledger::persistent(file, Duration::from_secs(60), clock).unwrap()) as Arc<dyn ApprovalStore>
    })
    .unwrap();
}
