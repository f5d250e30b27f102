#!/usr/bin/env bash
# End-to-end benchmark of a real closure through the nix-daemon (a benchmark, not a test).
#
# A closure of NSMALL (500) small store paths plus one BIG_MIB (256) MiB path, held together by a
# top path that references them all, is signed and copied to a binary cache directory
# (`nix copy --to file://DIR`). nginx serves DIR in two ways:
#   - as an "S3 stand-in": path-style `http://127.0.0.1:PORT/BUCKET/KEY`. nginx ignores SigV4
#     signatures (and presigned query strings); moto checks them but is far too slow to be the
#     upstream of a throughput figure;
#   - as a plain HTTP binary cache on a second port, which the daemon reads directly.
# A trusted test user then substitutes the whole closure through a nix-daemon started here:
#   (a) `nixstore-auth exec -- nix-store -r TOP`: the user's loopback signing proxy, default
#       settings (NARs by presigned 307 redirect straight to the store where it takes them);
#   (b) `nix-store -r TOP --option substituters http://127.0.0.1:PORT2 --option
#       trusted-public-keys KEY`: the same files, no proxy;
#   (c) like (a) for a second user whose proxy has `[proxy] redirect-nars = false` (every NAR
#       byte streamed through the proxy). VARIANTS="a b" leaves it out.
#   (d) plain `nix-store -r TOP` (no `exec`, no AWS_* variables) by a third user who ran
#       `nixstore-auth service install`: the background proxy (a detached persistent one: no
#       user service manager here) and the `!include` in that user's nix.conf.
# Both read with the same daemon settings (`http-connections`, `max-jobs`, printed; and
# `narinfo-cache-negative-ttl = 0`, which `exec` forwards anyway). Between runs the closure is
# deleted from the store and the daemon's narinfo cache (its HOME's ~/.cache/nix) removed, so
# that every run looks up all narinfos again. (Not `narinfo-cache-positive-ttl = 0`: Nix applies
# it to its in-memory cache too, and then fetches every narinfo about five times per run.) Rounds interleave the variants (a b c, then b c a, ...).
# Printed: each variant's wall times and median, the ratio a/b (goal: (a) within 10% of (b))
# as ratio of medians and median of per-round ratios, narinfo requests per second as nginx saw
# them (on the S3 vhost for (a), on the plain vhost for (b)), which route the NARs took (from
# nginx's log: presigned GETs vs SigV4-signed ones, and `proxy status`), and the proxies' peak
# RSS (VmHWM).
#
# Runs as root on Debian 12 with what scripts/test.sh installs (nix-bin, nginx-light, curl,
# python3). It holds the end-to-end tests' lock (/tmp/nixstore-auth-e2e.lock) for its whole run,
# rewrites /etc/nix/nix.conf (restored on exit), starts its own nix-daemon (it refuses to run if
# another one runs in this root), creates two users, and removes all of it on exit, Ctrl-C too.
# It exits non-zero only when the setup fails, never for a missed goal.
#
# usage: scripts/bench-closure.sh [ROUNDS=7]
# environment: NSMALL=500 BIG_MIB=256 VARIANTS="a b c d" COMPRESSION=none (of the NARs in the
# cache: none keeps codec time out of a transport comparison; xz or zstd also work)
# HTTP_CONNECTIONS=25 (Nix's default) MAX_JOBS=N (default: Nix's, 1; on Nix 2.8 it also bounds
# parallel substitutions) NIXSTORE_AUTH_BIN=path (else a release build of this tree)
# BENCH_VERBOSE=1 (proxies log every request; the log is printed at the end)
# BENCH_KEEP_LOGS=DIR (nginx's access logs, each run's output and the daemon's log are kept there)
set -euo pipefail

ROUNDS=${1:-7}
NSMALL=${NSMALL:-500}
BIG_MIB=${BIG_MIB:-256}
VARIANTS=${VARIANTS:-a b c d}
COMPRESSION=${COMPRESSION:-none}
HTTP_CONNECTIONS=${HTTP_CONNECTIONS:-25}
MAX_JOBS_SET=${MAX_JOBS:-}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
LOCK=/tmp/nixstore-auth-e2e.lock
DAEMON_PID_FILE=/tmp/nixstore-auth-bench-closure-daemon.pid
ETC_BACKUP=/tmp/nixstore-auth-bench-closure-etc-nix.bak
NIX_CONF=/etc/nix/nix.conf
SOCKET=/nix/var/nix/daemon-socket/socket
PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin:$PATH

