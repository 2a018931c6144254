"""Keys made with `mkv key`, their grants on buckets (`mkv bucket`), admin
keys (--s3-key) and anonymous requests, on the session cluster while its
server runs: every rule as boto3 sees it."""

import json
import os
import pathlib
import subprocess
import sys
import uuid

import boto3
import pytest
import urllib3
from botocore.config import Config
from botocore.exceptions import ClientError

from conftest import REGION, ROOT, code

BIN = os.environ.get("MKV_BIN")


def mkv(cluster, *args):
    """Run an admin command on the cluster's --db beside the running server."""
    binary = BIN or str(ROOT / "target" / "debug" / "mkv")
    r = subprocess.run([binary, "--db", str(cluster.db), "--db-map-gib", "4", *args], capture_output=True, text=True, timeout=60)
    return r


def new_key(cluster, name):
    r = mkv(cluster, "key", "create", name, "--json")
    assert r.returncode == 0, r.stderr
    k = json.loads(r.stdout)
    assert k["name"] == name and len(k["access_key_id"]) == 20 and len(k["secret_access_key"]) == 40
    return k


def as_key(cluster, k):
    return boto3.client("s3", endpoint_url=cluster.endpoint, aws_access_key_id=k["access_key_id"],
                        aws_secret_access_key=k["secret_access_key"], region_name=REGION,
                        config=Config(retries={"max_attempts": 1}))


def denied(fn, **kw):
    with pytest.raises(ClientError) as e:
        fn(**kw)
    return code(e)


@pytest.fixture(scope="module")
def two_keys(cluster):
    a, b = new_key(cluster, "alice"), new_key(cluster, "bob")
    yield a, b
    for k in (a, b):
        mkv(cluster, "key", "delete", k["access_key_id"])


def test_keys_own_what_they_create_and_grants_open_the_rest(cluster, two_keys, s3):
    a, b = two_keys
    alice, bob = as_key(cluster, a), as_key(cluster, b)
    name = f"perm-{uuid.uuid4().hex[:8]}"
    alice.create_bucket(Bucket=name)
    alice.put_object(Bucket=name, Key="doc", Body=b"alice's")
    # Another key: the name is taken, nothing inside is visible.
    assert denied(bob.create_bucket, Bucket=name) == "BucketAlreadyExists"
    assert name not in [x["Name"] for x in bob.list_buckets()["Buckets"]]
    assert name in [x["Name"] for x in alice.list_buckets()["Buckets"]]
    assert denied(bob.get_object, Bucket=name, Key="doc") == "AccessDenied"
    assert denied(bob.head_bucket, Bucket=name) in ("403", "AccessDenied")
    assert denied(bob.list_objects_v2, Bucket=name) == "AccessDenied"
    assert denied(bob.put_object, Bucket=name, Key="x", Body=b"x") == "AccessDenied"
    assert denied(bob.delete_object, Bucket=name, Key="doc") == "AccessDenied"
    # Copying out needs read on the source.
    mine = f"bob-{uuid.uuid4().hex[:8]}"
    bob.create_bucket(Bucket=mine)
    assert denied(bob.copy_object, Bucket=mine, Key="c", CopySource={"Bucket": name, "Key": "doc"}) == "AccessDenied"

    # Read granted while the server runs: the next request sees it.
    r = mkv(cluster, "bucket", "allow", name, "--key", b["access_key_id"], "--read")
    assert r.returncode == 0, r.stderr
    assert bob.get_object(Bucket=name, Key="doc")["Body"].read() == b"alice's"
    assert [o["Key"] for o in bob.list_objects_v2(Bucket=name)["Contents"]] == ["doc"]
    bob.copy_object(Bucket=mine, Key="c", CopySource={"Bucket": name, "Key": "doc"})
    assert name in [x["Name"] for x in bob.list_buckets()["Buckets"]]
    assert denied(bob.put_object, Bucket=name, Key="x", Body=b"x") == "AccessDenied"
    assert mkv(cluster, "bucket", "allow", name, "--key", b["access_key_id"], "--write").returncode == 0
    bob.put_object(Bucket=name, Key="x", Body=b"x")
    bob.delete_object(Bucket=name, Key="x")
    # Owner operations stay the owner's.
    assert denied(bob.delete_bucket, Bucket=name) == "AccessDenied"
    assert mkv(cluster, "bucket", "deny", name, "--key", b["access_key_id"], "--read", "--write").returncode == 0
    assert denied(bob.get_object, Bucket=name, Key="doc") == "AccessDenied"

    info = json.loads(mkv(cluster, "bucket", "info", name, "--json").stdout)
    assert info["owner"] == a["access_key_id"] and info["objects"] == 1 and info["bytes"] == len(b"alice's")
    assert info["grants"] == {a["access_key_id"]: {"read": True, "write": True, "owner": True}}
    # The admin key sees and may do everything.
    assert name in [x["Name"] for x in s3.list_buckets()["Buckets"]]
    assert s3.get_object(Bucket=name, Key="doc")["Body"].read() == b"alice's"
    for bucket, who in ((name, alice), (mine, bob)):
        for o in who.list_objects_v2(Bucket=bucket).get("Contents", []):
            who.delete_object(Bucket=bucket, Key=o["Key"])
        who.delete_bucket(Bucket=bucket)


