"""Prepare a moto server for the AWS end-to-end tests, then switch its authentication on.

Usage: setup_moto.py MOTO_URL  -> prints JSON with the user's keys, roles, bucket and object.
Runs while moto's free-action allowance lasts (INITIAL_NO_AUTH_ACTION_COUNT), then turns
auth on and proves it: a request signed with a wrong secret must be refused.
"""
import json
import sys
import urllib.request

import boto3
import botocore.config
import botocore.exceptions

url = sys.argv[1]
region = "us-east-1"
anon = dict(
    endpoint_url=url,
    region_name=region,
    aws_access_key_id="setup",
    aws_secret_access_key="setup",
)
iam = boto3.client("iam", **anon)
admin = json.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
)
trust = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}
        ],
    }
)
iam.create_user(UserName="alice")
iam.put_user_policy(UserName="alice", PolicyName="all", PolicyDocument=admin)
key = iam.create_access_key(UserName="alice")["AccessKey"]
roles = {}
for name in ("deploy", "mid", "gst"):
    r = iam.create_role(RoleName=name, AssumeRolePolicyDocument=trust)["Role"]
    iam.put_role_policy(RoleName=name, PolicyName="all", PolicyDocument=admin)
    roles[name] = r["Arn"]
s3 = boto3.client(
    "s3", config=botocore.config.Config(s3={"addressing_style": "path"}), **anon
)
s3.create_bucket(Bucket="nix-cache")
s3.put_object(Bucket="nix-cache", Key="nix-cache-info", Body=b"StoreDir: /nix/store\n")

req = urllib.request.Request(
    url + "/moto-api/reset-auth",
    data=b"0",
    method="POST",
    headers={"Content-Type": "text/plain"},
)
urllib.request.urlopen(req).read()

wrong = boto3.client(
    "s3",
    endpoint_url=url,
    region_name=region,
    aws_access_key_id=key["AccessKeyId"],
    aws_secret_access_key="wrong-secret",
    config=botocore.config.Config(s3={"addressing_style": "path"}),
)
try:
    wrong.get_object(Bucket="nix-cache", Key="nix-cache-info")
    sys.exit("moto accepted a wrong secret: authentication is not on")
except botocore.exceptions.ClientError as e:
    status = e.response["ResponseMetadata"]["HTTPStatusCode"]
    if status != 403:
        sys.exit(f"wrong secret gave HTTP {status}, expected 403")

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