die() { echo "bench-closure: $*" >&2; exit 1; }
say() { echo "== $*" >&2; }

[ "$(id -u)" = 0 ] || die "run as root (it creates users, rewrites /etc/nix/nix.conf and runs a nix-daemon)"
for tool in nix nix-store nix-build nix-daemon nginx curl python3 flock useradd userdel runuser setsid; do
    command -v "$tool" >/dev/null || die "needs $tool (scripts/test.sh installs what is missing)"
done
getent group nix-users >/dev/null || die "no nix-users group (is nix-bin installed?)"
[ -L "$NIX_CONF" ] && die "$NIX_CONF is a symlink: this benchmark only runs where it may rewrite /etc/nix"

BIN=${NIXSTORE_AUTH_BIN:-}
if [ -z "$BIN" ]; then
    cargo build --release --quiet --manifest-path "$ROOT/Cargo.toml"
    BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/nixstore-auth
fi
[ -x "$BIN" ] || die "no binary at $BIN"

# --- the lock, then the machine-wide state we change ------------------------------------------
exec 7>>"$LOCK"
if ! flock -n 7; then
    say "waiting for $LOCK (an end-to-end test or benchmark holds it)"
    flock 7
fi

WORK=""
NGINX_PID=""
DAEMON_PID=""
USERS=()
ETC_TAKEN=""
cleanup() {
    local rc=$?
    trap - EXIT INT TERM HUP
    set +e
    for u in "${USERS[@]}"; do
        as_user "$u" "$BIN" -q proxy stop >/dev/null 2>&1
        local uid
        uid=$(id -u "$u" 2>/dev/null) || continue
        for p in $(pgrep -u "$uid"); do kill -KILL "$p" 2>/dev/null; done
    done
    if [ -n "$DAEMON_PID" ]; then
        kill -TERM -- "-$DAEMON_PID" 2>/dev/null
        for _ in $(seq 50); do kill -0 "$DAEMON_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL -- "-$DAEMON_PID" 2>/dev/null
        rm -f "$DAEMON_PID_FILE"
    fi
    [ -n "$NGINX_PID" ] && kill "$NGINX_PID" 2>/dev/null
    # Every store path made here (recorded as each is made), valid or half-substituted by a run
    # that was interrupted (nix-store --delete removes those too), and their lock files.
    if [ -n "$WORK" ] && [ -s "$WORK/created.paths" ]; then
        local paths
        paths=$(sort -u "$WORK/created.paths" | tr '\n' ' ')
        # shellcheck disable=SC2086
        if ! rootnix nix-store --delete $paths >/dev/null 2>&1; then
            for p in $paths; do rootnix nix-store --delete "$p" >/dev/null 2>&1; done
            for p in $paths; do rootnix nix-store --delete "$p" >/dev/null 2>&1; done
        fi
        for p in $paths; do rm -f "$p.lock"; done
    fi
    for u in "${USERS[@]}"; do userdel "$u" >/dev/null 2>&1 || echo "warning: could not delete user $u" >&2; done
    [ -n "$ETC_TAKEN" ] && restore_etc
    if [ -n "$WORK" ]; then
        [ -n "${BENCH_KEEP_LOGS:-}" ] && mkdir -p "$BENCH_KEEP_LOGS" && cp -r "$WORK/logs/." "$BENCH_KEEP_LOGS/"
        rm -rf "$WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

restore_etc() {
    if [ -f "$ETC_BACKUP/nix.conf.absent" ]; then
        rm -f "$NIX_CONF"
    elif [ -f "$ETC_BACKUP/nix.conf" ]; then
        cp -p "$ETC_BACKUP/nix.conf" "$NIX_CONF"
    fi
    rm -rf "$ETC_BACKUP"
}
# A run of ours that was killed (SIGKILL: no trap) left its daemon and /etc/nix behind.
if [ -f "$DAEMON_PID_FILE" ]; then
    old=$(cat "$DAEMON_PID_FILE")
    if [ "$(cat "/proc/$old/comm" 2>/dev/null)" = nix-daemon ]; then
        say "stopping nix-daemon $old left by an earlier run of this benchmark"
        kill -KILL -- "-$old" 2>/dev/null || kill -KILL "$old" 2>/dev/null || true
        sleep 0.5
    fi
    rm -f "$DAEMON_PID_FILE"
fi
if [ -f "$ETC_BACKUP/complete" ]; then
    say "restoring $NIX_CONF from an earlier run of this benchmark that did not finish"
    restore_etc
fi
# Refuse to run beside a nix-daemon somebody else started in this root (a chroot's is its own).
host_daemons() {
    local p
    for p in $(pgrep -x nix-daemon); do
        [ "$(readlink -f "/proc/$p/root" 2>/dev/null)" = / ] && echo "$p"
    done
    return 0
}
for _ in $(seq 50); do [ -z "$(host_daemons)" ] && break; sleep 0.1; done
others=$(host_daemons | tr '\n' ' ')
[ -z "$others" ] || die "a nix-daemon already runs (pids: $others); this benchmark starts its own with its own configuration: stop it first"

WORK=$(mktemp -d /tmp/nsa-closure.XXXXXX)
chmod 755 "$WORK"
mkdir -p "$WORK/root-home" "$WORK/daemon-home" "$WORK/nginx" "$WORK/logs"
chmod 700 "$WORK/root-home" "$WORK/daemon-home"
TAG=$(date +%s)-$$
CLOSURE_LIST=$WORK/closure.paths  # TOP and every path it references

rm -rf "$ETC_BACKUP"; mkdir -m 700 "$ETC_BACKUP"
if [ -e "$NIX_CONF" ]; then cp -p "$NIX_CONF" "$ETC_BACKUP/nix.conf"; else : > "$ETC_BACKUP/nix.conf.absent"; fi
: > "$ETC_BACKUP/complete"
ETC_TAKEN=1

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
now() { echo "$EPOCHREALTIME"; }
median() { sort -g | awk '{a[NR]=$1} END { if (NR == 0) print "nan"; else print (NR % 2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2 }'; }
rootnix() { env HOME="$WORK/root-home" XDG_CACHE_HOME="$WORK/root-home/.cache" "$@"; }

# --- users ------------------------------------------------------------------------------------
# A trusted user per proxy setting: (a) and (b) run as A, (c) as C (redirect-nars = false).
make_user() { # LETTER -> sets USER_<LETTER>
    local name="nsabench${1,,}$$"
    useradd --no-create-home --home-dir "$WORK/home-$1" --shell /bin/sh --groups nix-users "$name" \
        || die "useradd $name failed"
    USERS+=("$name")
    printf -v "USER_$1" '%s' "$name"
}
home_of() { getent passwd "$1" | cut -d: -f6; }
run_of() { echo "$WORK/run-$(id -u "$1")"; }
as_user() { # USER CMD...: a clean login-like environment, the daemon reached by socket
    local u=$1; shift
    env -i HOME="$(home_of "$u")" USER="$u" LOGNAME="$u" PATH=/usr/local/bin:/usr/bin:/bin \
        NIX_REMOTE=daemon XDG_RUNTIME_DIR="$(run_of "$u")" NO_COLOR=1 AWS_EC2_METADATA_DISABLED=true \
        /usr/sbin/runuser -u "$u" -- "$@"
}
make_user A
VARIANT_C=""
case " $VARIANTS " in *" c "*) VARIANT_C=1; make_user C ;; esac
VARIANT_D=""
case " $VARIANTS " in *" d "*) VARIANT_D=1; make_user D ;; esac
case " $VARIANTS " in *" a "*|*" b "*) ;; *) die "VARIANTS must name a or b" ;; esac

