//! `service install|uninstall|status` and `list --format` through the binary, against sandboxed
//! files: no daemon, no network. The systemd route is taken with a stub `systemctl` first on
//! PATH that records its arguments and answers: no machine here runs systemd as PID 1 (the
//! socket activation itself is proven in tests/e2e/service.rs with systemd-socket-activate).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const KEY: &str = "cache.example.org-1:6NCHdD59X431o0gWypbMrAURkbJ16ZPMQFGspcDShjY=";
const USER_CONF: &str = "# mine\r\nkeep-outputs = true\r\n";

struct Sandbox {
    dir: tempfile::TempDir,
    port: u16,
}

impl Sandbox {
    fn new() -> Sandbox {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let s = Sandbox { dir, port };
        for d in [
            "etc",
            "bin",
            "run",
            "home/.config/nix",
            "home/.config/nixstore-auth",
        ] {
            std::fs::create_dir_all(s.path(d)).unwrap();
        }
        std::fs::set_permissions(s.path("run"), std::fs::Permissions::from_mode(0o700)).unwrap();
        std::fs::write(s.path("etc/nix.conf"), "substituters =\n").unwrap();
        std::fs::write(
            s.path("home/.config/nixstore-auth/config.toml"),
            format!("keyring-backend = \"file\"\n\n[proxy]\nport = {}\n", s.port),
        )
        .unwrap();
        // The stub: records "$*", answers like a user manager with the socket enabled.
        let stub = s.path("bin/systemctl");
        std::fs::write(
            &stub,
            format!(
                "#!/bin/sh\necho \"$*\" >> {}\ncase \"$2\" in is-enabled) echo enabled ;; is-active) echo active ;; esac\nexit 0\n",
                s.path("calls").display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&stub, std::fs::Permissions::from_mode(0o755)).unwrap();
        s
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn nix_conf(&self) -> PathBuf {
        self.path("home/.config/nix/nix.conf")
    }

    fn run(&self, args: &[&str]) -> Output {
        let path = format!(
            "{}:{}",
            self.path("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut c = Command::new(env!("CARGO_BIN_EXE_nixstore-auth"));
        c.args(args)
            .env_clear()
            .env("PATH", path)
            .env("HOME", self.path("home"))
            .env("XDG_CONFIG_HOME", self.path("home/.config"))
            .env("XDG_DATA_HOME", self.path("home/.local/share"))
            .env("XDG_CACHE_HOME", self.path("home/.cache"))
            .env("XDG_STATE_HOME", self.path("home/.local/state"))
            .env("XDG_RUNTIME_DIR", self.path("run"))
            .env("NIX_CONF_DIR", self.path("etc"))
            .env("NO_COLOR", "1")
            .stdin(Stdio::null());
        c.output().unwrap()
    }

    fn calls(&self) -> String {
        std::fs::read_to_string(self.path("calls")).unwrap_or_default()
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Every regular file below `dir`, with its bytes.
fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.push((p.clone(), std::fs::read(&p).unwrap_or_default()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn install_with_a_user_manager_then_uninstall_gives_everything_back() {
    let s = Sandbox::new();
    std::fs::write(s.nix_conf(), USER_CONF).unwrap();
    let out = s.run(&["use", "s3://bucket?region=eu-west-1", "--public-key", KEY]);
    assert!(out.status.success(), "{}", text(&out));
    let after_use = std::fs::read(s.nix_conf()).unwrap();

    // A dry run writes nothing and shows the units and the nix.conf line.
    let before = files(&s.path("home"));
    let out = s.run(&["service", "install", "--dry-run"]);
    assert!(out.status.success(), "{}", text(&out));
    let shown = text(&out);
    assert!(
        shown.contains(&format!("+ListenStream=127.0.0.1:{}", s.port)),
        "{shown}"
    );
    assert!(shown.contains("+!include nixstore-auth.conf"), "{shown}");
    assert!(shown.contains("would run: systemctl --user enable --now nixstore-auth-proxy.socket"));
    assert_eq!(files(&s.path("home")), before, "a dry run wrote something");
    assert_eq!(
        s.calls(),
        "--user show-environment\n",
        "only asked whether it answers"
    );

    let out = s.run(&["service", "install"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        s.calls(),
        "--user show-environment\n--user show-environment\n--user daemon-reload\n--user enable --now nixstore-auth-proxy.socket\n"
    );
    let units = s.path("home/.config/systemd/user");
    let service = std::fs::read_to_string(units.join("nixstore-auth-proxy.service")).unwrap();
    let exe = std::fs::canonicalize(env!("CARGO_BIN_EXE_nixstore-auth")).unwrap();
    assert!(
        service.contains(&format!("ExecStart={} proxy serve\n", exe.display())),
        "{service}"
    );
    let socket = std::fs::read_to_string(units.join("nixstore-auth-proxy.socket")).unwrap();
    assert!(socket.contains(&format!("ListenStream=127.0.0.1:{}\n", s.port)));
    // The URLs are in the include file itself (a service manager listens for good), 0600.
    let include = s.path("home/.config/nix/nixstore-auth.conf");
    let inc = std::fs::read_to_string(&include).unwrap();
    let secret =
        std::fs::read_to_string(s.path("home/.local/share/nixstore-auth/proxy-secret")).unwrap();
    assert!(
        inc.contains(&format!(
            "extra-substituters = http://127.0.0.1:{}/{}/bucket\n",
            s.port,
            secret.trim()
        )) && inc.contains(KEY),
        "{inc}"
    );
    assert_eq!(
        std::fs::metadata(&include).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let conf = std::fs::read(s.nix_conf()).unwrap();
    assert_eq!(
        conf,
        [&after_use[..], b"!include nixstore-auth.conf\r\n"].concat()
    );
    assert!(!String::from_utf8_lossy(&conf).contains(secret.trim()));
    assert!(
        !text(&out).contains(secret.trim()),
        "the secret in the output"
    );

    // Status: installed, socket enabled (stub), but no proxy answers here: exit 1.
    let out = s.run(&["service", "status", "--format", "json"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["route"], "systemd");
    assert_eq!(v["socket_enabled"], "enabled");
    assert_eq!(v["include"]["line"], true);
    assert_eq!(v["include"]["private"], true);
    assert_eq!(v["include"]["current"], true);
    assert_eq!(v["proxy"]["running"], false);

    // Uninstall: the service manager's calls, the files gone, nix.conf as after `use`.
    std::fs::write(s.path("calls"), "").unwrap();
    let out = s.run(&["service", "uninstall"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        s.calls(),
        "--user disable --now nixstore-auth-proxy.socket\n--user stop nixstore-auth-proxy.service\n--user daemon-reload\n"
    );
    assert!(!include.exists() && !units.join("nixstore-auth-proxy.service").exists());
    assert_eq!(std::fs::read(s.nix_conf()).unwrap(), after_use);
    let out = s.run(&["remove", "bucket"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(std::fs::read(s.nix_conf()).unwrap(), USER_CONF.as_bytes());
}

#[test]
fn a_nix_conf_that_cannot_be_edited_gets_the_line_printed() {
    let s = Sandbox::new();
    // home-manager links nix.conf into the store: a symlink to a read-only file.
    let target = s.path("store-nix.conf");
    std::fs::write(&target, "substituters =\n").unwrap();
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o444)).unwrap();
    std::os::unix::fs::symlink(&target, s.nix_conf()).unwrap();
    let out = s.run(&["service", "install"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "!include nixstore-auth.conf"
    );
    assert!(text(&out).contains("was not changed"), "{}", text(&out));
    assert_eq!(
        std::fs::read_to_string(&target).unwrap(),
        "substituters =\n"
    );
    assert!(
        std::fs::symlink_metadata(s.nix_conf())
            .unwrap()
            .file_type()
            .is_symlink()
    );
    // The include file is written next to it all the same (the module adds the line).
    assert!(s.path("home/.config/nix/nixstore-auth.conf").exists());
    assert!(
        text(&out).contains("nothing is served until"),
        "{}",
        text(&out)
    );
    let out = s.run(&["service", "uninstall"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        std::fs::read_to_string(&target).unwrap(),
        "substituters =\n"
    );
}

#[test]
fn list_takes_format_json_and_keeps_json_as_an_alias() {
    let s = Sandbox::new();
    let out = s.run(&["use", "s3://bucket?region=eu-west-1", "--public-key", KEY]);
    assert!(out.status.success(), "{}", text(&out));
    let a = s.run(&["list", "--format", "json"]);
    let b = s.run(&["list", "--json"]);
    assert!(a.status.success() && b.status.success());
    assert_eq!(a.stdout, b.stdout);
    let v: serde_json::Value = serde_json::from_slice(&a.stdout).unwrap();
    assert_eq!(v[0]["name"], "bucket");
    let t = s.run(&["list", "--format", "text"]);
    assert!(String::from_utf8_lossy(&t.stdout).starts_with("NAME"));
    let both = s.run(&["list", "--json", "--format", "text"]);
    assert_eq!(
        both.status.code(),
        Some(2),
        "conflicting flags are a usage error"
    );
}
