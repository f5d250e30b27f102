#!/usr/bin/env bash
# Benchmark of the loopback signing proxy (not a test). nginx serves the files as a fast S3
# stand-in (it ignores signatures), so the numbers isolate what the proxy adds. Prints, from one
# run: NAR throughput through the proxy's URL vs direct `curl --aws-sigv4`, p50/p99 added
# latency per narinfo at 25 concurrent clients, and the proxy's peak RSS.
#
# Throughput: ROUNDS rounds, each fetching the object directly; through the proxy's URL as Nix
# does (curl following the proxy's 307 to a presigned URL, the default where S3 takes them);
# streamed through a second proxy with `redirect-nars = false` (the fallback for stores that
# refuse presigned URLs); and through nginx's own reverse proxy (proxy_pass) on the same hop.
# Rounds are interleaved so that load from other processes hits all alike; best-of and median
# are printed. A streaming relay adds a hop in which every byte is copied into and out of user
# space, so on a small machine even nginx's proxy_pass stays well below direct: its line shows
# what a mature C relay gets on the same machine at the same moment.
#
# HTTPS caches (issue 20): the same files behind nginx over TLS (a CA made here) that takes only
# `Authorization: Bearer T`, a recorded `--auth bearer` cache on the proxy route served by a
# background proxy: NAR throughput and narinfo latency through the proxy's URL against direct
# `curl --cacert -H 'Authorization: Bearer T'`, and a cache that redirects NARs to another
# origin (as attic and cachix do) through the proxy against fetching from that origin directly.
#
# usage: scripts/bench-proxy.sh [SIZE_MIB=512] [NARINFOS=1000] [ROUNDS=5]
# (BENCH_SHOW_LOGS=1 prints the proxies' logs at the end)
set -euo pipefail

SIZE_MIB=${1:-512}
NARINFOS=${2:-1000}
ROUNDS=${3:-5}
CONC=25
ROOT=$(cd "$(dirname "$0")/.." && pwd)

command -v nginx >/dev/null || { echo "needs nginx (apt-get install nginx-light)" >&2; exit 1; }
command -v curl >/dev/null || { echo "needs curl" >&2; exit 1; }

cargo build --release --quiet --manifest-path "$ROOT/Cargo.toml"
BIN="$ROOT/target/release/nixstore-auth"

