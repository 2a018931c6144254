"""S3 part 1 against a real cluster: buckets, objects, auth, payload modes,
checksums, conditionals and ranges, with boto3, aws cli and raw HTTP."""

import base64
import datetime
import hashlib
import http.client
import threading
import urllib.parse
import urllib.request
import uuid
import zlib

import boto3
import pytest
from botocore.exceptions import ClientError

import rawsig
from conftest import ACCESS, SECRET, aws, client, code


def status(exc_info):
    return exc_info.value.response["ResponseMetadata"]["HTTPStatusCode"]


def plain(cluster, method, path, headers=None, body=None):
    conn = http.client.HTTPConnection("127.0.0.1", cluster.port, timeout=30)
    conn.request(method, path, body=body, headers=headers or {})
    r = conn.getresponse()
    data = r.read()
    conn.close()
    return r.status, {k.lower(): v for k, v in r.getheaders()}, data


def test_bucket_lifecycle(s3, cluster):
    s3.create_bucket(Bucket="life-cycle")
    s3.put_object(Bucket="life-cycle", Key="kept", Body=b"kept")
    # Created again by its owner: in us-east-1 AWS's legacy 200, changing
    # nothing; in any other region (signed for, or asked for) a 409.
    assert s3.create_bucket(Bucket="life-cycle")["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert s3.get_object(Bucket="life-cycle", Key="kept")["Body"].read() == b"kept"
    eu = boto3.client("s3", endpoint_url=cluster.endpoint, aws_access_key_id=ACCESS, aws_secret_access_key=SECRET, region_name="eu-west-1")
    for c, config in [(eu, {"LocationConstraint": "eu-west-1"}), (eu, None), (s3, {"LocationConstraint": "eu-west-1"})]:
        with pytest.raises(ClientError) as e:
            c.create_bucket(Bucket="life-cycle", **({"CreateBucketConfiguration": config} if config else {}))
        assert code(e) == "BucketAlreadyOwnedByYou" and status(e) == 409, config
    s3.delete_object(Bucket="life-cycle", Key="kept")
    with pytest.raises(ClientError) as e:
        s3.create_bucket(Bucket="Bad_Name")
    assert code(e) == "InvalidBucketName"
    assert "life-cycle" in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert s3.head_bucket(Bucket="life-cycle")["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert s3.get_bucket_location(Bucket="life-cycle").get("LocationConstraint") is None
    assert "Status" not in s3.get_bucket_versioning(Bucket="life-cycle")
    assert s3.get_bucket_acl(Bucket="life-cycle")["Grants"][0]["Permission"] == "FULL_CONTROL"
    for probe, want in [(s3.get_bucket_tagging, "NoSuchTagSet"), (s3.get_bucket_cors, "NoSuchCORSConfiguration"),
                        (s3.get_bucket_lifecycle_configuration, "NoSuchLifecycleConfiguration"),
                        (s3.get_bucket_policy, "NoSuchBucketPolicy")]:
        with pytest.raises(ClientError) as e:
            probe(Bucket="life-cycle")
        assert code(e) == want and status(e) == 404
    with pytest.raises(ClientError) as e:
        s3.put_bucket_lifecycle_configuration(Bucket="life-cycle", LifecycleConfiguration={"Rules": [
            {"ID": "x", "Status": "Enabled", "Filter": {"Prefix": ""}, "Expiration": {"Days": 1}}]})
    assert code(e) == "NotImplemented" and status(e) == 501
    s3.put_object(Bucket="life-cycle", Key="x", Body=b"x")
    with pytest.raises(ClientError) as e:
        s3.delete_bucket(Bucket="life-cycle")
    assert code(e) == "BucketNotEmpty" and status(e) == 409
    s3.delete_object(Bucket="life-cycle", Key="x")
    s3.delete_bucket(Bucket="life-cycle")
    with pytest.raises(ClientError) as e:
        s3.head_bucket(Bucket="life-cycle")
    assert status(e) == 404
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket="life-cycle", Key="x", Body=b"x")
    assert code(e) == "NoSuchBucket"


def test_list_buckets_pages(s3):
    stem = f"lb-{uuid.uuid4().hex[:8]}-"
    names = [f"{stem}{i}" for i in range(7)]
    for n in names:
        s3.create_bucket(Bucket=n)
    try:
        pages = list(s3.get_paginator("list_buckets").paginate(Prefix=stem, PaginationConfig={"PageSize": 3}))
        assert [[b["Name"] for b in p["Buckets"]] for p in pages] == [names[:3], names[3:6], names[6:]]
        assert ["ContinuationToken" in p for p in pages] == [True, True, False]
        assert all(p["Prefix"] == stem and all(b["BucketRegion"] == "us-east-1" for b in p["Buckets"]) for p in pages)
        r = s3.list_buckets(MaxBuckets=2, ContinuationToken=pages[0]["ContinuationToken"], Prefix=stem)
        assert [b["Name"] for b in r["Buckets"]] == names[3:5]
        assert [b["Name"] for b in s3.list_buckets(Prefix=stem, BucketRegion="us-east-1")["Buckets"]] == names
        assert s3.list_buckets(Prefix=stem, BucketRegion="eu-west-1")["Buckets"] == []
        # Without a parameter: every bucket, no paging fields.
        r = s3.list_buckets()
        assert set(names) <= {b["Name"] for b in r["Buckets"]}
        assert "ContinuationToken" not in r and "Prefix" not in r and "BucketRegion" not in r["Buckets"][0]
        for bad in ({"MaxBuckets": 10001}, {"ContinuationToken": "!!not a token!!"}):
            with pytest.raises(ClientError) as e:
                s3.list_buckets(**bad)
            assert code(e) == "InvalidArgument" and status(e) == 400, bad
    finally:
        for n in names:
            s3.delete_bucket(Bucket=n)


def test_put_get_metadata_and_native_view(s3, cluster, bucket):
    body = bytes(range(256)) * 4000
    r = s3.put_object(Bucket=bucket, Key="dir/file.bin", Body=body, ContentType="application/x-test",
                      CacheControl="max-age=60", Metadata={"md5chksum": "AbC+/=", "spaced": "a b  c"},
                      ACL="private", StorageClass="STANDARD")
    assert r["ETag"] == '"%s"' % hashlib.md5(body).hexdigest()
    g = s3.get_object(Bucket=bucket, Key="dir/file.bin")
    assert g["Body"].read() == body
    assert g["ContentType"] == "application/x-test" and g["CacheControl"] == "max-age=60"
    assert g["Metadata"] == {"md5chksum": "AbC+/=", "spaced": "a b  c"}
    assert g["ETag"] == r["ETag"] and g["ContentLength"] == len(body)
    h = s3.head_object(Bucket=bucket, Key="dir/file.bin")
    assert h["ContentLength"] == len(body) and h["ETag"] == r["ETag"]
    assert abs((h["LastModified"] - datetime.datetime.now(datetime.timezone.utc)).total_seconds()) < 120
    # The same object through the native API: a 302 to a replica.
    st, headers, _ = plain(cluster, "GET", f"/{bucket}/dir/file.bin")
    assert st == 302 and headers["content-md5"] == hashlib.md5(body).hexdigest()
    assert urllib.request.urlopen(headers["location"]).read() == body
    # A native write under the bucket is an S3 object.
    st, _, _ = plain(cluster, "PUT", f"/{bucket}/native%20key", body=b"from native")
    assert st == 201
    assert s3.get_object(Bucket=bucket, Key="native key")["Body"].read() == b"from native"


def raw_headers(s3, event, headers):
    """Add `headers` (bytes values, so they go on the wire as they are) to
    every `event` call after signing: a client sending non-UTF-8 values.
    Returns the handler, for unregistering."""
    def add(request, **_):
        for name, value in headers.items():
            request.headers[name] = value
    s3.meta.events.register(f"before-send.s3.{event}", add)
    return add


def test_header_values_round_trip_byte_exact(s3, bucket):
    latin1 = {"x-amz-meta-latin": b"Hello World\xe9", "content-disposition": b'attachment; filename="\xe9t\xe9.txt"'}
    # botocore sends a str value as UTF-8 and reads answers as Latin-1:
    # what it gets back are the bytes it sent, decoded as Latin-1.
    utf8 = "Hello World\xe9".encode().decode("latin-1")

    def check(key, want_meta, want_disposition):
        for r in (s3.get_object(Bucket=bucket, Key=key), s3.head_object(Bucket=bucket, Key=key)):
            assert r["Metadata"] == want_meta and r["ContentDisposition"] == want_disposition, key

    def utf8_meta(params, **_):
        params["headers"]["x-amz-meta-utf8"] = "Hello World\xe9"

    s3.meta.events.register("before-call.s3.PutObject", utf8_meta)
    add = raw_headers(s3, "PutObject", latin1)
    try:
        s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    finally:
        s3.meta.events.unregister("before-send.s3.PutObject", add)
        s3.meta.events.unregister("before-call.s3.PutObject", utf8_meta)
    check("k", {"latin": "Hello World\xe9", "utf8": utf8}, 'attachment; filename="\xe9t\xe9.txt"')
    s3.copy_object(Bucket=bucket, Key="copy", CopySource={"Bucket": bucket, "Key": "k"})
    check("copy", {"latin": "Hello World\xe9", "utf8": utf8}, 'attachment; filename="\xe9t\xe9.txt"')
    replaced = {"x-amz-meta-new": b"\xff\xfe", "content-disposition": b"inline; \xe0"}
    add = raw_headers(s3, "CopyObject", replaced)
    try:
        s3.copy_object(Bucket=bucket, Key="k", CopySource={"Bucket": bucket, "Key": "k"}, MetadataDirective="REPLACE")
        s3.copy_object(Bucket=bucket, Key="replaced", CopySource={"Bucket": bucket, "Key": "copy"}, MetadataDirective="REPLACE")
    finally:
        s3.meta.events.unregister("before-send.s3.CopyObject", add)
    check("k", {"new": "\xff\xfe"}, "inline; \xe0")
    check("replaced", {"new": "\xff\xfe"}, "inline; \xe0")
    add = raw_headers(s3, "CreateMultipartUpload", latin1)
    try:
        up = s3.create_multipart_upload(Bucket=bucket, Key="mpu")["UploadId"]
    finally:
        s3.meta.events.unregister("before-send.s3.CreateMultipartUpload", add)
    etag = s3.upload_part(Bucket=bucket, Key="mpu", UploadId=up, PartNumber=1, Body=b"part")["ETag"]
    s3.complete_multipart_upload(Bucket=bucket, Key="mpu", UploadId=up, MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]})
    check("mpu", {"latin": "Hello World\xe9"}, 'attachment; filename="\xe9t\xe9.txt"')


