"""A small STS front for the tests, on 127.0.0.1, in front of moto.

moto accepts any MFA code, never expires a session, and hands out GetSessionToken keys it
then refuses itself. This front adds what the tests must see:
- MFA codes: 6 digits; a code starting with 9 is wrong; a code already seen is refused
  (AWS refuses a reused code); AssumeRole/GetSessionToken without a code are refused.
- call counting: GET /_calls -> {"AssumeRole": n, ...} (refused calls count too).
- short sessions: POST /_config {"expiry": SECONDS} rewrites the Expiration it returns.
- GetSessionToken: checks the caller signed with the user's key id, then returns working keys
  (a moto AssumeRole of the `gst` role made with the user's keys).
- per-action expiry: POST /_config {"expiry_by_action": {"AssumeRole": 60, ...}} (wins over
  "expiry" for that action; GetSessionToken otherwise keeps its DurationSeconds).
- MFA context: keys minted by GetSessionToken carry it. An AssumeRole signed with such a key
  is served here (moto refuses AssumeRole signed with session keys): it needs no code. Roles in
  "mfa_roles" refuse an AssumeRole that has neither a code nor a key with MFA context.
- AssumeRoleWithWebIdentity: the WebIdentityToken must be one of "web_tokens"; the session is
  minted from moto (an AssumeRole of the requested role with the user's keys).
- an SSO portal stand-in: GET /federation/credentials (GetRoleCredentials) with the header
  x-amz-sso_bearer_token in "sso_tokens".
- POST /_mint {"expiry": SECONDS}: a working session as JSON (for environment credentials).
- GET /_log: every call as {"action", "key", "code", "token", "role"} in order, with
  "expires" (Unix seconds) added to a call that issued a session whose end the front set.
AssumeRole and GetCallerIdentity are otherwise forwarded to moto byte for byte (moto checks
SigV4).

Usage: FRONT_USER_SECRET=... sts_front.py PORT MOTO_URL USER_KEY_ID GST_ROLE_ARN
(the secret in the environment, not argv)
"""
import datetime
import json
import re
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import os

# boto3 takes about a second to import: the front listens at once and imports it meanwhile
# (only minting needs it).
boto3_loaded = threading.Event()
boto3 = None


def load_boto3():
    global boto3
    import boto3 as b

    boto3 = b
    boto3_loaded.set()


threading.Thread(target=load_boto3, daemon=True).start()

PORT, MOTO, USER_KEY, GST_ROLE = sys.argv[1:5]
USER_SECRET = os.environ["FRONT_USER_SECRET"]
lock = threading.Lock()
calls = {}
used_codes = set()
config = {"expiry": 0, "expiry_by_action": {}, "mfa_roles": [], "web_tokens": [], "sso_tokens": []}
events = []
mfa_keys = set()
NS = "https://sts.amazonaws.com/doc/2011-06-15/"


def error(code, message, status=403):
    body = (
        f'<ErrorResponse xmlns="{NS}"><Error><Type>Sender</Type><Code>{code}</Code>'
        f"<Message>{message}</Message></Error><RequestId>front</RequestId></ErrorResponse>"
    )
    return status, body.encode()


def expiration(default_seconds, action=None):
    secs = config["expiry_by_action"].get(action) or config["expiry"] or default_seconds
    t = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=secs)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def check_mfa(form):
    code = form.get("TokenCode")
    if not form.get("SerialNumber") or not code:
        return error("AccessDenied", "MultiFactorAuthentication failed: no MFA code was sent.")
    with lock:
        if code in used_codes:
            return error(
                "AccessDenied",
                "MultiFactorAuthentication failed with invalid MFA one time pass code.",
            )
        used_codes.add(code)
    if not re.fullmatch(r"[0-8][0-9]{5}", code):
        return error(
            "AccessDenied",
            "MultiFactorAuthentication failed with invalid MFA one time pass code.",
        )
    return None


def record(action, **fields):
    """Logs a call; returns its entry (see `issued`)."""
    event = {"action": action, **fields}
    with lock:
        events.append(event)
    return event


def issued(event, exp):
    """Notes on a call's log entry when the session it issued ends (Expiration text)."""
    with lock:
        event["expires"] = int(parse_time(exp))
    return exp


def signing_key(auth):
    m = re.search(r"Credential=([^/]+)/", auth)
    return m.group(1) if m else None


def parse_time(text):
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(
        tzinfo=datetime.timezone.utc
    ).timestamp()


def mint(role, name):
    """Working keys for `role` from moto, with the IAM user's long-term key."""
    boto3_loaded.wait()
    sts = boto3.client(
        "sts",
        endpoint_url=MOTO,
        region_name="us-east-1",
        aws_access_key_id=USER_KEY,
        aws_secret_access_key=USER_SECRET,
    )
    return sts.assume_role(RoleArn=role, RoleSessionName=name)["Credentials"]