WORK=$(mktemp -d /tmp/nixstore-auth-bench.XXXXXX)
chmod 755 "$WORK"
NGINX_PID=""
cleanup() {
    for p in "${LEASE_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    exec 8>&- 9>&- 2>/dev/null || true
    for name in redir stream https; do
        if [ -f "$WORK/$name/home/.local/share/nixstore-auth/proxy-secret" ]; then
            env -i PATH="$PATH" HOME="$WORK/$name/home" XDG_RUNTIME_DIR="$WORK/$name/run" "$BIN" proxy stop >/dev/null 2>&1 || true
        fi
    done
    [ -n "$NGINX_PID" ] && kill "$NGINX_PID" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
[ -n "${BENCH_SHOW_LOGS:-}" ] && trap "cat $WORK/*/home/.cache/nixstore-auth/proxy.log >&2; cleanup" EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# The "bucket": BUCKET/PREFIX/KEY, as the proxy addresses it path-style.
DATA="$WORK/www/bkt/cache"
mkdir -p "$DATA/nar" "$WORK/nginx"
chmod -R 755 "$WORK/www"
head -c "$((SIZE_MIB * 1024 * 1024))" /dev/urandom > "$DATA/nar/big.nar"
printf 'StoreDir: /nix/store\nWantMassQuery: 1\nPriority: 40\n' > "$DATA/nix-cache-info"
for i in $(seq 1 "$NARINFOS"); do
    printf 'StorePath: /nix/store/%032d-p\nURL: nar/%d.nar.xz\nCompression: xz\nNarSize: 1234\n' "$i" "$i" > "$DATA/$(printf '%032d' "$i").narinfo"
done

NGINX_PORT=$(free_port)
REF_PORT=$(free_port)
# HTTPS: a test CA and a certificate for 127.0.0.1; the Bearer token nginx takes.
HTTPS_PORT=$(free_port); HREDIR_PORT=$(free_port); ORIGIN_PORT=$(free_port)
TLS="$WORK/tls"
mkdir -p "$TLS"
openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$TLS/ca.key" \
    -out "$TLS/ca.crt" -days 1 -subj "/CN=bench CA" -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign" 2>/dev/null
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$TLS/server.key" \
    -out "$TLS/server.csr" -subj "/CN=127.0.0.1" 2>/dev/null
printf 'basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1\n' > "$TLS/server.ext"
openssl x509 -req -in "$TLS/server.csr" -CA "$TLS/ca.crt" -CAkey "$TLS/ca.key" -CAcreateserial -days 1 \
    -extfile "$TLS/server.ext" -out "$TLS/server.crt" 2>/dev/null
BEARER="bench$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
printf 'Authorization: Bearer %s\n' "$BEARER" > "$TLS/header"
TLS_LINES="ssl_certificate $TLS/server.crt; ssl_certificate_key $TLS/server.key; keepalive_requests 100000;"
HCACHE="$WORK/www/bkt/cache"
USER_LINE=""
[ "$(id -u)" = 0 ] && USER_LINE="user root;"
cat > "$WORK/nginx/nginx.conf" <<EOF
$USER_LINE
worker_processes 2;
daemon off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log;
events { worker_connections 1024; }
http {
    access_log off;
    sendfile on;
    keepalive_requests 100000;
    client_body_temp_path $WORK/nginx/body;
    proxy_temp_path $WORK/nginx/proxy;
    fastcgi_temp_path $WORK/nginx/fastcgi;
    uwsgi_temp_path $WORK/nginx/uwsgi;
    scgi_temp_path $WORK/nginx/scgi;
    server {
        listen 127.0.0.1:$NGINX_PORT;
        root $WORK/www;
    }
    # HTTPS caches: Bearer only; one redirecting NARs to an origin that takes no credential.
    server {
        listen 127.0.0.1:$HTTPS_PORT ssl;
        $TLS_LINES
        root $HCACHE;
        if (\$http_authorization != "Bearer $BEARER") { return 401; }
    }
    server {
        listen 127.0.0.1:$HREDIR_PORT ssl;
        $TLS_LINES
        root $HCACHE;
        if (\$http_authorization != "Bearer $BEARER") { return 401; }
        location /nar/ { return 302 https://127.0.0.1:$ORIGIN_PORT\$request_uri; }
    }
    server {
        listen 127.0.0.1:$ORIGIN_PORT ssl;
        $TLS_LINES
        root $HCACHE;
    }
    # The reference relay: nginx in front of itself, buffering in memory only.
    upstream direct { server 127.0.0.1:$NGINX_PORT; keepalive 8; }
    server {
        listen 127.0.0.1:$REF_PORT;
        location / {
            proxy_pass http://direct;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffer_size 256k;
            proxy_buffers 8 256k;
            proxy_busy_buffers_size 512k;
            proxy_max_temp_file_size 0;
        }
    }
}
EOF
setsid nginx -c "$WORK/nginx/nginx.conf" -p "$WORK/nginx" 2>>"$WORK/nginx/error.log" &
NGINX_PID=$!
for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$NGINX_PORT/" && break; sleep 0.1; done

# Two proxies, each with its own home and a lease held open through a pipe (credentials on
# stdin: nginx ignores them): "redir" as configured by default, "stream" with redirect-nars off.
KEY=AKIABENCHMARK
SECRET=bench-secret-not-checked-by-nginx
LEASE_PIDS=()
start_proxy() { # NAME EXTRA_CONFIG -> sets BASE_<NAME>, PID_<NAME>
    local name=$1 extra=$2 home="$WORK/$1/home" run="$WORK/$1/run" port
    mkdir -p "$home/.config/nixstore-auth" "$run"
    chmod 700 "$run"
    port=$(free_port)
    printf '[proxy]\nport = %s\n%s' "$port" "$extra" > "$home/.config/nixstore-auth/config.toml"
    mkfifo "$WORK/$name/lease.in"
    env -i PATH="$PATH" HOME="$home" XDG_RUNTIME_DIR="$run" \
        "$BIN" proxy lease < "$WORK/$name/lease.in" > "$WORK/$name/lease.out" &
    LEASE_PIDS+=($!)
    # The write end stays open (fd 8 or 9) for the whole run: the lease lasts as long.
    if [ "$name" = redir ]; then exec 8> "$WORK/$name/lease.in"; else exec 9> "$WORK/$name/lease.in"; fi
    printf '{"creds":{"access_key_id":"%s","secret_access_key":"%s"},"mounts":[{"name":"c","url":"s3://bkt/cache?endpoint=http://127.0.0.1:%s"}]}\n' \
        "$KEY" "$SECRET" "$NGINX_PORT" > "$WORK/$name/lease.in"
    for _ in $(seq 100); do [ -s "$WORK/$name/lease.out" ] && break; sleep 0.1; done
    local base pid
    base=$(sed -n 's/.*"base":"\([^"]*\)".*/\1/p' "$WORK/$name/lease.out")
    pid=$(sed -n 's/.*"pid":\([0-9]*\).*/\1/p' "$WORK/$name/lease.out")
    [ -n "$base" ] || { echo "the $name proxy did not start" >&2; exit 1; }
    printf -v "BASE_$name" '%s' "$base"
    printf -v "PID_$name" '%s' "$pid"
}
start_proxy redir ""
start_proxy stream "redirect-nars = false"$'\n'
PROXY_URL="$BASE_redir/c"
STREAM_URL="$BASE_stream/c"
PID=$PID_redir
DIRECT_URL="http://127.0.0.1:$NGINX_PORT/bkt/cache"
SIGV4=(--aws-sigv4 "aws:amz:us-east-1:s3" -u "$KEY:$SECRET" -H "x-amz-content-sha256: UNSIGNED-PAYLOAD")

# The HTTPS caches, recorded as `use --auth bearer --token-stdin --ca-file` records them (token
# in the file secret store), served by a background proxy (`proxy start --persistent`).
HHOME="$WORK/https/home"; HRUN="$WORK/https/run"
mkdir -p "$HHOME/.config/nixstore-auth" "$HRUN"; chmod 700 "$HRUN"
HPORT=$(free_port)
printf 'keyring-backend = "file"\n\n[proxy]\nport = %s\n' "$HPORT" > "$HHOME/.config/nixstore-auth/config.toml"
hnsa() { env -i PATH="$PATH" HOME="$HHOME" XDG_RUNTIME_DIR="$HRUN" "$BIN" "$@"; }
HKEY="bench-1:$(head -c 32 /dev/urandom | base64)"
for c in "h $HTTPS_PORT" "hr $HREDIR_PORT"; do
    set -- $c
    printf '%s\n' "$BEARER" | hnsa -q use "https://127.0.0.1:$2" --name "$1" --auth bearer --token-stdin \
        --ca-file "$TLS/ca.crt" --public-key "$HKEY" --mode user --nix-conf "$HHOME/nix.conf" --netrc "$HHOME/netrc"
done
hnsa -q proxy start --persistent
HBASE="http://127.0.0.1:$HPORT/$(cat "$HHOME/.local/share/nixstore-auth/proxy-secret")"
HPROXY_URL="$HBASE/h"; HREDIR_URL="$HBASE/hr"
HDIRECT_URL="https://127.0.0.1:$HTTPS_PORT"; ORIGIN_URL="https://127.0.0.1:$ORIGIN_PORT"
HDIRECT=(--cacert "$TLS/ca.crt" -H "@$TLS/header")
[ "$(curl -s -o /dev/null -w '%{http_code}' --cacert "$TLS/ca.crt" "$HDIRECT_URL/nix-cache-info")" = 401 ] || { echo "nginx takes requests without the token" >&2; exit 1; }
[ "$(curl -s -o /dev/null -w '%{http_code}' -r 0-0 "$HPROXY_URL/nar/big.nar")" = 206 ] || { echo "the proxy does not serve the HTTPS cache" >&2; exit 1; }
[ "$(curl -s -o /dev/null -w '%{redirect_url}' "$HREDIR_URL/nar/big.nar")" = "$ORIGIN_URL/nar/big.nar" ] || { echo "the proxy did not pass the redirect on" >&2; exit 1; }

rss_kib() { awk '/^VmHWM/ {print $2}' "/proc/${1:-$PID}/status"; }

# Warm the page cache and the connection pools. The redirecting proxy must answer NARs with a
# 307 to a presigned URL, and the streaming one with the bytes.
curl -s -o /dev/null "$DIRECT_URL/nar/big.nar"
curl -s -o /dev/null "$PROXY_URL/$(printf '%032d' 1).narinfo"
curl -s -o /dev/null "$STREAM_URL/$(printf '%032d' 1).narinfo"
[ "$(curl -s -o /dev/null -w '%{http_code}' "$PROXY_URL/nar/big.nar")" = 307 ] || { echo "the proxy did not redirect the NAR" >&2; exit 1; }
curl -s -o /dev/null -w '%{redirect_url}\n' "$PROXY_URL/nar/big.nar" | grep -q 'X-Amz-Signature=' || { echo "the redirect is not presigned" >&2; exit 1; }
[ "$(curl -s -o /dev/null -w '%{http_code}' -r 0-0 "$STREAM_URL/nar/big.nar")" = 206 ] || { echo "the streaming proxy did not stream" >&2; exit 1; }
RSS_BEFORE=$(rss_kib); SRSS_BEFORE=$(rss_kib "$PID_stream")

REF_URL="http://127.0.0.1:$REF_PORT/bkt/cache"
speed() { curl -s -o /dev/null -w '%{speed_download}\n' "$@"; }  # URL [curl args...] -> bytes/s
: > "$WORK/direct.bps"; : > "$WORK/proxy.bps"; : > "$WORK/stream.bps"; : > "$WORK/ref.bps"
for _ in $(seq "$ROUNDS"); do
    speed "$DIRECT_URL/nar/big.nar" "${SIGV4[@]}" >> "$WORK/direct.bps"
    speed "$PROXY_URL/nar/big.nar" -L >> "$WORK/proxy.bps"
    speed "$STREAM_URL/nar/big.nar" >> "$WORK/stream.bps"
    speed "$REF_URL/nar/big.nar" >> "$WORK/ref.bps"
done
best() { sort -g "$1" | tail -1; }
median() { sort -g "$1" | awk '{a[NR]=$1} END { print (NR % 2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2 }'; }
DIRECT_BPS=$(best "$WORK/direct.bps"); DIRECT_MED=$(median "$WORK/direct.bps")
PROXY_BPS=$(best "$WORK/proxy.bps"); PROXY_MED=$(median "$WORK/proxy.bps")
STREAM_BPS=$(best "$WORK/stream.bps"); STREAM_MED=$(median "$WORK/stream.bps")
REF_BPS=$(best "$WORK/ref.bps"); REF_MED=$(median "$WORK/ref.bps")
RSS_AFTER_BIG=$(rss_kib); SRSS_AFTER_BIG=$(rss_kib "$PID_stream")
# HTTPS rounds, interleaved the same way.
: > "$WORK/hdirect.bps"; : > "$WORK/hproxy.bps"; : > "$WORK/origin.bps"; : > "$WORK/hredir.bps"
for _ in $(seq "$ROUNDS"); do
    speed "$HDIRECT_URL/nar/big.nar" "${HDIRECT[@]}" >> "$WORK/hdirect.bps"
    speed "$HPROXY_URL/nar/big.nar" >> "$WORK/hproxy.bps"
    speed "$ORIGIN_URL/nar/big.nar" --cacert "$TLS/ca.crt" >> "$WORK/origin.bps"
    speed "$HREDIR_URL/nar/big.nar" -L --cacert "$TLS/ca.crt" >> "$WORK/hredir.bps"
done

# Latency: CONC curl processes at once, each fetching its share of the narinfos over one
# keep-alive connection and printing the time of every request.
latencies() { # BASE_URL OUT [curl args...]
    local base=$1 out=$2; shift 2
    : > "$out"
    local per=$(( (NARINFOS + CONC - 1) / CONC ))
    local pids=()
    for w in $(seq 0 $((CONC - 1))); do
        urls=()
        for i in $(seq $((w * per + 1)) $(( (w + 1) * per ))); do
            [ "$i" -le "$NARINFOS" ] && urls+=(-o /dev/null "$base/$(printf '%032d' "$i").narinfo")
        done
        if [ "${#urls[@]}" -gt 0 ]; then
            curl -s -w '%{http_code} %{time_total}\n' "$@" "${urls[@]}" >> "$out.$w" &
            pids+=($!)
        fi
    done
    wait "${pids[@]}"  # not a bare `wait`: nginx and the lease holder are children too
    cat "$out".* > "$out"
    if grep -qv '^200 ' "$out"; then echo "non-200 answers in $out" >&2; grep -v '^200 ' "$out" | head -3 >&2; exit 1; fi
}
pct() { # FILE P -> milliseconds
    awk '{print $2}' "$1" | sort -n | awk -v p="$2" '{a[NR]=$1} END { i=int(NR*p/100+0.5); if(i<1)i=1; if(i>NR)i=NR; printf "%.3f", a[i]*1000 }'
}
if [ "$NARINFOS" -gt 0 ]; then  # NARINFOS=0: throughput only
    latencies "$DIRECT_URL" "$WORK/direct.lat" "${SIGV4[@]}"
    latencies "$PROXY_URL" "$WORK/proxy.lat"
    D50=$(pct "$WORK/direct.lat" 50); D99=$(pct "$WORK/direct.lat" 99)
    P50=$(pct "$WORK/proxy.lat" 50); P99=$(pct "$WORK/proxy.lat" 99)
    latencies "$HDIRECT_URL" "$WORK/hdirect.lat" "${HDIRECT[@]}"
    latencies "$HPROXY_URL" "$WORK/hproxy.lat"
    HD50=$(pct "$WORK/hdirect.lat" 50); HD99=$(pct "$WORK/hdirect.lat" 99)
    HP50=$(pct "$WORK/hproxy.lat" 50); HP99=$(pct "$WORK/hproxy.lat" 99)
fi
RSS_PEAK=$(rss_kib)

echo "nixstore-auth proxy benchmark ($(nproc) cores, nginx upstream on loopback)"
echo "throughput, ${SIZE_MIB} MiB object, $ROUNDS interleaved rounds (MiB/s):"
row() { # LABEL BEST MEDIAN
    awk -v l="$1" -v b="$2" -v m="$3" -v db="$DIRECT_BPS" -v dm="$DIRECT_MED" 'BEGIN {
        printf "  %-22s best %5.0f (%5.1f%% of direct)   median %5.0f (%5.1f%% of direct)\n", l, b/1048576, 100*b/db, m/1048576, 100*m/dm }'
}
row "direct curl --aws-sigv4" "$DIRECT_BPS" "$DIRECT_MED"
row "proxy URL (307, default)" "$PROXY_BPS" "$PROXY_MED"
row "streamed by the proxy" "$STREAM_BPS" "$STREAM_MED"
row "nginx proxy_pass (ref)" "$REF_BPS" "$REF_MED"
# Paired: each round's route against the direct fetch of the same round, so that drift in the
# machine's load between rounds cancels out.
paired() { paste "$WORK/direct.bps" "$1" | awk '{print 100*$2/$1}' | sort -g | awk '{a[NR]=$1} END { printf "%.1f", (NR % 2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2 }'; }
awk -v b="$PROXY_BPS" -v d="$DIRECT_BPS" -v m="$PROXY_MED" -v dm="$DIRECT_MED" -v p="$(paired "$WORK/proxy.bps")" 'BEGIN {
    printf "RATIO proxy/direct (NARs as Nix fetches them, default): best %.1f%%, median %.1f%%, median of per-round ratios %.1f%%\n", 100*b/d, 100*m/dm, p }'
