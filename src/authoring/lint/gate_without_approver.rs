//! # TL002 gate-without-approver
//!
//! An approval gate that names no `approver`. toolgate still answers
//! `require_approval`, but nobody in particular may grant it: the server's
//! approval ledger accepts a decision only from the gate's named approver,
//! so such calls wait until they expire, and a gateway that routes approvals
//! by the `approver` field has nowhere to send them.
//!
//! Fix: name who approves (`approver: release-managers`). If no human should
//! ever approve, deny the tool instead.
//!
//! Silence: `lintIgnore: [gate-without-approver]` on the agent or at the top
//! of its file.

use super::AgentView;
use crate::compiler::checked::GateTrigger;
use crate::diagnostic::{Code, Diagnostic};

pub fn check(agent: &AgentView<'_>, findings: &mut Vec<Diagnostic>) {
    for gate in &agent.agent.gates {
        if gate.approver.is_some() || matches!(gate.trigger, GateTrigger::Never) {
            continue;
        }
        let message = format!("approval gate on `{}` names no approver", gate.tool.text());
        findings.push(
            agent
                .finding(Code::GateWithoutApprover, message, gate.rule)
                .with_help("add `approver: <group>`, or deny the tool if nobody should approve it"),
        );
    }
}
