//! Who we are, from libc: the effective user's name and groups, without running `id` (a
//! subprocess on every `exec` cost milliseconds).

use std::ffi::{CStr, CString};

/// The effective user and the groups the nix-daemon would see for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub uid: u32,
    /// Empty when the uid has no passwd entry.
    pub name: String,
    /// Group ids, primary group first, no duplicates.
    pub gids: Vec<u32>,
    /// Names of `gids` that have a group entry.
    pub groups: Vec<String>,
}

/// The effective user. Groups come from the group database (`getgrouplist`), as the daemon
/// computes them for `trusted-users = @group`: a group added since login counts there already.
/// Without a passwd entry, the process's own groups (`getgroups`) are all there is.
pub fn current() -> Identity {
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    let (name, gids) = match passwd_entry(uid) {
        Some((name, gid)) => {
            let gids = group_list(&name, gid).unwrap_or_else(process_groups);
            (name, gids)
        }
        None => (String::new(), process_groups()),
    };
    let gids = dedup_keep_order(gids);
    let groups = gids.iter().filter_map(|g| group_name(*g)).collect();
    Identity {
        uid,
        name,
        gids,
        groups,
    }
}

fn dedup_keep_order(ids: Vec<u32>) -> Vec<u32> {
    let mut out: Vec<u32> = Vec::with_capacity(ids.len());
    for id in ids {
        if !out.contains(&id) {
            out.push(id);
        }
    }
    out
}

/// Calls a `get*_r` function with a growing buffer until it fits (ERANGE means "too small").
fn with_buffer<T>(
    mut call: impl FnMut(&mut [libc::c_char]) -> Result<Option<T>, i32>,
) -> Option<T> {
    let mut size = 1024;
    loop {
        let mut buf = vec![0 as libc::c_char; size];
        match call(&mut buf) {
            Ok(found) => return found,
            Err(libc::ERANGE) if size < 1 << 20 => size *= 4,
            Err(_) => return None,
        }
    }
}

fn passwd_entry(uid: u32) -> Option<(String, u32)> {
    with_buffer(|buf| {
        // SAFETY: zeroed passwd is a valid out-parameter; buf outlives the call and the
        // strings read from `pw` point into it.
        unsafe {
            let mut pw: libc::passwd = std::mem::zeroed();
            let mut result: *mut libc::passwd = std::ptr::null_mut();
            let rc = libc::getpwuid_r(uid, &mut pw, buf.as_mut_ptr(), buf.len(), &mut result);
            if rc != 0 {
                return Err(rc);
            }
            if result.is_null() {
                return Ok(None);
            }
            let name = CStr::from_ptr(pw.pw_name).to_string_lossy().into_owned();
            Ok(Some((name, pw.pw_gid)))
        }
    })
}

fn group_name(gid: u32) -> Option<String> {
    with_buffer(|buf| {
        // SAFETY: as in passwd_entry.
        unsafe {
            let mut gr: libc::group = std::mem::zeroed();
            let mut result: *mut libc::group = std::ptr::null_mut();
            let rc = libc::getgrgid_r(gid, &mut gr, buf.as_mut_ptr(), buf.len(), &mut result);
            if rc != 0 {
                return Err(rc);
            }
            if result.is_null() {
                return Ok(None);
            }
            Ok(Some(
                CStr::from_ptr(gr.gr_name).to_string_lossy().into_owned(),
            ))
        }
    })
}

// getgrouplist takes gid_t on Linux and int on Apple platforms.
#[cfg(target_vendor = "apple")]
type GroupId = libc::c_int;
#[cfg(not(target_vendor = "apple"))]
type GroupId = libc::gid_t;

// The casts are no-ops on Linux and needed on Apple platforms.
#[allow(clippy::unnecessary_cast)]
fn group_list(name: &str, primary: u32) -> Option<Vec<u32>> {
    let c_name = CString::new(name).ok()?;
    let mut n: libc::c_int = 32;
    for _ in 0..8 {
        let mut buf: Vec<GroupId> = vec![0; n as usize];
        let mut count = n;
        // SAFETY: buf has room for `count` entries; c_name is NUL-terminated.
        let rc = unsafe {
            libc::getgrouplist(
                c_name.as_ptr(),
                primary as GroupId,
                buf.as_mut_ptr(),
                &mut count,
            )
        };
        if rc >= 0 {
            buf.truncate(count.max(0) as usize);
            return Some(buf.into_iter().map(|g| g as u32).collect());
        }
        // Too small: glibc stores the size it needs in `count`; others leave it, so grow.
        n = if count > n { count } else { n * 4 };
    }
    None
}

fn process_groups() -> Vec<u32> {
    // SAFETY: getegid has no preconditions; getgroups(0, NULL) returns the count, and the
    // second call fills a buffer of that size.
    unsafe {
        let mut out = vec![libc::getegid()];
        let n = libc::getgroups(0, std::ptr::null_mut());
        if n > 0 {
            let mut buf = vec![0 as libc::gid_t; n as usize];
            let got = libc::getgroups(n, buf.as_mut_ptr());
            if got > 0 {
                buf.truncate(got as usize);
                out.extend(buf);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same answer `id` gives (when the user has a passwd entry, as on the test bed).
    #[test]
    fn matches_id() {
        let me = current();
        let id = |flag: &str| {
            let out = std::process::Command::new("id").arg(flag).output().unwrap();
            String::from_utf8(out.stdout).unwrap().trim().to_string()
        };
        assert_eq!(me.uid.to_string(), id("-u"));
        if me.name.is_empty() {
            return;
        }
        assert_eq!(me.name, id("-un"));
        // `id -G` lists the process's groups, ours come from the group database: they can
        // differ after a change of membership, so only the primary group is compared.
        let primary: u32 = id("-g").parse().unwrap();
        assert!(me.gids.contains(&primary), "{primary} not in {:?}", me.gids);
    }

    #[test]
    fn dedup_keeps_the_first() {
        assert_eq!(dedup_keep_order(vec![5, 1, 5, 2, 1]), vec![5, 1, 2]);
    }
}
