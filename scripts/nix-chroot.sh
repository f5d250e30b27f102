#!/usr/bin/env bash
# A second Nix for the test matrix: Debian sid's nix-bin (2.34.x) in a chroot on a Debian 12 host.
#
# The chroot has its own /nix store, /etc/nix, nix-daemon and users, and shares the host's
# loopback, so nginx, moto and the STS front started on the host's 127.0.0.1 are reachable from
# it. Run as root. Every subcommand is idempotent.
#
# Usage:
#   scripts/nix-chroot.sh ensure            # create the chroot, or reuse a complete one (stamp file)
#   scripts/nix-chroot.sh mount | umount    # proc, dev, dev/pts, dev/shm, sys (umount: also stops the daemon)
#   scripts/nix-chroot.sh start-daemon | stop-daemon | restart-daemon
#   scripts/nix-chroot.sh add-user NAME [--trusted]   # a test user in nix-users (--trusted: in trusted-users)
#   scripts/nix-chroot.sh del-user NAME
#   scripts/nix-chroot.sh install-binary FILE        # copy a host binary to the chroot's /usr/local/bin
#   scripts/nix-chroot.sh run USER [VAR=VALUE...] -- CMD [ARG...]   # as USER, NIX_REMOTE=daemon
#   scripts/nix-chroot.sh version           # the chroot's `nix --version`
#   scripts/nix-chroot.sh pids              # processes running inside the chroot
#   scripts/nix-chroot.sh path              # the chroot directory (for host-side file access)
#
# Environment:
#   NIXSTORE_AUTH_CHROOT         the chroot directory (default /var/cache/nixstore-auth-test/sid)
#   NIXSTORE_AUTH_CHROOT_SUITE   the Debian suite (default sid)
#   NIXSTORE_AUTH_CHROOT_MIRROR  a Debian mirror URL; default: the first one in the host's apt
#                                sources (/etc/apt/sources.list{,.d/*}) that carries the suite.
#                                No mirror host name is written in this project.
#
# Typical use (a test harness does the same):
#   scripts/nix-chroot.sh ensure && scripts/nix-chroot.sh start-daemon
#   scripts/nix-chroot.sh add-user alice --trusted && scripts/nix-chroot.sh restart-daemon
#   scripts/nix-chroot.sh run alice -- nix-store -r /nix/store/... --option substituters http://127.0.0.1:PORT
#   scripts/nix-chroot.sh umount            # at the end: stops the daemon, unmounts everything
#
# Notes:
# - `ensure` resets /etc/nix/nix.conf in the chroot to the base below (tests edit it afterwards,
#   and must restart the daemon: it reads nix.conf at start).
# - Chroot users and host users can share uids and always share the loopback: two per-uid proxies
#   (one per Nix) collide on the same default port. Run one Nix version at a time.
# - The daemon's log is $DIR/var/log/nix-daemon.log, its pid $DIR/run/nix-daemon.pid.
# - netrc entries match a host, not a port: a `machine 127.0.0.1` line in the chroot's
#   /etc/nix/netrc goes, as Basic auth, to every loopback server the daemon talks to (seen: to
#   moto for an s3:// substituter, which answered 500 instead of 403). Remove it between tests.
# - Nix 2.34's `nix-store -r` warns "you did not specify '--add-root'" (2.8 does not): tests that
#   compare stderr must allow it.
# - Times on this 2-core machine: fresh `ensure` about 50-110 s (debootstrap 30-60 s, apt 20-50 s),
#   reused 0 s. The chroot takes about 1.1 GB (gnome-keyring pulls GTK through gcr).
set -euo pipefail

