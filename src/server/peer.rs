//! Who is on the other end of the admin socket: the user id the kernel
//! reports (`SO_PEERCRED`), with the user's name and groups from the user
//! database (`getpwuid`, `getgrouplist`, through NSS). Nothing the peer
//! says about itself is used.

use std::ffi::CString;

use nix::unistd::{Gid, Group, Uid, User, getgrouplist};

use crate::service::Identity;

/// The identity of a peer whose process runs as `uid` with primary group
/// `gid`. A user the database does not know keeps its ids only (it can be
/// named by number in `approvers`). Looks the user up: may block on NSS.
pub fn identify(uid: u32, gid: u32) -> Identity {
    let user = User::from_uid(Uid::from_raw(uid)).ok().flatten();
    let name = user.as_ref().map(|u| u.name.clone());
    let mut gids = vec![Gid::from_raw(gid)];
    if let Some(user) = &user
        && let Ok(name) = CString::new(user.name.as_bytes())
        && let Ok(listed) = getgrouplist(&name, user.gid)
    {
        gids.extend(listed);
    }
    gids.sort_unstable_by_key(|g| g.as_raw());
    gids.dedup();
    let groups = gids
        .into_iter()
        .map(|gid| (Some(gid.as_raw()), Group::from_gid(gid).ok().flatten().map(|g| g.name)))
        .collect();
    Identity { uid: Some(uid), user: name, groups }
}

/// The id of the group called `name` (or given by number).
pub fn group_id(name: &str) -> Option<u32> {
    if let Ok(id) = name.parse::<u32>() {
        return Some(id);
    }
    Group::from_name(name).ok().flatten().map(|g| g.gid.as_raw())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_current_user_is_named_and_in_its_primary_group() {
        let (uid, gid) = (rustix::process::getuid().as_raw(), rustix::process::getgid().as_raw());
        let me = identify(uid, gid);
        assert_eq!(me.uid, Some(uid));
        assert!(me.groups.iter().any(|(g, _)| *g == Some(gid)), "{me:?}");
        let unknown = identify(4_000_000_000, 4_000_000_000);
        assert_eq!((unknown.user, unknown.groups), (None, vec![(Some(4_000_000_000), None)]));
    }
}
