//! `approvers`: each declared once, none named `user` (reserved for the
//! agent's own user), and every gate's `approver` declared or `user`.

use std::collections::HashMap;

use crate::compiler::approvers::{Approver, USER_APPROVER};
use crate::compiler::ast::{AgentDecl, ApproverDecl, PolicyFile};
use crate::diagnostic::{Code, Diagnostic, Diagnostics};

/// The declared approvers of the set; a name declared twice is an error.
pub fn declared(files: &[PolicyFile], diagnostics: &mut Diagnostics) -> Vec<Approver> {
    let mut seen: HashMap<&str, &ApproverDecl> = HashMap::new();
    let mut approvers = Vec::new();
    for decl in files.iter().flat_map(|f| &f.approvers) {
        if let Some(first) = seen.get(decl.name.value.as_str()) {
            diagnostics.push(
                Diagnostic::new(
                    Code::DuplicateApprover,
                    format!("approver `{}` is declared twice", decl.name.value),
                    decl.name.location,
                )
                .with_label("second declaration")
                .with_secondary(first.name.location, "first declaration")
                .with_help("declare each approver once, with all its users and groups"),
            );
            continue;
        }
        if decl.name.value == USER_APPROVER {
            diagnostics.push(
                Diagnostic::new(
                    Code::ReservedApprover,
                    format!("the approver name `{USER_APPROVER}` is reserved"),
                    decl.name.location,
                )
                .with_label("reserved")
                .with_help(format!(
                    "`approver: {USER_APPROVER}` asks the agent's own user through the MCP client; give the people declared here another name"
                )),
            );
            continue;
        }
        seen.insert(&decl.name.value, decl);
        let users: Vec<&str> = decl.users.iter().map(|u| u.value.as_str()).collect();
        let groups: Vec<&str> = decl.groups.iter().map(|g| g.value.as_str()).collect();
        approvers.push(Approver::new(&decl.name.value, &users, &groups));
    }
    approvers
}

/// Every gate's `approver` must be declared: a misspelt name would leave
/// its approvals to nobody.
pub fn check_gates(agents: &[&AgentDecl], approvers: &[Approver], diagnostics: &mut Diagnostics) {
    for approver in agents.iter().flat_map(|a| &a.approval_gates).filter_map(|g| g.approver.as_ref()) {
        if approver.value == USER_APPROVER || approvers.iter().any(|a| a.name == approver.value) {
            continue;
        }
        let names = approvers.iter().map(|a| a.name.as_str());
        let diagnostic = Diagnostic::new(
            Code::UnknownApprover,
            format!("approver `{}` is not declared", approver.value),
            approver.location,
        )
        .with_help(format!(
            "declare who `{0}` is under the top-level `approvers:` (e.g. `{0}: {{groups: [{0}]}}`), or name a declared approver",
            approver.value
        ))
        .with_suggestion(&approver.value, names);
        diagnostics.push(diagnostic);
    }
}
