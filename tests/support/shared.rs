//! What the proofs of one run of the test binary share, made on first use and undone when the
//! harness ends ([`stop_all`]): the built binary below `/tmp` (reachable by test users and from
//! the chroot), one moto per authentication mode (moto switches authentication on for the whole
//! process), and one nginx whose server blocks the proofs add and remove ([`super::Nginx`]).
//! Proofs do not interfere there: each makes its own IAM user, roles, bucket and vhost, with
//! names from [`super::unique_tag`].
//!
//! These servers run in sessions of their own (Ctrl-C in the terminal does not reach them) and
//! die with the test process (`PR_SET_PDEATHSIG`, armed from a thread that lives as long as
//! the process), so a killed run leaves none behind.

use super::{Moto, Service, note};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::mpsc;
use std::sync::{Mutex, MutexGuard, OnceLock};

static RUN_DIR: OnceLock<PathBuf> = OnceLock::new();

/// The run's directory: `/tmp/nsa-e2e-run-XXXX`, mode 0755 (the binary, the shared servers'
/// configurations and logs). Removed by [`stop_all`] unless `NIXSTORE_AUTH_E2E_KEEP=1`.
pub fn run_dir() -> &'static Path {
    RUN_DIR.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("nsa-e2e-run-")
            .tempdir_in("/tmp")
            .expect("create the run's directory under /tmp")
            .keep();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        dir
    })
}

/// `nixstore-auth` as cargo built it for this run, linked (else copied) once into the run's
/// directory: the target directory may sit below a home other users cannot enter, and outside
/// the chroot.
pub fn binary() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let dir = run_dir().join("bin");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let bin = dir.join("nixstore-auth");
        let built = env!("CARGO_BIN_EXE_nixstore-auth");
        if std::fs::hard_link(built, &bin).is_err() {
            std::fs::copy(built, &bin).expect("copy the built binary");
        }
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        bin
    })
    .clone()
}

/// Everything [`stop_all`] stops.
#[derive(Default)]
struct Shared {
    /// moto without (`[0]`) and with (`[1]`) authentication.
    motos: [Option<(Moto, Service)>; 2],
    nginx: Option<super::nginx::SharedNginx>,
    /// `moto.py serve`: boto3 loaded once for the run's fixtures.
    moto_py: Option<(u16, Service)>,
}

fn shared() -> MutexGuard<'static, Shared> {
    static SHARED: OnceLock<Mutex<Shared>> = OnceLock::new();
    SHARED
        .get_or_init(Mutex::default)
        .lock()
        // A proof that panicked while holding it left nothing half-made that matters here.
        .unwrap_or_else(|e| e.into_inner())
}

/// The run's moto with authentication on (`auth`: every request signed, set up through an
/// admin user of its own) or off; started on first use, and again if it died.
pub fn moto(auth: bool) -> Moto {
    let mut shared = shared();
    let slot = &mut shared.motos[auth as usize];
    if let Some((_, service)) = slot.as_mut()
        && !service.running()
    {
        note("the shared moto exited; starting a new one");
        *slot = None;
    }
    slot.get_or_insert_with(|| Moto::launch(run_dir(), auth))
        .0
        .clone()
}

/// Runs `f` with the run's nginx, started on first use (and again if it died).
pub fn with_nginx<T>(f: impl FnOnce(&mut super::nginx::SharedNginx) -> T) -> T {
    let mut shared = shared();
    if shared.nginx.as_mut().is_some_and(|n| !n.running()) {
        note("the shared nginx exited; starting a new one");
        shared.nginx = None;
    }
    let nginx = shared
        .nginx
        .get_or_insert_with(|| super::nginx::SharedNginx::start(run_dir()));
    f(nginx)
}

/// The port of the run's `moto.py serve` (tests/support/py/moto.py), started on first use and
/// again if it died: the moto fixtures without a new Python (and boto3) each time.
pub fn moto_py_port() -> u16 {
    let mut shared = shared();
    if let Some((_, service)) = shared.moto_py.as_mut()
        && !service.running()
    {
        note("the shared moto.py exited; starting a new one");
        shared.moto_py = None;
    }
    shared
        .moto_py
        .get_or_insert_with(|| {
            let dir = run_dir();
            let script = dir.join("moto.py");
            std::fs::write(&script, include_str!("py/moto.py")).unwrap();
            let port = super::free_port();
            let mut cmd = Command::new(super::venv_bin("python"));
            cmd.arg(&script).args(["serve", &port.to_string()]);
            let service = Service::spawn_shared(
                "moto.py serve",
                cmd,
                &dir.join("moto-py.log"),
                std::time::Duration::from_secs(60),
                || super::port_open(port),
            );
            (port, service)
        })
        .0
}

/// Stops the shared servers and removes the run's directory (kept with
/// `NIXSTORE_AUTH_E2E_KEEP=1`). The harness calls it once every test has run.
pub fn stop_all() {
    let mut shared = shared();
    shared.nginx = None;
    shared.moto_py = None;
    for slot in &mut shared.motos {
        *slot = None;
    }
    // A run that needed nothing shared has no directory.
    if let Some(dir) = RUN_DIR.get() {
        if std::env::var("NIXSTORE_AUTH_E2E_KEEP").is_ok_and(|v| v == "1") {
            note(&format!("keeping {}", dir.display()));
        } else {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// A spawn request for the keeper thread.
type Request = (Command, mpsc::Sender<std::io::Result<Child>>);

/// Spawns `cmd` (already set up by [`Service`]) so that it dies with this process: from a thread
/// that lives as long as the process, with `PR_SET_PDEATHSIG` (which fires when the *thread*
/// that forked ends; the harness may run proofs on threads that end earlier).
pub fn spawn_tied_to_process(mut cmd: Command) -> std::io::Result<Child> {
    static KEEPER: OnceLock<Mutex<mpsc::Sender<Request>>> = OnceLock::new();
    let keeper = KEEPER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Request>();
        std::thread::Builder::new()
            .name("e2e-shared-servers".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            })
            .expect("start the keeper thread");
        Mutex::new(tx)
    });
    // SAFETY: prctl is async-signal-safe and only changes the child.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let (tx, rx) = mpsc::channel();
    keeper
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .send((cmd, tx))
        .map_err(|_| std::io::Error::other("the keeper thread is gone"))?;
    rx.recv()
        .map_err(|_| std::io::Error::other("the keeper thread is gone"))?
}
