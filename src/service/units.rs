//! The service manager's files, as text: systemd user units (a socket and its service) and a
//! macOS LaunchAgent. Pure, so that every platform's text is tested everywhere; the flake's
//! NixOS and home-manager modules render the same units (coord/UNITS.md is the contract).

use std::path::{Path, PathBuf};

/// The socket unit: systemd listens on the proxy's port and starts the service on the first
/// connection.
pub const SOCKET_UNIT: &str = "nixstore-auth-proxy.socket";
/// The service unit: `nixstore-auth proxy serve`, handed the socket on fd 3.
pub const SERVICE_UNIT: &str = "nixstore-auth-proxy.service";
/// The LaunchAgent's label (and file name, with `.plist`).
pub const LAUNCHD_LABEL: &str = "org.nixstore-auth.proxy";

/// `$XDG_CONFIG_HOME/systemd/user`, where user units live.
pub fn systemd_dir(config_home: &Path) -> PathBuf {
    config_home.join("systemd/user")
}

/// `~/Library/LaunchAgents/org.nixstore-auth.proxy.plist`.
pub fn launch_agent(home: &Path) -> PathBuf {
    home.join("Library/LaunchAgents")
        .join(format!("{LAUNCHD_LABEL}.plist"))
}

/// `nixstore-auth-proxy.socket`: `ListenStream=127.0.0.1:PORT`.
pub fn systemd_socket(port: u16) -> String {
    format!(
        "[Unit]\n\
         Description=nixstore-auth proxy for private Nix caches (socket)\n\
         Documentation=man:nixstore-auth-service(1)\n\
         \n\
         [Socket]\n\
         ListenStream=127.0.0.1:{port}\n\
         \n\
         [Install]\n\
         WantedBy=sockets.target\n"
    )
}

/// `nixstore-auth-proxy.service`: `Type=notify`, `ExecStart=BIN proxy serve`.
pub fn systemd_service(bin: &Path) -> String {
    format!(
        "[Unit]\n\
         Description=nixstore-auth proxy for private Nix caches\n\
         Documentation=man:nixstore-auth-service(1)\n\
         Requires={SOCKET_UNIT}\n\
         After={SOCKET_UNIT}\n\
         \n\
         [Service]\n\
         Type=notify\n\
         ExecStart={} proxy serve\n\
         Restart=on-failure\n\
         \n\
         [Install]\n\
         Also={SOCKET_UNIT}\n",
        systemd_word(&bin.to_string_lossy())
    )
}

/// A word of a unit file's command line: `%` doubled (specifiers), quoted with `\` and `"`
/// escaped when it holds whitespace or quotes.
fn systemd_word(s: &str) -> String {
    let s = s.replace('%', "%%");
    if s.chars()
        .any(|c| c.is_whitespace() || matches!(c, '"' | '\'' | '\\' | ';'))
    {
        format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
    } else {
        s
    }
}

/// The `ExecStart=` command of a service unit's text, split into words (for tests and
/// `doctor`, which compare it with this binary).
pub fn exec_start(unit: &str) -> Option<Vec<String>> {
    let line = unit.lines().find_map(|l| l.strip_prefix("ExecStart="))?;
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    let mut any = false;
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                quoted = !quoted;
                any = true;
            }
            '\\' if quoted => cur.extend(chars.next()),
            '%' if chars.peek() == Some(&'%') => {
                chars.next();
                cur.push('%');
            }
            c if c.is_whitespace() && !quoted => {
                if any || !cur.is_empty() {
                    words.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            c => cur.push(c),
        }
    }
    if any || !cur.is_empty() {
        words.push(cur);
    }
    Some(words)
}

/// The LaunchAgent: `proxy serve` started by launchd on the first connection to
/// 127.0.0.1:PORT (the `Listeners` socket, taken with `launch_activate_socket`).
pub fn launchd_plist(bin: &Path, port: u16, log: &Path) -> String {
    let bin = xml(&bin.to_string_lossy());
    let log = xml(&log.to_string_lossy());
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
	<key>Label</key>
	<string>{LAUNCHD_LABEL}</string>
	<key>ProgramArguments</key>
	<array>
		<string>{bin}</string>
		<string>proxy</string>
		<string>serve</string>
	</array>
	<key>Sockets</key>
	<dict>
		<key>Listeners</key>
		<dict>
			<key>SockNodeName</key>
			<string>127.0.0.1</string>
			<key>SockServiceName</key>
			<string>{port}</string>
			<key>SockType</key>
			<string>stream</string>
			<key>SockFamily</key>
			<string>IPv4</string>
		</dict>
	</dict>
	<key>ProcessType</key>
	<string>Background</string>
	<key>StandardErrorPath</key>
	<string>{log}</string>
</dict>
</plist>
"#
    )
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The text coord/UNITS.md fixes (shared with the flake's modules), byte for byte.
    #[test]
    fn the_units_are_the_contracts_text() {
        assert_eq!(
            systemd_socket(21000),
            "[Unit]\nDescription=nixstore-auth proxy for private Nix caches (socket)\n\
             Documentation=man:nixstore-auth-service(1)\n\n[Socket]\nListenStream=127.0.0.1:21000\n\n\
             [Install]\nWantedBy=sockets.target\n"
        );
        assert_eq!(
            systemd_service(Path::new("/usr/bin/nixstore-auth")),
            "[Unit]\nDescription=nixstore-auth proxy for private Nix caches\n\
             Documentation=man:nixstore-auth-service(1)\nRequires=nixstore-auth-proxy.socket\n\
             After=nixstore-auth-proxy.socket\n\n[Service]\nType=notify\n\
             ExecStart=/usr/bin/nixstore-auth proxy serve\nRestart=on-failure\n\n\
             [Install]\nAlso=nixstore-auth-proxy.socket\n"
        );
    }

    #[test]
    fn odd_binary_paths_are_quoted_and_read_back() {
        for bin in [
            "/usr/bin/nixstore-auth",
            "/home/a b/bin/nixstore-auth",
            "/opt/100%/nixstore-auth",
            "/x/\"q\"/n",
        ] {
            let unit = systemd_service(Path::new(bin));
            assert_eq!(
                exec_start(&unit).unwrap(),
                [bin, "proxy", "serve"],
                "{unit}"
            );
        }
        assert!(systemd_service(Path::new("/opt/100%/n")).contains("/opt/100%%/n"));
    }

    #[test]
    fn the_launch_agent_listens_on_loopback_and_escapes_paths() {
        let p = launchd_plist(
            Path::new("/Users/a&b/bin/nixstore-auth"),
            21000,
            Path::new("/Users/a&b/Library/Caches/nixstore-auth/proxy.log"),
        );
        assert!(p.contains("<string>org.nixstore-auth.proxy</string>"));
        assert!(p.contains("<string>/Users/a&amp;b/bin/nixstore-auth</string>"));
        assert!(p.contains(
            "<key>SockNodeName</key>\n\t\t\t<string>127.0.0.1</string>\n\t\t\t<key>SockServiceName</key>\n\t\t\t<string>21000</string>"
        ));
        assert!(p.contains("<key>Listeners</key>"));
        assert!(
            !p.contains("KeepAlive"),
            "started by its socket, not kept alive"
        );
        assert_eq!(
            launch_agent(Path::new("/Users/a")),
            Path::new("/Users/a/Library/LaunchAgents/org.nixstore-auth.proxy.plist")
        );
        // Well-formed enough for plutil: every tag closes.
        assert_eq!(p.matches("<dict>").count(), p.matches("</dict>").count());
        assert_eq!(p.matches("<array>").count(), p.matches("</array>").count());
    }
}
