//! Which caches a command brings to Nix, and under which AWS profiles: `exec`'s launch plan,
//! pure, so that every mix of S3 caches, keyring caches and `--profile` is a table test.

use std::collections::BTreeMap;

use crate::cache::{CacheKind, S3Ref};
use crate::config::{CacheEntry, SecretStore};

/// Caches only `exec` can bring to Nix: S3 (the proxy) and HTTPS with a keyring token.
pub fn needs_exec(c: &CacheEntry) -> bool {
    c.kind.is_object_store() || c.secret_store == SecretStore::Keyring
}

/// What a command's caches need.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct CachePlan<'a> {
    /// S3 caches (served through the proxy).
    pub s3: Vec<&'a CacheEntry>,
    /// HTTPS caches whose token is in the keyring, on the netrc route (an ephemeral netrc).
    pub keyring: Vec<&'a CacheEntry>,
    /// HTTPS caches on the proxy route (the proxy adds their credential).
    pub https_proxy: Vec<&'a CacheEntry>,
    /// The AWS profiles to resolve a session for, one each (`None`: AWS_PROFILE or default).
    pub profiles: Vec<Option<String>>,
    /// The S3 caches per profile: each group is one proxy lease with that profile's session.
    pub groups: BTreeMap<Option<String>, Vec<(String, S3Ref)>>,
}

impl CachePlan<'_> {
    /// Nothing for `exec` to do: it can replace itself with the command at once.
    pub fn is_empty(&self) -> bool {
        self.s3.is_empty()
            && self.keyring.is_empty()
            && self.https_proxy.is_empty()
            && self.profiles.is_empty()
    }
}

/// The plan for `caches` (already selected) and `--profile`: one profile for everything when
/// given, else each S3 cache's own `profile=` (deduplicated, in order). `service`: the
/// background service is installed (a keyring token then takes the proxy route).
pub fn plan<'a>(
    caches: &'a [CacheEntry],
    profile_flag: Option<&str>,
    service: bool,
) -> CachePlan<'a> {
    let s3: Vec<&CacheEntry> = caches
        .iter()
        .filter(|c| matches!(c.kind, CacheKind::S3(_)))
        .collect();
    // GCS and Azure caches are leased like HTTPS ones on the proxy route: the proxy reads
    // their credential itself.
    let https_proxy: Vec<&CacheEntry> = caches
        .iter()
        .filter(|c| {
            c.kind.is_cloud() || (c.https_route(service).is_some() && c.served_by_proxy(service))
        })
        .collect();
    let keyring: Vec<&CacheEntry> = caches
        .iter()
        .filter(|c| {
            matches!(c.kind, CacheKind::Https { .. })
                && c.secret_store == SecretStore::Keyring
                && !c.served_by_proxy(service)
        })
        .collect();
    let profile_of = |c: &CacheEntry| match (&c.kind, profile_flag) {
        (_, Some(p)) => Some(p.to_string()),
        (CacheKind::S3(s), None) => s.profile.clone(),
        (_, None) => None,
    };
    let profiles: Vec<Option<String>> = match profile_flag {
        Some(p) => vec![Some(p.to_string())],
        None => {
            let mut p: Vec<Option<String>> = s3.iter().map(|c| profile_of(c)).collect();
            p.sort();
            p.dedup();
            p
        }
    };
    let mut groups: BTreeMap<Option<String>, Vec<(String, S3Ref)>> = BTreeMap::new();
    for c in &s3 {
        if let CacheKind::S3(s3ref) = &c.kind {
            groups
                .entry(profile_of(c))
                .or_default()
                .push((c.name.clone(), s3ref.clone()));
        }
    }
    CachePlan {
        s3,
        keyring,
        https_proxy,
        profiles,
        groups,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, url: &str, store: SecretStore) -> CacheEntry {
        CacheEntry {
            name: name.into(),
            kind: crate::cache::parse_url(url).unwrap(),
            public_keys: Vec::new(),
            login: "nixstore-auth".into(),
            secret_store: store,
            nix_conf: None,
            netrc: None,
            has_token: false,
            added_netrc_line: false,
            https: Default::default(),
        }
    }

    #[test]
    fn cloud_caches_are_leased_without_a_session() {
        let g = entry("g", "gs://bucket-g", SecretStore::Netrc);
        let z = entry("z", "azure://acct1/cache", SecretStore::Netrc);
        let n = entry("n", "https://n.example", SecretStore::Netrc);
        assert!(needs_exec(&g) && needs_exec(&z) && !needs_exec(&n));
        let caches = vec![g, z, n];
        for service in [false, true] {
            let p = plan(&caches, None, service);
            let leased: Vec<&str> = p.https_proxy.iter().map(|c| c.name.as_str()).collect();
            assert_eq!(leased, ["g", "z"]);
            assert!(p.s3.is_empty() && p.keyring.is_empty() && p.profiles.is_empty());
            assert!(!p.is_empty());
        }
    }

    #[test]
    fn caches_and_profiles_in_play() {
        let a = entry("a", "s3://a?profile=work", SecretStore::Netrc);
        let b = entry("b", "s3://b?profile=work", SecretStore::Netrc);
        let c = entry("c", "s3://c", SecretStore::Netrc);
        let k = entry("k", "https://k.example", SecretStore::Keyring);
        let n = entry("n", "https://n.example", SecretStore::Netrc);
        let names = |v: &[(String, S3Ref)]| v.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
        // (caches, --profile) -> (s3, keyring, profiles, groups)
        let caches = vec![a.clone(), b.clone(), c.clone(), k.clone(), n.clone()];
        let p = plan(&caches, None, false);
        assert_eq!(p.s3.len(), 3);
        assert_eq!(
            p.keyring
                .iter()
                .map(|e| e.name.as_str())
                .collect::<Vec<_>>(),
            ["k"]
        );
        assert_eq!(p.profiles, [None, Some("work".to_string())]);
        assert_eq!(names(&p.groups[&Some("work".to_string())]), ["a", "b"]);
        assert_eq!(names(&p.groups[&None]), ["c"]);
        // --profile puts every S3 cache under it.
        let p = plan(&caches, Some("ops"), false);
        assert_eq!(p.profiles, [Some("ops".to_string())]);
        assert_eq!(p.groups.len(), 1);
        assert_eq!(names(&p.groups[&Some("ops".to_string())]), ["a", "b", "c"]);
        // Only netrc HTTPS caches: nothing to do; --profile alone still needs a session.
        let only = vec![n.clone()];
        assert!(plan(&only, None, false).is_empty());
        assert!(!plan(&only, Some("ops"), false).is_empty());
        assert!(!needs_exec(&n) && needs_exec(&k) && needs_exec(&c));
    }
}
