"""Google's auth endpoints as a local stand-in, and a checking front for fake-gcs-server.

No GCS emulator checks authorisation (fake-gcs-server and gcp-storage-emulator ignore it), so
this front does, in one process on 127.0.0.1:PORT:

- stands in for Google's token endpoint (POST /token: refresh_token grants of authorized_user
  files), STS (POST /v1/token: token exchange of external_account files), IAM Credentials
  (POST /v1/projects/-/serviceAccounts/EMAIL:generateAccessToken and :signBlob) and the
  metadata server's token (GET /computeMetadata/v1/instance/service-accounts/default/token, with
  Metadata-Flavor: Google);
- serves the XML API subset a binary cache needs (GET, HEAD, PUT /BUCKET/OBJECT) only to
  requests carrying a Bearer token it issued and that has not expired, a service account's
  self-signed JWT (RS256, verified with the account's key), or a V4 signed URL (signature
  recomputed here and verified with the account's key, expiry checked); everything else gets
  401/403 like GCS;
- stores through fake-gcs-server's JSON API (BACKEND), which does the storing.

What it does not check: OAuth scopes, IAM permissions, the subject token's signature (STS
compares it with the configured one, as a pool's attribute condition would, not a JWKS).

Usage: gcs_front.py PORT BACKEND_URL CONFIG_JSON
CONFIG_JSON is re-read on every request, so a test can revoke a refresh token or shorten token
lives while the front runs:
  {"token_life": 3600,
   "refresh_tokens": {"REFRESH": {"client_id": "...", "client_secret": "..."}},
   "revoked": ["REFRESH"],
   "sts": {"audience": "//iam.googleapis.com/...", "subject_token": "..."},
   "service_accounts": {"EMAIL": "PATH/TO/PRIVATE-KEY.pem"}}
GET /_stats answers counters as JSON (grants by kind, storage requests by method, refusals).
"""

import base64
import hashlib
import http.client
import json
import secrets
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

PORT = int(sys.argv[1])
BACKEND = urllib.parse.urlsplit(sys.argv[2])
CONFIG = sys.argv[3]

LOCK = threading.Lock()
TOKENS = {}  # access token -> (kind, subject, expiry)
STATS = {"grants": {}, "storage": {}, "refused": {}}


def config():
    with open(CONFIG) as f:
        return json.load(f)


def count(group, key):
    with LOCK:
        STATS[group][key] = STATS[group].get(key, 0) + 1


def issue(kind, subject, life):
    token = "ya29.front-" + secrets.token_urlsafe(24)
    with LOCK:
        TOKENS[token] = (kind, subject, time.time() + life)
    count("grants", kind)
    return token


def private_key(email):
    path = config().get("service_accounts", {}).get(email)
    if not path:
        return None
    with open(path, "rb") as f:
        return serialization.load_pem_private_key(f.read(), None)