# --- nix.conf and the daemon ------------------------------------------------------------------
cat > "$NIX_CONF" <<EOF
# Written by nixstore-auth's scripts/bench-closure.sh; the original is restored afterwards.
substituters =
sandbox = false
experimental-features = nix-command
trusted-users = root ${USERS[*]}
http-connections = $HTTP_CONNECTIONS
narinfo-cache-negative-ttl = 0
${MAX_JOBS_SET:+max-jobs = $MAX_JOBS_SET}
EOF
chmod 644 "$NIX_CONF"
DHOME=$WORK/daemon-home
setsid env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME="$DHOME" XDG_CACHE_HOME="$DHOME/.cache" \
    nix-daemon > "$WORK/logs/nix-daemon.log" 2>&1 &
DAEMON_PID=$!
echo "$DAEMON_PID" > "$DAEMON_PID_FILE"
socket_up() { python3 -c 'import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])' "$SOCKET" 2>/dev/null; }
for _ in $(seq 200); do socket_up && break; kill -0 "$DAEMON_PID" 2>/dev/null || break; sleep 0.1; done
socket_up || { cat "$WORK/logs/nix-daemon.log" >&2; die "the nix-daemon did not start"; }
setting() { rootnix nix show-config 2>/dev/null | awk -v k="$1" '$1 == k { $1 = ""; $2 = ""; sub(/^ +/, ""); print }'; }
MAX_JOBS=$(setting max-jobs)
HTTP_CONN_SEEN=$(setting http-connections)

