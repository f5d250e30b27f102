//! Configuration printed for someone else to apply: nix.conf lines, a NixOS module or a
//! home-manager module. Never contains a secret: the netrc line has a placeholder.

use clap::ValueEnum;

/// The shape of printed configuration (`--mode print`, NixOS, untrusted users).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Format {
    /// nix.conf lines
    #[default]
    NixConf,
    /// A NixOS module (`nix.settings`)
    Nixos,
    /// A home-manager module (`nix.settings`)
    HomeManager,
}

impl Format {
    /// On NixOS nix.conf lines are of no use: the default becomes a NixOS module.
    pub fn on_nixos(self, nixos: bool) -> Format {
        if nixos && self == Format::NixConf {
            Format::Nixos
        } else {
            self
        }
    }
}

/// Settings to print, in order, plus the netrc entry an administrator must add.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snippet {
    pub settings: Vec<(String, Vec<String>)>,
    pub netrc: Option<NetrcHint>,
    /// Settings that hold a secret (an S3 cache's proxy URL): they go to a root-only file that
    /// the system nix.conf `!include`s. Nix clients skip a file they cannot read, silently;
    /// the root daemon reads it. So the secret is in no world-readable file.
    pub private: Option<PrivateFile>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrivateFile {
    pub path: String,
    pub settings: Vec<(String, Vec<String>)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetrcHint {
    pub file: String,
    pub machine: String,
    pub login: String,
}

impl Snippet {
    pub fn push(&mut self, name: &str, values: Vec<String>) {
        if !values.is_empty() {
            self.settings.push((name.to_string(), values));
        }
    }

    pub fn render(&self, format: Format) -> String {
        match format {
            Format::NixConf => self.nix_conf(),
            Format::Nixos => {
                self.module("NixOS: in configuration.nix, then `nixos-rebuild switch`")
            }
            Format::HomeManager => self.module(
                "home-manager: in home.nix (needs `nix.package`), then `home-manager switch`",
            ),
        }
    }

    fn nix_conf(&self) -> String {
        let mut out = String::new();
        if let Some(p) = &self.private {
            out.push_str(&format!(
                "# In a new file {}, owned by root with mode 0600 (it holds your proxy's secret; Nix clients skip a file they cannot read, the root nix-daemon reads it):\n",
                p.path
            ));
            for (name, values) in &p.settings {
                out.push_str(&format!("{name} = {}\n", values.join(" ")));
            }
            out.push_str("\n# In the system nix.conf:\n");
            out.push_str(&format!("!include {}\n", p.path));
        }
        for (name, values) in &self.settings {
            out.push_str(&format!("{name} = {}\n", values.join(" ")));
        }
        if let Some(n) = &self.netrc {
            out.push_str(&format!(
                "\n# in {} (mode 0600), with the cache's token:\nmachine {} login {} password <TOKEN>\n",
                n.file, n.machine, n.login
            ));
        }
        out
    }

    fn module(&self, header: &str) -> String {
        let mut out = format!("# {header}\nnix.settings = {{\n");
        for (name, values) in &self.settings {
            let scalar = matches!(name.as_str(), "netrc-file" | "narinfo-cache-negative-ttl");
            if scalar {
                out.push_str(&format!("  {name} = {};\n", nix_string(&values.join(" "))));
            } else {
                let items: Vec<String> = values.iter().map(|v| nix_string(v)).collect();
                out.push_str(&format!("  {name} = [ {} ];\n", items.join(" ")));
            }
        }
        out.push_str("};\n");
        if let Some(p) = &self.private {
            // Never in nix.settings: nix.conf is generated into the world-readable store.
            out.push_str(&format!("nix.extraOptions = \"!include {}\";\n", p.path));
            out.push_str(&format!(
                "# Create {} outside the Nix store, owned by root with mode 0600 (by hand, or with agenix or sops-nix), holding:\n",
                p.path
            ));
            for (name, values) in &p.settings {
                out.push_str(&format!("#   {name} = {}\n", values.join(" ")));
            }
        }
        if let Some(n) = &self.netrc {
            out.push_str(&format!(
                "# The token must reach {} (mode 0600) outside the Nix store, e.g. with agenix or sops-nix:\n#   machine {} login {} password <TOKEN>\n",
                n.file, n.machine, n.login
            ));
        }
        out
    }
}

/// A Nix string literal.
fn nix_string(s: &str) -> String {
    let escaped = s
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace("${", "\\${");
    format!("\"{escaped}\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Snippet {
        let mut s = Snippet::default();
        s.push("extra-trusted-substituters", vec!["https://c.org".into()]);
        s.push(
            "extra-trusted-public-keys",
            vec!["c-1:AAAA".into(), "c-2:BBBB".into()],
        );
        s.push("netrc-file", vec!["/etc/nix/netrc".into()]);
        s.netrc = Some(NetrcHint {
            file: "/etc/nix/netrc".into(),
            machine: "c.org".into(),
            login: "nixstore-auth".into(),
        });
        s
    }

    #[test]
    fn nix_conf_form() {
        let t = sample().render(Format::NixConf);
        assert!(t.starts_with("extra-trusted-substituters = https://c.org\nextra-trusted-public-keys = c-1:AAAA c-2:BBBB\n"));
        assert!(t.contains("machine c.org login nixstore-auth password <TOKEN>"));
    }

    #[test]
    fn a_secret_setting_goes_to_a_root_only_included_file() {
        let mut s = Snippet::default();
        s.push("extra-trusted-public-keys", vec!["c-1:AAAA".into()]);
        s.private = Some(PrivateFile {
            path: "/etc/nix/nixstore-auth-alice-c.conf".into(),
            settings: vec![(
                "extra-trusted-substituters".into(),
                vec!["http://127.0.0.1:1/S/c".into()],
            )],
        });
        let t = s.render(Format::NixConf);
        let conf = t.split("# In the system nix.conf:\n").nth(1).unwrap();
        assert_eq!(
            conf,
            "!include /etc/nix/nixstore-auth-alice-c.conf\nextra-trusted-public-keys = c-1:AAAA\n"
        );
        assert!(!conf.contains("127.0.0.1"), "{t}");
        assert!(t.contains("mode 0600"));
        let m = s.render(Format::Nixos);
        let settings = m.split("};").next().unwrap();
        assert!(!settings.contains("127.0.0.1:1/S"), "{m}");
        assert!(m.contains("nix.extraOptions = \"!include /etc/nix/nixstore-auth-alice-c.conf\";"));
        assert!(m.contains("#   extra-trusted-substituters = http://127.0.0.1:1/S/c"));
    }

    #[test]
    fn module_forms() {
        let t = sample().render(Format::Nixos);
        assert!(
            t.contains("extra-trusted-public-keys = [ \"c-1:AAAA\" \"c-2:BBBB\" ];"),
            "{t}"
        );
        assert!(t.contains("netrc-file = \"/etc/nix/netrc\";"), "{t}");
        assert!(t.contains("nixos-rebuild"));
        assert!(
            sample()
                .render(Format::HomeManager)
                .contains("home-manager switch")
        );
        assert_eq!(nix_string("a\"${b}"), "\"a\\\"\\${b}\"");
    }
}