DIR=${NIXSTORE_AUTH_CHROOT:-/var/cache/nixstore-auth-test/sid}
SUITE=${NIXSTORE_AUTH_CHROOT_SUITE:-sid}
STAMP=$DIR/.nixstore-auth-chroot-ready
PIDFILE=$DIR/run/nix-daemon.pid
DAEMON_LOG=$DIR/var/log/nix-daemon.log
SOCKET=$DIR/nix/var/nix/daemon-socket/socket
# Beside the chroot, not in it: it exists before debootstrap has made the directory.
SETUP_LOG=$DIR.setup.log
MIRROR=

# debootstrap's own resolver follows only first alternatives and virtual packages badly (with
# gnome-keyring it left half the set unconfigured and pulled GTK), so it installs just Nix, and
# apt inside the chroot installs the rest. dbus-x11 provides the dbus-session-bus that
# gnome-keyring needs without systemd (dbus-user-session would pull it in).
BOOTSTRAP_PACKAGES=(nix-bin ca-certificates)
# What the end-to-end proofs need inside. Changing this list (or RECIPE) invalidates the stamp, so
# the next `ensure` installs the difference into the existing chroot (a package only added to the
# list is installed alone, see same_recipe).
# python3-boto3: the AWS proofs' readers (an AWS tool run under `exec`) inside the chroot.
# openssh-client: the daemon's build hook reaches remote builders with ssh (tests/e2e/builders.rs).
PACKAGES=(nix-bin ca-certificates curl dbus dbus-x11 gnome-keyring libsecret-tools tmux bash zsh fish
  procps passwd adduser util-linux python3 python3-boto3 openssh-client)
RECIPE=3
# The base /etc/nix/nix.conf. No internet: cache.nixos.org would make every lookup retry, hence
# `substituters =`. No systemd and no user namespaces for sandboxing here: `sandbox = false`.
NIX_CONF='# Written by scripts/nix-chroot.sh (nixstore-auth test bed); its ensure rewrites this file.
build-users-group = nixbld
sandbox = false
substituters =
experimental-features = nix-command
trusted-users = root
'
NIXBLD_USERS=4

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'nix-chroot: error: %s\n' "$*" >&2; exit 1; }

# Runs one stage and prints how long it took.
stage() {
  local name=$1 start=$SECONDS; shift
  say "$name ..."
  "$@"
  say "$name: $((SECONDS - start)) s"
}

in_chroot() { chroot "$DIR" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive HOME=/root "$@"; }

apt_in_chroot() { in_chroot apt-get -q -o DPkg::Lock::Timeout=600 -o APT::Install-Recommends=false "$@"; }

require_root() { [ "$(id -u)" -eq 0 ] || die "run as root"; }

# --- mirror ---------------------------------------------------------------------------------------

# Every `deb` URI in the host's apt sources, one-line (.list) and deb822 (.sources) formats.
host_apt_uris() {
  local f
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    # deb [options] URI suite components...
    sed -nE 's/^[[:space:]]*deb[[:space:]]+(\[[^]]*\][[:space:]]+)?([^[:space:]]+).*/\2/p' "$f"
  done
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    # Stanzas are separated by blank lines; keep URIs of stanzas whose Types include deb.
    awk 'BEGIN { RS=""; FS="\n" }
         { deb=0; uris="";
           for (i = 1; i <= NF; i++) {
             if ($i ~ /^Types:/ && $i ~ /[[:space:]]deb([[:space:]]|$)/) deb=1;
             if ($i ~ /^URIs:/) { sub(/^URIs:[[:space:]]*/, "", $i); uris=$i }
           }
           if (deb) { n = split(uris, u, /[[:space:]]+/); for (j = 1; j <= n; j++) print u[j] } }' "$f"
  done
}