# --- the closure ------------------------------------------------------------------------------
say "making the closure: $NSMALL small paths, one $BIG_MIB MiB path, a top path referencing them"
mkdir -p "$WORK/src/small"
for i in $(seq 1 "$NSMALL"); do echo "nixstore-auth bench-closure $TAG $i" > "$WORK/src/small/nsa-bench-$TAG-$i"; done
head -c "$((BIG_MIB * 1024 * 1024))" /dev/urandom > "$WORK/src/nsa-bench-big-$TAG"
rootnix nix-store --add "$WORK"/src/small/* > "$WORK/small.paths"
cat "$WORK/small.paths" >> "$WORK/created.paths"
BIG=$(rootnix nix-store --add "$WORK/src/nsa-bench-big-$TAG")
echo "$BIG" >> "$WORK/created.paths"
rm -rf "$WORK/src"
# `nix-store --add` records no references: a trivial derivation (builder /bin/sh, sandbox off)
# whose output names every path gets them by Nix's reference scan.
{
    echo "derivation { name = \"nsa-bench-top-$TAG\"; system = builtins.currentSystem; builder = \"/bin/sh\";"
    echo "  args = [ \"-c\" \"echo \$refs > \$out\" ]; refs = ["
    sed 's/.*/    (builtins.storePath "&")/' "$WORK/small.paths"
    echo "    (builtins.storePath \"$BIG\") ]; }"
} > "$WORK/top.nix"
TOP=$(rootnix nix-build "$WORK/top.nix" --no-out-link 2>"$WORK/logs/nix-build.log") \
    || { cat "$WORK/logs/nix-build.log" >&2; die "building the top path failed"; }
DRV=$(rootnix nix-store -q --deriver "$TOP")
printf '%s\n' "$TOP" "$DRV" >> "$WORK/created.paths"
rootnix nix-store -qR "$TOP" > "$CLOSURE_LIST"
NPATHS=$(wc -l < "$CLOSURE_LIST")
[ "$NPATHS" = $((NSMALL + 2)) ] || die "the closure has $NPATHS paths, not $((NSMALL + 2))"

rootnix nix key generate-secret --key-name "nsa-bench-closure-$TAG-1" > "$WORK/secret-key"
PUBKEY=$(rootnix nix key convert-secret-to-public < "$WORK/secret-key")
rootnix nix store sign -r --key-file "$WORK/secret-key" "$TOP" >/dev/null 2>&1
BUCKET=nsa-bench
CACHE=$WORK/www/$BUCKET
rootnix nix copy --to "file://$CACHE?compression=$COMPRESSION" "$TOP" 2>"$WORK/logs/nix-copy.log" \
    || { tail "$WORK/logs/nix-copy.log" >&2; die "nix copy --to file:// failed"; }
chmod -R a+rX "$WORK/www"
NARINFOS=$(find "$CACHE" -maxdepth 1 -name '*.narinfo' | wc -l)
CACHE_BYTES=$(du -sb "$CACHE" | cut -f1)

# shellcheck disable=SC2046
closure_valid() { rootnix nix-store --check-validity --print-invalid $(cat "$CLOSURE_LIST") | wc -l; }  # -> number of invalid paths
delete_closure() {
    # shellcheck disable=SC2046
    rootnix nix-store --delete $(cat "$CLOSURE_LIST") >/dev/null 2>&1 || true
    [ "$(closure_valid)" = "$NPATHS" ] || die "could not delete the closure from the store"
}
# The derivation goes now, with the closure (it references every path, and Nix keeps a
# derivation while its output is valid); the closure goes again before each run.
# shellcheck disable=SC2046
rootnix nix-store --delete "$DRV" $(cat "$CLOSURE_LIST") >/dev/null 2>&1 || die "could not delete the closure and $DRV"
delete_closure

