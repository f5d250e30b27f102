"""Fixtures in a moto server (S3, STS, IAM) for the end-to-end proofs, one mode per bed.

Usage: moto.py MODE MOTO_URL [ARGS...]
  aws-bed              IAM user alice (keys), roles deploy/mid/gst anyone may assume, bucket
                       nix-cache with nix-cache-info; then switches authentication on and proves
                       it. Prints JSON: access_key_id, secret_access_key, roles, bucket, key, body.
  proxy-bed BUCKET     IAM user nix (keys), role cache it may assume, BUCKET with cache/nix-cache-info
                       and cache/abc.narinfo; authentication on (proven); prints JSON: user's keys and
                       an AssumeRole session of role cache.
  s3-bed BUCKET        IAM user nix (keys), role cache-reader it may assume, empty BUCKET.
                       Authentication stays off (the caller switches it on). Prints JSON: key_id,
                       secret, role_arn, user_arn.
  upload BUCKET DIR    proves that a wrong secret gets 403 first (unless E2E_AUTH=off), then
                       uploads DIR's files to BUCKET's root;
  list BUCKET          prints BUCKET's keys with their ETags, one per line, sorted;
  get BUCKET KEY       prints an object (exit 3 when missing);
  deny-put BUCKET ROLE adds an inline policy to ROLE that denies s3:PutObject on BUCKET.
  (upload, list, get, deny-put: the IAM user's keys in E2E_KEY_ID and E2E_SECRET, never argv.)
Setup requests run while moto's free-action allowance lasts (INITIAL_NO_AUTH_ACTION_COUNT).
"""
import json
import os
import pathlib
import sys
import urllib.request

import boto3
import botocore.exceptions
from botocore.config import Config

mode, url = sys.argv[1], sys.argv[2]
args = sys.argv[3:]
REGION = "us-east-1"
CFG = Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1})
ALLOW_ALL = json.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
)


def client(service, key="setup", secret="setup", token=None):
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


def iam_user(iam, name, managed_policy):
    arn = iam.create_user(UserName=name)["User"]["Arn"]
    if managed_policy:
        policy = iam.create_policy(PolicyName="all", PolicyDocument=ALLOW_ALL)["Policy"]["Arn"]
        iam.attach_user_policy(UserName=name, PolicyArn=policy)
    else:
        policy = None
        iam.put_user_policy(UserName=name, PolicyName="all", PolicyDocument=ALLOW_ALL)
    return arn, policy, iam.create_access_key(UserName=name)["AccessKey"]


if mode == "aws-bed":
    iam = client("iam")
    _, _, key = iam_user(iam, "alice", managed_policy=False)
    roles = {}
    for name in ("deploy", "mid", "gst"):
        r = iam.create_role(RoleName=name, AssumeRolePolicyDocument=trust("*"))["Role"]
        iam.put_role_policy(RoleName=name, PolicyName="all", PolicyDocument=ALLOW_ALL)
        roles[name] = r["Arn"]
    s3 = client("s3")
    s3.create_bucket(Bucket="nix-cache")
    s3.put_object(Bucket="nix-cache", Key="nix-cache-info", Body=b"StoreDir: /nix/store\n")
    auth_on()
    assert_wrong_secret_refused(key["AccessKeyId"], key["SecretAccessKey"], "nix-cache")
    json.dump(
        {
            "access_key_id": key["AccessKeyId"],
            "secret_access_key": key["SecretAccessKey"],
            "roles": roles,
            "bucket": "nix-cache",
            "key": "nix-cache-info",
            "body": "StoreDir: /nix/store\n",
        },
        sys.stdout,
    )
elif mode == "proxy-bed":
    bucket = args[0]
    iam = client("iam", "test", "test")
    user_arn, policy, key = iam_user(iam, "nix", managed_policy=True)
    role = iam.create_role(RoleName="cache", AssumeRolePolicyDocument=trust(user_arn))["Role"]
    iam.attach_role_policy(RoleName="cache", PolicyArn=policy)
    client("s3", "test", "test").create_bucket(Bucket=bucket)
    auth_on()
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
    bucket = args[0]
    iam = client("iam", "test", "test")
    user_arn, policy, key = iam_user(iam, "nix", managed_policy=True)
    role = iam.create_role(RoleName="cache-reader", AssumeRolePolicyDocument=trust(user_arn))[
        "Role"
    ]
    iam.attach_role_policy(RoleName="cache-reader", PolicyArn=policy)
    client("s3", "test", "test").create_bucket(Bucket=bucket)
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
    iam = client("iam", os.environ["E2E_KEY_ID"], os.environ["E2E_SECRET"])
    deny = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Deny", "Action": "s3:PutObject", "Resource": f"arn:aws:s3:::{bucket}/*"}
        ],
    }
    iam.put_role_policy(RoleName=role, PolicyName="deny-put", PolicyDocument=json.dumps(deny))
elif mode in ("upload", "list", "get"):
    bucket = args[0]
    kid, secret = os.environ["E2E_KEY_ID"], os.environ["E2E_SECRET"]
    s3 = client("s3", kid, secret)
    if mode == "upload":
        if os.environ.get("E2E_AUTH") != "off":
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
        sys.stdout.buffer.write(body)
else:
    sys.exit("unknown mode " + mode)
