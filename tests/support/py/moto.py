"""Fixtures in a moto server (S3, STS, IAM) for the end-to-end proofs, one mode per bed.

One moto serves every proof of a test run (one with authentication on, one with it off):
each proof's users, roles, policies and buckets carry the proof's TAG, so that proofs never
share them.

Usage: moto.py MODE MOTO_URL [ARGS...]
  admin                (once per moto, while requests are free) IAM user admin allowed
                       everything, with keys; then switches authentication on for good and
                       proves it. Prints JSON: access_key_id, secret_access_key.
  aws-bed TAG          IAM user alice-TAG (keys), roles deploy-TAG/mid-TAG/gst-TAG anyone may
                       assume, bucket nix-cache-TAG with nix-cache-info; proves that
                       authentication is on. Prints JSON: access_key_id, secret_access_key,
                       roles, bucket, key, body.
  proxy-bed BUCKET TAG IAM user nix-TAG (keys), role cache-TAG it may assume, BUCKET with
                       cache/nix-cache-info and cache/abc.narinfo; authentication on (proven);
                       prints JSON: user's keys, role_arn and an AssumeRole session of the role.
  s3-bed BUCKET TAG    IAM user nix-TAG (keys), role cache-reader-TAG it may assume, empty
                       BUCKET. Prints JSON: key_id, secret, role_arn, user_arn.
  upload BUCKET DIR    proves that a wrong secret gets 403 first (unless E2E_AUTH=off), then
                       uploads DIR's files to BUCKET's root;
  list BUCKET          prints BUCKET's keys with their ETags, one per line, sorted;
  get BUCKET KEY       prints an object (exit 3 when missing);
  deny-put BUCKET ROLE adds an inline policy to ROLE that denies s3:PutObject on BUCKET.
  (upload, list, get, deny-put: the IAM user's keys in E2E_KEY_ID and E2E_SECRET, never argv.)
Set-up requests are signed with the admin user's keys (E2E_ADMIN_KEY, E2E_ADMIN_SECRET) when
given, else with dummy keys (a moto without authentication).

  serve PORT           keeps boto3 loaded and runs the modes above for the tests, one at a time:
                       POST / {"argv": [MODE, MOTO_URL, ARGS...], "env": {...}} on 127.0.0.1:PORT
                       answers {"rc", "stdout", "stderr"} (a new Python with boto3 takes about a
                       second to start, the run asks for a few hundred of these).
"""
import contextlib
import http.server
import io
import json
import os
import pathlib
import sys
import traceback
import urllib.request

import boto3
import botocore.exceptions
from botocore.config import Config

REGION = "us-east-1"
CFG = Config(
    s3={"addressing_style": "path"},
    retries={"max_attempts": 1},
    connect_timeout=10,
    read_timeout=60,
)
ALLOW_ALL = json.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
)


# The call being run (a mode's URL and environment): set by `run`.
url = None
env = {}


def client(service, key=None, secret=None, token=None):
    if key is None:
        key, secret = env.get("E2E_ADMIN_KEY", "setup"), env.get("E2E_ADMIN_SECRET", "setup")
    return boto3.client(
        service,
        endpoint_url=url,
        region_name=REGION,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        aws_session_token=token,
        config=CFG,
    )


def trust(principal):
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Principal": {"AWS": principal}, "Action": "sts:AssumeRole"}
            ],
        }
    )


def auth_on():
    req = urllib.request.Request(
        url + "/moto-api/reset-auth",
        data=b"0",
        method="POST",
        headers={"Content-Type": "text/plain"},
    )
    urllib.request.urlopen(req).read()


def assert_wrong_secret_refused(kid, secret, bucket):
    """A request signed with a wrong secret must get 403: authentication is on."""
    try:
        client("s3", kid, secret + "x").head_bucket(Bucket=bucket)
    except botocore.exceptions.ClientError as e:
        status = e.response["ResponseMetadata"]["HTTPStatusCode"]
        if status != 403:
            sys.exit(f"a wrong secret gave HTTP {status}, expected 403")
        return
    sys.exit("moto accepted a wrong secret: authentication is not on")


def iam_user(iam, name, managed_policy, tag=""):
    arn = iam.create_user(UserName=name)["User"]["Arn"]
    if managed_policy:
        policy = iam.create_policy(PolicyName="all" + tag, PolicyDocument=ALLOW_ALL)["Policy"]["Arn"]
        iam.attach_user_policy(UserName=name, PolicyArn=policy)
    else:
        policy = None
        iam.put_user_policy(UserName=name, PolicyName="all", PolicyDocument=ALLOW_ALL)
    return arn, policy, iam.create_access_key(UserName=name)["AccessKey"]


