//! A desktop notification: `org.freedesktop.Notifications.Notify` on the session bus (the
//! D-Bus stack the keyring uses), where a notification service answers. Nothing else: no
//! process is started, and a missing bus or service only means no notification.

use anyhow::Result;

/// The notification service's well-known name, path and interface.
pub const SERVICE: &str = "org.freedesktop.Notifications";
const PATH: &str = "/org/freedesktop/Notifications";

/// Sends one notification. `Ok(false)`: no session bus, or no notification service on it.
#[cfg(target_os = "linux")]
pub fn notify(summary: &str, body: &str) -> Result<bool> {
    match zbus::blocking::Connection::session() {
        Ok(conn) => send(&conn, summary, body),
        Err(_) => Ok(false),
    }
}

/// The call itself, on a bus connection; `Ok(false)` when no notification service is there.
#[cfg(target_os = "linux")]
fn send(conn: &zbus::blocking::Connection, summary: &str, body: &str) -> Result<bool> {
    use std::collections::HashMap;
    use zbus::zvariant::Value;
    let dbus = zbus::blocking::fdo::DBusProxy::new(conn)?;
    let name = zbus::names::BusName::try_from(SERVICE)?;
    if !dbus.name_has_owner(name)? {
        return Ok(false);
    }
    let hints: HashMap<&str, Value<'_>> = HashMap::new();
    let actions: Vec<&str> = Vec::new();
    conn.call_method(
        Some(SERVICE),
        PATH,
        Some(SERVICE),
        "Notify",
        &(
            "nixstore-auth",
            0u32,
            "dialog-password",
            summary,
            body,
            actions,
            hints,
            -1i32,
        ),
    )?;
    Ok(true)
}

/// Elsewhere (macOS) there is no session bus: the log, the shell hook and `service status`
/// tell instead.
#[cfg(not(target_os = "linux"))]
pub fn notify(_summary: &str, _body: &str) -> Result<bool> {
    Ok(false)
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// A stand-in notification service that records what it is sent.
    struct Recorder(Arc<Mutex<Vec<(String, String, String)>>>);

    #[zbus::interface(name = "org.freedesktop.Notifications")]
    impl Recorder {
        #[allow(clippy::too_many_arguments)]
        fn notify(
            &self,
            app_name: &str,
            _replaces_id: u32,
            _app_icon: &str,
            summary: &str,
            body: &str,
            _actions: Vec<&str>,
            _hints: std::collections::HashMap<&str, zbus::zvariant::Value<'_>>,
            _expire_timeout: i32,
        ) -> u32 {
            self.0.lock().unwrap().push((
                app_name.to_string(),
                summary.to_string(),
                body.to_string(),
            ));
            1
        }
    }

    /// A private session bus (the real `dbus-daemon`), a stand-in service on it, and the call;
    /// first with nobody owning the name (no notification, no error).
    /// Needs `dbus-daemon` (Debian's `dbus`, which scripts/test.sh installs); without it the
    /// test fails in CI and says so elsewhere.
    #[test]
    fn a_notification_reaches_the_service_on_the_session_bus() {
        let Ok(daemon) = std::process::Command::new("dbus-daemon")
            .args(["--session", "--print-address", "--nofork"])
            .stdout(std::process::Stdio::piped())
            .spawn()
        else {
            assert!(
                std::env::var("CI").is_err(),
                "dbus-daemon is missing (apt-get install dbus)"
            );
            eprintln!("skipping: no dbus-daemon here");
            return;
        };
        struct Kill(std::process::Child);
        impl Drop for Kill {
            fn drop(&mut self) {
                let _ = self.0.kill();
                let _ = self.0.wait();
            }
        }
        let mut daemon = Kill(daemon);
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(daemon.0.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        let address = line.trim().to_string();
        let client = zbus::blocking::connection::Builder::address(address.as_str())
            .unwrap()
            .build()
            .unwrap();
        assert!(!send(&client, "s", "b").unwrap(), "nobody answers yet");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let _service = zbus::blocking::connection::Builder::address(address.as_str())
            .unwrap()
            .name(SERVICE)
            .unwrap()
            .serve_at(PATH, Recorder(seen.clone()))
            .unwrap()
            .build()
            .unwrap();
        assert!(send(&client, "cache c needs you", "Run `nixstore-auth login c`.").unwrap());
        let got = seen.lock().unwrap().clone();
        assert_eq!(
            got,
            [(
                "nixstore-auth".to_string(),
                "cache c needs you".to_string(),
                "Run `nixstore-auth login c`.".to_string()
            )]
        );
    }
}