def test_content_encoding_kept_as_sent(cluster, s3, bucket):
    s3.put_object(Bucket=bucket, Key="two", Body=b"x", ContentEncoding="deflate, gzip")
    assert s3.get_object(Bucket=bucket, Key="two")["ContentEncoding"] == "deflate, gzip"
    data = b"chunked " * 10000
    for sent, want in [("gzip, aws-chunked", "gzip"), ("aws-chunked,gzip", "gzip"), ("aws-chunked", None)]:
        hdr = {"content-encoding": sent, "x-amz-decoded-content-length": str(len(data))}
        req = raw(cluster, "PUT", f"/{bucket}/chunked", headers=hdr, payload_hash="STREAMING-AWS4-HMAC-SHA256-PAYLOAD")
        st, _, resp = req.send(rawsig.signed_chunks(req, data))
        assert st == 200, resp
        g = s3.get_object(Bucket=bucket, Key="chunked")
        assert g["Body"].read() == data and g.get("ContentEncoding") == want, sent


def test_overwrite_and_concurrent_writers(s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"first")
    s3.put_object(Bucket=bucket, Key="k", Body=b"second, longer")
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"second, longer"
    bodies = [bytes([i]) * (300_000 + i * 1000) for i in range(6)]
    errors = []

    def writer(b):
        try:
            client_ = s3  # boto3 clients are thread safe
            client_.put_object(Bucket=bucket, Key="race", Body=b)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    def reader():
        for _ in range(10):
            try:
                got = s3.get_object(Bucket=bucket, Key="race")["Body"].read()
            except ClientError:
                continue
            if got not in bodies:
                errors.append(AssertionError(f"mixed body of {len(got)} bytes"))

    threads = [threading.Thread(target=writer, args=(b,)) for b in bodies] + [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert s3.get_object(Bucket=bucket, Key="race")["Body"].read() in bodies


def test_empty_object_and_delete(s3, bucket):
    s3.put_object(Bucket=bucket, Key="empty", Body=b"")
    g = s3.get_object(Bucket=bucket, Key="empty")
    assert g["ContentLength"] == 0 and g["Body"].read() == b""
    assert g["ETag"] == '"d41d8cd98f00b204e9800998ecf8427e"'
    assert s3.delete_object(Bucket=bucket, Key="empty")["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert s3.delete_object(Bucket=bucket, Key="empty")["ResponseMetadata"]["HTTPStatusCode"] == 204
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="empty")
    assert code(e) == "NoSuchKey" and status(e) == 404


def test_awkward_keys(s3, bucket):
    keys = ["a b/c d", "ünï/cødé/🙂", "plus+sign", "eq=ual&amp", "tilde~x", "double//slash", "trailing/",
            "pct%41", "q?x#y", "k" * 1024]
    for k in keys:
        s3.put_object(Bucket=bucket, Key=k, Body=k.encode())
        assert s3.get_object(Bucket=bucket, Key=k)["Body"].read() == k.encode(), k
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="k" * 1025, Body=b"x")
    assert code(e) == "KeyTooLongError"


