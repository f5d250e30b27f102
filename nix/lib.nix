# Plain functions that the NixOS and home-manager modules are thin wrappers over: the caches'
# nix.conf settings, the background service's unit files, the NixOS user-unit generator and the
# shell integration lines. Builtins only (no nixpkgs), so that tests/flake.rs evaluates each one
# with `nix-instantiate --eval --strict --json` on a machine without nixpkgs.
#
#   (import ./nix/lib.nix).units { bin = "/nix/store/...-nixstore-auth-0.1.0/bin/nixstore-auth"; port = 20123; }
#
# Contracts kept here, in one place on the Nix side:
# - the unit files and the `!include` line: /work/coord/UNITS.md, rendered by the tool's
#   `service install` too (the same text, byte for byte);
# - cache names: the tool's `--name` rule (cache::validate_name); user names in the root-only
#   include file's name: cache::sanitize_name (tests/flake.rs compares both with the Rust ones).
let
  inherit (builtins)
    attrNames
    concatLists
    concatStringsSep
    elem
    filter
    foldl'
    genList
    isInt
    isString
    length
    listToAttrs
    map
    match
    replaceStrings
    stringLength
    substring
    ;

  # A value Nix reads as one item of a setting: no whitespace (nix.conf splits on it), no `#`
  # (starts a comment), no control character (a newline would start another setting).
  plainValue = "[^[:space:][:cntrl:]#]+";
  isPlain = v: isString v && match plainValue v != null;

  unique = foldl' (acc: x: if elem x acc then acc else acc ++ [ x ]) [ ];
  optional = cond: x: if cond then [ x ] else [ ];
  # Drops settings without values: an empty `extra-substituters =` line says nothing.
  nonEmpty = attrs: listToAttrs (map (n: { name = n; value = attrs.${n}; }) (filter (n: attrs.${n} != [ ]) (attrNames attrs)));

  lowerTable = {
    from = [ "A" "B" "C" "D" "E" "F" "G" "H" "I" "J" "K" "L" "M" "N" "O" "P" "Q" "R" "S" "T" "U" "V" "W" "X" "Y" "Z" ];
    to = [ "a" "b" "c" "d" "e" "f" "g" "h" "i" "j" "k" "l" "m" "n" "o" "p" "q" "r" "s" "t" "u" "v" "w" "x" "y" "z" ];
  };
  chars = s: genList (i: substring i 1 s) (stringLength s);
  trimDashes =
    s:
    let
      m = match "-*(.*[^-])-*" s;
    in
    if m == null then "" else builtins.head m;

  # Single-quoted for a POSIX shell.
  shellQuote = s: "'" + replaceStrings [ "'" ] [ "'\\''" ] s + "'";

  checkBin =
    bin:
    if isString bin && match "/[^[:space:][:cntrl:]]+" bin != null then
      bin
    else
      throw "nixstore-auth: the binary must be an absolute path without whitespace, got ${builtins.toJSON bin}";
  checkPort =
    port:
    if isInt port && port >= 1 && port <= 65535 then
      port
    else
      throw "nixstore-auth: the proxy port must be an integer from 1 to 65535, got ${builtins.toJSON port}";
