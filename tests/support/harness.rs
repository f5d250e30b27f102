//! The test harness of the end-to-end binary (`tests/e2e/main.rs`) and of `tests/shell_init.rs`:
//! libtest-mimic, so that a proof that does not run is reported as *ignored*, never as passed
//! (stable libtest cannot ignore a test at run time), with libtest's command line (filters,
//! `--exact`, `--skip`, `--list`, `--ignored`, `--include-ignored`, `--test-threads`).
//!
//! An end-to-end proof is ignored when the proofs are not switched on (`CI=true` or
//! `NIXSTORE_AUTH_E2E=1`; also with `--include-ignored`: they change the machine) and when
//! [`SELECT_VAR`] leaves its Nix out (in CI too). A proof that should run and cannot (not root,
//! a missing program, a server that does not start) fails.
//!
//! Each proof is timed (lock waits left out); with `NIXSTORE_AUTH_E2E_TIMES=FILE` every
//! proof that ran appends `SECONDS<TAB>NAME<TAB>ok|FAILED` to FILE (scripts/test.sh prints the
//! slowest ten from it). Servers the proofs share ([`super::shared`]) are stopped when the run
//! ends.

use super::{ALL_NIX, E2e, NixUnderTest, SELECT_VAR, e2e_enabled, note, shared};
use libtest_mimic::{Arguments, Completion, Failed, Trial};
use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// One proof of an area: `fn PROOF(e2e: &E2e)`, made by [`crate::proofs!`] in the area's module.
pub struct Proof {
    /// The area module's path (`e2e::aws`).
    pub module: &'static str,
    pub name: &'static str,
    pub run: fn(&E2e),
}

impl Proof {
    /// `AREA::PROOF`.
    pub fn path(&self) -> String {
        let area = self.module.split_once("::").map_or(self.module, |(_, a)| a);
        format!("{area}::{}", self.name)
    }
}

/// The test name of `proof` on Nix `nix_id`: `AREA::PROOF::nix_2_8`.
pub fn trial_name(proof: &Proof, nix_id: &str) -> String {
    format!("{}::nix_{}", proof.path(), nix_id.replace('.', "_"))
}

/// Why the proofs are ignored on this run, if they are (same text for every proof).
const SWITCH_OFF: &str = "proofs are off: NIXSTORE_AUTH_E2E=1 or CI=true runs them";

/// The command line, with `--test-threads` 1 unless given: proofs run one at a time anyway
/// (the machine-wide lock), and in order.
pub fn arguments() -> Cli {
    let mut cli = Cli::parse(std::env::args().collect());
    cli.args.test_threads.get_or_insert(1);
    cli
}

/// libtest's command line as libtest-mimic takes it, plus the filters beyond the first:
/// libtest runs the tests that match any of its filters, libtest-mimic takes only one.
pub struct Cli {
    pub args: Arguments,
    /// Every filter given, when there are two or more (then `args` has none).
    filters: Vec<String>,
}

impl Cli {
    /// Splits `argv` (program name first) into options and filters.
    pub fn parse(argv: Vec<String>) -> Cli {
        // libtest's options that take a value (as the next argument, or after `=`).
        const VALUED: [&str; 6] = [
            "-Z",
            "--test-threads",
            "--logfile",
            "--skip",
            "--color",
            "--format",
        ];
        let mut options = Vec::new();
        let mut filters = Vec::new();
        let mut rest = argv.into_iter();
        options.extend(rest.next());
        let mut positional_only = false;
        while let Some(arg) = rest.next() {
            if positional_only || !arg.starts_with('-') || arg == "-" {
                filters.push(arg);
            } else if arg == "--" {
                positional_only = true;
            } else if VALUED.contains(&arg.as_str()) {
                options.push(arg);
                options.extend(rest.next());
            } else {
                options.push(arg);
            }
        }
        if filters.len() == 1 {
            options.append(&mut filters);
        }
        Cli {
            args: Arguments::from_iter(options),
            filters,
        }
    }

    /// Keeps the trials that match one of the filters (each a substring of the name, or the
    /// whole name with `--exact`), when there are two or more (libtest-mimic applies one).
    pub fn filter(&self, trials: &mut Vec<Trial>) {
        if self.filters.is_empty() {
            return;
        }
        let exact = self.args.exact;
        trials.retain(|t| {
            self.filters.iter().any(|f| {
                if exact {
                    t.name() == f
                } else {
                    t.name().contains(f.as_str())
                }
            })
        });
    }
}