# The first host mirror that has dists/$SUITE/Release (security and third-party repositories don't).
pick_mirror() {
  if [ -n "${NIXSTORE_AUTH_CHROOT_MIRROR:-}" ]; then
    printf '%s\n' "${NIXSTORE_AUTH_CHROOT_MIRROR%/}"
    return
  fi
  local uri
  while read -r uri; do
    [ -n "$uri" ] || continue
    uri=${uri%/}
    if curl -fsS -o /dev/null --max-time 20 "$uri/dists/$SUITE/Release" 2>/dev/null; then
      printf '%s\n' "$uri"
      return
    fi
  done < <(host_apt_uris | awk '!seen[$0]++')
  die "no mirror in the host's apt sources serves '$SUITE' (set NIXSTORE_AUTH_CHROOT_MIRROR)"
}

# --- mounts ---------------------------------------------------------------------------------------

# The mount points we manage, in mount order (umount goes in reverse).
MOUNTS=(proc dev dev/pts dev/shm sys)

do_mount() {
  require_root
  [ -d "$DIR/usr" ] || die "no chroot at $DIR (run: $0 ensure)"
  local m
  for m in "${MOUNTS[@]}"; do
    mkdir -p "$DIR/$m"
    mountpoint -q "$DIR/$m" && continue
    case $m in
      # A fresh proc for the chroot: nix-bin's post-install and the daemon read /proc.
      proc) mount -t proc proc "$DIR/proc" ;;
      # Non-recursive binds, so that umount has exactly these to undo.
      *) mount --bind "/$m" "$DIR/$m" ;;
    esac
  done
}

# Mount points under $DIR, deepest first (anything left by an interrupted run is included).
mounted_under_dir() {
  local real
  real=$(realpath -m "$DIR")
  awk -v d="$real" '$2 == d || index($2, d "/") == 1 { print $2 }' /proc/self/mounts | sort -r | uniq
}

# Processes whose root directory is the chroot (a proxy or keyring daemon a test left running).
chroot_pids() {
  local real p r
  real=$(realpath "$DIR")
  for p in /proc/[0-9]*; do
    r=$(readlink "$p/root" 2>/dev/null) || continue
    if [ "$r" = "$real" ]; then printf '%s\n' "${p#/proc/}"; fi
  done
}

do_umount() {
  require_root
  do_stop_daemon
  local m pids
  # Not killed here (they are not ours to end): listed, so the caller can end them by pid.
  pids=$(chroot_pids | tr '\n' ' ')
  [ -z "$pids" ] || say "still running in the chroot (unmounting lazily): pids $pids"
  while read -r m; do
    [ -n "$m" ] || continue
    # Lazily if busy (a leftover process in the chroot): detached now, freed when it exits.
    umount "$m" 2>/dev/null || umount -l "$m"
  done < <(mounted_under_dir)
  [ -z "$(mounted_under_dir)" ] || die "still mounted under $DIR: $(mounted_under_dir | tr '\n' ' ')"
}

# Refuses to delete a chroot that has anything mounted in it (a bound /dev would be wiped).
safe_rm_chroot() {
  do_umount
  [ -z "$(mounted_under_dir)" ] || die "refusing to delete $DIR: something is mounted under it"
  rm -rf --one-file-system "$DIR"
}

# --- ensure ---------------------------------------------------------------------------------------

stamp_value() { printf 'recipe=%s suite=%s packages=%s\n' "$RECIPE" "$SUITE" "${PACKAGES[*]}"; }

# A chroot completed with this recipe and suite from an older package list (its stamp names
# another list) only lacks the packages added since: it gets them installed, not a rebuild. Its
# stamp is left as it is, so that a checkout with the older list still takes it as complete.
same_recipe() { [ -f "$STAMP" ] && [[ $(cat "$STAMP") == "recipe=$RECIPE suite=$SUITE packages="* ]]; }

# PACKAGES not installed in the chroot (one dpkg-query for all).
missing_packages() {
  local installed p
  installed=$(in_chroot dpkg-query -W -f='${Package} ${Status}\n' "${PACKAGES[@]}" 2>/dev/null \
    | awk '$NF == "installed" { print $1 }')
  for p in "${PACKAGES[@]}"; do
    grep -qx "$p" <<<"$installed" || printf '%s\n' "$p"
  done
}

