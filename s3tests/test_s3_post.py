"""Browser form uploads (POST Object) with SigV4 POST policies made by
boto3's generate_presigned_post: the policy checked, the file streamed, the
answers AWS gives."""

import hashlib
import os

import pytest
import urllib3

from conftest import client


def post(cluster, url, fields, body, filename="photo.png", content_type="image/png", port=None):
    if port:
        url = url.replace(f":{cluster.port}/", f":{port}/")
    form = {**fields, "file": (filename, body, content_type)}
    r = urllib3.PoolManager(retries=False).request("POST", url, fields=form, redirect=False)
    return r.status, r.headers, r.data.decode(errors="replace")


@pytest.fixture
def v4(cluster):
    """A client whose presigned POSTs are SigV4 (boto3's default here is V2)."""
    return client(cluster, signature_version="s3v4")


def test_presigned_post_uploads_and_checks_the_policy(cluster, s3, v4, bucket):
    body = os.urandom(300_000)
    p = v4.generate_presigned_post(bucket, "uploads/${filename}", Fields={"x-amz-meta-owner": "web"},
                                   Conditions=[["starts-with", "$key", "uploads/"], {"x-amz-meta-owner": "web"},
                                               ["content-length-range", 1, 1_000_000]], ExpiresIn=300)
    status, h, text = post(cluster, p["url"], p["fields"], body)
    assert status == 204, text
    assert h["ETag"] == f'"{hashlib.md5(body).hexdigest()}"'
    got = s3.get_object(Bucket=bucket, Key="uploads/photo.png")
    assert got["Body"].read() == body and got["Metadata"] == {"owner": "web"} and got["ContentType"] == "image/png"
    # SigV2 policies (boto3's default for this endpoint) work as well.
    p = s3.generate_presigned_post(bucket, "v2.bin", ExpiresIn=300)
    assert "AWSAccessKeyId" in p["fields"] and post(cluster, p["url"], p["fields"], b"v2")[0] == 204
    assert s3.get_object(Bucket=bucket, Key="v2.bin")["Body"].read() == b"v2"
    # The answers AWS gives for success_action_status and redirects.
    p = v4.generate_presigned_post(bucket, "a.txt", Fields={"success_action_status": "201"},
                                   Conditions=[{"success_action_status": "201"}], ExpiresIn=300)
    status, _, text = post(cluster, p["url"], p["fields"], b"hello", "a.txt", "text/plain")
    assert status == 201 and "<Key>a.txt</Key>" in text and f"<Bucket>{bucket}</Bucket>" in text
    p = v4.generate_presigned_post(bucket, "b.txt", Fields={"success_action_redirect": "http://example.com/done"},
                                   Conditions=[{"success_action_redirect": "http://example.com/done"}], ExpiresIn=300)
    status, h, _ = post(cluster, p["url"], p["fields"], b"hi", "b.txt", "text/plain")
    assert status == 303 and h["Location"].startswith("http://example.com/done?bucket=") and "key=b.txt" in h["Location"]


def test_tagging_field(cluster, s3, v4, bucket):
    doc = "<Tagging><TagSet><Tag><Key>from</Key><Value>form</Value></Tag></TagSet></Tagging>"
    p = v4.generate_presigned_post(bucket, "tagged", Fields={"tagging": doc}, Conditions=[{"tagging": doc}], ExpiresIn=300)
    status, _, text = post(cluster, p["url"], p["fields"], b"tagged")
    assert status == 204, text
    assert s3.get_object_tagging(Bucket=bucket, Key="tagged")["TagSet"] == [{"Key": "from", "Value": "form"}]
    bad = doc.replace("<Key>from</Key>", "<Key>aws:from</Key>")
    p = v4.generate_presigned_post(bucket, "refused", Fields={"tagging": bad}, Conditions=[{"tagging": bad}], ExpiresIn=300)
    status, _, text = post(cluster, p["url"], p["fields"], b"x")
    assert status == 400 and "<Code>InvalidTag</Code>" in text
    assert "refused" not in [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]


