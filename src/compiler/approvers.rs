//! Approvers: the people who may decide a gate's approvals, as Unix users
//! and groups. A gate names an approver (`approver: finance`); the policy
//! set declares who that is (`approvers: {finance: {groups: [finance]}}`);
//! the server admits a decision only from a peer the declaration names, as
//! the kernel reports the peer, never as the peer says it is.

/// The approver a gate names to ask the agent's own user, through the MCP
/// client (`toolgate proxy` asks with an elicitation): reserved, never
/// declared.
pub const USER_APPROVER: &str = "user";

/// Someone who asks to decide approvals or operate the server: on the
/// admin socket, the user id the kernel reported, with the user's name and
/// groups from the user database; in the console, a signed-in account,
/// which has names only (no numeric id ever matches it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The user id; `None` for a console account.
    pub uid: Option<u32>,
    /// The user's name, if the user database has one (a console account's name).
    pub user: Option<String>,
    /// The user's groups (primary and supplementary): id, if any, and name, if any.
    pub groups: Vec<(Option<u32>, Option<String>)>,
}

impl Identity {
    /// A console account: matched by its name and its groups' names only.
    pub fn account(name: &str, groups: &[String]) -> Identity {
        Identity {
            uid: None,
            user: Some(name.to_owned()),
            groups: groups.iter().map(|g| (None, Some(g.clone()))).collect(),
        }
    }
}

impl std::fmt::Display for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.user, self.uid) {
            (Some(name), Some(uid)) => write!(f, "{name} (uid {uid})"),
            (None, Some(uid)) => write!(f, "uid {uid}"),
            (Some(name), None) => write!(f, "{name} (console)"),
            (None, None) => f.write_str("nobody"),
        }
    }
}

/// A user or group as a declaration names it.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Member {
    /// By name.
    Name(String),
    /// By numeric id.
    Id(u32),
}

impl Member {
    fn new(text: &str) -> Member {
        match text.parse() {
            Ok(id) if text.bytes().all(|b| b.is_ascii_digit()) => Member::Id(id),
            _ => Member::Name(text.to_owned()),
        }
    }

    fn is(&self, id: Option<u32>, name: Option<&str>) -> bool {
        match self {
            Member::Id(wanted) => id == Some(*wanted),
            Member::Name(wanted) => name == Some(wanted.as_str()),
        }
    }

    fn text(&self) -> String {
        match self {
            Member::Id(id) => id.to_string(),
            Member::Name(name) => name.clone(),
        }
    }
}

/// A declared approver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Approver {
    /// The name gates use.
    pub name: String,
    users: Vec<Member>,
    groups: Vec<Member>,
}

impl Approver {
    /// An approver of these users and groups (names, or numeric ids).
    pub fn new(name: &str, users: &[&str], groups: &[&str]) -> Approver {
        Approver {
            name: name.to_owned(),
            users: users.iter().map(|u| Member::new(u)).collect(),
            groups: groups.iter().map(|g| Member::new(g)).collect(),
        }
    }

    /// Whether `who` is one of its users or in one of its groups.
    pub fn admits(&self, who: &Identity) -> bool {
        self.users.iter().any(|u| u.is(who.uid, who.user.as_deref()))
            || self.groups.iter().any(|g| who.groups.iter().any(|(gid, name)| g.is(*gid, name.as_deref())))
    }

    /// Who it is, for messages: `users alice, bob; groups finance`.
    pub fn members(&self) -> String {
        let list = |members: &[Member]| members.iter().map(Member::text).collect::<Vec<_>>().join(", ");
        match (self.users.is_empty(), self.groups.is_empty()) {
            (false, false) => format!("users {}; groups {}", list(&self.users), list(&self.groups)),
            (false, true) => format!("users {}", list(&self.users)),
            (true, false) => format!("groups {}", list(&self.groups)),
            (true, true) => String::from("nobody"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_approver_admits_its_users_and_the_members_of_its_groups() {
        let finance = Approver::new("finance", &["alice", "1005"], &["finance", "2000"]);
        let who = |uid, user: Option<&str>, groups: &[(u32, Option<&str>)]| Identity {
            uid: Some(uid),
            user: user.map(str::to_owned),
            groups: groups.iter().map(|(g, n)| (Some(*g), n.map(str::to_owned))).collect(),
        };
        assert!(finance.admits(&who(1000, Some("alice"), &[(1000, Some("alice"))])));
        assert!(finance.admits(&who(1005, None, &[])), "by user id");
        assert!(finance.admits(&who(1001, Some("bob"), &[(1001, Some("bob")), (300, Some("finance"))])));
        assert!(finance.admits(&who(1002, Some("carol"), &[(2000, None)])), "by group id");
        assert!(!finance.admits(&who(1003, Some("mallory"), &[(1003, Some("mallory"))])));
        assert!(!finance.admits(&who(0, Some("root"), &[(0, Some("root"))])), "root is nobody's approver");
        assert!(!finance.admits(&who(1004, Some("alice2"), &[])));
        assert_eq!(finance.members(), "users alice, 1005; groups finance, 2000");
    }

    #[test]
    fn a_console_account_is_matched_by_names_never_by_numeric_ids() {
        let finance = Approver::new("finance", &["alice", "1005"], &["finance", "2000"]);
        assert!(finance.admits(&Identity::account("alice", &[])));
        assert!(finance.admits(&Identity::account("bob", &[String::from("finance")])));
        assert!(!finance.admits(&Identity::account("1005", &[])), "a name that looks like a uid");
        assert!(!finance.admits(&Identity::account("carol", &[String::from("2000")])));
        assert_eq!(Identity::account("alice", &[]).to_string(), "alice (console)");
    }
}