awk -v b="$STREAM_BPS" -v d="$DIRECT_BPS" -v m="$STREAM_MED" -v dm="$DIRECT_MED" -v r="$REF_MED" -v p="$(paired "$WORK/stream.bps")" -v pr="$(paired "$WORK/ref.bps")" 'BEGIN {
    printf "RATIO streamed/direct (redirect-nars = false): best %.1f%%, median %.1f%%, per-round %.1f%% (nginx proxy_pass: median %.1f%%, per-round %.1f%%)\n", 100*b/d, 100*m/dm, p, 100*r/dm, pr }'
if [ "$NARINFOS" -gt 0 ]; then
    echo "narinfo latency at $CONC concurrent clients, $NARINFOS requests each way:"
    echo "  direct  p50 ${D50} ms  p99 ${D99} ms"
    echo "  proxy   p50 ${P50} ms  p99 ${P99} ms"
    awk -v a="$P50" -v b="$D50" -v c="$P99" -v d="$D99" 'BEGIN { printf "  added   p50 %.3f ms  p99 %.3f ms\n", a-b, c-d }'
fi
echo "proxy peak RSS: ${RSS_PEAK} KiB (before the big transfers: ${RSS_BEFORE} KiB, after them: ${RSS_AFTER_BIG} KiB)"
echo "streaming proxy peak RSS: $(rss_kib "$PID_stream") KiB (before the big transfers: ${SRSS_BEFORE} KiB, after streaming $ROUNDS x ${SIZE_MIB} MiB: ${SRSS_AFTER_BIG} KiB)"
echo "HTTPS cache (nginx over TLS, Bearer only), ${SIZE_MIB} MiB NAR, $ROUNDS interleaved rounds (MiB/s):"
vs() { # LABEL FILE BASE_FILE
    awk -v l="$1" -v b="$(best "$2")" -v m="$(median "$2")" -v db="$(best "$3")" -v dm="$(median "$3")" -v p="$(paste "$3" "$2" | awk '{print 100*$2/$1}' | sort -g | awk '{a[NR]=$1} END { printf "%.1f", (NR % 2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2 }')" 'BEGIN {
        printf "  %-34s best %5.0f (%5.1f%%)   median %5.0f (%5.1f%%)   per-round %5.1f%%\n", l, b/1048576, 100*b/db, m/1048576, 100*m/dm, p }'
}
vs "direct curl --cacert, Bearer" "$WORK/hdirect.bps" "$WORK/hdirect.bps"
vs "through the proxy (streamed)" "$WORK/hproxy.bps" "$WORK/hdirect.bps"
vs "other origin, direct" "$WORK/origin.bps" "$WORK/origin.bps"
vs "redirect route (302 passed on)" "$WORK/hredir.bps" "$WORK/origin.bps"
awk -v p="$(median "$WORK/hproxy.bps")" -v d="$(median "$WORK/hdirect.bps")" -v r="$(median "$WORK/hredir.bps")" -v o="$(median "$WORK/origin.bps")" 'BEGIN {
    printf "RATIO https proxy/direct (median): %.1f%%; redirect route/direct origin (median): %.1f%%\n", 100*p/d, 100*r/o }'
if [ "$NARINFOS" -gt 0 ]; then
    echo "HTTPS narinfo latency at $CONC concurrent clients, $NARINFOS requests each way:"
    echo "  direct  p50 ${HD50} ms  p99 ${HD99} ms"
    echo "  proxy   p50 ${HP50} ms  p99 ${HP99} ms"
    awk -v a="$HP50" -v b="$HD50" -v c="$HP99" -v d="$HD99" 'BEGIN { printf "  added   p50 %.3f ms  p99 %.3f ms\n", a-b, c-d }'
fi
