//! What Nix records about the paths to upload and their closure (`nix path-info --json -r`),
//! read in either shape the tested Nix versions print: Nix 2.8 a JSON array of objects with
//! `path`, Nix 2.34 an object keyed by path (with `--json-format 1` named as the shape it means
//! once a Nix refuses `--json` alone; 2.34 only warns). Hashes come as `sha256-BASE64` (SRI)
//! or `sha256:NIX32`.

use anyhow::{Context, Result, bail};
use serde_json::Value;
use std::collections::{HashMap, HashSet};

use super::StorePath;
use super::narinfo::{PathInfo, parse_sha256};
use crate::aws::session::EnvDelta;

/// The closure of `paths` as Nix records it.
pub fn closure(paths: &[StorePath], env: Option<&EnvDelta>) -> Result<Vec<PathInfo>> {
    let run = |extra: &[&str]| {
        let mut cmd = super::command("nix", env);
        cmd.args([
            "--extra-experimental-features",
            "nix-command",
            "path-info",
            "--json",
            "-r",
        ])
        .args(extra)
        .args(paths.iter().map(StorePath::as_str))
        .stdin(std::process::Stdio::null());
        cmd.output().context("cannot run nix path-info")
    };
    let mut out = run(&[])?;
    if !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("--json-format") {
        out = run(&["--json-format", "1"])?;
    }
    if !out.status.success() {
        bail!(
            "nix path-info failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let json: Value =
        serde_json::from_slice(&out.stdout).context("nix path-info printed no JSON")?;
    parse(&json)
}

/// Path infos from `nix path-info --json` output of any tested shape.
pub fn parse(json: &Value) -> Result<Vec<PathInfo>> {
    let entries: Vec<(String, &Value)> = match json {
        Value::Array(items) => items
            .iter()
            .map(|v| {
                let p = v["path"]
                    .as_str()
                    .context("a path-info entry without path")?;
                Ok((p.to_string(), v))
            })
            .collect::<Result<_>>()?,
        Value::Object(map) => map.iter().map(|(k, v)| (k.clone(), v)).collect(),
        _ => bail!("nix path-info printed JSON of an unknown shape"),
    };
    let mut out = Vec::with_capacity(entries.len());
    for (path, v) in entries {
        let what = || format!("nix path-info of {path}");
        if v.is_null() {
            bail!("{path} is not valid in the store");
        }
        let store_path = StorePath::parse(&path).with_context(what)?;
        let nar_hash =
            parse_sha256(v["narHash"].as_str().with_context(what)?).with_context(what)?;
        let nar_size = v["narSize"].as_u64().with_context(what)?;
        let mut references = v["references"]
            .as_array()
            .with_context(what)?
            .iter()
            .map(|r| ref_path(r.as_str().unwrap_or_default(), &store_path))
            .collect::<Result<Vec<_>>>()
            .with_context(what)?;
        references.sort();
        let deriver = match v["deriver"].as_str() {
            Some(d) => Some(ref_path(d, &store_path).with_context(what)?),
            None => None,
        };
        let ca = v["ca"].as_str().map(String::from);
        let signatures = v["signatures"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        out.push(PathInfo {
            path: store_path,
            nar_hash,
            nar_size,
            references,
            deriver,
            ca,
            signatures,
        });
    }
    Ok(out)
}

/// A reference as a full store path (a later JSON format may give base names).
fn ref_path(r: &str, of: &StorePath) -> Result<StorePath> {
    if r.starts_with('/') {
        StorePath::parse(r)
    } else {
        let dir = of.as_str().rsplit_once('/').map(|(d, _)| d).unwrap_or("");
        StorePath::parse(&format!("{dir}/{r}"))
    }
}

/// For each path, the others of the set it references (itself and paths outside the set left
/// out): what must be in the cache before its narinfo may be.
pub fn dependencies(infos: &[PathInfo]) -> Vec<Vec<usize>> {
    let index: HashMap<&StorePath, usize> = infos
        .iter()
        .enumerate()
        .map(|(i, p)| (&p.path, i))
        .collect();
    infos
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let mut deps: Vec<usize> = p
                .references
                .iter()
                .filter_map(|r| index.get(r).copied())
                .filter(|&j| j != i)
                .collect();
            deps.sort_unstable();
            deps.dedup();
            deps
        })
        .collect()
}

/// The paths of `infos` reachable from `roots` through references (the roots included).
pub fn reachable(infos: &[PathInfo], roots: &[StorePath]) -> HashSet<StorePath> {
    let by_path: HashMap<&StorePath, &PathInfo> = infos.iter().map(|p| (&p.path, p)).collect();
    let mut seen = HashSet::new();
    let mut todo: Vec<&StorePath> = roots.iter().collect();
    while let Some(p) = todo.pop() {
        if seen.insert(p.clone())
            && let Some(info) = by_path.get(p)
        {
            todo.extend(info.references.iter());
        }
    }
    seen
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "/nix/store/kqy16a12drcglkq5xmp424qvmzhm82ac-a";
    const B: &str = "/nix/store/0mdqa9w1p6cmli6976v4wi0sw9r4p5pr-b";
    const SRI: &str = "sha256-VYPdzyd4WDNOBp9cg+jxPWSaSBJcVxe0qp/kGv4KTBw=";

    #[test]
    fn both_tested_shapes_are_read() {
        // Nix 2.8: an array with `path`.
        let v28 = serde_json::json!([
            {"path": A, "narHash": SRI, "narSize": 208, "references": [B, A],
             "ca": "fixed:r:sha256:072c", "signatures": ["k:s"]},
            {"path": B, "narHash": SRI, "narSize": 8, "references": [], "deriver": "/nix/store/0mdqa9w1p6cmli6976v4wi0sw9r4p5pr-b.drv"}
        ]);
        // Nix 2.34: an object keyed by path, `deriver: null`, extra fields.
        let v234 = serde_json::json!({
            A: {"narHash": SRI, "narSize": 208, "references": [B, A], "ca": "fixed:r:sha256:072c",
                "signatures": ["k:s"], "deriver": null, "storeDir": "/nix/store", "version": 1},
            B: {"narHash": SRI, "narSize": 8, "references": [], "deriver": "/nix/store/0mdqa9w1p6cmli6976v4wi0sw9r4p5pr-b.drv"}
        });
        for v in [v28, v234] {
            let mut infos = parse(&v).unwrap();
            infos.sort_by(|a, b| a.path.cmp(&b.path));
            let a = infos.iter().find(|i| i.path.as_str() == A).unwrap();
            assert_eq!(a.nar_size, 208);
            assert_eq!(
                a.references
                    .iter()
                    .map(StorePath::as_str)
                    .collect::<Vec<_>>(),
                [B, A]
            );
            assert_eq!(a.signatures, ["k:s"]);
            assert_eq!(a.deriver, None);
            let b = infos.iter().find(|i| i.path.as_str() == B).unwrap();
            assert!(b.deriver.as_ref().unwrap().is_drv());
            let deps = dependencies(&infos);
            let ia = infos.iter().position(|i| i.path.as_str() == A).unwrap();
            let ib = infos.iter().position(|i| i.path.as_str() == B).unwrap();
            assert_eq!(deps[ia], [ib]);
            assert!(deps[ib].is_empty());
            let r = reachable(&infos, &[StorePath::parse(A).unwrap()]);
            assert_eq!(r.len(), 2);
        }
        assert!(parse(&serde_json::json!({A: null})).is_err());
        assert!(parse(&serde_json::json!("x")).is_err());
    }
}
