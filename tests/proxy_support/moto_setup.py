"""Sets up moto for the proxy tests: an IAM user with an access key and a role, a bucket with a
few objects, then switches authentication on, proves it with a wrong secret, and prints the
user's keys and AssumeRole credentials as one JSON line on stdout.

usage: moto_setup.py ENDPOINT BUCKET
"""
import json
import sys
import urllib.request

import boto3
import botocore.exceptions
from botocore.config import Config

endpoint, bucket = sys.argv[1], sys.argv[2]
region = "us-east-1"
cfg = Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1})


def client(service, key="test", secret="test", token=None):
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name=region,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        aws_session_token=token,
        config=cfg,
    )


allow_all = json.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
)
iam = client("iam")
user_arn = iam.create_user(UserName="nix")["User"]["Arn"]
policy = iam.create_policy(PolicyName="all", PolicyDocument=allow_all)["Policy"]["Arn"]
iam.attach_user_policy(UserName="nix", PolicyArn=policy)
key = iam.create_access_key(UserName="nix")["AccessKey"]
trust = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": user_arn},
                "Action": "sts:AssumeRole",
            }
        ],
    }
)
role = iam.create_role(RoleName="cache", AssumeRolePolicyDocument=trust)["Role"]
iam.attach_role_policy(RoleName="cache", PolicyArn=policy)
client("s3").create_bucket(Bucket=bucket)

# Authentication on from here.
req = urllib.request.Request(
    endpoint + "/moto-api/reset-auth",
    data=b"0",
    headers={"Content-Type": "text/plain"},
    method="POST",
)
urllib.request.urlopen(req).read()

kid, ksecret = key["AccessKeyId"], key["SecretAccessKey"]
try:
    client("s3", kid, ksecret + "x").head_bucket(Bucket=bucket)
    sys.exit("moto accepted a wrong secret: authentication is not on")
except botocore.exceptions.ClientError as e:
    assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 403, e.response

s3 = client("s3", kid, ksecret)
s3.put_object(Bucket=bucket, Key="cache/nix-cache-info", Body=b"StoreDir: /nix/store\nWantMassQuery: 1\nPriority: 40\n")
s3.put_object(Bucket=bucket, Key="cache/abc.narinfo", Body=b"StorePath: /nix/store/abc-hello\n", ContentType="text/x-nix-narinfo")

sts = client("sts", kid, ksecret)
c = sts.assume_role(RoleArn=role["Arn"], RoleSessionName="proxy-test", DurationSeconds=3600)["Credentials"]
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