def test_ranges_and_conditionals(s3, bucket):
    body = bytes(range(100))
    etag = s3.put_object(Bucket=bucket, Key="r", Body=body)["ETag"]
    for rng, want in [("bytes=0-9", body[:10]), ("bytes=90-", body[90:]), ("bytes=-5", body[-5:]), ("bytes=95-200", body[95:])]:
        g = s3.get_object(Bucket=bucket, Key="r", Range=rng)
        assert g["Body"].read() == want and g["ResponseMetadata"]["HTTPStatusCode"] == 206
        assert g["ContentRange"] == f"bytes {100 - len(want) if rng != 'bytes=0-9' else 0}-{(99 if rng != 'bytes=0-9' else 9)}/100"
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="r", Range="bytes=100-")
    assert code(e) == "InvalidRange" and status(e) == 416
    assert s3.get_object(Bucket=bucket, Key="r", IfMatch=etag)["Body"].read() == body
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="r", IfMatch='"nope"')
    assert status(e) == 412
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="r", IfNoneMatch=etag)
    assert status(e) == 304
    future = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=1)
    past = datetime.datetime(2000, 1, 1, tzinfo=datetime.timezone.utc)
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="r", IfModifiedSince=future)
    assert status(e) == 304
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="r", IfUnmodifiedSince=past)
    assert status(e) == 412
    assert s3.get_object(Bucket=bucket, Key="r", IfModifiedSince=past)["Body"].read() == body
    # Conditional writes.
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="r", Body=b"x", IfNoneMatch="*")
    assert code(e) == "PreconditionFailed" and status(e) == 412
    s3.put_object(Bucket=bucket, Key="new-one", Body=b"x", IfNoneMatch="*")
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="r", Body=b"x", IfMatch='"nope"')
    assert status(e) == 412
    s3.put_object(Bucket=bucket, Key="r", Body=b"replaced", IfMatch=etag)
    assert s3.get_object(Bucket=bucket, Key="r")["Body"].read() == b"replaced"
    # versionId=null is the only version; partNumber=1 is the whole object.
    assert s3.get_object(Bucket=bucket, Key="r", VersionId="null")["Body"].read() == b"replaced"
    assert s3.head_object(Bucket=bucket, Key="r", VersionId="null")["ContentLength"] == 8
    assert s3.get_object(Bucket=bucket, Key="r", PartNumber=1)["Body"].read() == b"replaced"
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="r", PartNumber=2)
    assert status(e) == 416
    g = s3.get_object(Bucket=bucket, Key="r", ResponseContentType="text/x-override", ResponseContentDisposition="attachment")
    assert g["ContentType"] == "text/x-override" and g["ContentDisposition"] == "attachment"
    s3.delete_object(Bucket=bucket, Key="r", VersionId="null")


