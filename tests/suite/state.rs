//! The store conformance suite (`toolgate::state::conformance`) against
//! every store: in memory and on disk.

use std::sync::Arc;
use std::time::Duration;

use toolgate::state::conformance;
use toolgate::state::{
    ApprovalStore, DurableOptions, DurableSessions, KillStore, KillSwitch, Ledger, MemorySessions,
    SessionStore,
};

use crate::util::tempdir::TempDir;

#[test]
fn memory_stores_conform() {
    conformance::sessions(&|clock, limits| {
        Arc::new(MemorySessions::with_limits(clock, limits)) as Arc<dyn SessionStore>
    })
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
    conformance::sessions(&|clock, limits| {
        let options = DurableOptions { clock, limits, ..DurableOptions::default() };
        Arc::new(DurableSessions::open_with(&fresh("state.redb"), options).unwrap()) as Arc<dyn SessionStore>
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