add_packages() {
  do_mount
  # The package lists may be older than the mirror: refresh them only when a plain install fails.
  apt_in_chroot install -y "$@" >>"$SETUP_LOG" 2>&1 || {
    logged apt_in_chroot update
    logged apt_in_chroot install -y "$@"
  }
  logged apt_in_chroot clean
}

host_debootstrap() {
  command -v debootstrap >/dev/null && return
  DEBIAN_FRONTEND=noninteractive apt-get -q -o DPkg::Lock::Timeout=600 install -y debootstrap >/dev/null
}

run_debootstrap() {
  local include
  include=$(IFS=,; echo "${BOOTSTRAP_PACKAGES[*]}")
  mkdir -p "$(dirname "$DIR")"
  # nix-bin fails to configure inside debootstrap (seen: its dependency libdbd-sqlite3-perl
  # needs the virtual perl-dbdabi-NN, which debootstrap does not resolve); debootstrap then exits
  # non-zero with the base system unpacked and apt in place. finish_packages completes it.
  if ! debootstrap --variant=minbase --include="$include" "$SUITE" "$DIR" "$MIRROR" >"$SETUP_LOG" 2>&1; then
    if ! [ -x "$DIR/usr/bin/apt-get" ] || ! [ -x "$DIR/usr/bin/dpkg" ]; then
      tail -n 30 "$SETUP_LOG" >&2
      die "debootstrap failed before apt was installed (log: $SETUP_LOG)"
    fi
    say "debootstrap exited non-zero (known: nix-bin's post-install); completing with apt in the chroot"
  fi
}

# Runs a noisy command with its output appended to $SETUP_LOG; shows the tail if it fails.
logged() {
  if ! "$@" >>"$SETUP_LOG" 2>&1; then
    tail -n 30 "$SETUP_LOG" >&2
    die "failed: $* (log: $SETUP_LOG)"
  fi
}

finish_packages() {
  # debootstrap writes sources.list only when it completes: write it ourselves.
  printf 'deb %s %s main\n' "$MIRROR" "$SUITE" >"$DIR/etc/apt/sources.list"
  # The host's mirror may be a dated snapshot: sid's Release then is past its Valid-Until
  # (apt refuses it as expired; debootstrap does not check). A test bed wants that snapshot.
  printf 'Acquire::Check-Valid-Until "false";\n' >"$DIR/etc/apt/apt.conf.d/99nixstore-auth-snapshot"
  # Services must not start inside the chroot at install time (dbus, ...).
  printf '#!/bin/sh\nexit 101\n' >"$DIR/usr/sbin/policy-rc.d"
  chmod 0755 "$DIR/usr/sbin/policy-rc.d"
  cp -L /etc/resolv.conf "$DIR/etc/resolv.conf" 2>/dev/null || true
  # Package scripts want /proc (and dev, sys): mount before apt-get -f install.
  do_mount
  in_chroot dpkg --configure -a >>"$SETUP_LOG" 2>&1 || true
  logged apt_in_chroot update
  logged apt_in_chroot -f install -y
  logged apt_in_chroot install -y "${PACKAGES[@]}"
  if in_chroot dpkg --audit | grep -q .; then
    die "dpkg --audit inside the chroot reports unconfigured packages (log: $SETUP_LOG)"
  fi
  logged apt_in_chroot clean
}

