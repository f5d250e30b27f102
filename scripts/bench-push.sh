#!/usr/bin/env bash
# Push benchmark (a benchmark, not a test): `nixstore-auth push` of a closure to an S3 server
# against the floor of the same bytes uploaded by plain `curl` PUTs to the same server, in one
# run, as ratios.
#
# The closure: NSMALL (100) small store paths, one BIG_MIB (64) MiB incompressible path (random
# bytes) and one BIG_MIB MiB compressible path (text), added to the host's store as root.
# The server: s3s-fs (built by scripts/test.sh under /var/cache/nixstore-auth-test/; it checks
# every signature) on 127.0.0.1 with a fresh data directory per run.
#   push: `nixstore-auth push bench PATHS...` as root (its own HOME: config.toml, the AWS
#         profile with s3s-fs's key, the signing key), through its signing proxy, with the
#         cache's default compression (zstd) unless COMPRESSION is set, JOBS paths at a time;
#         every path's narinfo checked, its NAR exported, hashed, compressed and uploaded with a
#         signed narinfo.
#   floor: the NARs exported beforehand (`nix-store --dump` to files, not timed), then one
#         `curl --aws-sigv4` process PUTting them all to the same server over kept-alive
#         connections (no narinfos, no checks, no compression).
# Rounds alternate the order; the bucket is emptied before each run. Printed: each run's
# wall time, the medians, push/floor (goal: within 2x), and the compressible path's stored size
# against its NAR size (goal: smaller). It exits non-zero only when the setup fails.
#
# usage: scripts/bench-push.sh [ROUNDS=3]
# environment: NSMALL=100 BIG_MIB=64 JOBS=8 COMPRESSION=zstd|xz|none
#   NIXSTORE_AUTH_BIN=path (else a release build of this tree)
#   NIXSTORE_AUTH_S3S_FS=path (else /var/cache/nixstore-auth-test/s3s-fs-0.14.1/bin/s3s-fs)
set -euo pipefail

