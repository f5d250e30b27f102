//! The flake's outputs against the stub nixpkgs: `nix flake check` and `show`, and what the
//! package gives buildRustPackage through the flake, the overlay and default.nix.

use super::*;

/// `nix flake check --no-build` passes with no warning but the expected ones, and `nix flake
/// show` lists every output the README promises.
pub(crate) fn flake_check_and_show(nix: Nix) {
    let p = place(nix);
    let mut check = vec!["flake", "check", "--no-build"];
    if nix == Nix::V2_34 {
        check.push("--all-systems"); // 2.8 checks every system anyway
    }
    let ran = run_nix(nix, &p.repo(), "nix", &flake_args(&check), &[]).expect_ok("nix flake check");
    // No flake.lock is committed (none can be made offline): Nix says it did not write one.
    // Nix 2.8 does not know the home-manager outputs' names.
    let expected = [
        "warning: not writing modified lock file of flake",
        "warning: unknown flake output 'homeModules'",
        "warning: unknown flake output 'homeManagerModules'",
        // The snapshot is committed; a Nix that counted the untracked target/ would say so.
        "warning: Git tree",
    ];
    for w in ran.warnings() {
        assert!(
            expected.iter().any(|e| w.starts_with(e)),
            "unexpected: {w}\n{}",
            ran.stderr
        );
    }
    let mut show = vec!["flake", "show", "--json"];
    if nix == Nix::V2_34 {
        show.push("--all-systems");
    }
    let ran = run_nix(nix, &p.repo(), "nix", &flake_args(&show), &[]).expect_ok("nix flake show");
    let outputs: Value = serde_json::from_str(&ran.stdout).unwrap();
    let name = format!("nixstore-auth-{}", env!("CARGO_PKG_VERSION"));
    for system in [
        "x86_64-linux",
        "aarch64-linux",
        "x86_64-darwin",
        "aarch64-darwin",
    ] {
        for pkg in ["default", "nixstore-auth"] {
            assert_eq!(
                outputs["packages"][system][pkg]["name"],
                json!(name),
                "{system} {pkg}: {outputs}"
            );
        }
        assert_eq!(
            outputs["checks"][system]["nixstore-auth"]["name"],
            json!(name)
        );
        assert_eq!(
            outputs["devShells"][system]["default"]["type"],
            json!("derivation")
        );
        assert_eq!(outputs["formatter"][system]["type"], json!("derivation"));
    }
    assert_eq!(
        outputs["overlays"]["default"]["type"],
        json!("nixpkgs-overlay")
    );
    assert_eq!(
        outputs["nixosModules"]["default"]["type"],
        json!("nixos-module")
    );
    for hm in ["homeModules", "homeManagerModules"] {
        assert!(outputs.get(hm).is_some(), "{hm} missing: {outputs}");
    }
    // The modules themselves, without flakes: the older name is the same module.
    let same = eval_ok(
        nix,
        "let stubFlake = (import ./tests/nix/stub-nixpkgs/flake.nix).outputs { self = stubFlake; };
             self = (import ./flake.nix).outputs { inherit self; nixpkgs = stubFlake; };
         in { hm = builtins.attrNames self.homeManagerModules; nixos = builtins.attrNames self.nixosModules;
              sameHm = builtins.functionArgs self.homeManagerModules.default == builtins.functionArgs (import ./nix/home-module.nix); }",
        &Value::Null,
    );
    assert_eq!(
        same,
        json!({"hm": ["default", "nixstore-auth"], "nixos": ["default", "nixstore-auth"], "sameHm": true})
    );
}