# Users, groups and nix.conf: cheap, done on every ensure so that the chroot starts known.
configure_nix() {
  in_chroot sh -c 'getent group nixbld >/dev/null || groupadd --system nixbld
                   getent group nix-users >/dev/null || groupadd --system nix-users'
  local i
  for i in $(seq 1 "$NIXBLD_USERS"); do
    in_chroot sh -c "getent passwd nixbld$i >/dev/null || useradd --system --no-create-home \
      --home-dir /var/empty --shell /usr/sbin/nologin --gid nixbld --groups nixbld nixbld$i"
  done
  mkdir -p "$DIR/etc/nix" "$DIR/run" "$DIR/var/log"
  printf '%s' "$NIX_CONF" >"$DIR/etc/nix/nix.conf.tmp"
  mv -f "$DIR/etc/nix/nix.conf.tmp" "$DIR/etc/nix/nix.conf"
  # The daemon creates its socket in this directory; only nix-users may connect (as on the host).
  mkdir -p "$DIR/nix/var/nix/daemon-socket"
  chown root:"$(in_chroot getent group nix-users | cut -d: -f3)" "$DIR/nix/var/nix/daemon-socket"
  chmod 0770 "$DIR/nix/var/nix/daemon-socket"
}

do_ensure() {
  require_root
  local total=$SECONDS
  # One ensure at a time (two test runs starting together would debootstrap into one directory).
  mkdir -p "$(dirname "$DIR")"
  exec 9>"$DIR.lock"
  flock 9
  stage "host: debootstrap present" host_debootstrap
  local missing
  if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$(stamp_value)" ]; then
    say "reusing the complete chroot at $DIR"
  elif same_recipe && missing=$(missing_packages) && [ -z "$missing" ]; then
    say "reusing the complete chroot at $DIR (it has every package of this list)"
  elif same_recipe; then
    # shellcheck disable=SC2086 # one package name per word
    stage "packages added since the chroot was made: $(echo $missing)" add_packages $missing
  else
    if [ -e "$DIR" ] && ! [ -x "$DIR/usr/bin/apt-get" ]; then
      say "removing an incomplete chroot at $DIR"
      safe_rm_chroot
    fi
    MIRROR=$(pick_mirror)
    say "mirror: $MIRROR (from the host's apt sources), suite: $SUITE, log: $SETUP_LOG"
    [ -x "$DIR/usr/bin/apt-get" ] || stage "debootstrap $SUITE" run_debootstrap
    stage "packages (apt-get -f install, install)" finish_packages
    stamp_value >"$STAMP"
  fi
  stage "mount" do_mount
  stage "users, groups, /etc/nix/nix.conf" configure_nix
  say "ready: $(do_version) at $DIR (ensure: $((SECONDS - total)) s)"
}

# --- daemon ---------------------------------------------------------------------------------------

daemon_pid() {
  local pid
  [ -f "$PIDFILE" ] || return 1
  pid=$(cat "$PIDFILE")
  # The pid is ours only if it still runs this chroot's nix-daemon (pids are reused).
  # (/usr/bin/nix-daemon may be a symlink to nix: compare resolved paths.)
  [ -n "$pid" ] && [ "$(readlink "/proc/$pid/exe" 2>/dev/null)" = "$(realpath "$DIR/usr/bin/nix-daemon")" ] \
    && printf '%s\n' "$pid"
}

do_start_daemon() {
  require_root
  [ -f "$STAMP" ] || die "the chroot is not ready (run: $0 ensure)"
  if daemon_pid >/dev/null; then
    say "nix-daemon already running (pid $(daemon_pid))"
    return
  fi
  do_mount
  rm -f "$SOCKET"
  # setsid: its own session and process group, so stop-daemon can end it with its workers.
  # env -i: the daemon gets none of the caller's environment (as under a service manager).
  setsid chroot "$DIR" /usr/bin/env -i PATH=/usr/bin:/bin LANG=C.UTF-8 HOME=/root \
    /usr/bin/nix-daemon >>"$DAEMON_LOG" 2>&1 </dev/null &
  echo $! >"$PIDFILE"
  local i
  for i in $(seq 1 100); do
    [ -S "$SOCKET" ] && { say "nix-daemon started (pid $(cat "$PIDFILE"), log $DAEMON_LOG)"; return; }
    kill -0 "$(cat "$PIDFILE")" 2>/dev/null || break
    sleep 0.1
  done
  tail -n 20 "$DAEMON_LOG" >&2
  die "nix-daemon did not create $SOCKET"
}