rounds=${1:-3}
nsmall=${NSMALL:-100}
big_mib=${BIG_MIB:-64}
jobs=${JOBS:-8}
compression=${COMPRESSION:-}
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
s3s=${NIXSTORE_AUTH_S3S_FS:-/var/cache/nixstore-auth-test/s3s-fs-0.14.1/bin/s3s-fs}

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run as root (it adds paths to the host's store)"
[ -x "$s3s" ] || die "$s3s is missing: scripts/test.sh builds it"
command -v nix-store >/dev/null || die "nix-store is missing (nix-bin)"

bin=${NIXSTORE_AUTH_BIN:-}
if [ -z "$bin" ]; then
  say "building nixstore-auth (release)"
  (cd "$repo" && cargo build --release --quiet) || die "cargo build failed"
  bin=${CARGO_TARGET_DIR:-$repo/target}/release/nixstore-auth
fi

work=$(mktemp -d /tmp/nixstore-auth-bench-push.XXXXXX)
pids=()
paths=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  HOME=$work/home XDG_RUNTIME_DIR=$work/run "$bin" proxy stop >/dev/null 2>&1 || true
  if [ "${#paths[@]}" -gt 0 ]; then nix-store --delete "${paths[@]}" >/dev/null 2>&1 || true; fi
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port=$(free_port)
key_id=BENCH$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n' | tr a-f A-F)
secret=$(od -An -N20 -tx1 /dev/urandom | tr -d ' \n')
mkdir -p "$work/data/bench" "$work/home" "$work/run" "$work/files" "$work/nars"
chmod 700 "$work/run"
"$s3s" --host 127.0.0.1 --port "$port" --access-key "$key_id" --secret-key "$secret" "$work/data" \
  >"$work/s3s.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.05; done

say "making the closure: $nsmall small paths, ${big_mib} MiB incompressible, ${big_mib} MiB compressible"
tag=$(date +%s%N)
for i in $(seq "$nsmall"); do
  printf 'nixstore-auth bench-push %s %s\n%s\n' "$tag" "$i" "$(head -c 600 /dev/urandom | base64 -w0)" >"$work/files/small-$i"
done
head -c "$((big_mib * 1024 * 1024))" /dev/urandom >"$work/files/big-random"
python3 - "$work/files/big-text" "$big_mib" "$tag" <<'EOF'
import sys
path, mib, tag = sys.argv[1], int(sys.argv[2]), sys.argv[3]
with open(path, "w") as f:
    n, size = 0, 0
    while size < mib * 1024 * 1024:
        line = f"{tag} line {n}: the quick brown fox jumps over the lazy dog {n * 7919 % 100003}\n"
        f.write(line)
        size += len(line)
        n += 1
EOF
mapfile -t paths < <(nix-store --add "$work"/files/*)
text_path=$(printf '%s\n' "${paths[@]}" | grep -- '-big-text$')
nar_bytes=0
for p in "${paths[@]}"; do
  nix-store --dump "$p" >"$work/nars/$(basename "$p").nar"
  nar_bytes=$((nar_bytes + $(stat -c %s "$work/nars/$(basename "$p").nar")))
done

# The signing key and our config: a recorded S3 cache whose AWS profile holds s3s-fs's key.
nix --extra-experimental-features nix-command key generate-secret --key-name bench-1 >"$work/sk"
pk=$(nix --extra-experimental-features nix-command key convert-secret-to-public <"$work/sk")
chmod 600 "$work/sk"
mkdir -p "$work/home/.aws" "$work/home/.config/nixstore-auth"
printf '[profile bench]\nregion = us-east-1\n' >"$work/home/.aws/config"
printf '[bench]\naws_access_key_id = %s\naws_secret_access_key = %s\n' "$key_id" "$secret" >"$work/home/.aws/credentials"
url="s3://bench?region=us-east-1&endpoint=http://127.0.0.1:$port&profile=bench"
[ -n "$compression" ] && url="$url&compression=$compression"
cat >"$work/home/.config/nixstore-auth/config.toml" <<EOF
keyring-backend = "file"

[proxy]
port = $(free_port)

[caches.bench]
kind = "s3"
url = "$url"
public-keys = ["$pk"]
secret-key = "$work/sk"
EOF
chmod -R go-rwx "$work/home"

empty_bucket() { rm -rf "$work/data/bench" "$work"/data/.upload*; mkdir -p "$work/data/bench"; }
run_push() {
  HOME=$work/home XDG_RUNTIME_DIR=$work/run AWS_EC2_METADATA_DISABLED=true \
    "$bin" --quiet push bench --jobs "$jobs" "${@:-${paths[@]}}"
}
run_floor() {
  local args=()
  for f in "$work"/nars/*.nar; do
    args+=(-T "$f" "http://127.0.0.1:$port/bench/nar/$(basename "$f")")
  done
  curl -sS --fail -o /dev/null --aws-sigv4 "aws:amz:us-east-1:s3" -u "$key_id:$secret" \
    -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" "${args[@]}"
}
seconds() { local s e; s=$(date +%s%N); "$@" >/dev/null; e=$(date +%s%N); echo "$(( (e - s) / 1000000 ))"; }

text_hash=$(basename "$text_path" | cut -c1-32)
file_size=0 nar_size=0 comp=?
push_ms=() floor_ms=()
for r in $(seq "$rounds"); do
  if [ $((r % 2)) -eq 1 ]; then order="push floor"; else order="floor push"; fi
  for what in $order; do
    empty_bucket
    if [ "$what" = push ]; then
      t=$(seconds run_push); push_ms+=("$t")
      narinfo=$work/data/bench/$text_hash.narinfo
      file_size=$(awk '/^FileSize:/ {print $2}' "$narinfo")
      nar_size=$(awk '/^NarSize:/ {print $2}' "$narinfo")
      comp=$(awk '/^Compression:/ {print $2}' "$narinfo")
    else
      t=$(seconds run_floor); floor_ms+=("$t")
    fi
    printf 'round %d %-5s %6d ms\n' "$r" "$what" "$t"
  done
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
pm=$(median "${push_ms[@]}")
fm=$(median "${floor_ms[@]}")
echo
echo "closure: ${#paths[@]} paths, $((nar_bytes / 1024 / 1024)) MiB of NARs; push --jobs $jobs, compression $comp"
echo "median push: $pm ms; median curl floor: $fm ms"
awk -v p="$pm" -v f="$fm" 'BEGIN { printf "push / floor: %.2fx (goal: at most 2x)\n", p / f }'
awk -v a="$file_size" -v b="$nar_size" 'BEGIN { printf "compressible path: stored %d of %d bytes (%.1f%%; goal: smaller)\n", a, b, 100 * a / b }'
# Where push's time goes: the small paths alone, each big path alone (one run each).
mapfile -t small < <(printf '%s\n' "${paths[@]}" | grep -- '-small-')
random_path=$(printf '%s\n' "${paths[@]}" | grep -- '-big-random$')
empty_bucket; t_small=$(seconds run_push "${small[@]}")
empty_bucket; t_random=$(seconds run_push "$random_path")
empty_bucket; t_text=$(seconds run_push "$text_path")
echo "breakdown (one run each): ${#small[@]} small paths $t_small ms; ${big_mib} MiB incompressible $t_random ms; ${big_mib} MiB compressible $t_text ms"
