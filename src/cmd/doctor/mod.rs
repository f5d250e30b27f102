//! `doctor`: explain the confusing cases (daemon trust, hidden netrc, credentials the daemon
//! cannot see, ...) with a concrete fix for each. Never prompts and never prints a secret.
//!
//! One file per kind of check: `nix.rs` (the installed Nix, its files and trust), `cache.rs`
//! (each recorded cache's configuration), `https.rs` (reaching an HTTPS cache with its
//! credential), `s3.rs` (the AWS session and the bucket), `traps.rs` (known traps).

use anyhow::Result;
use serde::Serialize;
use std::path::Path;
use std::time::Duration;

use super::{DoctorArgs, Run};
use crate::aws::session;
use crate::cache::CacheKind;
use crate::config::{CacheEntry, Config, Dirs, SecretStore};
use crate::nix::setup::{self, NixSetup, ProbeCache, SettingsView, Trust, Version};
use crate::ui::Ui;

mod builders;
mod cache;
mod cloud;
mod https;
mod nix;
mod s3;
mod service;
mod traps;

use cache::cache_checks;
use https::{https_probe, nix_ca_file};
use nix::nix_checks;
use s3::s3_checks;
use traps::trap_checks;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Info,
    Warn,
    Fail,
}

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub section: String,
    pub status: Status,
    pub summary: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

#[derive(Default)]
struct Report {
    checks: Vec<Check>,
}

impl Report {
    fn add(
        &mut self,
        section: &str,
        status: Status,
        summary: impl Into<String>,
        fix: Option<String>,
    ) {
        self.checks.push(Check {
            section: section.to_string(),
            status,
            summary: summary.into(),
            fix,
        });
    }
}

impl Run for DoctorArgs {
    fn run(self, ui: &Ui) -> Result<i32> {
        let dirs = Dirs::new()?;
        let mut report = Report::default();
        let config = match Config::load(&dirs.config_file()) {
            Ok(c) => c,
            Err(e) => {
                report.add(
                    "config",
                    Status::Fail,
                    format!("{e:#}"),
                    Some("fix or move the file".into()),
                );
                Config::default()
            }
        };
        let setup = setup::probe(ProbeCache::Off)?;
        let user_view = setup::load_view(&setup.user_conf);
        nix_checks(&mut report, &setup, &user_view);
        let caches: Vec<CacheEntry> = config
            .caches()
            .unwrap_or_default()
            .into_iter()
            .filter(|c| {
                self.cache
                    .as_ref()
                    .is_none_or(|n| &c.name == n || c.kind.url() == *n)
            })
            .collect();
        if let Some(n) = &self.cache
            && caches.is_empty()
        {
            report.add(
                "caches",
                Status::Fail,
                format!("no recorded cache named {n:?}"),
                Some("see `nixstore-auth list`".into()),
            );
        }
        let spinner = if self.json { None } else { ui.spinner() };
        for c in &caches {
            if let Some(s) = &spinner {
                s.set(format!("checking {}", c.name));
            }
            cache_checks(
                &mut report,
                c,
                &setup,
                &user_view,
                session::Ctx::new(&config, &dirs),
            );
        }
        drop(spinner);
        trap_checks(&mut report, &setup, &user_view, &caches);
        builders::builder_checks(&mut report, &setup, &user_view);
        if self.cache.is_none() {
            service::service_checks(&mut report, &config, &dirs);
        }

        let failed = report.checks.iter().any(|c| c.status == Status::Fail);
        if self.json {
            ui.outln(format_args!(
                "{}",
                serde_json::to_string_pretty(&report.checks)?
            ))?;
        } else {
            print_report(&report, ui)?;
        }
        Ok(if failed { 1 } else { 0 })
    }
}

fn print_report(report: &Report, ui: &Ui) -> Result<()> {
    let mut section = "";
    for c in &report.checks {
        if c.section != section {
            section = &c.section;
            ui.outln(format_args!(
                "{}",
                ui.paint_out(section, console::Color::White)
            ))?;
        }
        let mark = match c.status {
            Status::Ok => ui.paint_out("  ok  ", console::Color::Green),
            Status::Info => ui.paint_out("  ..  ", console::Color::Cyan),
            Status::Warn => ui.paint_out("  warn", console::Color::Yellow),
            Status::Fail => ui.paint_out("  FAIL", console::Color::Red),
        };
        ui.outln(format_args!("{mark} {}", c.summary))?;
        if let Some(fix) = &c.fix {
            ui.outln(format_args!("        fix: {fix}"))?;
        }
    }
    Ok(())
}
