//! Where Nix versions differ, and the product decides by probing the installed Nix: the new CLI
//! (`nix build`, `nix config show`), the settings a client knows (`impure-env` since 2.19), and
//! the trust line of `nix store info` (2.15+). Each proof runs on every Nix under test and
//! names what must differ; the same user-visible outcome is asserted where it must not.
//! Also: the command forms `exec --help` and the README show, run for real.

use crate::support::*;
use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;

/// `exec -- nix build --no-link PATH` (the new CLI, as the README's `exec -- nix build`)
/// substitutes a store path from the private S3 cache through the daemon, with signed GETs.
fn exec_nix_build_no_link_substitutes_from_private_s3(e2e: &E2e) {
    let bed = Bed::new(e2e);
    let cache = SignedCache::create(e2e, "build");
    bed.upload(&cache.dir);
    bed.use_cache(&cache.public_key);

    let from = bed.moto_log().len();
    let out = bed.exec(&["nix", "build", "--no-link", &cache.store_path]);
    out.assert_success("exec -- nix build --no-link PATH");
    assert!(cache.is_valid(e2e), "not substituted:\n{out}");
    let narinfo = format!("{}.narinfo", cache.hash());
    assert_eq!(
        bed.moto_gets(from, |k| k == narinfo),
        1,
        "moto did not serve {narinfo} once to a signed GET:\n{}",
        bed.moto_log()
    );
    assert!(
        bed.moto_gets(from, |k| k.starts_with("nar/")) >= 1,
        "moto did not serve the NAR"
    );
    bed.assert_no_secret("exec -v output", &without_nix_progress(&out));
    assert!(
        !bed.user.home.join("result").exists(),
        "--no-link made a result link"
    );
}

/// The forms `exec --help` shows work on this Nix: `--profile P --mfa-code C -- nix-store -r`,
/// `--cache NAME -- sh -c '...'`; and no example needs an S3 store in Nix itself (`nix copy
/// --to 's3://...'` fails on every Debian Nix: 2.8 has no S3 store, 2.34's build cannot sign),
/// uploads are `push` (proven by s3::push_uploads_a_signed_path_that_exec_substitutes_back).
fn exec_help_examples_work_on_this_nix(e2e: &E2e) {
    let bed = Bed::new(e2e);
    let cache = SignedCache::create(e2e, "help");
    bed.upload(&cache.dir);
    let more = ExtraPaths::create(e2e, "helpmore", 1, &cache_secret_key(e2e, "help"));
    bed.upload(&more.dir);
    bed.use_cache(&cache.public_key);

    let help = bed.nsa(["exec", "--help"]).run();
    help.assert_success("exec --help");
    assert!(
        !help.stdout.contains("nix copy --to 's3://"),
        "exec --help shows an upload no Debian Nix can do:\n{help}"
    );
    assert!(
        help.stdout.contains("nixstore-auth push "),
        "exec --help does not show push:\n{help}"
    );

    let out = bed
        .nsa([
            "exec",
            "--profile",
            PROFILE,
            "--mfa-code",
            MFA_CODE,
            "--",
            "nix-store",
            "-r",
            &cache.store_path,
        ])
        .run();
    out.assert_success("exec --profile P --mfa-code C -- nix-store -r PATH");
    assert!(cache.is_valid(e2e), "not substituted:\n{out}");

    let script = format!("nix-store -r {}", more.paths[0]);
    let out = bed
        .nsa(["exec", "--cache", NAME, "--", "sh", "-c", &script])
        .run();
    out.assert_success("exec --cache NAME -- sh -c 'nix-store -r PATH'");
    assert_eq!(more.valid(e2e), 1, "not substituted:\n{out}");
}

/// The settings `exec` forwards are those the installed client lists: it probes `nix config
/// show --json` (Nix >= 2.20) or `nix show-config --json` (older) and keeps what it learnt in
/// its probe cache `~/.cache/nixstore-auth/nix-probe-v1.json` (newest entry first, with the
/// version). The difference: 2.34 lists `impure-env`, 2.8 does not.
fn exec_forwards_only_the_settings_the_installed_nix_lists(e2e: &E2e) {
    let bed = Bed::new(e2e);
    let cache = SignedCache::create(e2e, "probe");
    bed.upload(&cache.dir);
    bed.use_cache(&cache.public_key);
    bed.exec(&["true"]).assert_success("exec -- true");

    let version = e2e.nix.version();
    let file = ".cache/nixstore-auth/nix-probe-v1.json";
    let probe: serde_json::Value = serde_json::from_str(&bed.user.read(file))
        .unwrap_or_else(|e| panic!("no probe cache in ~/{file}: {e}"));
    let facts = &probe["entries"][0]["facts"];
    let probed_version: Vec<String> = facts["version"]
        .as_array()
        .unwrap_or_else(|| panic!("no version in ~/{file}: {probe}"))
        .iter()
        .map(|n| n.to_string())
        .collect();
    assert_eq!(probed_version.join("."), version, "the probe's version");
    let cached: BTreeSet<String> = serde_json::from_value(facts["known_settings"].clone())
        .unwrap_or_else(|e| panic!("no probed settings in ~/{file}: {e}"));
    // What the user's own Nix lists, by the command for its version.
    let show: &[&str] = if e2e.on("2.8") {
        &["show-config", "--json"]
    } else {
        &["config", "show", "--json"]
    };
    let out = bed.cmd("nix").args(show).run();
    out.assert_success("nix config show --json");
    let listed: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let listed: BTreeSet<String> = listed.as_object().unwrap().keys().cloned().collect();
    let missing: Vec<&String> = listed.difference(&cached).collect();
    assert!(
        missing.is_empty(),
        "the probed list lacks settings Nix {version} lists: {missing:?}"
    );
    assert_eq!(
        cached.contains("impure-env"),
        !e2e.on("2.8"),
        "impure-env is known since Nix 2.19 (here {version})"
    );
    note(&format!(
        "Nix {version} lists {} settings ({} with aliases)",
        listed.len(),
        cached.len()
    ));
}