@pytest.mark.parametrize("change,code", [
    (lambda f: {**f, "key": "elsewhere/x"}, "AccessDenied"),
    (lambda f: {**f, "x-amz-meta-extra": "1"}, "AccessDenied"),
    (lambda f: {**f, "x-amz-signature": "0" * 64}, "SignatureDoesNotMatch"),
    (lambda f: {k: v for k, v in f.items() if k != "key"}, "InvalidArgument"),
])
def test_policy_violations_are_refused(cluster, s3, v4, bucket, change, code):
    p = v4.generate_presigned_post(bucket, "uploads/${filename}", Conditions=[["starts-with", "$key", "uploads/"]], ExpiresIn=300)
    status, _, text = post(cluster, p["url"], change(p["fields"]), b"data")
    assert status in (400, 403) and f"<Code>{code}</Code>" in text, text
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0


def test_size_range_and_expiry(cluster, s3, v4, bucket):
    p = v4.generate_presigned_post(bucket, "k", Conditions=[["content-length-range", 10, 100]], ExpiresIn=300)
    status, _, text = post(cluster, p["url"], p["fields"], b"x" * 101)
    assert status == 400 and "<Code>EntityTooLarge</Code>" in text
    status, _, text = post(cluster, p["url"], p["fields"], b"x" * 9)
    assert status == 400 and "<Code>EntityTooSmall</Code>" in text
    p = v4.generate_presigned_post(bucket, "k", ExpiresIn=-10)
    status, _, text = post(cluster, p["url"], p["fields"], b"x")
    assert status == 403 and "expired" in text
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0


def test_anonymous_post_needs_a_bucket_policy(cluster, s3, bucket):
    url = f"http://127.0.0.1:{cluster.s3_port}/{bucket}"
    status, _, text = post(cluster, url, {"key": "anon.txt"}, b"hi", "anon.txt", "text/plain")
    assert status == 403 and "AccessDenied" in text
    s3.put_bucket_policy(Bucket=bucket, Policy='{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*",'
                         f'"Action":"s3:PutObject","Resource":"arn:aws:s3:::{bucket}/drop/*"}}]}}')
    status, _, text = post(cluster, url, {"key": "drop/anon.txt"}, b"hi", "anon.txt", "text/plain")
    assert status == 204, text
    assert s3.get_object(Bucket=bucket, Key="drop/anon.txt")["Body"].read() == b"hi"
    s3.delete_bucket_policy(Bucket=bucket)


def test_filename_is_in_the_key_the_policy_checks(cluster, s3, v4, bucket):
    p = v4.generate_presigned_post(bucket, "${filename}", Conditions=[["starts-with", "$key", "foo"]], ExpiresIn=300)
    status, _, text = post(cluster, p["url"], p["fields"], b"bar", "foo.txt", "text/plain")
    assert status == 204, text
    assert s3.get_object(Bucket=bucket, Key="foo.txt")["Body"].read() == b"bar"
    status, _, text = post(cluster, p["url"], p["fields"], b"bar", "other.txt", "text/plain")
    assert status == 403 and "starts-with" in text


def test_malformed_forms_are_400(cluster, s3, v4, bucket):
    # A key id without its signature is not an anonymous form.
    p = s3.generate_presigned_post(bucket, "k", ExpiresIn=300)
    fields = {k: v for k, v in p["fields"].items() if k != "signature"}
    status, _, text = post(cluster, p["url"], fields, b"x")
    assert status == 400 and "<Code>InvalidArgument</Code>" in text and "Signature" in text, text
    p = v4.generate_presigned_post(bucket, "k", ExpiresIn=300)
    fields = {k: v for k, v in p["fields"].items() if k != "x-amz-signature"}
    status, _, text = post(cluster, p["url"], fields, b"x")
    assert status == 400 and "<Code>InvalidArgument</Code>" in text, text
    # An empty condition is a broken policy document.
    p = v4.generate_presigned_post(bucket, "k", Conditions=[{}], ExpiresIn=300)
    status, _, text = post(cluster, p["url"], p["fields"], b"x")
    assert status == 400 and "<Code>InvalidPolicyDocument</Code>" in text, text
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0


def test_an_unusable_redirect_is_ignored(cluster, s3, v4, bucket):
    bad = "http://example.com/done\r\nX-Injected: 1"
    p = v4.generate_presigned_post(bucket, "r.txt", Fields={"success_action_redirect": bad},
                                   Conditions=[{"success_action_redirect": bad}], ExpiresIn=300)
    status, h, text = post(cluster, p["url"], p["fields"], b"kept", "r.txt", "text/plain")
    assert status == 204 and "X-Injected" not in h, text
    assert s3.get_object(Bucket=bucket, Key="r.txt")["Body"].read() == b"kept"
