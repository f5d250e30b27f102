#!/usr/bin/env bash
# Overhead of `nixstore-auth exec`, measured in one run with hyperfine (not a test):
#   1. exec --profile P -- true with a cached session   vs  true
#   2. the same                                          vs  aws configure export-credentials --profile P
#      (same role, also served from aws-cli's own cache)
#   3. exec -- true with no AWS work (no profile, no S3 cache recorded)  vs  true
# Target: < 5 ms added for (1), no measurable overhead for (3).
#
# Needs: hyperfine, the test venv (moto, boto3; made if missing) and an aws-cli v2 for
# `configure export-credentials` (Debian's `awscli` package; override with AWS_CLI=path).
# Everything runs on 127.0.0.1 with a throwaway HOME; moto is stopped on exit.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
venv=${NIXSTORE_AUTH_VENV:-$repo/.venv/testbed}
# Debian's package first: a pip-installed aws-cli v1 earlier on PATH has no export-credentials.
aws_cli=${AWS_CLI:-}
[ -z "$aws_cli" ] && [ -x /usr/bin/aws ] && aws_cli=/usr/bin/aws
[ -z "$aws_cli" ] && aws_cli=$(command -v aws || true)
runs=${RUNS:-200}

command -v hyperfine >/dev/null || { echo "hyperfine is not installed" >&2; exit 1; }
if [ ! -x "$venv/bin/moto_server" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q 'moto[server]' boto3
fi
if [ -z "$aws_cli" ] || ! "$aws_cli" configure export-credentials help >/dev/null 2>&1; then
    echo "need aws-cli v2 (apt-get install awscli) for 'configure export-credentials'" >&2
    exit 1
fi

(cd "$repo" && cargo build --release --quiet)
bin=$repo/target/release/nixstore-auth

work=$(mktemp -d)
moto_pid=
cleanup() {
    [ -n "$moto_pid" ] && kill -- "-$moto_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
INITIAL_NO_AUTH_ACTION_COUNT=1000 setsid "$venv/bin/moto_server" -H 127.0.0.1 -p "$port" \
    >"$work/moto.log" 2>&1 &
moto_pid=$!
for _ in $(seq 100); do
    (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.1
done
"$venv/bin/python" "$repo/tests/support/py/moto.py" aws-bed "http://127.0.0.1:$port" >"$work/bed.json"
field() { "$venv/bin/python" -c "import json,sys; print(json.load(open('$work/bed.json'))$1)"; }

export HOME=$work/home XDG_CONFIG_HOME=$work/home/.config XDG_DATA_HOME=$work/home/.local/share \
    XDG_CACHE_HOME=$work/home/.cache XDG_RUNTIME_DIR=$work/run
export AWS_ENDPOINT_URL_STS=http://127.0.0.1:$port AWS_ENDPOINT_URL=http://127.0.0.1:$port
unset AWS_PROFILE AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN NIXSTORE_AUTH_AWS_PROFILE
mkdir -p "$HOME/.aws" "$XDG_CONFIG_HOME/nixstore-auth" "$XDG_RUNTIME_DIR"
chmod 700 "$XDG_RUNTIME_DIR"
backend=${KEYRING_BACKEND:-file}
echo "keyring-backend = \"$backend\"" >"$XDG_CONFIG_HOME/nixstore-auth/config.toml"
cat >"$HOME/.aws/config" <<EOF
[profile bench]
role_arn = $(field '["roles"]["deploy"]')
source_profile = keys
region = us-east-1
EOF
cat >"$HOME/.aws/credentials" <<EOF
[keys]
aws_access_key_id = $(field '["access_key_id"]')
aws_secret_access_key = $(field '["secret_access_key"]')
EOF
chmod 600 "$HOME/.aws/credentials"

# Prime both caches with the same session. aws-cli 2.9 (Debian 12) cannot be pointed at a
# loopback STS (AWS_ENDPOINT_URL* arrived in 2.13), so its own assume-role cache file is
# written with our session, under the key aws-cli computes: sha1 of the AssumeRole arguments
# without the generated session name.
"$bin" login --profile bench >/dev/null
mkdir -p "$HOME/.aws/cli/cache"
"$bin" env --format json --profile bench | python3 -c '
import hashlib, json, sys
c = json.load(sys.stdin); arn = sys.argv[1]
key = hashlib.sha1(json.dumps({"RoleArn": arn}, sort_keys=True).encode()).hexdigest()
out = {"Credentials": {k: c[k] for k in ("AccessKeyId", "SecretAccessKey", "SessionToken", "Expiration")}}
fd = open(sys.argv[2] + "/" + key + ".json", "w"); json.dump(out, fd); fd.close()
' "$(field '["roles"]["deploy"]')" "$HOME/.aws/cli/cache"
ours=$("$bin" env --format json --profile bench | python3 -c 'import json,sys; print(json.load(sys.stdin)["AccessKeyId"])')
theirs=$(env -u AWS_ENDPOINT_URL_STS -u AWS_ENDPOINT_URL "$aws_cli" configure export-credentials \
    --profile bench --format process | python3 -c 'import json,sys; print(json.load(sys.stdin)["AccessKeyId"])')
[ "$ours" = "$theirs" ] || { echo "aws-cli did not use the cached session" >&2; exit 1; }

json=$work/json
hyperfine -N --warmup 20 --runs "$runs" --export-json "$json.1" \
    -n true 'true' \
    -n 'exec --profile (cached)' "$bin exec --profile bench -- true" \
    -n 'aws export-credentials (cached)' "$aws_cli configure export-credentials --profile bench --format process" \
    >/dev/null
hyperfine -N --warmup 20 --runs "$runs" --export-json "$json.2" \
    -n true 'true' \
    -n 'exec (no AWS work)' "$bin exec -- true" \
    -n 'env true (minimal exec wrapper)' "env true" \
    >/dev/null

python3 - "$json.1" "$json.2" "$("$aws_cli" --version 2>&1)" "$backend" <<'EOF'
import json, sys
a = {r["command"]: r for r in json.load(open(sys.argv[1]))["results"]}
b = {r["command"]: r for r in json.load(open(sys.argv[2]))["results"]}
ms = lambda r: r["mean"] * 1000
sd = lambda r: r["stddev"] * 1000
print(f"aws-cli: {sys.argv[3]}; session cache backend: {sys.argv[4]}")
for name, r in list(a.items()) + [(k, b[k]) for k in ("exec (no AWS work)", "env true (minimal exec wrapper)")]:
    print(f"  {name:34} {ms(r):8.2f} ms  ± {sd(r):.2f}")
t, e, c = ms(a["true"]), ms(a["exec --profile (cached)"]), ms(a["aws export-credentials (cached)"])
t2, n, w = ms(b["true"]), ms(b["exec (no AWS work)"]), ms(b["env true (minimal exec wrapper)"])
print(f"exec --profile (cached) adds {e - t:.2f} ms over true ({e / t:.1f}x); "
      f"aws export-credentials is {c / e:.0f}x slower than exec ({c:.0f} ms)")
print(f"exec without AWS work adds {n - t2:.2f} ms over true ({n / t2:.2f}x); "
      f"{n - w:.2f} ms over env(1), the floor for any wrapper that execs")
EOF