def test_admin_commands_refuse_what_makes_no_sense(cluster, two_keys):
    a, _ = two_keys
    assert mkv(cluster, "bucket", "allow", "no-such-bucket-x", "--key", a["access_key_id"], "--read").returncode != 0
    assert mkv(cluster, "bucket", "allow", "any", "--key", "MKNOSUCHKEY000000000", "--read").returncode != 0
    listed = json.loads(mkv(cluster, "key", "list", "--json").stdout)
    assert {"alice", "bob"} <= {k["name"] for k in listed}
    assert all("secret" not in json.dumps(k) for k in listed)
    assert mkv(cluster, "key", "import", a["access_key_id"], "x", "--name", "dup").returncode != 0


def test_deleted_key_is_refused(cluster):
    k = new_key(cluster, "short-lived")
    c = as_key(cluster, k)
    c.list_buckets()
    assert mkv(cluster, "key", "delete", k["access_key_id"]).returncode == 0
    assert denied(c.list_buckets) == "InvalidAccessKeyId"


def test_anonymous_errors_in_aws_order(cluster, s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"v")
    http = urllib3.PoolManager(retries=False)

    def get(path):
        r = http.request("GET", f"http://127.0.0.1:{cluster.s3_port}{path}")
        return r.status, r.data.decode()

    status, body = get(f"/{bucket}/k")
    assert status == 403 and "<Code>AccessDenied</Code>" in body
    status, body = get(f"/no-such-bucket-{uuid.uuid4().hex[:6]}/k")
    assert status == 404 and "<Code>NoSuchBucket</Code>" in body
    status, body = get("/")
    assert status == 403 and "<Code>AccessDenied</Code>" in body


def anonymous(cluster, method, path, body=None):
    """An unsigned request on the S3-only port: (status, body text)."""
    r = urllib3.PoolManager(retries=False).request(method, f"http://127.0.0.1:{cluster.s3_port}{path}", body=body)
    return r.status, r.data.decode(errors="replace")


def policy(*statements):
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def test_bucket_policy_makes_objects_public(cluster, s3, bucket, two_keys):
    s3.put_object(Bucket=bucket, Key="pub/photo.jpg", Body=b"jpeg bytes")
    assert anonymous(cluster, "GET", f"/{bucket}/pub/photo.jpg")[0] == 403
    with pytest.raises(ClientError) as e:
        s3.get_bucket_policy(Bucket=bucket)
    assert code(e) == "NoSuchBucketPolicy"
    public_read = policy({"Sid": "PublicRead", "Effect": "Allow", "Principal": "*", "Action": ["s3:GetObject"],
                                  "Resource": [f"arn:aws:s3:::{bucket}/*"]})
    s3.put_bucket_policy(Bucket=bucket, Policy=public_read)
    assert json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"]) == json.loads(public_read)
    # Anonymous reads work (curl, aws --no-sign-request); listing and writing do not.
    assert anonymous(cluster, "GET", f"/{bucket}/pub/photo.jpg") == (200, "jpeg bytes")
    aws = subprocess.run([str(pathlib.Path(sys.executable).parent / "aws"), "--no-sign-request", "--endpoint-url",
                          f"http://127.0.0.1:{cluster.s3_port}", "s3", "cp", f"s3://{bucket}/pub/photo.jpg", "-"],
                         capture_output=True, timeout=120, env={**os.environ, "AWS_DEFAULT_REGION": REGION, "AWS_CONFIG_FILE": "/dev/null"})
    assert aws.returncode == 0 and aws.stdout == b"jpeg bytes", aws.stderr
    status, text = anonymous(cluster, "GET", f"/{bucket}?list-type=2")
    assert status == 403 and "AccessDenied" in text
    assert anonymous(cluster, "PUT", f"/{bucket}/pub/new", body=b"x")[0] == 403
    assert anonymous(cluster, "DELETE", f"/{bucket}/pub/photo.jpg")[0] == 403
    # ListBucket opens listings.
    s3.put_bucket_policy(Bucket=bucket, Policy=policy({"Effect": "Allow", "Principal": {"AWS": "*"},
                                                             "Action": ["s3:GetObject", "s3:ListBucket"],
                                                             "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"]}))
    status, text = anonymous(cluster, "GET", f"/{bucket}?list-type=2")
    assert status == 200 and "<Key>pub/photo.jpg</Key>" in text

    # A key id as principal, on a prefix; only the owner changes policies.
    _, b = two_keys
    bob = as_key(cluster, b)
    s3.put_bucket_policy(Bucket=bucket, Policy=policy({"Effect": "Allow", "Principal": {"AWS": [b["access_key_id"]]},
                                                             "Action": "s3:PutObject", "Resource": f"arn:aws:s3:::{bucket}/uploads/*"}))
    bob.put_object(Bucket=bucket, Key="uploads/from-bob", Body=b"hi")
    assert denied(bob.put_object, Bucket=bucket, Key="elsewhere", Body=b"hi") == "AccessDenied"
    assert denied(bob.get_object, Bucket=bucket, Key="uploads/from-bob") == "AccessDenied"
    assert denied(bob.put_bucket_policy, Bucket=bucket, Policy=public_read) == "AccessDenied"
    assert anonymous(cluster, "GET", f"/{bucket}/pub/photo.jpg")[0] == 403

    s3.delete_bucket_policy(Bucket=bucket)
    with pytest.raises(ClientError) as e:
        s3.get_bucket_policy(Bucket=bucket)
    assert code(e) == "NoSuchBucketPolicy"