/// The end-to-end binary's `main`: one trial per proof and Nix under test, plus the harness's
/// own checks (`harness::...`, which need neither root nor the switch).
pub fn e2e_main(areas: &[&[Proof]]) -> ExitCode {
    let cli = arguments();
    let args = &cli.args;
    if let Err(e) = NixUnderTest::selection() {
        let _ = writeln!(std::io::stderr(), "error: {e}");
        return ExitCode::from(2);
    }
    let enabled = e2e_enabled();
    if !enabled && !args.list {
        note(
            "note: the end-to-end proofs are ignored: set NIXSTORE_AUTH_E2E=1 or CI=true to run \
             them (as root: sudo ./scripts/test.sh)",
        );
    }
    let mut trials = Vec::new();
    for proof in areas.iter().flat_map(|a| a.iter()) {
        for nix_id in ALL_NIX {
            let selected = NixUnderTest::selected(nix_id);
            let run = proof.run;
            let name = trial_name(proof, nix_id);
            let proof_name = proof.name;
            let trial_name = name.clone();
            trials.push(
                Trial::ignorable_test(name, move || {
                    if !enabled {
                        return Ok(Completion::ignored_with(SWITCH_OFF));
                    }
                    if !selected {
                        return Ok(Completion::ignored_with(format!(
                            "{SELECT_VAR} leaves Nix {nix_id} out"
                        )));
                    }
                    run_timed(&trial_name, || {
                        let e2e = E2e::start(proof_name, nix_id);
                        run(&e2e);
                    })
                })
                .with_ignored_flag(!enabled || !selected),
            );
        }
    }
    trials.extend(self_checks(areas));
    trials.sort_by(|a, b| a.name().cmp(b.name()));
    cli.filter(&mut trials);
    let conclusion = libtest_mimic::run(args, trials);
    shared::stop_all();
    conclusion.exit_code()
}

/// Runs `body`, timing it without the lock waits, and records the time.
fn run_timed(name: &str, body: impl FnOnce()) -> Result<Completion, Failed> {
    let started = Instant::now();
    let waited_before = super::lock_wait_total();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(body));
    let took = started
        .elapsed()
        .saturating_sub(super::lock_wait_total() - waited_before);
    record_time(name, took, result.is_ok());
    match result {
        Ok(()) => Ok(Completion::Completed),
        // libtest-mimic turns the panic into the failure message.
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// Appends one timing line to `NIXSTORE_AUTH_E2E_TIMES` (when set).
fn record_time(name: &str, took: Duration, ok: bool) {
    let Some(path) = std::env::var_os("NIXSTORE_AUTH_E2E_TIMES") else {
        return;
    };
    let line = format!(
        "{:.1}\t{name}\t{}\n",
        took.as_secs_f64(),
        if ok { "ok" } else { "FAILED" }
    );
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut f| f.write_all(line.as_bytes()));
    if let Err(e) = written {
        note(&format!(
            "warning: cannot record the time of {name} in {}: {e}",
            std::path::Path::new(&path).display()
        ));
    }
}