@pytest.mark.parametrize("algorithm", ["CRC32", "CRC32C", "SHA1", "SHA256", "CRC64NVME"])
def test_flexible_checksums(s3, bucket, algorithm):
    body = b"checksummed " * 1000
    r = s3.put_object(Bucket=bucket, Key=f"c-{algorithm}", Body=body, ChecksumAlgorithm=algorithm)
    g = s3.get_object(Bucket=bucket, Key=f"c-{algorithm}", ChecksumMode="ENABLED")
    assert g["Body"].read() == body
    assert g[f"Checksum{algorithm}"] == r[f"Checksum{algorithm}"]
    # Not on ranged reads (SDKs would validate a part against the whole).
    g = s3.get_object(Bucket=bucket, Key=f"c-{algorithm}", ChecksumMode="ENABLED", Range="bytes=0-3")
    assert f"Checksum{algorithm}" not in g


def test_bad_checksums_commit_nothing(s3, bucket):
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="bad", Body=b"data", ChecksumCRC32="AAAAAA==")
    assert code(e) == "BadDigest"
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="bad", Body=b"data", ContentMD5=base64.b64encode(b"0" * 16).decode())
    assert code(e) == "BadDigest"
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="bad", Body=b"data", ContentMD5="notbase64")
    assert code(e) == "InvalidDigest"
    with pytest.raises(ClientError) as e:
        s3.head_object(Bucket=bucket, Key="bad")
    assert status(e) == 404
    s3.put_object(Bucket=bucket, Key="good", Body=b"data", ContentMD5=base64.b64encode(hashlib.md5(b"data").digest()).decode())


def raw(cluster, method, path, **kw):
    return rawsig.Request(cluster.port, ACCESS, SECRET, method, path, **kw)


def test_latin1_header_values_sign_as_their_characters(cluster, s3, bucket):
    # http.client (like Java's clients) sends "é" as the byte 0xE9 and signs
    # its UTF-8: the gateway reads a value that is not UTF-8 as ISO-8859-1.
    headers = {"x-amz-meta-m": "café", "content-disposition": 'attachment; filename="café.txt"'}
    st, _, data = raw(cluster, "PUT", f"/{bucket}/latin1", body=b"v", headers=headers).send()
    assert st == 200, data
    st, got, data = raw(cluster, "GET", f"/{bucket}/latin1").send()
    assert st == 200 and data == b"v"
    # The bytes come back as sent (http.client reads them as ISO-8859-1).
    assert got["x-amz-meta-m"] == "café" and got["content-disposition"] == headers["content-disposition"]
    # A wrong value still fails the signature.
    req = raw(cluster, "PUT", f"/{bucket}/latin1", body=b"v", headers=headers)
    req.headers["x-amz-meta-m"] = "cafè"
    st, _, data = req.send()
    assert st == 403 and b"SignatureDoesNotMatch" in data


def test_signed_payload_mismatch(cluster, s3, bucket):
    req = raw(cluster, "PUT", f"/{bucket}/sha", body=b"the body", payload_hash=hashlib.sha256(b"other").hexdigest())
    st, _, data = req.send()
    assert st == 400 and b"XAmzContentSHA256Mismatch" in data
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="sha")
    st, _, _ = raw(cluster, "PUT", f"/{bucket}/unsigned", body=b"no hash", payload_hash="UNSIGNED-PAYLOAD").send()
    assert st == 200
    assert s3.get_object(Bucket=bucket, Key="unsigned")["Body"].read() == b"no hash"
    st, _, data = raw(cluster, "PUT", f"/{bucket}/x", body=b"x", payload_hash="WHATEVER").send()
    assert st == 400


def test_streaming_signed_payload(cluster, s3, bucket):
    data = bytes(range(256)) * 700  # 175 KiB: three chunks
    hdr = {"content-encoding": "aws-chunked", "x-amz-decoded-content-length": str(len(data))}
    req = raw(cluster, "PUT", f"/{bucket}/chunked", headers=hdr, payload_hash="STREAMING-AWS4-HMAC-SHA256-PAYLOAD")
    st, _, resp = req.send(rawsig.signed_chunks(req, data))
    assert st == 200, resp
    g = s3.get_object(Bucket=bucket, Key="chunked")
    assert g["Body"].read() == data and "ContentEncoding" not in g
    req = raw(cluster, "PUT", f"/{bucket}/chunked-bad", headers=hdr, payload_hash="STREAMING-AWS4-HMAC-SHA256-PAYLOAD")
    st, _, resp = req.send(rawsig.signed_chunks(req, data, corrupt=1))
    assert st == 403 and b"SignatureDoesNotMatch" in resp
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="chunked-bad")


def test_streaming_trailers(cluster, s3, bucket):
    data = b"trailer data " * 10000
    good = f"x-amz-checksum-crc32:{rawsig.crc32_b64(data)}"
    for final_crlf in (True, False):
        hdr = {"content-encoding": "aws-chunked", "x-amz-decoded-content-length": str(len(data)),
               "x-amz-trailer": "x-amz-checksum-crc32"}
        req = raw(cluster, "PUT", f"/{bucket}/ut", headers=hdr, payload_hash="STREAMING-UNSIGNED-PAYLOAD-TRAILER")
        st, _, resp = req.send(rawsig.unsigned_chunks(data, good, final_crlf=final_crlf))
        assert st == 200, resp
        g = s3.get_object(Bucket=bucket, Key="ut", ChecksumMode="ENABLED")
        assert g["Body"].read() == data and g["ChecksumCRC32"] == rawsig.crc32_b64(data)
    hdr = {"content-encoding": "aws-chunked", "x-amz-decoded-content-length": str(len(data)), "x-amz-trailer": "x-amz-checksum-crc32"}
    req = raw(cluster, "PUT", f"/{bucket}/ut-bad", headers=hdr, payload_hash="STREAMING-UNSIGNED-PAYLOAD-TRAILER")
    st, _, resp = req.send(rawsig.unsigned_chunks(data, "x-amz-checksum-crc32:AAAAAA=="))
    assert st == 400 and b"BadDigest" in resp
    req = raw(cluster, "PUT", f"/{bucket}/ut-bad", headers=hdr, payload_hash="STREAMING-UNSIGNED-PAYLOAD-TRAILER")
    st, _, resp = req.send(rawsig.unsigned_chunks(data, None))
    assert st == 400 and b"MalformedTrailerError" in resp
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="ut-bad")
    # Signed chunks with a signed trailer.
    req = raw(cluster, "PUT", f"/{bucket}/st", headers=hdr, payload_hash="STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER")
    st, _, resp = req.send(rawsig.signed_chunks(req, data, trailer=good))
    assert st == 200, resp
    assert s3.get_object(Bucket=bucket, Key="st")["Body"].read() == data