# --- nginx: the S3 stand-in and the plain cache -----------------------------------------------
S3_PORT=$(free_port)
HTTP_PORT=$(free_port)
cat > "$WORK/nginx/nginx.conf" <<EOF
user root;
worker_processes 2;
daemon off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log;
events { worker_connections 1024; }
http {
    sendfile on;
    keepalive_requests 100000;
    client_body_temp_path $WORK/nginx/body;
    proxy_temp_path $WORK/nginx/proxy;
    fastcgi_temp_path $WORK/nginx/fastcgi;
    uwsgi_temp_path $WORK/nginx/uwsgi;
    scgi_temp_path $WORK/nginx/scgi;
    # Which way a request came: a presigned URL (query string), a SigV4 Authorization header
    # (the proxy's own fetch), or neither (the plain cache). Only the kind is logged.
    map \$args \$presigned { "~X-Amz-Signature=" presigned; default -; }
    map \$http_authorization \$sigv4 { "~^AWS4-HMAC-SHA256 " sigv4; default -; }
    log_format bench '\$msec \$request_method \$uri \$status \$body_bytes_sent \$presigned \$sigv4 \$request_time \$connection \$connection_requests';
    # The S3 stand-in, path-style: /BUCKET/KEY. Signatures are not checked.
    server {
        listen 127.0.0.1:$S3_PORT;
        root $WORK/www;
        access_log $WORK/logs/s3.access bench;
    }
    # The same cache directory as a plain HTTP binary cache.
    server {
        listen 127.0.0.1:$HTTP_PORT;
        root $CACHE;
        access_log $WORK/logs/http.access bench;
    }
}
EOF
setsid nginx -c "$WORK/nginx/nginx.conf" -p "$WORK/nginx" 2>>"$WORK/nginx/error.log" &
NGINX_PID=$!
for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$HTTP_PORT/nix-cache-info" && break; sleep 0.1; done
[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$S3_PORT/$BUCKET/nix-cache-info")" = 200 ] \
    || { cat "$WORK/nginx/error.log" >&2; die "nginx does not serve the cache"; }
S3_URL="s3://$BUCKET?endpoint=http://127.0.0.1:$S3_PORT&region=us-east-1"
PLAIN_URL="http://127.0.0.1:$HTTP_PORT"

# --- the users' homes: a long-term key (nginx checks none), the proxy's settings, `use` -------
setup_home() { # USER EXTRA_PROXY_LINES
    local u=$1 h run
    h=$(home_of "$u"); run=$(run_of "$u")
    mkdir -p "$h/.aws" "$h/.config/nixstore-auth" "$run"
    printf '[default]\nregion = us-east-1\n' > "$h/.aws/config"
    printf '[default]\naws_access_key_id = AKIANSABENCHCLOSURE\naws_secret_access_key = not-checked-by-nginx\n' > "$h/.aws/credentials"
    # idle-secs: one proxy serves every round (its VmHWM covers them all).
    printf 'keyring-backend = "file"\n\n[proxy]\nport = %s\nidle-secs = 3600\n%s' "$(free_port)" "$2" \
        > "$h/.config/nixstore-auth/config.toml"
    chmod 700 "$h" "$run"; chmod 600 "$h/.aws/credentials"
    chown -R "$u:" "$h" "$run"
    as_user "$u" "$BIN" -q use "$S3_URL" --name closure --public-key "$PUBKEY" --mode user \
        > "$WORK/logs/use-$u.log" 2>&1 || { cat "$WORK/logs/use-$u.log" >&2; die "use s3:// failed for $u"; }
    # Starts the proxy (with -v for BENCH_VERBOSE=1) and checks it reaches the stand-in.
    local verbosity=-q; [ -n "${BENCH_VERBOSE:-}" ] && verbosity=-v
    as_user "$u" "$BIN" "$verbosity" exec -- true > "$WORK/logs/start-$u.log" 2>&1 \
        || { cat "$WORK/logs/start-$u.log" >&2; die "the proxy of $u did not start"; }
}
setup_home "$USER_A" ""
[ -n "$VARIANT_C" ] && setup_home "$USER_C" $'redirect-nars = false\n'
if [ -n "$VARIANT_D" ]; then
    setup_home "$USER_D" ""
    # The proxy `exec` started for the check above gives way to the background one.
    as_user "$USER_D" "$BIN" -q proxy stop > /dev/null 2>&1
    as_user "$USER_D" "$BIN" service install > "$WORK/logs/service-install-$USER_D.log" 2>&1 \
        || { cat "$WORK/logs/service-install-$USER_D.log" >&2; die "service install failed for $USER_D"; }
