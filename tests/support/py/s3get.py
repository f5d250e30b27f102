"""Read one object with the credentials in the environment (as any AWS tool would) and print
it. Usage: s3get.py BUCKET KEY. The endpoint comes from AWS_ENDPOINT_URL_S3; with
AWS_PROFILE set (and no keys in the environment), the profile is used, e.g. its
credential_process."""
import sys

import boto3
import botocore.config

s3 = boto3.Session().client(
    "s3", config=botocore.config.Config(s3={"addressing_style": "path"})
)
body = s3.get_object(Bucket=sys.argv[1], Key=sys.argv[2])["Body"].read()
sys.stdout.write(body.decode())