def test_auth_errors(cluster, bucket):
    bad = client(cluster)
    bad._request_signer._credentials.secret_key = "wrong"  # noqa: SLF001 - a wrong secret, same key id
    with pytest.raises(ClientError) as e:
        bad.list_buckets()
    assert code(e) == "SignatureDoesNotMatch" and status(e) == 403
    import boto3
    unknown = boto3.client("s3", endpoint_url=cluster.endpoint, aws_access_key_id="NOSUCHKEY", aws_secret_access_key="x", region_name="us-east-1")
    with pytest.raises(ClientError) as e:
        unknown.list_buckets()
    assert code(e) == "InvalidAccessKeyId"
    skewed = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=20)
    st, _, data = raw(cluster, "GET", "/", when=skewed).send()
    assert st == 403 and b"RequestTimeTooSkewed" in data
    # Unsigned requests are native: a GET with an S3-ish query is refused natively.
    st, _, _ = plain(cluster, "GET", f"/{bucket}?list-type=2")
    assert st == 403


def test_presigned_urls(cluster, s3, bucket):
    s3.put_object(Bucket=bucket, Key="p q/ü", Body=b"presigned body")
    v4 = client(cluster, signature_version="s3v4")
    url = v4.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "p q/ü"}, ExpiresIn=300)
    assert "X-Amz-Signature=" in url
    assert urllib.request.urlopen(url).read() == b"presigned body"
    put = v4.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "via-url"}, ExpiresIn=300)
    req = urllib.request.Request(put, data=b"put by url", method="PUT")
    assert urllib.request.urlopen(req).status == 200
    # boto3's default presigner for this client is SigV2, which signs
    # Content-Type: send the (empty) one it signed.
    put = s3.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "via-url2"}, ExpiresIn=300)
    req = urllib.request.Request(put, data=b"put by v2 url", method="PUT", headers={"Content-Type": ""})
    assert urllib.request.urlopen(req).status == 200
    assert s3.get_object(Bucket=bucket, Key="via-url2")["Body"].read() == b"put by v2 url"
    assert s3.get_object(Bucket=bucket, Key="via-url")["Body"].read() == b"put by url"
    # Expired: signed 2 hours ago for 60 s.
    two_hours_ago = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=2)
    fresh = rawsig.presign_v4(cluster.port, ACCESS, SECRET, "GET", f"/{bucket}/via-url", 60, datetime.datetime.now(datetime.timezone.utc))
    assert urllib.request.urlopen(fresh).read() == b"put by url"
    expired = rawsig.presign_v4(cluster.port, ACCESS, SECRET, "GET", f"/{bucket}/via-url", 60, two_hours_ago)
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(expired)
    assert e.value.code == 403 and b"AccessDenied" in e.value.read()
    # aws cli v1 presigns with SigV2 query parameters.
    url = aws(cluster, "s3", "presign", f"s3://{bucket}/p q/ü").stdout.strip()
    assert "AWSAccessKeyId=" in url and "Signature=" in url
    assert urllib.request.urlopen(url).read() == b"presigned body"
    tampered = url.replace("Signature=", "Signature=A")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(tampered)
    assert e.value.code == 403


def test_presigned_expiry_edges(cluster, s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    now = datetime.datetime.now(datetime.timezone.utc)
    week = b"X-Amz-Expires must be less than a week (in seconds); that is, the given X-Amz-Expires must be less than 604800 seconds"
    for expires, want, error, message in [
        (0, 403, b"AccessDenied", b"Request has expired"),
        (-1, 403, b"AccessDenied", b"X-Amz-Expires must be non-negative"),
        (604801, 403, b"AccessDenied", week),
    ]:
        url = rawsig.presign_v4(cluster.port, ACCESS, SECRET, "GET", f"/{bucket}/k", expires, now)
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(url)
        body = e.value.read()
        assert (e.value.code, f"<Code>{error.decode()}</Code>".encode() in body, message in body) == (want, True, True), expires
    assert urllib.request.urlopen(rawsig.presign_v4(cluster.port, ACCESS, SECRET, "GET", f"/{bucket}/k", 604800, now)).read() == b"x"


def test_aws_cli(cluster, bucket, tmp_path):
    src = tmp_path / "small.txt"
    src.write_bytes(b"aws cli body\n" * 100)
    aws(cluster, "s3", "cp", str(src), f"s3://{bucket}/cli/small.txt")
    aws(cluster, "s3", "cp", f"s3://{bucket}/cli/small.txt", str(tmp_path / "back.txt"))
    assert (tmp_path / "back.txt").read_bytes() == src.read_bytes()
    aws(cluster, "s3api", "put-object", "--bucket", bucket, "--key", "api key", "--body", str(src),
        "--metadata", "a=b", "--content-type", "text/plain")
    import json
    head = json.loads(aws(cluster, "s3api", "head-object", "--bucket", bucket, "--key", "api key").stdout)
    assert head["ContentLength"] == src.stat().st_size and head["Metadata"] == {"a": "b"}
    r = aws(cluster, "s3api", "get-object", "--bucket", bucket, "--key", "missing", str(tmp_path / "x"), check=False)
    assert r.returncode != 0 and "NoSuchKey" in r.stderr


def test_s3_errors_are_xml_with_request_id(cluster, bucket):
    req = raw(cluster, "GET", f"/{bucket}/nope")
    st, headers, data = req.send()
    assert st == 404 and headers["x-amz-request-id"]
    assert b"<Code>NoSuchKey</Code>" in data and b"<RequestId>" in data and b"<Resource>" in data
    st, headers, data = raw(cluster, "PATCH", f"/{bucket}").send()
    assert st == 405 and headers["x-amz-request-id"]


def test_s3_only_port(cluster, s3, bucket):
    s3.put_object(Bucket=bucket, Key="on-both-ports", Body=b"x")
    import boto3
    from botocore.config import Config
    s3only = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{cluster.s3_port}", aws_access_key_id=ACCESS,
                          aws_secret_access_key=SECRET, region_name="us-east-1", config=Config(retries={"max_attempts": 1}))
    assert s3only.get_object(Bucket=bucket, Key="on-both-ports")["Body"].read() == b"x"
    # Unsigned on the S3 port: an anonymous S3 request, denied with S3 XML.
    conn = http.client.HTTPConnection("127.0.0.1", cluster.s3_port, timeout=10)
    conn.request("GET", f"/{bucket}/on-both-ports")
    r = conn.getresponse()
    assert r.status == 403 and b"<Code>AccessDenied</Code>" in r.read()
    # The same unsigned GET on the main port is native: a redirect.
    st, _, _ = plain(cluster, "GET", f"/{bucket}/on-both-ports")
    assert st == 302