/// What nix/package.nix hands to buildRustPackage (through the flake, the overlay and
/// default.nix): name, Cargo.toml's version, mainProgram, Cargo.lock, unit tests only, a source
/// without build output, and an install phase that installs every completion and man page.
pub(crate) fn flake_package(nix: Nix) {
    let p = place(nix);
    let apply = "p: { inherit (p) pname version name; inherit (p.meta) mainProgram platforms; license = p.meta.license.spdxId;
        lock = p.stubArgs.cargoLock.lockFile; src = p.stubArgs.src; inherit (p.stubArgs) postInstall cargoTestFlags;
        doCheck = p.stubArgs.doCheck or true; native = map (d: d.name) p.stubArgs.nativeBuildInputs;
        buildInputs = map (d: d.name) (p.stubArgs.buildInputs or [ ]); }";
    let version = env!("CARGO_PKG_VERSION");
    let bin_name = Path::new(BIN).file_name().unwrap().to_str().unwrap();
    for system in ["x86_64-linux", "aarch64-darwin"] {
        let attr = format!(".#packages.{system}.default");
        let ran = run_nix(
            nix,
            &p.repo(),
            "nix",
            &flake_args(&["eval", "--json", &attr, "--apply", apply]),
            &[],
        )
        .expect_ok("nix eval");
        let got: Value = serde_json::from_str(&ran.stdout).unwrap();
        assert_eq!(got["pname"], json!("nixstore-auth"));
        assert_eq!(
            got["version"],
            json!(version),
            "the version must be Cargo.toml's"
        );
        assert_eq!(got["name"], json!(format!("nixstore-auth-{version}")));
        assert_eq!(got["mainProgram"], json!(bin_name));
        assert_eq!(got["license"], json!("MIT"));
        assert_eq!(
            got["platforms"],
            json!([
                "x86_64-linux",
                "aarch64-linux",
                "x86_64-darwin",
                "aarch64-darwin"
            ])
        );
        assert_eq!(got["cargoTestFlags"], json!(["--lib"]));
        assert_eq!(got["doCheck"], json!(true));
        assert_eq!(got["native"], json!(["stub-installShellFiles"]));
        assert_eq!(got["buildInputs"], json!([]));
        let lock = p.store_file(got["lock"].as_str().unwrap());
        assert_eq!(
            std::fs::read(&lock).unwrap(),
            std::fs::read(Path::new(REPO).join("Cargo.lock")).unwrap(),
            "cargoLock.lockFile must be the repository's Cargo.lock"
        );
        let src = p.store_file(got["src"].as_str().unwrap());
        check_source(&src);
        check_install_phase(&src, got["postInstall"].as_str().unwrap());
    }
    // The same package with and without flakes: overlay and default.nix. default.nix sees the
    // untracked target/, which its source filter must leave out.
    let expr = "let
        stubFlake = (import ./tests/nix/stub-nixpkgs/flake.nix).outputs { self = stubFlake; };
        self = (import ./flake.nix).outputs { inherit self; nixpkgs = stubFlake; };
        stub = import ./tests/nix/stub-nixpkgs { };
        overlaid = stub // self.overlays.default overlaid stub;
        plain = import ./default.nix { pkgs = stub; };
        pick = p: { inherit (p) name; src = p.stubArgs.src; lock = builtins.baseNameOf p.stubArgs.cargoLock.lockFile; };
      in { overlay = pick overlaid.nixstore-auth; defaultNix = pick plain; }";
    let ran = run_nix(
        nix,
        &p.repo(),
        "nix-instantiate",
        &[
            "--eval",
            "--strict",
            "--json",
            "--read-write-mode",
            "-E",
            expr,
        ],
        &[],
    )
    .expect_ok("nix-instantiate of the overlay and default.nix");
    let got: Value = serde_json::from_str(&ran.stdout).unwrap();
    for way in ["overlay", "defaultNix"] {
        assert_eq!(
            got[way]["name"],
            json!(format!("nixstore-auth-{version}")),
            "{way}"
        );
        assert_eq!(got[way]["lock"], json!("Cargo.lock"), "{way}");
        check_source(&p.store_file(got[way]["src"].as_str().unwrap()));
    }
    assert!(
        p.host_path(&p.repo())
            .join("target/debug/build-output")
            .exists()
    );
}

/// A package source: what Cargo needs, and no build output, git data or Nix files.
fn check_source(src: &Path) {
    let mut top: Vec<String> = std::fs::read_dir(src)
        .unwrap_or_else(|e| panic!("{}: {e}", src.display()))
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    top.sort();
    assert_eq!(
        top,
        [
            "Cargo.lock",
            "Cargo.toml",
            "LICENSE",
            "README.md",
            "completions",
            "man",
            "src",
            "tests"
        ],
        "{}",
        src.display()
    );
    assert!(src.join("src/main.rs").is_file() && src.join("tests/flake.rs").is_file());
}

/// Runs the package's postInstall in its source with stand-ins for nixpkgs' two install hooks
/// that record their arguments: every completion file and man page named must exist there.
fn check_install_phase(src: &Path, post_install: &str) {
    let log = tempfile::NamedTempFile::new().unwrap();
    let script = r#"set -eu
installShellCompletion() { for a in "$@"; do printf 'completion %s\n' "$a" >>"$LOG"; done; }
installManPage() { for a in "$@"; do printf 'man %s\n' "$a" >>"$LOG"; done; }
eval "$POST_INSTALL""#;
    let out = Command::new("bash")
        .args(["-c", script])
        .current_dir(src)
        .env("LOG", log.path())
        .env("POST_INSTALL", post_install)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "postInstall failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let log = std::fs::read_to_string(log.path()).unwrap();
    let completion: Vec<&str> = log
        .lines()
        .filter_map(|l| l.strip_prefix("completion "))
        .collect();
    assert_eq!(
        completion,
        [
            "--cmd",
            "nixstore-auth",
            "--bash",
            "completions/nixstore-auth.bash",
            "--zsh",
            "completions/_nixstore-auth",
            "--fish",
            "completions/nixstore-auth.fish"
        ]
    );
    for f in completion.iter().filter(|a| a.starts_with("completions/")) {
        assert_eq!(
            std::fs::read(src.join(f)).unwrap(),
            std::fs::read(Path::new(REPO).join(f)).unwrap(),
            "{f}"
        );
    }
    let mut pages: Vec<&str> = log.lines().filter_map(|l| l.strip_prefix("man ")).collect();
    pages.sort();
    let mut expected: Vec<String> = std::fs::read_dir(Path::new(REPO).join("man"))
        .unwrap()
        .map(|e| format!("man/{}", e.unwrap().file_name().into_string().unwrap()))
        .filter(|f| f.ends_with(".1"))
        .collect();
    expected.sort();
    assert!(
        expected.len() > 20 && pages == expected,
        "{pages:?} != {expected:?}"
    );
    for page in &pages {
        assert!(src.join(page).is_file(), "{page}");
    }
}
