"""A logging, fault-injecting front for an S3 server (s3s-fs) in the end-to-end tests.

It forwards every request unchanged (the Host header included, so that the server checks the
signature the client made for the front's address) and logs one JSON line per request: the
method, the path, the query parameter names (and partNumber), the SigV4 credential scope (from
the Authorization header or a presigned URL's X-Amz-Credential, never a signature), whether the
URL was presigned, and the server's status. What the server does not log, and what it cannot do
(fail one request once, hold one, tamper a presigned URL), the front does.

    python3 s3_front.py PORT UPSTREAM_PORT LOG

Control (on the front's own port, path /__front/...):
    POST /__front/rule   {"method": "PUT", "query_has": "partNumber=2", "action": "fail"|"stall",
                          "status": 500, "times": 1}
    POST /__front/release                     ends every stall (answered 500)
    POST /__front/tamper {"on": true}         changes one digit of X-Amz-Signature in presigned
                                              GETs of nar/ keys before forwarding them
"""

import http.client
import http.server
import json
import sys
import threading
import urllib.parse

PORT, UPSTREAM, LOG = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
LOCK = threading.Lock()
RULES = []
TAMPER = {"on": False}
RELEASE = threading.Event()
HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade"}


def log(entry):
    with LOCK:
        with open(LOG, "a") as f:
            f.write(json.dumps(entry) + "\n")


def scope(headers, query):
    auth = headers.get("Authorization", "")
    if "Credential=" in auth:
        cred = auth.split("Credential=", 1)[1].split(",", 1)[0]
    else:
        cred = query.get("X-Amz-Credential", [""])[0]
    # KEYID/DATE/REGION/SERVICE/aws4_request: the key id and the date are not needed.
    parts = cred.split("/")
    return "/".join(parts[2:]) if len(parts) >= 5 else ""


class Front(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        chunks = []
        while n > 0:
            c = self.rfile.read(min(n, 1 << 20))
            if not c:
                break
            chunks.append(c)
            n -= len(c)
        return b"".join(chunks)

    def answer(self, status, text=b""):
        self.send_response(status)
        self.send_header("Content-Length", str(len(text)))
        self.end_headers()
        self.wfile.write(text)

    def control(self):
        data = json.loads(self.body() or b"{}")
        if self.path == "/__front/rule":
            data.setdefault("times", 1)
            with LOCK:
                RULES.append(data)
            RELEASE.clear()
        elif self.path == "/__front/release":
            RELEASE.set()
        elif self.path == "/__front/tamper":
            TAMPER["on"] = bool(data.get("on"))
        self.answer(200, b"ok")

    def handle_any(self):
        if self.path.startswith("/__front/"):
            return self.control()
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query, keep_blank_values=True)
        body = self.body()
        entry = {
            "method": self.command,
            "path": urllib.parse.unquote(url.path),
            "query": sorted(query.keys()),
            "part": query.get("partNumber", [None])[0],
            "scope": scope(self.headers, query),
            "presigned": "X-Amz-Signature" in query,
            "bytes": len(body),
        }
        rule = None
        with LOCK:
            for r in RULES:
                if r["times"] > 0 and r["method"] == self.command and r["query_has"] in url.query:
                    r["times"] -= 1
                    rule = r
                    break
        if rule is not None:
            if rule.get("action") == "stall":
                entry["front"] = "stalled"
                log(entry)
                RELEASE.wait(120)
            entry["front"] = "failed"
            entry["status"] = rule.get("status", 500)
            log(entry)
            msg = b"<Error><Code>InternalError</Code><Message>failed by the test front</Message></Error>"
            return self.answer(entry["status"], msg)
        target = self.path
        if TAMPER["on"] and entry["presigned"] and self.command == "GET" and "/nar/" in url.path:
            sig = query["X-Amz-Signature"][0]
            flipped = ("1" if sig[0] != "1" else "2") + sig[1:]
            target = target.replace("X-Amz-Signature=" + sig, "X-Amz-Signature=" + flipped)
            entry["tampered"] = True
        conn = http.client.HTTPConnection("127.0.0.1", UPSTREAM, timeout=120)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP}
        conn.request(self.command, target, body=body if body or self.command in ("PUT", "POST") else None, headers=headers)
        resp = conn.getresponse()
        entry["status"] = resp.status
        log(entry)
        self.send_response(resp.status)
        length = resp.getheader("Content-Length")
        for k, v in resp.getheaders():
            if k.lower() not in HOP:
                self.send_header(k, v)
        if length is None and self.command != "HEAD":
            data = resp.read()
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        else:
            self.end_headers()
            if self.command != "HEAD":
                while True:
                    c = resp.read(1 << 20)
                    if not c:
                        break
                    self.wfile.write(c)
        conn.close()

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = handle_any


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True


Server(("127.0.0.1", PORT), Front).serve_forever()
