//! `doctor` for a GCS or Azure cache: which credential it uses from this environment, and
//! where that stands (loaded as the proxy would load it; no request to the store).

use super::Status;
use crate::cache::CacheKind;
use crate::cloud_cache::{EnvSnapshot, load};
use crate::config::{CacheEntry, Config, Dirs};

/// `doctor`'s lines for a cloud cache: which credential it uses here and where it stands.
pub(super) fn doctor_lines(
    c: &CacheEntry,
    cfg: &Config,
    dirs: &Dirs,
) -> Vec<(super::Status, String, Option<String>)> {
    let mut out = vec![(
        Status::Info,
        format!(
            "{} cache: served to the nix-daemon by your loopback proxy (run Nix through `nixstore-auth exec`, or install the background service)",
            c.kind.label()
        ),
        None,
    )];
    let env = EnvSnapshot::gather();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            out.push((
                Status::Warn,
                format!("cannot check the credential: {e}"),
                None,
            ));
            return out;
        }
    };
    let loaded = rt.block_on(async { load(c, cfg, dirs, &env) });
    match loaded {
        Ok(l) => {
            out.push((
                Status::Info,
                format!("credential: {}", l.auth.describe()),
                None,
            ));
            match l.auth.state() {
                crate::cloud::State::NeedsPerson { why, fix } => {
                    out.push((Status::Fail, why, Some(fix)));
                }
                crate::cloud::State::Renews { .. } => out.push((
                    Status::Ok,
                    "renews itself without a person (no token was fetched here)".into(),
                    None,
                )),
                crate::cloud::State::Valid { until: Some(u) } => out.push((
                    Status::Ok,
                    format!("valid until {}", crate::time::rfc3339(u)),
                    None,
                )),
                crate::cloud::State::Valid { until: None } => {
                    out.push((Status::Ok, "valid (does not expire)".into(), None))
                }
            }
        }
        Err(e) => out.push((
            Status::Fail,
            format!("no usable credential: {e:#}"),
            Some(match &c.kind {
                CacheKind::Azure(_) => format!(
                    "nixstore-auth secret set {} --azure-key-stdin (or --sas-stdin, or az login)",
                    c.name
                ),
                _ => "gcloud auth application-default login".into(),
            }),
        )),
    }
    out
}