def main(mode, args):
    if mode == "admin":
        iam = client("iam")
        _, _, key = iam_user(iam, "admin", managed_policy=False)
        client("s3").create_bucket(Bucket="e2e-admin")
        auth_on()
        assert_wrong_secret_refused(key["AccessKeyId"], key["SecretAccessKey"], "e2e-admin")
        json.dump(
            {"access_key_id": key["AccessKeyId"], "secret_access_key": key["SecretAccessKey"]},
            sys.stdout,
        )
    elif mode == "aws-bed":
        tag = "-" + args[0]
        bucket = "nix-cache" + tag
        iam = client("iam")
        _, _, key = iam_user(iam, "alice" + tag, managed_policy=False)
        roles = {}
        for name in ("deploy", "mid", "gst"):
            r = iam.create_role(RoleName=name + tag, AssumeRolePolicyDocument=trust("*"))["Role"]
            iam.put_role_policy(RoleName=name + tag, PolicyName="all", PolicyDocument=ALLOW_ALL)
            roles[name] = r["Arn"]
        s3 = client("s3")
        s3.create_bucket(Bucket=bucket)
        s3.put_object(Bucket=bucket, Key="nix-cache-info", Body=b"StoreDir: /nix/store\n")
        assert_wrong_secret_refused(key["AccessKeyId"], key["SecretAccessKey"], bucket)
        json.dump(
            {
                "access_key_id": key["AccessKeyId"],
                "secret_access_key": key["SecretAccessKey"],
                "roles": roles,
                "bucket": bucket,
                "key": "nix-cache-info",
                "body": "StoreDir: /nix/store\n",
            },
            sys.stdout,
        )
    elif mode == "proxy-bed":
        bucket, tag = args[0], "-" + args[1]
        iam = client("iam")
        user_arn, policy, key = iam_user(iam, "nix" + tag, managed_policy=True, tag=tag)
        role = iam.create_role(RoleName="cache" + tag, AssumeRolePolicyDocument=trust(user_arn))[
            "Role"
        ]
        iam.attach_role_policy(RoleName="cache" + tag, PolicyArn=policy)
        client("s3").create_bucket(Bucket=bucket)
        kid, ksecret = key["AccessKeyId"], key["SecretAccessKey"]
        assert_wrong_secret_refused(kid, ksecret, bucket)
        s3 = client("s3", kid, ksecret)
        s3.put_object(
            Bucket=bucket,
            Key="cache/nix-cache-info",
            Body=b"StoreDir: /nix/store\nWantMassQuery: 1\nPriority: 40\n",
        )
        s3.put_object(
            Bucket=bucket,
            Key="cache/abc.narinfo",
            Body=b"StorePath: /nix/store/abc-hello\n",
            ContentType="text/x-nix-narinfo",
        )
        c = client("sts", kid, ksecret).assume_role(
            RoleArn=role["Arn"], RoleSessionName="proxy-test", DurationSeconds=3600
        )["Credentials"]
        print(
            json.dumps(
                {
                    "user": {"access_key_id": kid, "secret_access_key": ksecret},
                    "role_arn": role["Arn"],
                    "session": {
                        "access_key_id": c["AccessKeyId"],
                        "secret_access_key": c["SecretAccessKey"],
                        "session_token": c["SessionToken"],
                        "expiration": int(c["Expiration"].timestamp()),
                    },
                }
            )
        )
    elif mode == "s3-bed":
        bucket, tag = args[0], "-" + args[1]
        iam = client("iam")
        user_arn, policy, key = iam_user(iam, "nix" + tag, managed_policy=True, tag=tag)
        role = iam.create_role(
            RoleName="cache-reader" + tag, AssumeRolePolicyDocument=trust(user_arn)
        )["Role"]
        iam.attach_role_policy(RoleName="cache-reader" + tag, PolicyArn=policy)
        client("s3").create_bucket(Bucket=bucket)
        print(
            json.dumps(
                {
                    "key_id": key["AccessKeyId"],
                    "secret": key["SecretAccessKey"],
                    "role_arn": role["Arn"],
                    "user_arn": user_arn,
                }
            )
        )
    elif mode == "deny-put":
        bucket, role = args[0], args[1]
        iam = client("iam", env["E2E_KEY_ID"], env["E2E_SECRET"])
        deny = {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Deny", "Action": "s3:PutObject", "Resource": f"arn:aws:s3:::{bucket}/*"}
            ],
        }
        iam.put_role_policy(RoleName=role, PolicyName="deny-put", PolicyDocument=json.dumps(deny))
    elif mode in ("upload", "list", "get"):
        bucket = args[0]
        kid, secret = env["E2E_KEY_ID"], env["E2E_SECRET"]
        s3 = client("s3", kid, secret)
        if mode == "upload":
            if env.get("E2E_AUTH") != "off":
                assert_wrong_secret_refused(kid, secret, bucket)
            root = pathlib.Path(args[1])
            for f in sorted(root.rglob("*")):
                if f.is_file():
                    s3.put_object(Bucket=bucket, Key=str(f.relative_to(root)), Body=f.read_bytes())
        elif mode == "list":
            keys = []
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
                keys += [o["Key"] + " " + o["ETag"] for o in page.get("Contents", [])]
            print("\n".join(sorted(keys)))
        else:
            try:
                body = s3.get_object(Bucket=bucket, Key=args[1])["Body"].read()
            except botocore.exceptions.ClientError as e:
                print(e, file=sys.stderr)
                sys.exit(3)
            sys.stdout.buffer.write(body) if hasattr(sys.stdout, "buffer") else sys.stdout.write(
                body.decode("utf-8", "replace")
            )
    else:
        sys.exit("unknown mode " + mode)


def run(argv, environ):
    """Runs one mode: (exit code, stdout, stderr)."""
    global url, env
    url, env = argv[1], environ
    out, err = io.StringIO(), io.StringIO()
    rc = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(argv[0], argv[2:])
        except SystemExit as e:
            if isinstance(e.code, int):
                rc = e.code
            elif e.code is not None:
                print(e.code, file=sys.stderr)
                rc = 1
        except Exception:
            traceback.print_exc()
            rc = 1
    return rc, out.getvalue(), err.getvalue()


def serve(port):
    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_POST(self):
            req = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            rc, out, err = run(req["argv"], req.get("env", {}))
            body = json.dumps({"rc": rc, "stdout": out, "stderr": err}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    # One call at a time: `run` sets the module's url and env.
    http.server.HTTPServer(("127.0.0.1", port), Handler).serve_forever()


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(int(sys.argv[2]))
    else:
        url, env = sys.argv[2], dict(os.environ)
        main(sys.argv[1], sys.argv[3:])