/// The harness's own checks, run as part of the e2e binary (no root, no switch): the binary
/// itself, run again without the switch, reports every proof as ignored, and the Nix selection
/// ignores the versions it leaves out even when switched on.
fn self_checks(areas: &[&[Proof]]) -> Vec<Trial> {
    let proofs: Vec<String> = areas
        .iter()
        .flat_map(|a| a.iter())
        .flat_map(|p| ALL_NIX.iter().map(move |id| trial_name(p, id)))
        .collect();
    let all = proofs.clone();
    let without_switch = Trial::test(
        "harness::without_the_switch_every_proof_is_ignored",
        move || {
            let out = rerun(&[], &["--include-ignored"])?;
            // Even --include-ignored does not switch them on: they change the machine.
            expect_all_ignored(&out, &all)
        },
    );
    let selection = Trial::test(
        "harness::a_nix_left_out_is_ignored_even_when_switched_on",
        move || {
            // --list --ignored: what would be ignored, without running anything.
            let out = rerun(
                &[("NIXSTORE_AUTH_E2E", "1"), (SELECT_VAR, "2.34")],
                &["--list", "--ignored"],
            )?;
            let listed: Vec<&str> = out
                .stdout
                .lines()
                .filter_map(|l| l.strip_suffix(": test"))
                .collect();
            let mut want: Vec<&str> = proofs
                .iter()
                .filter(|n| n.ends_with("::nix_2_8"))
                .map(String::as_str)
                .collect();
            want.sort();
            if listed != want {
                return Err(format!(
                    "with {SELECT_VAR}=2.34 the ignored proofs should be every nix_2_8 one \
                     ({} of them); listed:\n{}",
                    want.len(),
                    out.stdout
                )
                .into());
            }
            Ok(())
        },
    );
    let filters = Trial::test("harness::filters_select_as_libtest_does", || {
        // (command line, names kept)
        let names = [
            "a::x::nix_2_8",
            "a::x::nix_2_34",
            "b::y::nix_2_8",
            "c::z::nix_2_8",
        ];
        let rows: [(&[&str], &[&str]); 6] = [
            (&[], &names),
            (&["a::"], &["a::x::nix_2_8", "a::x::nix_2_34"]),
            (
                &["a::", "c::"],
                &["a::x::nix_2_8", "a::x::nix_2_34", "c::z::nix_2_8"],
            ),
            (&["--exact", "b::y::nix_2_8", "a::x"], &["b::y::nix_2_8"]),
            (
                &["--skip", "nix_2_34", "--test-threads", "2", "a::", "b::"],
                &["a::x::nix_2_8", "b::y::nix_2_8"],
            ),
            (&["--", "--odd", "c::"], &["c::z::nix_2_8"]),
        ];
        for (argv, want) in rows {
            let mut full = vec!["e2e".to_string()];
            full.extend(argv.iter().map(|a| a.to_string()));
            let cli = Cli::parse(full);
            let mut trials: Vec<Trial> = names.iter().map(|n| Trial::test(*n, || Ok(()))).collect();
            cli.filter(&mut trials);
            // A single filter and --skip are libtest-mimic's to apply.
            let kept: Vec<&str> = trials
                .iter()
                .map(|t| t.name())
                .filter(|n| cli.args.filter.as_deref().is_none_or(|f| n.contains(f)))
                .filter(|n| !cli.args.skip.iter().any(|s| n.contains(s.as_str())))
                .collect();
            if kept != want {
                return Err(format!("{argv:?}: kept {kept:?}, want {want:?}").into());
            }
        }
        Ok(())
    });
    vec![without_switch, selection, filters]
}

/// What a rerun of this binary printed.
struct Rerun {
    stdout: String,
    ok: bool,
}

/// Runs this test binary again with `env` (and neither `CI` nor `NIXSTORE_AUTH_E2E` unless
/// given) and `args`, skipping the harness's own checks.
fn rerun(env: &[(&str, &str)], args: &[&str]) -> Result<Rerun, Failed> {
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let mut cmd = std::process::Command::new(exe);
    cmd.env_remove("CI")
        .env_remove("NIXSTORE_AUTH_E2E")
        .env_remove(SELECT_VAR)
        .env_remove("NIXSTORE_AUTH_E2E_TIMES")
        .envs(env.iter().copied())
        .args([
            "--skip",
            "harness::",
            "--test-threads",
            "1",
            "--color",
            "never",
        ])
        .args(args);
    let out = cmd.output().map_err(|e| format!("rerun: {e}"))?;
    Ok(Rerun {
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        ok: out.status.success(),
    })
}

/// Checks a run's output: each of `all` reported `ignored`, nothing passed or failed, and the
/// summary counts them.
fn expect_all_ignored(out: &Rerun, all: &[String]) -> Result<(), Failed> {
    let fail = |why: String| -> Result<(), Failed> { Err(format!("{why}\n{}", out.stdout).into()) };
    if !out.ok {
        return fail("the rerun failed".into());
    }
    // `test NAME<padding> ... RESULT`
    let reported: std::collections::BTreeMap<&str, &str> = out
        .stdout
        .lines()
        .filter_map(|l| l.strip_prefix("test "))
        .filter_map(|l| l.split_once(" ... "))
        .map(|(name, result)| (name.trim_end(), result))
        .collect();
    for name in all {
        let Some(result) = reported.get(name.as_str()) else {
            return fail(format!("{name} is not reported"));
        };
        if !result.starts_with("ignored") {
            return fail(format!("{name}: {result}"));
        }
    }
    let summary = format!("0 passed; 0 failed; {} ignored", all.len());
    if !out.stdout.contains(&summary) {
        return fail(format!("the summary does not say {summary:?}"));
    }
    Ok(())
}

/// A plain libtest-mimic run of `tests` (for test binaries without proofs, e.g.
/// tests/shell_init.rs): runs them and returns the exit code.
pub fn plain_main(mut tests: Vec<Trial>) -> ExitCode {
    let cli = Cli::parse(std::env::args().collect());
    cli.filter(&mut tests);
    libtest_mimic::run(&cli.args, tests).exit_code()
}
