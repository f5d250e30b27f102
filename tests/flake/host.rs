//! On the host: the unit files through systemd-analyze, the NixOS generator run as systemd
//! runs it, and the shell lines in bash, zsh and fish.

use super::*;

/// The units rendered for the real binary, written to a directory.
fn write_units(dir: &Path, port: u16) -> Value {
    let units = eval_ok(
        Nix::V2_8,
        "nsa.units { bin = input.bin; port = input.port; }",
        &json!({"bin": BIN, "port": port}),
    );
    assert_eq!(units, expected_units(BIN, port));
    for (name, text) in units.as_object().unwrap() {
        std::fs::write(dir.join(name), text.as_str().unwrap()).unwrap();
    }
    units
}

/// `systemd-analyze --user verify` on unit files; Err(stderr) when it finds anything.
fn verify(files: &[PathBuf], man: Option<&Path>) -> Result<(), String> {
    let runtime = tempfile::tempdir().unwrap();
    let mut cmd = Command::new("systemd-analyze");
    cmd.arg("--user")
        .arg(if man.is_some() {
            "--man=yes"
        } else {
            "--man=no"
        })
        .arg("verify")
        .args(files)
        .env("XDG_RUNTIME_DIR", runtime.path());
    if let Some(m) = man {
        cmd.env("MANPATH", m);
    }
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if out.status.success() && stderr.trim().is_empty() {
        Ok(())
    } else {
        Err(stderr)
    }
}

fn unit_paths(dir: &Path) -> Vec<PathBuf> {
    vec![
        dir.join("nixstore-auth-proxy.socket"),
        dir.join("nixstore-auth-proxy.service"),
    ]
}

/// The rendered units pass `systemd-analyze --user verify`; a broken one does not (the check
/// can fail).
pub(crate) fn units_verify() {
    let dir = tempfile::tempdir().unwrap();
    write_units(dir.path(), 20123);
    verify(&unit_paths(dir.path()), None)
        .unwrap_or_else(|e| panic!("systemd-analyze verify:\n{e}"));
    let socket = dir.path().join("nixstore-auth-proxy.socket");
    let text = std::fs::read_to_string(&socket).unwrap();
    std::fs::write(&socket, text.replace("ListenStream=127.0.0.1:20123\n", "")).unwrap();
    let err =
        verify(&unit_paths(dir.path()), None).expect_err("a socket without ListenStream must fail");
    assert!(err.contains("no Listen setting"), "{err}");
}

/// The units' Documentation= names a man page the project ships.
pub(crate) fn units_documentation() {
    let dir = tempfile::tempdir().unwrap();
    write_units(dir.path(), 20123);
    let man = tempfile::tempdir().unwrap();
    std::fs::create_dir(man.path().join("man1")).unwrap();
    for e in std::fs::read_dir(Path::new(REPO).join("man")).unwrap() {
        let e = e.unwrap();
        std::os::unix::fs::symlink(e.path(), man.path().join("man1").join(e.file_name())).unwrap();
    }
    verify(&unit_paths(dir.path()), Some(man.path())).unwrap_or_else(|e| panic!("{e}"));
}