def with_headers(s3, operation, headers):
    """Send `headers` on the next calls of `operation` (as a client would set them)."""
    def add(request, **_):
        for k, v in headers.items():
            request.headers[k] = v
    s3.meta.events.register(f"before-sign.s3.{operation}", add)
    return lambda: s3.meta.events.unregister(f"before-sign.s3.{operation}", add)


def test_encryption_and_object_lock_are_never_silently_ignored(s3, bucket):
    key = bytes(range(32))
    for extra, want in [({"ServerSideEncryption": "AES256"}, ("NotImplemented", 501)),
                        ({"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": "k"}, ("NotImplemented", 501)),
                        ({"SSECustomerAlgorithm": "AES256", "SSECustomerKey": key}, ("NotImplemented", 501)),
                        ({"ServerSideEncryption": "aes:kms"}, ("InvalidArgument", 400)),
                        ({"ServerSideEncryption": "AES256", "SSEKMSKeyId": "k"}, ("InvalidArgument", 400)),
                        ({"ObjectLockLegalHoldStatus": "ON"}, ("InvalidRequest", 400))]:
        with pytest.raises(ClientError) as e:
            s3.put_object(Bucket=bucket, Key="refused", Body=b"x", **extra)
        assert (code(e), status(e)) == want, extra
    # Incomplete sets AWS refuses: a KMS key without aws:kms, an SSE-C key without its algorithm.
    for headers in [{"x-amz-server-side-encryption-aws-kms-key-id": "k"},
                    {"x-amz-server-side-encryption-customer-key": base64.b64encode(key).decode(),
                     "x-amz-server-side-encryption-customer-key-md5": base64.b64encode(hashlib.md5(key).digest()).decode()}]:
        undo = with_headers(s3, "PutObject", headers)
        with pytest.raises(ClientError) as e:
            s3.put_object(Bucket=bucket, Key="refused", Body=b"x")
        undo()
        assert (code(e), status(e)) == ("InvalidArgument", 400), headers
    with pytest.raises(ClientError) as e:
        s3.head_object(Bucket=bucket, Key="refused")
    assert status(e) == 404
    # Reads: no object is encrypted, so encryption parameters never apply.
    s3.put_object(Bucket=bucket, Key="plain", Body=b"x")
    undo = with_headers(s3, "GetObject", {"x-amz-server-side-encryption": "aws:kms"})
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="plain")
    undo()
    assert (code(e), status(e)) == ("InvalidArgument", 400)
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="plain", SSECustomerAlgorithm="AES256", SSECustomerKey=key)
    assert (code(e), status(e)) == ("InvalidRequest", 400)
    with pytest.raises(ClientError) as e:
        s3.copy_object(Bucket=bucket, Key="copy", CopySource={"Bucket": bucket, "Key": "plain"},
                       CopySourceSSECustomerAlgorithm="AES256", CopySourceSSECustomerKey=key)
    assert (code(e), status(e)) == ("InvalidRequest", 400)
    # A bucket asked to lock its objects is refused, not created unlocked.
    name = f"locked-{uuid.uuid4().hex[:8]}"
    with pytest.raises(ClientError) as e:
        s3.create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
    assert (code(e), status(e)) == ("NotImplemented", 501)
    assert name not in [b["Name"] for b in s3.list_buckets()["Buckets"]]