fi
proxy_pid() { as_user "$1" "$BIN" proxy status 2>/dev/null | sed -n 's/^proxy: running, pid \([0-9]*\).*/\1/p'; }
PID_A=$(proxy_pid "$USER_A"); [ -n "$PID_A" ] || die "no proxy runs for $USER_A"
[ -n "$VARIANT_C" ] && { PID_C=$(proxy_pid "$USER_C"); [ -n "$PID_C" ] || die "no proxy runs for $USER_C"; }
[ -n "$VARIANT_D" ] && { PID_D=$(proxy_pid "$USER_D"); [ -n "$PID_D" ] || die "no background proxy runs for $USER_D"; }

# --- the runs ---------------------------------------------------------------------------------
cmd_of() { # VARIANT -> the user and command line, as words
    case $1 in
        a) echo "$USER_A" "$BIN" exec -- nix-store -r "$TOP" ;;
        b) echo "$USER_A" nix-store -r "$TOP" --option substituters "$PLAIN_URL" --option trusted-public-keys "$PUBKEY" ;;
        c) echo "$USER_C" "$BIN" exec -- nix-store -r "$TOP" ;;
        d) echo "$USER_D" nix-store -r "$TOP" ;;
    esac
}
log_of() { case $1 in b) echo "$WORK/logs/http.access" ;; *) echo "$WORK/logs/s3.access" ;; esac; }
: > "$WORK/logs/s3.access"; : > "$WORK/logs/http.access"
run_one() { # VARIANT ROUND
    local v=$1 r=$2 words log from t0 t1
    delete_closure
    rm -rf "$DHOME/.cache/nix"
    read -r -a words <<< "$(cmd_of "$v")"
    log=$(log_of "$v"); from=$(wc -l < "$log")
    local pid=""; case $v in a) pid=$PID_A ;; c) pid=$PID_C ;; d) pid=$PID_D ;; esac
    local cpu0=0; [ -n "$pid" ] && cpu0=$(cpu_ns "$pid")
    t0=$(now)
    if ! as_user "${words[@]}" > "$WORK/logs/run-$v-$r.log" 2>&1; then
        tail -20 "$WORK/logs/run-$v-$r.log" >&2
        die "variant ($v) round $r failed"
    fi
    t1=$(now)
    [ "$(closure_valid)" = 0 ] || die "variant ($v) round $r: the closure is not complete in the store"
    # nginx writes its log line when a response is done: give the last one a moment.
    sleep 0.2
    tail -n +"$((from + 1))" "$log" > "$WORK/logs/slice-$v-$r"
    awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f\n", b - a }' >> "$WORK/wall-$v"
    if [ -n "$pid" ]; then
        # The proxy's CPU time in this run, and per request it answered (every line of the slice:
        # the narinfos and nix-cache-info it forwarded, and the NARs it forwarded or answered
        # with a 307).
        awk -v a="$cpu0" -v b="$(cpu_ns "$pid")" -v n="$(wc -l < "$WORK/logs/slice-$v-$r")" \
            'BEGIN { printf "%.1f %.1f\n", (b - a) / 1e6, n ? (b - a) / 1e3 / n : 0 }' >> "$WORK/cpu-$v"
    fi
}
# CPU time of a process so far, all its threads (ns on CPU, from schedstat).
cpu_ns() { cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{ s += $1 } END { printf "%.0f\n", s }'; }
say "rounds: $ROUNDS, variants: $VARIANTS"
read -r -a VLIST <<< "$VARIANTS"
for r in $(seq 1 "$ROUNDS"); do
    n=${#VLIST[@]}
    for k in $(seq 0 $((n - 1))); do
        v=${VLIST[$(( (k + r - 1) % n ))]}
        run_one "$v" "$r"
        say "round $r ($v): $(tail -1 "$WORK/wall-$v") s"
    done
done
STATUS_A=$(as_user "$USER_A" "$BIN" proxy status 2>/dev/null | grep '^cache: closure' || true)
STATUS_C=""
[ -n "$VARIANT_C" ] && STATUS_C=$(as_user "$USER_C" "$BIN" proxy status 2>/dev/null | grep '^cache: closure' || true)
STATUS_D=""
[ -n "$VARIANT_D" ] && STATUS_D=$(as_user "$USER_D" "$BIN" proxy status 2>/dev/null | grep '^cache: closure' || true)
hwm() { awk '/^VmHWM/ {print $2}' "/proc/$1/status" 2>/dev/null; }
[ "$(proxy_pid "$USER_A")" = "$PID_A" ] || say "warning: the proxy of (a) was restarted during the rounds; its peak RSS covers the last part only"
HWM_A=$(hwm "$PID_A")
HWM_C=""; [ -n "$VARIANT_C" ] && HWM_C=$(hwm "$PID_C")
HWM_D=""; [ -n "$VARIANT_D" ] && HWM_D=$(hwm "$PID_D")

# --- per-run figures from nginx's logs --------------------------------------------------------
# narinfo GETs, their span (first to last, by nginx's completion times) and rate; NAR GETs by
# route.
# The cycle: the mean time from one small NAR's completion to the next (the gaps next to the big
# NAR left out), i.e. what each small path costs while Nix substitutes them one after another.
stats() { # SLICE -> "narinfos span_s rate nar_presigned nar_sigv4 nar_plain nar_bytes nar_span_s cycle_ms"
    awk '$2 == "GET" && $3 ~ /\.narinfo$/ { n++; if (!f || $1 < f) f = $1; if ($1 > l) l = $1 }
         $2 == "GET" && $3 ~ /\/nar\// { if ($6 == "presigned") p++; else if ($7 == "sigv4") s++; else q++; bytes += $5
                                        if (!nf || $1 < nf) nf = $1; if ($1 > nl) nl = $1
                                        k++; t[k] = $1; big[k] = ($5 > 16777216) }
         END { for (i = 2; i <= k; i++) if (!big[i] && !big[i-1]) { g += t[i] - t[i-1]; gn++ }
               span = l - f
               printf "%d %.3f %.0f %d %d %d %d %.3f %.3f\n", n, span, (span > 0) ? n / span : 0, p, s, q, bytes, nl - nf, gn ? 1000 * g / gn : 0 }' "$1"
}
for v in "${VLIST[@]}"; do
    : > "$WORK/stats-$v"
    for r in $(seq 1 "$ROUNDS"); do stats "$WORK/logs/slice-$v-$r" >> "$WORK/stats-$v"; done
done
col_median() { awk -v c="$2" '{print $c}' "$1" | median; }
label() { case $1 in a) echo "(a) exec, through the proxy (NARs: default route)" ;; b) echo "(b) plain HTTP cache, no proxy" ;; c) echo "(c) exec, proxy with redirect-nars = false" ;; d) echo "(d) plain nix-store -r, background proxy (service)" ;; esac; }
route() { # VARIANT -> what nginx saw for NARs in the last round
    local s; s=$(tail -1 "$WORK/stats-$1")
    read -r _ _ _ p sg q _ <<< "$s"
    if [ "$1" = b ]; then echo "$q plain GETs (no signature)";
    elif [ "$p" -gt 0 ] && [ "$sg" = 0 ]; then echo "$p by presigned URL, straight from the daemon (307 from the proxy)";
    elif [ "$sg" -gt 0 ] && [ "$p" = 0 ]; then echo "$sg SigV4-signed by the proxy (streamed through it)";
    else echo "$p presigned, $sg signed by the proxy, $q other"; fi
}