do_stop_daemon() {
  local pid i
  if pid=$(daemon_pid); then
    # The process group (= pid, from setsid) holds the daemon and its per-connection workers.
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then kill -KILL -- "-$pid" 2>/dev/null || true; fi
    say "nix-daemon stopped (pid $pid)"
  fi
  rm -f "$PIDFILE"
}

# --- users and commands ---------------------------------------------------------------------------

do_add_user() {
  local name=${1:?usage: add-user NAME [--trusted]} trusted=${2:-}
  [[ $name =~ ^[a-z_][a-z0-9_-]*$ ]] || die "bad user name: $name"
  in_chroot sh -c "getent passwd '$name' >/dev/null || useradd --create-home --shell /bin/bash '$name'"
  in_chroot usermod -aG nix-users "$name"
  if [ "$trusted" = --trusted ]; then
    local conf=$DIR/etc/nix/nix.conf
    grep -Eq "^trusted-users = (.* )?$name( |$)" "$conf" || sed -i -E "s/^(trusted-users = .*)$/\1 $name/" "$conf"
    say "$name is in trusted-users: restart the daemon for it to apply"
  fi
}

do_del_user() {
  local name=${1:?usage: del-user NAME}
  in_chroot sh -c "! getent passwd '$name' >/dev/null || userdel --remove '$name' 2>/dev/null || userdel '$name'"
  sed -i -E "/^trusted-users = /s/ $name( |$)/\1/" "$DIR/etc/nix/nix.conf"
}

do_install_binary() {
  local file=${1:?usage: install-binary FILE}
  install -m 0755 "$file" "$DIR/usr/local/bin/$(basename "$file")"
  say "installed $DIR/usr/local/bin/$(basename "$file")"
}

# run USER [VAR=VALUE...] -- CMD...: runuser inside the chroot resolves USER in the chroot's
# /etc/passwd (not the host's) and keeps argv as given (no shell quoting). The environment is clean
# apart from NIX_REMOTE=daemon, the given VAR=VALUE pairs and what runuser sets (HOME, USER, ...).
do_run() {
  local user=${1:?usage: run USER [VAR=VALUE...] -- CMD...}; shift
  local envs=()
  while [ $# -gt 0 ] && [ "$1" != -- ]; do
    [[ $1 == *=* ]] || die "run: expected VAR=VALUE or --, got: $1"
    envs+=("$1"); shift
  done
  [ "${1:-}" = -- ] || die "usage: run USER [VAR=VALUE...] -- CMD..."
  shift
  [ $# -gt 0 ] || die "run: no command"
  do_mount
  chroot "$DIR" /usr/bin/env -i PATH=/usr/local/bin:/usr/bin:/bin LANG=C.UTF-8 TERM="${TERM:-dumb}" \
    NIX_REMOTE=daemon /usr/sbin/runuser -u "$user" -- /usr/bin/env "${envs[@]}" "$@"
}

do_version() { chroot "$DIR" /usr/bin/nix --version; }

# --- main -----------------------------------------------------------------------------------------

cmd=${1:-}
[ $# -gt 0 ] && shift
case $cmd in
  ensure) do_ensure ;;
  mount) do_mount ;;
  umount) do_umount ;;
  start-daemon) do_start_daemon ;;
  stop-daemon) require_root; do_stop_daemon ;;
  restart-daemon) require_root; do_stop_daemon; do_start_daemon ;;
  add-user) require_root; do_add_user "$@" ;;
  del-user) require_root; do_del_user "$@" ;;
  install-binary) require_root; do_install_binary "$@" ;;
  run) require_root; do_run "$@" ;;
  version) do_version ;;
  pids) chroot_pids ;;
  path) printf '%s\n' "$DIR" ;;
  *) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2 ;;
esac