def test_versioning_can_be_suspended_never_enabled(s3, bucket):
    assert "Status" not in s3.get_bucket_versioning(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Suspended"})
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Suspended"
    with pytest.raises(ClientError) as e:
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    assert code(e) == "NotImplemented" and status(e) == 501
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Suspended"
    # Objects keep one version, null, as in a suspended bucket.
    s3.put_object(Bucket=bucket, Key="k", Body=b"1")
    s3.put_object(Bucket=bucket, Key="k", Body=b"2")
    versions = s3.list_object_versions(Bucket=bucket)["Versions"]
    assert [(v["Key"], v["VersionId"]) for v in versions] == [("k", "null")]
    with pytest.raises(ClientError) as e:
        s3.put_bucket_versioning(Bucket="no-such-bucket-here", VersioningConfiguration={"Status": "Suspended"})
    assert code(e) == "NoSuchBucket"


def test_only_the_private_acl_is_accepted(s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    # The canned private ACL, and an ACL read and put back: what there is.
    s3.put_bucket_acl(Bucket=bucket, ACL="private")
    s3.put_object_acl(Bucket=bucket, Key="k", ACL="private")
    s3.put_object_acl(Bucket=bucket, Key="k", ACL="bucket-owner-full-control")
    acl = s3.get_object_acl(Bucket=bucket, Key="k")
    s3.put_object_acl(Bucket=bucket, Key="k", AccessControlPolicy={"Grants": acl["Grants"], "Owner": acl["Owner"]})
    bucket_acl = s3.get_bucket_acl(Bucket=bucket)
    s3.put_bucket_acl(Bucket=bucket, AccessControlPolicy={"Grants": bucket_acl["Grants"], "Owner": bucket_acl["Owner"]})
    # Anything that grants more answers 501, never a silent success.
    public = {"Grantee": {"Type": "Group", "URI": "http://acs.amazonaws.com/groups/global/AllUsers"}, "Permission": "READ"}
    for call in (lambda: s3.put_bucket_acl(Bucket=bucket, ACL="public-read"),
                 lambda: s3.put_object_acl(Bucket=bucket, Key="k", ACL="public-read-write"),
                 lambda: s3.put_object_acl(Bucket=bucket, Key="k", GrantRead="id=someone"),
                 lambda: s3.put_object_acl(Bucket=bucket, Key="k", AccessControlPolicy={
                     "Grants": acl["Grants"] + [public], "Owner": acl["Owner"]}),
                 # No grant at all would take the owner's away: not the ACL there is.
                 lambda: s3.put_bucket_acl(Bucket=bucket, AccessControlPolicy={"Grants": [], "Owner": acl["Owner"]}),
                 # Writes asking for more than private are refused too, not stored private.
                 lambda: s3.put_object(Bucket=bucket, Key="public", Body=b"x", ACL="public-read"),
                 lambda: s3.put_object(Bucket=bucket, Key="public", Body=b"x", GrantRead='uri="http://acs.amazonaws.com/groups/global/AllUsers"'),
                 lambda: s3.copy_object(Bucket=bucket, Key="public", CopySource={"Bucket": bucket, "Key": "k"}, ACL="public-read"),
                 lambda: s3.create_multipart_upload(Bucket=bucket, Key="public", ACL="authenticated-read"),
                 lambda: s3.create_bucket(Bucket=f"{bucket}-pub", ACL="public-read-write")):
        with pytest.raises(ClientError) as e:
            call()
        assert code(e) == "NotImplemented" and status(e) == 501
    assert "public" not in [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    s3.put_object(Bucket=bucket, Key="private", Body=b"x", ACL="private")
    s3.put_object(Bucket=bucket, Key="owned", Body=b"x", ACL="bucket-owner-full-control")
    with pytest.raises(ClientError) as e:
        s3.put_object_acl(Bucket=bucket, Key="missing", ACL="private")
    assert code(e) == "NoSuchKey"


def test_conditional_deletes(s3, bucket):
    etag = s3.put_object(Bucket=bucket, Key="c", Body=b"v1")["ETag"]
    # A stale ETag keeps the object (412); the current one, or *, deletes it.
    with pytest.raises(ClientError) as e:
        s3.delete_object(Bucket=bucket, Key="c", IfMatch='"0123456789abcdef0123456789abcdef"')
    assert code(e) == "PreconditionFailed" and status(e) == 412
    assert s3.get_object(Bucket=bucket, Key="c")["Body"].read() == b"v1"
    assert s3.delete_object(Bucket=bucket, Key="c", IfMatch=etag)["ResponseMetadata"]["HTTPStatusCode"] == 204
    # With If-Match, a missing object is 404 (without, deleting it succeeds).
    with pytest.raises(ClientError) as e:
        s3.delete_object(Bucket=bucket, Key="c", IfMatch="*")
    assert code(e) == "NoSuchKey" and status(e) == 404
    s3.put_object(Bucket=bucket, Key="c", Body=b"v2")
    s3.delete_object(Bucket=bucket, Key="c", IfMatch="*")
    # DeleteObjects: each object's ETag is its If-Match.
    kept = s3.put_object(Bucket=bucket, Key="d1", Body=b"1")["ETag"]
    gone = s3.put_object(Bucket=bucket, Key="d2", Body=b"2")["ETag"]
    r = s3.delete_objects(Bucket=bucket, Delete={"Objects": [
        {"Key": "d1", "ETag": gone}, {"Key": "d2", "ETag": gone}, {"Key": "d3", "ETag": kept}, {"Key": "d4"}]})
    assert sorted(d["Key"] for d in r["Deleted"]) == ["d2", "d4"]
    assert sorted((x["Key"], x["Code"]) for x in r["Errors"]) == [("d1", "PreconditionFailed"), ("d3", "NoSuchKey")]
    assert s3.get_object(Bucket=bucket, Key="d1")["Body"].read() == b"1"


def test_checksum_headers_must_agree(cluster, s3, bucket):
    data = b"checksummed"
    crc = base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()
    sha = base64.b64encode(hashlib.sha256(data).digest()).decode()
    refused = [
        # Two checksums, even both right: AWS takes one.
        {"x-amz-checksum-crc32": crc, "x-amz-checksum-sha256": sha},
        # The SDK's algorithm names another checksum than the one sent.
        {"x-amz-checksum-crc32": crc, "x-amz-sdk-checksum-algorithm": "SHA256"},
        # An algorithm the gateway does not compute is refused, not ignored.
        {"x-amz-checksum-sha512": base64.b64encode(hashlib.sha512(data).digest()).decode()},
    ]
    for headers in refused:
        st, _, body = raw(cluster, "PUT", f"/{bucket}/ck", body=data, headers=headers).send()
        assert st == 400 and b"<Code>InvalidRequest</Code>" in body, (headers, body)
    with pytest.raises(ClientError) as e:
        s3.head_object(Bucket=bucket, Key="ck")
    assert status(e) == 404
    st, h, _ = raw(cluster, "PUT", f"/{bucket}/ck", body=data, headers={"x-amz-checksum-crc32": crc, "x-amz-sdk-checksum-algorithm": "crc32"}).send()
    assert st == 200 and h["x-amz-checksum-crc32"] == crc


def test_part_number_rules(s3, bucket):
    s3.put_object(Bucket=bucket, Key="p", Body=b"0123456789")
    # Part 1 of an object not uploaded in parts is all of it, as a range.
    r = s3.get_object(Bucket=bucket, Key="p", PartNumber=1)
    assert r["Body"].read() == b"0123456789" and r["ContentRange"] == "bytes 0-9/10"
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 206
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="p", PartNumber=1, Range="bytes=0-1")
    assert code(e) == "InvalidRequest" and status(e) == 400
    for bad in [0, 10001]:
        with pytest.raises(ClientError) as e:
            s3.get_object(Bucket=bucket, Key="p", PartNumber=bad)
        assert code(e) == "InvalidArgument" and status(e) == 400, bad
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="p", PartNumber=2)
    assert code(e) == "InvalidPartNumber" and status(e) == 416
    # A range past the end: 416 with the object's length in Content-Range.
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="p", Range="bytes=10-")
    assert code(e) == "InvalidRange" and e.value.response["ResponseMetadata"]["HTTPHeaders"]["content-range"] == "bytes */10"