def credentials_xml(action, c, exp):
    return (
        f'<{action}Response xmlns="{NS}"><{action}Result><Credentials>'
        f"<AccessKeyId>{c['AccessKeyId']}</AccessKeyId>"
        f"<SecretAccessKey>{c['SecretAccessKey']}</SecretAccessKey>"
        f"<SessionToken>{c['SessionToken']}</SessionToken>"
        f"<Expiration>{exp}</Expiration></Credentials></{action}Result>"
        f"<ResponseMetadata><RequestId>front</RequestId></ResponseMetadata>"
        f"</{action}Response>"
    ).encode()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status, body, ctype="text/xml"):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/_calls":
            with lock:
                body = json.dumps(calls).encode()
            return self.reply(200, body, "application/json")
        if self.path == "/_log":
            with lock:
                body = json.dumps(events).encode()
            return self.reply(200, body, "application/json")
        url = urllib.parse.urlparse(self.path)
        if url.path == "/federation/credentials":
            token = self.headers.get("x-amz-sso_bearer_token", "")
            q = {k: v[0] for k, v in urllib.parse.parse_qs(url.query).items()}
            event = record("GetRoleCredentials", token=token, role=q.get("role_name"))
            if token not in config["sso_tokens"]:
                body = json.dumps({"message": "Session token not found or invalid"}).encode()
                return self.reply(401, body, "application/json")
            c = mint(GST_ROLE, "sso")
            exp = issued(event, expiration(3600, "GetRoleCredentials"))
            exp_ms = int(parse_time(exp) * 1000)
            body = json.dumps(
                {
                    "roleCredentials": {
                        "accessKeyId": c["AccessKeyId"],
                        "secretAccessKey": c["SecretAccessKey"],
                        "sessionToken": c["SessionToken"],
                        "expiration": exp_ms,
                    }
                }
            ).encode()
            return self.reply(200, body, "application/json")
        self.reply(404, b"")

    def forward(self, raw):
        headers = {k: v for k, v in self.headers.items()}
        req = urllib.request.Request(MOTO + self.path, data=raw, method="POST", headers=headers)
        try:
            with urllib.request.urlopen(req) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def do_POST(self):
        raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.path == "/_config":
            config.update(json.loads(raw))
            return self.reply(200, b"{}", "application/json")
        if self.path == "/_mint":
            secs = json.loads(raw or b"{}").get("expiry", 3600)
            c = mint(GST_ROLE, "minted")
            body = json.dumps(
                {
                    "AccessKeyId": c["AccessKeyId"],
                    "SecretAccessKey": c["SecretAccessKey"],
                    "SessionToken": c["SessionToken"],
                    "Expiration": expiration(secs, "_mint"),
                }
            ).encode()
            return self.reply(200, body, "application/json")
        form = {k: v[0] for k, v in urllib.parse.parse_qs(raw.decode()).items()}
        action = form.get("Action", "?")
        with lock:
            calls[action] = calls.get(action, 0) + 1
        key = signing_key(self.headers.get("Authorization", ""))
        event = record(
            action,
            key=key,
            code=form.get("TokenCode"),
            token=form.get("WebIdentityToken"),
            role=form.get("RoleArn"),
        )
        if action == "AssumeRole":
            role = form.get("RoleArn", "")
            refused = check_mfa(form) if form.get("SerialNumber") else None
            if refused:
                return self.reply(*refused)
            with lock:
                has_mfa = key in mfa_keys
            if role in config["mfa_roles"] and not form.get("SerialNumber") and not has_mfa:
                return self.reply(
                    *error("AccessDenied", "MultiFactorAuthentication required by the role.")
                )
            if has_mfa:
                # moto refuses AssumeRole signed with session keys: mint it from the user's.
                c = mint(role, form.get("RoleSessionName", "front"))
                exp = issued(event, expiration(3600, action))
                return self.reply(200, credentials_xml("AssumeRole", c, exp))
            status, body = self.forward(raw)
            if status == 200 and (config["expiry"] or action in config["expiry_by_action"]):
                exp = issued(event, expiration(0, action))
                body = re.sub(
                    rb"<Expiration>[^<]*</Expiration>",
                    f"<Expiration>{exp}</Expiration>".encode(),
                    body,
                )
            return self.reply(status, body)
        if action == "AssumeRoleWithWebIdentity":
            if form.get("WebIdentityToken") not in config["web_tokens"]:
                return self.reply(
                    *error("InvalidIdentityToken", "The web identity token is not valid.", 400)
                )
            c = mint(form.get("RoleArn", GST_ROLE), form.get("RoleSessionName", "wi"))
            exp = issued(event, expiration(3600, action))
            return self.reply(200, credentials_xml(action, c, exp))
        if action == "GetSessionToken":
            auth = self.headers.get("Authorization", "")
            if f"Credential={USER_KEY}/" not in auth:
                return self.reply(*error("InvalidClientTokenId", "unknown key"))
            refused = check_mfa(form)
            if refused:
                return self.reply(*refused)
            c = mint(GST_ROLE, "gst")
            with lock:
                mfa_keys.add(c["AccessKeyId"])
            exp = issued(event, expiration(int(form.get("DurationSeconds", "43200")), action))
            body = (
                f'<GetSessionTokenResponse xmlns="{NS}"><GetSessionTokenResult><Credentials>'
                f"<AccessKeyId>{c['AccessKeyId']}</AccessKeyId>"
                f"<SecretAccessKey>{c['SecretAccessKey']}</SecretAccessKey>"
                f"<SessionToken>{c['SessionToken']}</SessionToken>"
                f"<Expiration>{exp}</Expiration></Credentials></GetSessionTokenResult>"
                f"<ResponseMetadata><RequestId>front</RequestId></ResponseMetadata>"
                f"</GetSessionTokenResponse>"
            )
            return self.reply(200, body.encode())
        status, body = self.forward(raw)
        self.reply(status, body)


ThreadingHTTPServer(("127.0.0.1", int(PORT)), Handler).serve_forever()