# --- the summary ------------------------------------------------------------------------------
echo
echo "nixstore-auth end-to-end closure benchmark ($(nproc) cores, Nix $(nix --version | awk '{print $NF}'), one nix-daemon started here)"
echo "closure: $NPATHS store paths ($NSMALL small, one $BIG_MIB MiB, the top one referencing them), $NARINFOS narinfos, $((CACHE_BYTES / 1048576)) MiB in the cache (NAR compression: $COMPRESSION)"
echo "upstream: nginx on loopback stands in for S3 (it ignores SigV4 signatures; moto checks them but is far too slow for a throughput figure); the plain cache is the same directory on a second nginx port"
echo "daemon settings for every variant: http-connections = $HTTP_CONN_SEEN, max-jobs = $MAX_JOBS, narinfo cache emptied before each run; $ROUNDS interleaved rounds"
echo
printf '%-52s %-10s %s\n' "variant" "median s" "runs (s)"
for v in "${VLIST[@]}"; do
    printf '%-52s %-10s %s\n' "$(label "$v")" "$(median < "$WORK/wall-$v")" "$(tr '\n' ' ' < "$WORK/wall-$v")"
done
echo
printf '%-52s %-9s %-8s %-11s %-13s %s\n' "as nginx saw them (medians)" "narinfos" "span s" "narinfos/s" "NARs: span s" "ms per small path"
for v in "${VLIST[@]}"; do
    printf '%-52s %-9s %-8s %-11s %-13s %s\n' "$(label "$v")" "$(col_median "$WORK/stats-$v" 1)" "$(col_median "$WORK/stats-$v" 2)" \
        "$(col_median "$WORK/stats-$v" 3)" "$(col_median "$WORK/stats-$v" 8)" "$(col_median "$WORK/stats-$v" 9)"