def b64url_decode(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def self_signed_ok(token):
    """A service account's self-signed JWT: RS256 by a configured account, not expired."""
    parts = token.split(".")
    if len(parts) != 3:
        return False
    try:
        header = json.loads(b64url_decode(parts[0]))
        claims = json.loads(b64url_decode(parts[1]))
        sig = b64url_decode(parts[2])
    except Exception:
        return False
    if header.get("alg") != "RS256" or claims.get("iss") != claims.get("sub"):
        return False
    key = private_key(claims.get("iss", ""))
    if key is None or claims.get("exp", 0) < time.time():
        return False
    try:
        key.public_key().verify(sig, (parts[0] + "." + parts[1]).encode(), padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        return False
    return True


def bearer_ok(header):
    if not header or not header.startswith("Bearer "):
        return False
    token = header[len("Bearer "):]
    with LOCK:
        entry = TOKENS.get(token)
    if entry is not None:
        return entry[2] > time.time()
    return self_signed_ok(token)


def quote(s, safe=""):
    return urllib.parse.quote(s, safe="-_.~" + safe)


def v4_ok(method, path, query, headers):
    """Verifies a V4 signed URL (GOOG4-RSA-SHA256) independently of the client's code."""
    q = dict(urllib.parse.parse_qsl(query, keep_blank_values=True))
    try:
        sig = bytes.fromhex(q.pop("X-Goog-Signature"))
        email, day, region, service, req = q["X-Goog-Credential"].split("/")
        stamp = q["X-Goog-Date"]
        expires = int(q["X-Goog-Expires"])
        signed = q["X-Goog-SignedHeaders"].split(";")
    except Exception:
        return False
    start = time.mktime(time.strptime(stamp, "%Y%m%dT%H%M%SZ")) - time.timezone
    if not (start - 300 <= time.time() <= start + expires):
        return False
    key = private_key(email)
    if key is None or q.get("X-Goog-Algorithm") != "GOOG4-RSA-SHA256":
        return False
    canonical_query = "&".join(f"{quote(k)}={quote(v)}" for k, v in sorted(q.items(), key=lambda kv: quote(kv[0])))
    canonical_headers = "".join(f"{h}:{' '.join(headers.get(h, '').split()).lower()}\n" for h in signed)
    canonical = "\n".join([method, quote(urllib.parse.unquote(path), "/"), canonical_query, canonical_headers, ";".join(signed), "UNSIGNED-PAYLOAD"])
    to_sign = "\n".join(["GOOG4-RSA-SHA256", stamp, f"{day}/{region}/{service}/{req}", hashlib.sha256(canonical.encode()).hexdigest()])
    try:
        key.public_key().verify(sig, to_sign.encode(), padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        return False
    return True


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        sys.stderr.write("%s %s\n" % (time.strftime("%H:%M:%S"), fmt % args))

    def reply(self, status, body=b"", ctype="application/json", extra=None):
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def xml_error(self, status, code):
        count("refused", code)
        self.reply(status, f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code></Error>".encode(), "application/xml")

    # --- Google's auth endpoints -------------------------------------------------------
    def token(self):
        cfg = config()
        raw = self.body().decode()
        # google-cloud-auth sends JSON; other clients a form: Google takes both.
        try:
            form = json.loads(raw)
        except ValueError:
            form = dict(urllib.parse.parse_qsl(raw))
        if form.get("grant_type") != "refresh_token":
            return self.reply(400, {"error": "unsupported_grant_type"})
        rt = form.get("refresh_token", "")
        client = cfg.get("refresh_tokens", {}).get(rt)
        if client is None or rt in cfg.get("revoked", []):
            count("refused", "invalid_grant")
            return self.reply(400, {"error": "invalid_grant", "error_description": "Token has been expired or revoked."})
        if form.get("client_id") != client["client_id"] or form.get("client_secret") != client["client_secret"]:
            count("refused", "invalid_client")
            return self.reply(401, {"error": "invalid_client"})
        life = cfg.get("token_life", 3600)
        return self.reply(200, {"access_token": issue("refresh_token", client["client_id"], life), "expires_in": life, "token_type": "Bearer", "scope": "https://www.googleapis.com/auth/cloud-platform"})

    def sts(self):
        cfg = config()
        sts = cfg.get("sts", {})
        raw = self.body().decode()
        form = dict(urllib.parse.parse_qsl(raw))
        if not form:
            try:
                form = json.loads(raw)
            except Exception:
                form = {}
        ok = (
            form.get("grant_type") == "urn:ietf:params:oauth:grant-type:token-exchange"
            and form.get("audience") == sts.get("audience")
            and form.get("subject_token") == sts.get("subject_token")
        )
        if not ok:
            count("refused", "sts")
            return self.reply(400, {"error": "invalid_grant", "error_description": "subject token or audience refused"})
        life = cfg.get("token_life", 3600)
        return self.reply(200, {"access_token": issue("sts", sts.get("audience"), life), "issued_token_type": "urn:ietf:params:oauth:token-type:access_token", "token_type": "Bearer", "expires_in": life})

    def iam(self, email, method):
        if not bearer_ok(self.headers.get("Authorization")):
            count("refused", "iam_unauthenticated")
            return self.reply(401, {"error": {"code": 401, "status": "UNAUTHENTICATED"}})
        req = json.loads(self.body() or b"{}")
        if method == "generateAccessToken":
            if private_key(email) is None:
                return self.reply(403, {"error": {"code": 403, "status": "PERMISSION_DENIED"}})
            life = config().get("token_life", 3600)
            expire = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + life))
            return self.reply(200, {"accessToken": issue("impersonation", email, life), "expireTime": expire})
        if method == "signBlob":
            key = private_key(email)
            if key is None:
                return self.reply(403, {"error": {"code": 403, "status": "PERMISSION_DENIED"}})
            count("grants", "signBlob")
            sig = key.sign(base64.b64decode(req.get("payload", "")), padding.PKCS1v15(), hashes.SHA256())
            return self.reply(200, {"keyId": "front", "signedBlob": base64.b64encode(sig).decode()})
        return self.reply(404, {"error": {"code": 404}})

    # --- storage -------------------------------------------------------------------------
    def storage(self):
        url = urllib.parse.urlsplit(self.path)
        parts = url.path.lstrip("/").split("/", 1)
        if len(parts) != 2 or not parts[1]:
            return self.xml_error(400, "InvalidURI")
        bucket, obj = parts[0], urllib.parse.unquote(parts[1])
        if "X-Goog-Signature" in url.query:
            if not v4_ok(self.command, url.path, url.query, {k.lower(): v for k, v in self.headers.items()}):
                return self.xml_error(403, "SignatureDoesNotMatch")
            count("storage", "signed_" + self.command)
        elif bearer_ok(self.headers.get("Authorization")):
            count("storage", self.command)
        else:
            return self.xml_error(401, "AuthenticationRequired")
        conn = http.client.HTTPConnection(BACKEND.hostname, BACKEND.port, timeout=60)
        name = urllib.parse.quote(obj, safe="")
        if self.command == "PUT":
            data = self.body()
            conn.request("POST", f"/upload/storage/v1/b/{bucket}/o?uploadType=media&name={name}", data, {"Content-Type": self.headers.get("Content-Type", "application/octet-stream")})
            resp = conn.getresponse()
            resp.read()
            return self.reply(200 if resp.status == 200 else 500, b"", "text/plain")
        conn.request("GET", f"/storage/v1/b/{bucket}/o/{name}" + ("?alt=media" if self.command == "GET" else ""))
        resp = conn.getresponse()
        data = resp.read()
        if resp.status == 404:
            return self.xml_error(404, "NoSuchKey")
        if resp.status != 200:
            return self.xml_error(500, "InternalError")
        if self.command == "HEAD":
            meta = json.loads(data)
            self.send_response(200)
            self.send_header("Content-Length", meta.get("size", "0"))
            self.send_header("Content-Type", meta.get("contentType", "application/octet-stream"))
            self.end_headers()
            return None
        return self.reply(200, data, resp.getheader("Content-Type", "application/octet-stream"))

    def metadata(self):
        """The metadata server's token for the default service account (Metadata-Flavor)."""
        if self.headers.get("Metadata-Flavor") != "Google":
            count("refused", "metadata_flavor")
            return self.reply(403, b"Missing Metadata-Flavor:Google header.", "text/plain")
        life = config().get("token_life", 3600)
        return self.reply(200, {"access_token": issue("metadata", "default", life), "expires_in": life, "token_type": "Bearer"})

    def do_GET(self):
        if self.path == "/_stats":
            with LOCK:
                return self.reply(200, STATS)
        if urllib.parse.urlsplit(self.path).path == "/computeMetadata/v1/instance/service-accounts/default/token":
            return self.metadata()
        return self.storage()

    do_HEAD = do_GET
    do_PUT = do_GET

    def do_POST(self):
        path = urllib.parse.urlsplit(self.path).path
        if path == "/token":
            return self.token()
        if path == "/v1/token":
            return self.sts()
        prefix = "/v1/projects/-/serviceAccounts/"
        if path.startswith(prefix) and ":" in path:
            email, method = path[len(prefix):].rsplit(":", 1)
            return self.iam(urllib.parse.unquote(email), method)
        return self.reply(404, {"error": "not found"})


ThreadingHTTPServer.daemon_threads = True
ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
