#!/usr/bin/env bash
# The project's full test suite: installs what the tests need, then runs
#   cargo fmt --check, cargo clippy --all-targets -D warnings, cargo test
# with the end-to-end tests (tests/e2e_*.rs) switched on and run one at a time.
#
# Usage, from anywhere:   sudo ./scripts/test.sh      (or, as root: ./scripts/test.sh)
# Idempotent: a second run installs nothing. Needs root because the end-to-end tests create users,
# edit /etc/nix (restored afterwards) and run a nix-daemon and nginx on 127.0.0.1.
# Environment: CI=true is honoured as is; NIXSTORE_AUTH_E2E=1 and NIXSTORE_AUTH_VENV are exported.
set -uo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo" || exit 1

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run as root: sudo ./scripts/test.sh (the end-to-end tests create users and edit /etc/nix)"

logdir=$(mktemp -d /tmp/nixstore-auth-test.XXXXXX) || die "cannot create a temporary directory"
trap 'rm -rf "$logdir"' EXIT

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
packages=(nix-bin nginx-light apache2-utils gnome-keyring dbus libsecret-tools tmux zsh fish curl
  ca-certificates openssl jq hyperfine python3-venv)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  command -v apt-get >/dev/null || die "missing packages (${missing[*]}) and no apt-get: this script targets Debian 12"
  say "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  quiet "apt-get update" apt-get update -q
  quiet "apt-get install" apt-get install -y -q "${missing[@]}"
fi

# --- Python venv for the S3/STS test server (moto) ----------------------------------------------
venv=$repo/.venv/testbed
if ! "$venv/bin/python" -c 'import moto, boto3, flask' >/dev/null 2>&1 || [ ! -x "$venv/bin/moto_server" ]; then
  say "creating $venv with moto[server] and boto3"
  # Debian's own Python: python3-venv is installed for it, whatever `python3` is first on PATH.
  quiet "python venv" /usr/bin/python3 -m venv --clear "$venv"
  quiet "pip install" "$venv/bin/pip" install -q --disable-pip-version-check 'moto[server]' boto3
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

# --- The tests ----------------------------------------------------------------------------------
# Under sudo, build into a root-owned subdirectory so that the caller's own target/ stays theirs.
if [ -n "${SUDO_USER:-}" ] && [ -z "${CARGO_TARGET_DIR:-}" ]; then
  export CARGO_TARGET_DIR=$repo/target/sudo
fi
export NIXSTORE_AUTH_E2E=1 NIXSTORE_AUTH_VENV=$venv
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
  say "$name"
  "$@" || failed+=("$name")
}
step "cargo fmt --check" cargo fmt --check
step "cargo clippy" cargo clippy --all-targets --quiet -- -D warnings
# Unit tests, binaries and the integration tests that leave the machine alone, in parallel.
step "cargo test (unit, integration)" cargo test --lib --bins "${other[@]}"
step "cargo test --doc" cargo test --doc
# End-to-end tests share /etc/nix, the nix-daemon and test users: one at a time (they also take
# the machine-wide lock /tmp/nixstore-auth-e2e.lock against other runs on this machine).
if [ "${#e2e[@]}" -gt 0 ]; then
  step "cargo test (end-to-end)" cargo test "${e2e[@]}" -- --test-threads=1
fi

if [ "${#failed[@]}" -gt 0 ]; then
  printf 'FAILED: %s\n' "${failed[@]}" >&2
  exit 1
fi
say "all checks passed"