done
echo "(span: first to last request of the kind, by nginx's completion times (1 ms resolution); for (a) and (c) the"
echo " narinfos went through the proxy. ms per small path: mean time from one small NAR to the next; Nix 2.8"
echo " substitutes max-jobs = $MAX_JOBS path(s) at a time, NARs one after another over one connection when 1)"
echo
echo "NAR route (nginx's log, last round):"
for v in "${VLIST[@]}"; do printf '  %-50s %s\n' "$(label "$v")" "$(route "$v")"; done
[ -n "$STATUS_A" ] && echo "  proxy status (a): $STATUS_A"
[ -n "$STATUS_C" ] && echo "  proxy status (c): $STATUS_C"
[ -n "$STATUS_D" ] && echo "  proxy status (d): $STATUS_D"
echo
echo "proxy peak RSS (VmHWM over all rounds): (a) ${HWM_A:-?} KiB${HWM_C:+, (c) $HWM_C KiB}${HWM_D:+, (d) $HWM_D KiB}"
for v in a c d; do
    [ -s "$WORK/cpu-$v" ] && echo "proxy CPU time per run ($v), median: $(col_median "$WORK/cpu-$v" 1) ms, $(col_median "$WORK/cpu-$v" 2) µs per request it answered"
done
ratio_line() { # X Y -> ratio of medians, median of per-round ratios
    local mx my per
    mx=$(median < "$WORK/wall-$1"); my=$(median < "$WORK/wall-$2")
    per=$(paste "$WORK/wall-$1" "$WORK/wall-$2" | awk '{print $1 / $2}' | median)
    awk -v x="$mx" -v y="$my" -v p="$per" -v a="$1" -v b="$2" 'BEGIN {
        printf "RATIO %s/%s: %.3f (medians), %.3f (median of per-round ratios); %+.1f%%", a, b, x / y, p, 100 * (x / y - 1) }'
}
has() { case " $VARIANTS " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
if has a && has b; then
    echo "$(ratio_line a b)   goal: within +10% -> $(awk -v x="$(median < "$WORK/wall-a")" -v y="$(median < "$WORK/wall-b")" 'BEGIN { print (x <= 1.10 * y) ? "met" : "MISSED" }')"
fi
if has c && has b; then echo "$(ratio_line c b)   (every NAR byte through the proxy)"; fi
if has d && has b; then
    echo "$(ratio_line d b)   goal: within +10% -> $(awk -v x="$(median < "$WORK/wall-d")" -v y="$(median < "$WORK/wall-b")" 'BEGIN { print (x <= 1.10 * y) ? "met" : "MISSED" }')   (plain nix, no wrapper)"
fi
if [ -n "${BENCH_VERBOSE:-}" ]; then
    for u in "${USERS[@]}"; do echo "--- proxy log of $u"; cat "$(home_of "$u")/.cache/nixstore-auth/proxy.log"; done
fi