def test_write_conditions_take_only_a_star(s3, bucket):
    etag = s3.put_object(Bucket=bucket, Key="w", Body=b"1")["ETag"]
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="w", Body=b"2", IfNoneMatch=etag)
    assert code(e) == "NotImplemented" and status(e) == 501
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="w", Body=b"2", IfNoneMatch="*")
    assert code(e) == "PreconditionFailed"
    assert s3.get_object(Bucket=bucket, Key="w")["Body"].read() == b"1"


def test_reserved_bucket_names_and_service_methods(cluster):
    # Raw requests: SDKs give some of these names another meaning (--x-s3).
    for name in ["amzn-s3-demo-bucket", "b--x-s3", "b--table-s3", "b.mrap", "a.-b", "a-.b"]:
        st, _, body = raw(cluster, "PUT", f"/{name}").send()
        assert st == 400 and b"<Code>InvalidBucketName</Code>" in body, name
    for method in ["PUT", "DELETE"]:
        st, _, body = raw(cluster, method, "/").send()
        assert st == 405 and b"<Code>MethodNotAllowed</Code>" in body, method


def test_response_overrides_are_signed_and_latin1(cluster, s3, bucket):
    s3.put_object(Bucket=bucket, Key="page.txt", Body=b"hello", ContentType="text/plain")
    g = s3.get_object(Bucket=bucket, Key="page.txt", ResponseContentDisposition='attachment; filename="café.txt"')
    assert g["ContentDisposition"] == 'attachment; filename="café.txt"'  # sent as ISO-8859-1, read back as such
    for value in ['attachment; filename="文書.txt"', "text/plain\nX-Injected: 1", "a\x01b"]:
        with pytest.raises(ClientError) as e:
            s3.get_object(Bucket=bucket, Key="page.txt", ResponseContentType=value)
        assert (code(e), status(e)) == ("InvalidArgument", 400), value
    # Anonymous readers of a public object may not change its headers.
    s3.put_bucket_policy(Bucket=bucket, Policy='{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*",'
                         f'"Action":"s3:GetObject","Resource":"arn:aws:s3:::{bucket}/*"}}]}}')
    url = f"http://127.0.0.1:{cluster.s3_port}/{bucket}/page.txt"
    with urllib.request.urlopen(url) as r:
        assert r.status == 200 and r.headers["Content-Type"] == "text/plain"
    for method in ("GET", "HEAD"):
        req = urllib.request.Request(url + "?response-content-type=text%2Fhtml", method=method)
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(req)
        assert e.value.code == 400
        if method == "GET":
            assert b"<Code>InvalidRequest</Code>" in e.value.read()
    s3.delete_bucket_policy(Bucket=bucket)


def test_self_copy_may_change_only_the_website_redirect(s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"x", ContentType="a/b", WebsiteRedirectLocation="/old")
    s3.copy_object(Bucket=bucket, Key="k", CopySource={"Bucket": bucket, "Key": "k"}, WebsiteRedirectLocation="/new")
    h = s3.head_object(Bucket=bucket, Key="k")
    assert h["WebsiteRedirectLocation"] == "/new" and h["ContentType"] == "a/b"
    # A copy elsewhere does not carry the redirect over (AWS: not copied).
    s3.copy_object(Bucket=bucket, Key="k2", CopySource={"Bucket": bucket, "Key": "k"})
    h2 = s3.head_object(Bucket=bucket, Key="k2")
    assert "WebsiteRedirectLocation" not in h2 and h2["ContentType"] == "a/b"
    with pytest.raises(ClientError) as e:
        s3.copy_object(Bucket=bucket, Key="k", CopySource={"Bucket": bucket, "Key": "k"})
    assert code(e) == "InvalidRequest"