in
rec {
  # --- names ----------------------------------------------------------------------------------

  # The tool's rule for cache names (`use --name`): 1-63 characters of a-z, 0-9 and `-`, not
  # starting with `-`.
  validCacheName = name: isString name && stringLength name <= 63 && match "[a-z0-9][a-z0-9-]*" name != null;

  # The tool's sanitize_name: lowercase, anything but a-z, 0-9 and `-` becomes `-`, leading and
  # trailing `-` dropped, "cache" when nothing is left.
  sanitizeName =
    raw:
    let
      lowered = replaceStrings lowerTable.from lowerTable.to raw;
      mapped = concatStringsSep "" (map (c: if match "[a-z0-9-]" c != null then c else "-") (chars lowered));
      trimmed = trimDashes mapped;
    in
    if trimmed == "" then "cache" else trimmed;

  # A user name that may go into a file name and a shell `case` pattern (quoted there anyway).
  validUserName = name: isString name && match "[A-Za-z0-9_][A-Za-z0-9_.-]*" name != null;

  # --- the background service (UNITS.md) -------------------------------------------------------

  unitNames = {
    socket = "nixstore-auth-proxy.socket";
    service = "nixstore-auth-proxy.service";
  };

  # The line the user's nix.conf gains; the file next to it is the tool's (mode 0600, it holds the
  # proxy's secret URL), so a module never writes it.
  includeLine = "!include nixstore-auth.conf";

  # The two unit files, by file name. BIN: the absolute path of the nixstore-auth binary; PORT:
  # the user's proxy port (`[proxy] port` in config.toml, else the remembered/default one).
  units =
    { bin, port }:
    let
      b = checkBin bin;
      p = toString (checkPort port);
    in
    {
      ${unitNames.socket} = ''
        [Unit]
        Description=nixstore-auth proxy for private Nix caches (socket)
        Documentation=man:nixstore-auth-service(1)

        [Socket]
        ListenStream=127.0.0.1:${p}

        [Install]
        WantedBy=sockets.target
      '';
      ${unitNames.service} = ''
        [Unit]
        Description=nixstore-auth proxy for private Nix caches
        Documentation=man:nixstore-auth-service(1)
        Requires=${unitNames.socket}
        After=${unitNames.socket}

        [Service]
        Type=notify
        ExecStart=${b} proxy serve
        Restart=on-failure

        [Install]
        Also=${unitNames.socket}
      '';
    };

  # A systemd user generator (systemd.generator(7)) for NixOS. A NixOS user unit is the same for
  # every user (/etc/systemd/user), but each user's proxy has its own port, and the units must
  # be the tool's own (same names, same text): so each listed user's manager writes that user's
  # units into its generator directory ($1) and enables the socket there. Other users get nothing.
  # coreutils: a directory holding `id`, `mkdir` and `ln`; ports: user name -> port.
  generatorScript =
    {
      coreutils,
      bin,
      ports,
    }:
    let
      users = attrNames ports;
      bad = filter (u: !(validUserName u)) users;
      branch =
        user:
        let
          files = units {
            inherit bin;
            port = ports.${user};
          };
        in
        ''
          ${shellQuote user})
            printf '%s' ${shellQuote files.${unitNames.socket}} >"$dir/${unitNames.socket}"
            printf '%s' ${shellQuote files.${unitNames.service}} >"$dir/${unitNames.service}"
            ${coreutils}/mkdir -p "$dir/sockets.target.wants"
            ${coreutils}/ln -sfn ../${unitNames.socket} "$dir/sockets.target.wants/${unitNames.socket}"
            ;;
        '';
    in
    if bad != [ ] then
      throw "nixstore-auth: not a user name: ${builtins.toJSON bad}"
    else
      ''
        # nixstore-auth: the background proxy's user units for the users listed in the NixOS option
        # programs.nixstore-auth.serviceUsers, each with its own port (systemd.generator(7)).
        set -eu
        dir=$1
        case "$(${coreutils}/id -un)" in
        ${concatStringsSep "" (map branch users)}*) exit 0 ;;
        esac
      '';

  # Problems with the users of the background service (ports: user name -> port): each proxy
  # listens on 127.0.0.1:PORT, so two users cannot share a port.
  serviceErrors =
    {
      ports,
      where ? "programs.nixstore-auth.serviceUsers",
    }:
    let
      users = attrNames ports;
      clashes = filter (u: length (filter (v: ports.${v} == ports.${u}) users) > 1) users;
    in
    map (u: "${where}: ${builtins.toJSON u} is not a user name") (filter (u: !(validUserName u)) users)
    ++ map (u: "${where}.${u}.port: expected an integer from 1 to 65535, got ${builtins.toJSON ports.${u}}") (
      filter (u: !(isInt ports.${u} && ports.${u} >= 1 && ports.${u} <= 65535)) users
    )
    ++ optional (clashes != [ ])
      "${where}: ${concatStringsSep ", " clashes} have the same port; each user's proxy needs its own";

  # --- caches -> nix.conf settings --------------------------------------------------------------

  # How a cache reaches the nix-daemon: "direct" (the daemon fetches the URL itself: HTTPS, with
  # a netrc for the token) or "proxy" (S3: through each user's signing proxy, whose URL holds a
  # secret and so is never in a module).
  defaultRoute = url: if isString url && match "s3://.*" url != null then "proxy" else "direct";

  routeOf = cache: if (cache.route or null) == null then defaultRoute (cache.url or null) else cache.route;

  # The root-only file an administrator creates for USER's proxy URL of cache NAME (the path
  # `nixstore-auth use` prints to an untrusted user); Nix skips a missing `!include` file.
  rootIncludeFile = { user, cache }: "/etc/nix/nixstore-auth-${sanitizeName user}-${cache}.conf";

  # Every problem with the caches' definitions, as messages (the modules turn them into
  # assertions). where: the option path shown in messages.
  cacheErrors =
    {
      caches,
      where ? "programs.nixstore-auth.caches",
      serviceUsers ? [ ],
    }:
    let
      one =
        name:
        let
          c = caches.${name};
          at = "${where}.${name}";
          url = c.url or null;
          route = routeOf c;
          keys = c.publicKeys or [ ];
          netrc = c.netrcFile or null;
          proxyUsers = c.proxyUsers or null;
        in
        optional (!(validCacheName name)) "${at}: the name must be 1-63 characters of a-z, 0-9 and '-', not starting with '-' (as `nixstore-auth use --name`)"
        ++ optional (!(isString url && match "(https?|s3)://${plainValue}" url != null))
          "${at}.url: expected an https://, http:// or s3:// URL without whitespace or '#', got ${builtins.toJSON url}"
        ++ optional (!(elem route [ "direct" "proxy" ])) "${at}.route: expected \"direct\" or \"proxy\", got ${builtins.toJSON route}"
        ++ optional (route == "proxy" && isString url && match "s3://.*" url == null)
          "${at}.route: \"proxy\" serves S3 caches (s3://); an HTTPS cache is fetched by the nix-daemon directly (route \"direct\")"
        ++ map (k: "${at}.publicKeys: ${builtins.toJSON k} is not a public key (NAME:BASE64, as `nix key convert-secret-to-public` prints)") (
          filter (k: !(isString k && match "[^[:space:][:cntrl:]#:]+:[A-Za-z0-9+/]+=*" k != null)) keys
        )
        ++ optional (netrc != null && !(isString netrc && match "/${plainValue}" netrc != null))
          "${at}.netrcFile: expected an absolute path as a string, got ${builtins.toJSON netrc}"
        ++ optional (isString netrc && match "${builtins.storeDir}/.*" netrc != null)
          "${at}.netrcFile: ${netrc} is in the Nix store, which every local user can read: keep the token in a root-only file outside the store (by hand, agenix or sops-nix) and give its path as a string"
        ++ optional (netrc != null && route == "proxy")
          "${at}.netrcFile: an S3 cache takes no netrc (the proxy signs with your AWS session)"
        ++ optional (proxyUsers != null && route != "proxy") "${at}.proxyUsers: only for S3 caches (route \"proxy\")"
        ++ map (u: "${at}.proxyUsers: ${builtins.toJSON u} is not a user name") (
          filter (u: !(validUserName u)) (if proxyUsers == null then [ ] else proxyUsers)
        );
      netrcs = unique (filter (n: n != null) (map (n: caches.${n}.netrcFile or null) (attrNames caches)));
    in
    concatLists (map one (attrNames caches))
    ++ map (u: "${where}: serviceUsers: ${builtins.toJSON u} is not a user name") (filter (u: !(validUserName u)) serviceUsers)
    ++ optional (length netrcs > 1)
      "${where}: Nix reads one netrc-file, but the caches name ${toString (length netrcs)}: ${concatStringsSep ", " netrcs}; put every cache's machine line in one file";

  # The system's settings (NixOS nix.settings and nix.extraOptions). HTTPS caches: substituted
  # by everyone, and listed as trusted substituters so an untrusted user's `use` may opt in; the
  # token through a netrc outside the store. S3 caches: the public keys, and for each user in
  # proxyUsers (default: serviceUsers) an `!include` of the root-only file holding that user's
  # proxy URL (never in the store: it holds the proxy's secret).
  systemSettings =
    {
      caches,
      serviceUsers ? [ ],
    }:
    let
      names = attrNames caches;
      direct = filter (n: routeOf caches.${n} == "direct") names;
      proxied = filter (n: routeOf caches.${n} == "proxy") names;
      urls = unique (map (n: caches.${n}.url) direct);
      netrcs = unique (filter (n: n != null) (map (n: caches.${n}.netrcFile or null) names));
      usersOf = n: if (caches.${n}.proxyUsers or null) == null then serviceUsers else caches.${n}.proxyUsers;
      includes = unique (
        concatLists (
          map (
            n:
            map (
              user:
              "!include ${
                rootIncludeFile {
                  inherit user;
                  cache = n;
                }
              }"
            ) (usersOf n)
          ) proxied
        )
      );
    in
    {
      settings =
        nonEmpty {
          extra-substituters = urls;
          extra-trusted-substituters = urls;
          extra-trusted-public-keys = unique (concatLists (map (n: caches.${n}.publicKeys or [ ]) names));
        }
        // (if netrcs == [ ] then { } else { netrc-file = builtins.head netrcs; });
      extraOptions = concatStringsSep "" (map (l: l + "\n") includes);
      errors = cacheErrors { inherit caches serviceUsers; };
    };

  # A user's settings (home-manager nix.settings and nix.extraOptions in ~/.config/nix/nix.conf).
  # They count for the daemon only if the user is trusted (or the system lists the cache in
  # trusted-substituters); service: the background proxy's `!include` line.
  userSettings =
    {
      caches,
      service ? false,
    }:
    let
      names = attrNames caches;
      direct = filter (n: routeOf caches.${n} == "direct") names;
      netrcs = unique (filter (n: n != null) (map (n: caches.${n}.netrcFile or null) names));
    in
    {
      settings =
        nonEmpty {
          extra-substituters = unique (map (n: caches.${n}.url) direct);
          extra-trusted-public-keys = unique (concatLists (map (n: caches.${n}.publicKeys or [ ]) names));
        }
        // (if netrcs == [ ] then { } else { netrc-file = builtins.head netrcs; });
      extraOptions = if service then includeLine + "\n" else "";
      errors = cacheErrors { inherit caches; };
    };

  # nix.conf text for settings as NixOS and home-manager render nix.settings (lists joined by
  # spaces), then extraOptions: what tests/flake.rs hands to `nix show-config`.
  renderNixConf =
    {
      settings,
      extraOptions ? "",
      ...
    }:
    concatStringsSep "" (
      map (
        n:
        let
          v = settings.${n};
        in
        "${n} = ${if builtins.isList v then concatStringsSep " " v else toString v}\n"
      ) (attrNames settings)
    )
    + extraOptions;

  # --- shell integration ----------------------------------------------------------------------

  # The line a shell's startup file runs to load `nixstore-auth shell-init` (bash, zsh, fish).
  shellInit =
    { bin, shell }:
    let
      b = checkBin bin;
    in
    if shell == "bash" || shell == "zsh" then
      "eval \"$(${b} shell-init ${shell})\""
    else if shell == "fish" then
      "${b} shell-init fish | source"
    else
      throw "nixstore-auth: no shell integration for ${builtins.toJSON shell} (bash, zsh, fish)";
}