def test_minio_client_canned_policies(cluster, s3, bucket):
    """`mc anonymous set download` / `upload` write these policies."""
    s3.put_object(Bucket=bucket, Key="k", Body=b"value", Tagging="t=1")
    arn = f"arn:aws:s3:::{bucket}"
    s3.put_bucket_policy(Bucket=bucket, Policy=policy(
        {"Effect": "Allow", "Principal": {"AWS": ["*"]}, "Action": ["s3:GetBucketLocation", "s3:ListBucket"], "Resource": [arn]},
        {"Effect": "Allow", "Principal": {"AWS": ["*"]}, "Action": ["s3:GetObject"], "Resource": [f"{arn}/*"]}))
    assert anonymous(cluster, "GET", f"/{bucket}?location")[0] == 200
    assert anonymous(cluster, "GET", f"/{bucket}?list-type=2")[0] == 200
    assert anonymous(cluster, "GET", f"/{bucket}/k") == (200, "value")
    assert anonymous(cluster, "GET", f"/{bucket}/k?tagging")[0] == 403
    assert anonymous(cluster, "GET", f"/{bucket}?uploads")[0] == 403
    assert anonymous(cluster, "PUT", f"/{bucket}/new", body=b"x")[0] == 403
    s3.put_bucket_policy(Bucket=bucket, Policy=policy(
        {"Effect": "Allow", "Principal": {"AWS": ["*"]}, "Action": ["s3:GetBucketLocation", "s3:ListBucketMultipartUploads"], "Resource": [arn]},
        {"Effect": "Allow", "Principal": {"AWS": ["*"]},
         "Action": ["s3:AbortMultipartUpload", "s3:DeleteObject", "s3:ListMultipartUploadParts", "s3:PutObject"], "Resource": [f"{arn}/*"]}))
    assert anonymous(cluster, "PUT", f"/{bucket}/new", body=b"x")[0] == 200
    up = s3.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
    status, text = anonymous(cluster, "GET", f"/{bucket}?uploads")
    assert status == 200 and up in text
    assert anonymous(cluster, "GET", f"/{bucket}/mp?uploadId={up}")[0] == 200
    assert anonymous(cluster, "DELETE", f"/{bucket}/mp?uploadId={up}")[0] == 204
    assert anonymous(cluster, "GET", f"/{bucket}/k")[0] == 403
    assert anonymous(cluster, "GET", f"/{bucket}?list-type=2")[0] == 403
    # Tagging actions, on their own.
    s3.put_bucket_policy(Bucket=bucket, Policy=policy(
        {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObjectTagging", "Resource": f"{arn}/*"}))
    status, text = anonymous(cluster, "GET", f"/{bucket}/k?tagging")
    assert status == 200 and "<Key>t</Key>" in text
    assert anonymous(cluster, "DELETE", f"/{bucket}/k?tagging")[0] == 403


@pytest.mark.parametrize("statement,names", [
    ({"Effect": "Deny", "Principal": "*", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::B/*"}, "Deny"),
    ({"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::B/*",
      "Condition": {"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}}, "Condition"),
    ({"Effect": "Allow", "Principal": "*", "Action": "s3:PutBucketPolicy", "Resource": "arn:aws:s3:::B"}, "s3:PutBucketPolicy"),
    ({"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::other/*"}, "arn:aws:s3:::other/*"),
])
def test_policies_we_cannot_enforce_are_refused(s3, bucket, statement, names):
    doc = json.dumps({"Version": "2012-10-17", "Statement": [statement]}).replace("arn:aws:s3:::B", f"arn:aws:s3:::{bucket}")
    with pytest.raises(ClientError) as e:
        s3.put_bucket_policy(Bucket=bucket, Policy=doc)
    assert code(e) == "MalformedPolicy" and e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert names in e.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as e:
        s3.get_bucket_policy(Bucket=bucket)
    assert code(e) == "NoSuchBucketPolicy"