/// `nixstore-auth service install` (with a stub `systemctl` first on PATH: no systemd runs as
/// PID 1 here) writes exactly the unit files the modules render for the same binary and port,
/// so a module's units and the tool's are interchangeable.
pub(crate) fn units_match_the_tool() {
    let sandbox = tempfile::tempdir().unwrap();
    let d = sandbox.path();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    for sub in [
        "bin",
        "run",
        "etc",
        "home/.config/nix",
        "home/.config/nixstore-auth",
    ] {
        std::fs::create_dir_all(d.join(sub)).unwrap();
    }
    std::fs::write(d.join("etc/nix.conf"), "substituters =\n").unwrap();
    std::fs::write(
        d.join("home/.config/nixstore-auth/config.toml"),
        format!("keyring-backend = \"file\"\n\n[proxy]\nport = {port}\n"),
    )
    .unwrap();
    let stub = d.join("bin/systemctl");
    std::fs::write(&stub, "#!/bin/sh\nexit 0\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&stub, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(d.join("run"), std::fs::Permissions::from_mode(0o700)).unwrap();
    let home = d.join("home");
    let out = Command::new(BIN)
        .args(["service", "install"])
        .env_clear()
        .env("PATH", format!("{}:/usr/bin:/bin", d.join("bin").display()))
        .env("HOME", &home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env("XDG_DATA_HOME", home.join(".local/share"))
        .env("XDG_CACHE_HOME", home.join(".cache"))
        .env("XDG_STATE_HOME", home.join(".local/state"))
        .env("XDG_RUNTIME_DIR", d.join("run"))
        .env("NIX_CONF_DIR", d.join("etc"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "service install: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let exe = std::fs::canonicalize(BIN).unwrap();
    let exe = exe.to_str().unwrap();
    let rendered = eval_ok(
        Nix::V2_8,
        "nsa.units { bin = input.bin; port = input.port; }",
        &json!({"bin": exe, "port": port}),
    );
    let units = home.join(".config/systemd/user");
    for (name, text) in rendered.as_object().unwrap() {
        let written = std::fs::read_to_string(units.join(name))
            .unwrap_or_else(|e| panic!("service install wrote no {name}: {e}"));
        assert_eq!(
            written,
            text.as_str().unwrap(),
            "{name}: the tool and the modules differ"
        );
    }
}

/// The NixOS generator, run as systemd runs it: the listed user gets the tool's units (with
/// their port) and the socket enabled, again on a re-run; an unlisted user gets nothing.
pub(crate) fn units_generator() {
    let me = Command::new("id").arg("-un").output().unwrap();
    let me = String::from_utf8(me.stdout).unwrap().trim().to_string();
    let script = |ports: Value| {
        let text = eval_ok(
            Nix::V2_8,
            "nsa.generatorScript { coreutils = \"/usr/bin\"; bin = input.bin; ports = input.ports; }",
            &json!({"bin": BIN, "ports": ports}),
        );
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), text.as_str().unwrap()).unwrap();
        f
    };
    let run = |script: &Path, out: &Path| {
        let s = Command::new("bash")
            .arg(script)
            .args([out, &out.join("early"), &out.join("late")])
            .env_clear()
            .status()
            .unwrap();
        assert!(s.success());
    };
    let listed = script(json!({ me.clone(): 20321, "someone-else": 20999 }));
    let out = tempfile::tempdir().unwrap();
    for _ in 0..2 {
        run(listed.path(), out.path());
        let units = expected_units(BIN, 20321);
        for (name, text) in units.as_object().unwrap() {
            assert_eq!(
                std::fs::read_to_string(out.path().join(name)).unwrap(),
                text.as_str().unwrap(),
                "{name}"
            );
        }
        let link = out
            .path()
            .join("sockets.target.wants/nixstore-auth-proxy.socket");
        assert_eq!(
            std::fs::read_link(&link).unwrap(),
            Path::new("../nixstore-auth-proxy.socket")
        );
        assert_eq!(
            std::fs::read_to_string(&link).unwrap(),
            units["nixstore-auth-proxy.socket"].as_str().unwrap()
        );
    }
    verify(&unit_paths(out.path()), None).unwrap_or_else(|e| panic!("{e}"));
    let unlisted = script(json!({"someone-else": 20999}));
    let out = tempfile::tempdir().unwrap();
    run(unlisted.path(), out.path());
    assert_eq!(std::fs::read_dir(out.path()).unwrap().count(), 0);
}

/// The lines the home-manager module puts in each shell's startup file define the wrappers.
pub(crate) fn shell_init_lines() {
    let lines = eval_ok(
        Nix::V2_8,
        "map (shell: nsa.shellInit { bin = input; inherit shell; }) [ \"bash\" \"zsh\" \"fish\" ]",
        &json!(BIN),
    );
    let home = tempfile::tempdir().unwrap();
    let shells: [(&str, &[&str], &str); 3] = [
        ("bash", &["--norc", "--noprofile", "-c"], "type nix"),
        ("zsh", &["-f", "-c"], "whence -f nix"),
        ("fish", &["--no-config", "-c"], "functions nix"),
    ];
    for (i, (shell, args, show)) in shells.iter().enumerate() {
        let line = lines[i].as_str().unwrap();
        let out = Command::new(shell)
            .args(*args)
            .arg(format!("{line}\n{show}"))
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", home.path())
            .env("XDG_CONFIG_HOME", home.path().join("config"))
            .env("XDG_DATA_HOME", home.path().join("data"))
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("nixstore-auth exec -- nix"),
            "{shell}: {line}\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
