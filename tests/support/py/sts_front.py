"""A small STS front for the tests, on 127.0.0.1, in front of moto.

moto accepts any MFA code, never expires a session, and hands out GetSessionToken keys it
then refuses itself. This front adds what the tests must see:
- MFA codes: 6 digits; a code starting with 9 is wrong; a code already seen is refused
  (AWS refuses a reused code); AssumeRole/GetSessionToken without a code are refused.
- call counting: GET /_calls -> {"AssumeRole": n, ...} (refused calls count too).
- short sessions: POST /_config {"expiry": SECONDS} rewrites the Expiration it returns.
- GetSessionToken: checks the caller signed with the user's key id, then returns working keys
  (a moto AssumeRole of the `gst` role made with the user's keys).
AssumeRole and GetCallerIdentity are forwarded to moto byte for byte (moto checks SigV4).

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

import boto3

import os

PORT, MOTO, USER_KEY, GST_ROLE = sys.argv[1:5]
USER_SECRET = os.environ["FRONT_USER_SECRET"]
lock = threading.Lock()
calls = {}
used_codes = set()
config = {"expiry": 0}
NS = "https://sts.amazonaws.com/doc/2011-06-15/"


def error(code, message, status=403):
    body = (
        f'<ErrorResponse xmlns="{NS}"><Error><Type>Sender</Type><Code>{code}</Code>'
        f"<Message>{message}</Message></Error><RequestId>front</RequestId></ErrorResponse>"
    )
    return status, body.encode()


def expiration(default_seconds):
    secs = config["expiry"] or default_seconds
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
        form = {k: v[0] for k, v in urllib.parse.parse_qs(raw.decode()).items()}
        action = form.get("Action", "?")
        with lock:
            calls[action] = calls.get(action, 0) + 1
        if action == "AssumeRole":
            refused = check_mfa(form) if form.get("SerialNumber") else None
            if refused:
                return self.reply(*refused)
            status, body = self.forward(raw)
            if status == 200 and config["expiry"]:
                body = re.sub(
                    rb"<Expiration>[^<]*</Expiration>",
                    f"<Expiration>{expiration(0)}</Expiration>".encode(),
                    body,
                )
            return self.reply(status, body)
        if action == "GetSessionToken":
            auth = self.headers.get("Authorization", "")
            if f"Credential={USER_KEY}/" not in auth:
                return self.reply(*error("InvalidClientTokenId", "unknown key"))
            refused = check_mfa(form)
            if refused:
                return self.reply(*refused)
            sts = boto3.client(
                "sts",
                endpoint_url=MOTO,
                region_name="us-east-1",
                aws_access_key_id=USER_KEY,
                aws_secret_access_key=USER_SECRET,
            )
            c = sts.assume_role(RoleArn=GST_ROLE, RoleSessionName="gst")["Credentials"]
            exp = expiration(int(form.get("DurationSeconds", "43200")))
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
