# The `caches.<name>` submodule both modules share (nixpkgs' lib.types only; the checks live
# in lib.nix's cacheErrors, so that they are tested without nixpkgs).
# system: the NixOS module's form (with proxyUsers).
{ lib, system }:
let
  inherit (lib) mkOption types;
in
types.submodule {
  options =
    {
      url = mkOption {
        type = types.str;
        example = "https://cache.example.org";
        description = ''
          The cache's URL, as given to `nixstore-auth use`: `https://` (attic, nginx with Basic
          auth, ...) or `s3://BUCKET?region=...` (served to the nix-daemon by each user's
          signing proxy).
        '';
      };
      publicKeys = mkOption {
        type = types.listOf types.str;
        default = [ ];
        example = [ "cache.example.org-1:6NCHdD59X431o0gWypbMrAURkbJ16ZPMQFGspcDShjY=" ];
        description = "The keys the cache's paths are signed with (`extra-trusted-public-keys`).";
      };
      route = mkOption {
        type = types.nullOr (types.enum [ "direct" "proxy" ]);
        default = null;
        description = ''
          How the nix-daemon reaches the cache: `"direct"` (it fetches the URL itself, with the
          token from `netrcFile`) or `"proxy"` (through each user's nixstore-auth proxy, whose
          URL holds a secret and is never written by a module). `null`: `"proxy"` for `s3://`,
          else `"direct"`.
        '';
      };
      netrcFile = mkOption {
        type = types.nullOr types.str;
        default = null;
        example = "/run/secrets/nix-netrc";
        description = ''
          A netrc file with the cache's token (`netrc-file`), as a string path outside the Nix
          store (by hand, agenix or sops-nix): a path literal would copy the token into the
          world-readable store. Nix reads one netrc file, so every cache that names one names
          the same.
        '';
      };
    }
    // lib.optionalAttrs system {
      proxyUsers = mkOption {
        type = types.nullOr (types.listOf types.str);
        default = null;
        example = [ "alice" ];
        description = ''
          For an S3 cache: the users whose proxy URL the nix-daemon accepts without trusting
          them. For each, the system nix.conf gains
          `!include /etc/nix/nixstore-auth-USER-NAME.conf`, the root-only file (mode 0600,
          outside the store) that `nixstore-auth use` asks an administrator to create; Nix skips
          it while it is missing. `null`: the users in `serviceUsers`.
        '';
      };
    };
}
