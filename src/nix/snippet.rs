//! Configuration printed for someone else to apply: nix.conf lines, a NixOS module or a
//! home-manager module. Never contains a secret: the netrc line has a placeholder.

use crate::cmd::Format;

/// Settings to print, in order, plus the netrc entry an administrator must add.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snippet {
    pub settings: Vec<(String, Vec<String>)>,
    pub netrc: Option<NetrcHint>,
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
