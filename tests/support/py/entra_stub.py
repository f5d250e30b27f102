"""A local stand-in for Entra ID's token endpoint (AZURE_AUTHORITY_HOST=https://127.0.0.1:PORT).

POST /TENANT/oauth2/v2.0/token with grant_type=client_credentials answers an access token for
Blob storage when the client proves itself with:
- client_secret: the configured secret of that client_id, or
- client_assertion (workload identity): a JWT whose aud, iss and sub match the client's
  configured federated credential and whose exp has not passed.
The access token is a JWT with what Azurite's `--oauth basic` checks (iss
https://sts.windows.net/TENANT/, aud https://storage.azure.com, nbf/iat/exp, oid, tid); it is
signed with a random HMAC key, which nothing checks (Azurite does not verify signatures, and
neither does Entra's real audience for that matter: that is the storage service's job).

Not checked here: the assertion's signature (Entra fetches the issuer's keys), certificates.

Usage: entra_stub.py PORT CERT KEY CONFIG_JSON   (HTTPS: azure_identity refuses http)
CONFIG_JSON, re-read per request:
  {"tenant": "TENANT", "oid": "OBJECT-ID", "token_life": 3600,
   "clients": {"CLIENT_ID": {"secret": "...",
                             "federated": {"iss": "...", "sub": "...", "aud": "api://AzureADTokenExchange"}}}}
GET /_stats answers {"issued": {"secret": n, "assertion": n}, "refused": n}.
"""

import base64
import hashlib
import hmac
import json
import secrets
import ssl
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT, CERT, KEY, CONFIG = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
SIGNING_KEY = secrets.token_bytes(32)
LOCK = threading.Lock()
STATS = {"issued": {}, "refused": 0}


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def jwt(claims):
    head = b64url(json.dumps({"typ": "JWT", "alg": "HS256"}).encode())
    body = b64url(json.dumps(claims).encode())
    sig = hmac.new(SIGNING_KEY, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64url(sig)}"


def assertion_ok(assertion, fed):
    try:
        claims = json.loads(b64url_decode(assertion.split(".")[1]))
    except Exception:
        return False
    aud = claims.get("aud")
    auds = aud if isinstance(aud, list) else [aud]
    return (
        fed is not None
        and fed.get("aud") in auds
        and claims.get("iss") == fed.get("iss")
        and claims.get("sub") == fed.get("sub")
        and claims.get("exp", 0) > time.time()
    )


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        sys.stderr.write("%s %s\n" % (time.strftime("%H:%M:%S"), fmt % args))

    def reply(self, status, obj):
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def refuse(self, code, text):
        with LOCK:
            STATS["refused"] += 1
        self.reply(400 if code != "invalid_client" else 401, {"error": code, "error_description": text, "error_codes": [700000]})

    def do_GET(self):
        if self.path == "/_stats":
            with LOCK:
                return self.reply(200, STATS)
        self.reply(404, {"error": "not_found"})

    def do_POST(self):
        with open(CONFIG) as f:
            cfg = json.load(f)
        path = urllib.parse.urlsplit(self.path).path
        if path != f"/{cfg['tenant']}/oauth2/v2.0/token":
            return self.refuse("invalid_tenant", f"AADSTS90002: Tenant not found ({path})")
        n = int(self.headers.get("Content-Length") or 0)
        form = dict(urllib.parse.parse_qsl(self.rfile.read(n).decode()))
        if form.get("grant_type") != "client_credentials":
            return self.refuse("unsupported_grant_type", "only client_credentials")
        if form.get("scope") != "https://storage.azure.com/.default":
            return self.refuse("invalid_scope", f"scope {form.get('scope')}")
        client = cfg.get("clients", {}).get(form.get("client_id", ""))
        if client is None:
            return self.refuse("unauthorized_client", "AADSTS700016: unknown application")
        if "client_secret" in form:
            if not client.get("secret") or not hmac.compare_digest(form["client_secret"], client["secret"]):
                return self.refuse("invalid_client", "AADSTS7000215: Invalid client secret provided.")
            how = "secret"
        elif form.get("client_assertion_type") == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer":
            if not assertion_ok(form.get("client_assertion", ""), client.get("federated")):
                return self.refuse("invalid_client", "AADSTS700213: No matching federated identity record found.")
            how = "assertion"
        else:
            return self.refuse("invalid_request", "no client credential")
        life = cfg.get("token_life", 3600)
        now = int(time.time())
        token = jwt({
            "aud": "https://storage.azure.com",
            "iss": f"https://sts.windows.net/{cfg['tenant']}/",
            "iat": now - 5, "nbf": now - 5, "exp": now + life,
            "oid": cfg.get("oid", "00000000-0000-0000-0000-000000000001"),
            "tid": cfg["tenant"], "appid": form["client_id"],
        })
        with LOCK:
            STATS["issued"][how] = STATS["issued"].get(how, 0) + 1
        self.reply(200, {"token_type": "Bearer", "expires_in": life, "ext_expires_in": life, "access_token": token})


ThreadingHTTPServer.daemon_threads = True
server = ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(CERT, KEY)
server.socket = context.wrap_socket(server.socket, server_side=True)
server.serve_forever()