/// `exec --builder-env` hands the session to fixed-output builders through `impure-env`: on a
/// Nix that lists the setting (2.34) it forwards it, with the experimental feature it needs; on
/// one that does not (2.8) it refuses before running anything, naming the setting.
fn builder_env_needs_a_nix_that_knows_impure_env(e2e: &E2e) {
    let bed = Bed::new(e2e);
    let cache = SignedCache::create(e2e, "benv");
    bed.upload(&cache.dir);
    bed.use_cache(&cache.public_key);
    // Prints the names of the forwarded settings (their values hold secrets).
    let names = "printf '%s\\n' \"$NIX_CONFIG\" | sed -n 's/^\\([a-z-]*\\) = .*/\\1/p'; echo RAN";
    let out = bed
        .nsa([
            "exec",
            "--mfa-code",
            MFA_CODE,
            "--builder-env",
            "--",
            "sh",
            "-c",
            names,
        ])
        .run();
    if e2e.on("2.8") {
        out.assert_failure("exec --builder-env on a Nix without impure-env");
        assert!(
            out.stderr.contains("does not know `impure-env`"),
            "the refusal does not name the setting:\n{out}"
        );
        assert!(!out.stdout.contains("RAN"), "the command ran:\n{out}");
    } else {
        out.assert_success("exec --builder-env");
        let forwarded: Vec<&str> = out.stdout.lines().collect();
        for name in [
            "impure-env",
            "extra-experimental-features",
            "extra-substituters",
        ] {
            assert!(
                forwarded.contains(&name),
                "{name} not forwarded: {forwarded:?}"
            );
        }
        bed.assert_no_secret("exec --builder-env output", &out.all());
    }
}

/// Whether the daemon trusts a user: Nix >= 2.15 answers itself (`Trusted: 1` in `nix store
/// info`), and doctor asks it; an older daemon says nothing, and doctor can only read
/// `trusted-users` where the user can. Here the administrator lists the user in a root-only
/// file that /etc/nix/nix.conf `!include`s (clients skip it): the daemon trusts the user on both
/// versions (a substituter given on the command line is used), 2.34's doctor says so, and 2.8's
/// warns that it does not (the difference: it cannot know).
fn doctor_takes_trust_from_nix_store_info_where_the_daemon_answers(e2e: &E2e) {
    let user = TestUser::create(e2e, "trust");
    let cache = SignedCache::create(e2e, "trust");
    let nginx = Nginx::start(e2e, NginxOptions::new(&cache.dir));
    let include = "/etc/nix/nixstore-auth-e2e-trusted.conf";
    let host_include = e2e.nix.host_path(include);
    let _remove = RemoveOnDrop(host_include.clone());
    fs::write(
        &host_include,
        format!("trusted-users = root {}\n", user.name),
    )
    .unwrap();
    fs::set_permissions(&host_include, fs::Permissions::from_mode(0o600)).unwrap();
    let _daemon = NixDaemon::start(e2e, &NixConf::new().extra(&format!("!include {include}")));

    // The daemon trusts the user: a substituter from the command line is honoured.
    let out = user
        .cmd("nix-store")
        .args(["-r", &cache.store_path, "--option", "substituters"])
        .arg(nginx.url())
        .args(["--option", "trusted-public-keys", &cache.public_key])
        .run();
    out.assert_success("nix-store -r with --option substituters as a trusted user");
    assert!(
        !out.stderr.contains("ignoring untrusted substituter"),
        "{out}"
    );
    assert!(cache.is_valid(e2e));

    let (sub, trust_line) = if e2e.on("2.8") {
        ("ping", None)
    } else {
        ("info", Some("Trusted: 1"))
    };
    let out = user
        .cmd("nix")
        .args(["store", sub, "--store", "daemon"])
        .run();
    out.assert_success("nix store info");
    match trust_line {
        Some(line) => assert!(out.all().contains(line), "no {line:?}:\n{out}"),
        None => assert!(
            !out.all().contains("Trusted:"),
            "Nix 2.8 has no trust line:\n{out}"
        ),
    }

    let doctor = user.cmd(&e2e.bin).args(["doctor", "--json"]).run();
    let checks: Vec<serde_json::Value> = serde_json::from_str(&doctor.stdout)
        .unwrap_or_else(|e| panic!("doctor --json: {e}\n{doctor}"));
    let trust = checks
        .iter()
        .find(|c| c["section"] == "nix" && c["summary"].as_str().unwrap_or("").contains("trust"))
        .unwrap_or_else(|| panic!("no trust check:\n{doctor}"));
    if e2e.on("2.8") {
        assert_eq!(trust["status"], "warn", "{trust:#}");
        assert!(
            trust["summary"]
                .as_str()
                .unwrap()
                .contains("does not trust"),
            "{trust:#}"
        );
    } else {
        assert_eq!(trust["status"], "ok", "{trust:#}");
        assert!(
            trust["summary"].as_str().unwrap().contains("trusts"),
            "{trust:#}"
        );
    }
}

crate::proofs!(
    exec_nix_build_no_link_substitutes_from_private_s3,
    exec_help_examples_work_on_this_nix,
    exec_forwards_only_the_settings_the_installed_nix_lists,
    builder_env_needs_a_nix_that_knows_impure_env,
    doctor_takes_trust_from_nix_store_info_where_the_daemon_answers,
);
