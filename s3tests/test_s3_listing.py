"""S3 part 2 against a real cluster: ListObjects v1/v2 and ListObjectVersions
(paginators, delimiters, markers, url encoding), CopyObject, DeleteObjects,
virtual-hosted-style addressing, and the aws cli commands built on them."""

import base64
import concurrent.futures
import hashlib
import json
import threading
import time
import urllib.request
import uuid
import xml.etree.ElementTree as ET

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from botocore.handlers import set_list_objects_encoding_type_url

from conftest import ACCESS, REGION, S3_DOMAIN, SECRET, aws, client, code, remove_bucket, same_tree, write_tree

NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"


def put_many(cluster, bucket, keys, body=lambda k: k.encode()):
    c = client(cluster, max_pool_connections=32)
    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        list(pool.map(lambda k: c.put_object(Bucket=bucket, Key=k, Body=body(k)), keys))


def raw_list(cluster, bucket, operation="list_objects_v2", **params):
    """A listing's XML exactly as sent, through a presigned URL, with
    encoding-type only when asked for (botocore adds it otherwise)."""
    v4 = client(cluster, signature_version="s3v4")
    for op in ("ListObjects", "ListObjectsV2", "ListObjectVersions"):
        v4.meta.events.unregister(f"before-parameter-build.s3.{op}", set_list_objects_encoding_type_url)
    url = v4.generate_presigned_url(operation, Params={"Bucket": bucket, **params}, ExpiresIn=300)
    return urllib.request.urlopen(url).read().decode()


# 2,500 keys: 10 folders of 10 subfolders, 25 top-level keys, awkward names.
BIG_KEYS = sorted(
    [f"d{i % 10}/s{i % 7}/k{i:05}" for i in range(2475)]
    + [f"top {i:02}+é" for i in range(24)]
    + ["d3"]
)


@pytest.fixture(scope="module")
def big(s3, cluster):
    name = f"big-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=name)
    put_many(cluster, name, BIG_KEYS, body=lambda k: b"x" * (len(k) % 5))
    yield name
    remove_bucket(s3, name)


def test_paginators_without_delimiter(s3, big):
    assert len(BIG_KEYS) == 2500
    for page_size in (1000, 333):
        pages = list(s3.get_paginator("list_objects_v2").paginate(Bucket=big, PaginationConfig={"PageSize": page_size}))
        keys = [o["Key"] for p in pages for o in p.get("Contents", [])]
        assert keys == BIG_KEYS, page_size
        assert len(pages) == -(-2500 // page_size)
        assert all(p["KeyCount"] == len(p["Contents"]) for p in pages)
        assert [p["IsTruncated"] for p in pages] == [True] * (len(pages) - 1) + [False]
        assert "NextContinuationToken" not in pages[-1]
    keys = [o["Key"] for p in s3.get_paginator("list_objects").paginate(Bucket=big) for o in p.get("Contents", [])]
    assert keys == BIG_KEYS
    obj = s3.list_objects_v2(Bucket=big, MaxKeys=1)["Contents"][0]
    assert obj["Size"] == len(BIG_KEYS[0]) % 5 and obj["StorageClass"] == "STANDARD"
    assert obj["ETag"] == '"%s"' % hashlib.md5(b"x" * (len(BIG_KEYS[0]) % 5)).hexdigest()
    assert "Owner" not in obj
    assert s3.list_objects_v2(Bucket=big, MaxKeys=1, FetchOwner=True)["Contents"][0]["Owner"]["ID"] == ACCESS
    assert s3.list_objects(Bucket=big, MaxKeys=1)["Contents"][0]["Owner"]["ID"] == ACCESS


def test_paginators_with_delimiter(s3, big):
    folders = [f"d{i}/" for i in range(10)]
    tops = [k for k in BIG_KEYS if "/" not in k]
    for op in ("list_objects_v2", "list_objects"):
        for page_size in (1000, 4, 1):
            pages = list(s3.get_paginator(op).paginate(Bucket=big, Delimiter="/", PaginationConfig={"PageSize": page_size}))
            prefixes = [c["Prefix"] for p in pages for c in p.get("CommonPrefixes", [])]
            keys = [o["Key"] for p in pages for o in p.get("Contents", [])]
            assert prefixes == folders, (op, page_size)
            assert keys == tops, (op, page_size)
            # Prefixes count against max-keys, once.
            assert all(len(p.get("CommonPrefixes", [])) + len(p.get("Contents", [])) <= page_size for p in pages)
    pages = list(s3.get_paginator("list_objects_v2").paginate(Bucket=big, Prefix="d3/", Delimiter="/", PaginationConfig={"PageSize": 2}))
    assert [c["Prefix"] for p in pages for c in p.get("CommonPrefixes", [])] == [f"d3/s{i}/" for i in range(7)]
    assert all(p["Prefix"] == "d3/" and p["Delimiter"] == "/" for p in pages)
    # Every key exactly once when walking the folders.
    seen = []
    for folder in folders:
        for p in s3.get_paginator("list_objects_v2").paginate(Bucket=big, Prefix=folder):
            seen += [o["Key"] for o in p.get("Contents", [])]
    assert sorted(seen) == [k for k in BIG_KEYS if "/" in k]


def test_list_object_versions(s3, big):
    pages = list(s3.get_paginator("list_object_versions").paginate(Bucket=big, PaginationConfig={"PageSize": 700}))
    versions = [v for p in pages for v in p.get("Versions", [])]
    assert [v["Key"] for v in versions] == BIG_KEYS
    assert all(v["VersionId"] == "null" and v["IsLatest"] for v in versions)
    assert pages[0]["IsTruncated"] and pages[0]["NextVersionIdMarker"] == "null"
    r = s3.list_object_versions(Bucket=big, Delimiter="/", MaxKeys=3)
    assert [c["Prefix"] for c in r["CommonPrefixes"]] == ["d0/", "d1/", "d2/"] and r["NextKeyMarker"] == "d2/"
    r = s3.list_object_versions(Bucket=big, Delimiter="/", KeyMarker=r["NextKeyMarker"], MaxKeys=2)
    assert [v["Key"] for v in r["Versions"]] == ["d3"] and [c["Prefix"] for c in r["CommonPrefixes"]] == ["d3/"]
    r = s3.list_object_versions(Bucket=big, KeyMarker="d3", VersionIdMarker="null", MaxKeys=1)
    assert r["Versions"][0]["Key"] == min(k for k in BIG_KEYS if k > "d3")
    with pytest.raises(ClientError) as e:
        s3.list_object_versions(Bucket=big, VersionIdMarker="null")
    assert code(e) == "InvalidArgument"
    assert "Status" not in s3.get_bucket_versioning(Bucket=big)


def test_one_page_fields_and_edge_cases(s3, cluster, bucket):
    put_many(cluster, bucket, ["a", "a/", "a/1", "a/b/2", "a.b", "a0", "b"])
    r = s3.list_objects_v2(Bucket=bucket, MaxKeys=0)
    assert r["KeyCount"] == 0 and not r["IsTruncated"] and "Contents" not in r and r["MaxKeys"] == 0
    r = s3.list_objects_v2(Bucket=bucket, MaxKeys=5000)
    assert r["MaxKeys"] == 1000 and r["KeyCount"] == 7
    r = s3.list_objects_v2(Bucket=bucket, StartAfter="a/1")
    assert [o["Key"] for o in r["Contents"]] == ["a/b/2", "a0", "b"] and r["StartAfter"] == "a/1"
    r = s3.list_objects_v2(Bucket=bucket, Delimiter="/", StartAfter="a")
    assert [o["Key"] for o in r["Contents"]] == ["a.b", "a0", "b"] and r["CommonPrefixes"] == [{"Prefix": "a/"}]
    r = s3.list_objects_v2(Bucket=bucket, Prefix="a/", Delimiter="/")
    assert [o["Key"] for o in r["Contents"]] == ["a/", "a/1"] and r["CommonPrefixes"] == [{"Prefix": "a/b/"}]
    # v1: NextMarker only with a delimiter; a marker on a prefix skips it.
    r = s3.list_objects(Bucket=bucket, Delimiter="/", MaxKeys=3)
    assert r["IsTruncated"] and r["NextMarker"] == "a/" and [c["Prefix"] for c in r["CommonPrefixes"]] == ["a/"]
    r = s3.list_objects(Bucket=bucket, Delimiter="/", Marker=r["NextMarker"])
    assert [o["Key"] for o in r["Contents"]] == ["a0", "b"] and "CommonPrefixes" not in r and not r["IsTruncated"]
    r = s3.list_objects(Bucket=bucket, MaxKeys=2)
    assert r["IsTruncated"] and "NextMarker" not in r
    # Bad parameters.
    for params in ({"MaxKeys": -1}, {"ContinuationToken": "!!not a token!!"}, {"EncodingType": "base64"}):
        with pytest.raises(ClientError) as e:
            s3.list_objects_v2(Bucket=bucket, **params)
        assert code(e) == "InvalidArgument", params
    with pytest.raises(ClientError) as e:
        s3.list_objects_v2(Bucket="no-such-bucket-here")
    assert code(e) == "NoSuchBucket"
    # As sent: namespaced, empty markers echoed, an empty delimiter is none.
    doc = raw_list(cluster, bucket, "list_objects", Marker="", Delimiter="")
    root = ET.fromstring(doc)
    assert root.tag == NS + "ListBucketResult"
    assert root.find(NS + "Marker").text is None and root.find(NS + "Delimiter") is None
    assert len(root.findall(NS + "Contents")) == 7 and root.find(NS + "CommonPrefixes") is None
    root = ET.fromstring(raw_list(cluster, bucket, ContinuationToken=""))
    assert root.find(NS + "ContinuationToken") is not None and root.find(NS + "KeyCount").text == "7"


def test_tokens_resume_exactly(s3, cluster, bucket):
    keys = [f"p{i % 4}/{j}" for i in range(4) for j in range(3)] + [f"k{i}" for i in range(5)]
    put_many(cluster, bucket, keys)
    want = ["k0", "k1", "k2", "k3", "k4", "p0/", "p1/", "p2/", "p3/"]
    for n in range(1, 10):
        got, token, tokens = [], None, set()
        while True:
            kw = {"ContinuationToken": token} if token else {}
            r = s3.list_objects_v2(Bucket=bucket, Delimiter="/", MaxKeys=n, **kw)
            got += [o["Key"] for o in r.get("Contents", [])] + [c["Prefix"] for c in r.get("CommonPrefixes", [])]
            assert r["IsTruncated"] == ("NextContinuationToken" in r)
            if not r["IsTruncated"]:
                break
            token = r["NextContinuationToken"]
            assert token not in tokens
            tokens.add(token)
        assert sorted(got) == want, n


def test_url_encoding(s3, cluster, bucket):
    keys = ["a b/c+d", "pct%41/x", "ünï/cødé 🙂", "amp&lt<gt>", "tab\tkey", "q?x#y=z"]
    put_many(cluster, bucket, keys)
    # boto3 asks for encoding-type=url on every listing and decodes it.
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == sorted(keys)
    assert [o["Key"] for o in s3.list_objects(Bucket=bucket)["Contents"]] == sorted(keys)
    assert [v["Key"] for v in s3.list_object_versions(Bucket=bucket)["Versions"]] == sorted(keys)
    r = s3.list_objects_v2(Bucket=bucket, Delimiter="/", Prefix="", StartAfter="a b")
    assert [c["Prefix"] for c in r["CommonPrefixes"]] == ["a b/", "pct%41/", "ünï/"]
    doc = raw_list(cluster, bucket, Delimiter=" ", EncodingType="url", StartAfter="+a", MaxKeys=1)
    root = ET.fromstring(doc)
    assert root.find(NS + "EncodingType").text == "url"
    assert root.find(NS + "Delimiter").text == "%20" and root.find(NS + "StartAfter").text == "%2Ba"
    assert root.find(f"{NS}CommonPrefixes/{NS}Prefix").text == "a%20"
    # The token is opaque, never url-encoded; it still resumes.
    token = root.find(NS + "NextContinuationToken").text
    root = ET.fromstring(raw_list(cluster, bucket, Delimiter=" ", EncodingType="url", ContinuationToken=token))
    assert root.find(NS + "ContinuationToken").text == token
    assert [k.text for k in root.iter(NS + "Key")] == ["amp%26lt%3Cgt%3E", "pct%2541/x", "q%3Fx%23y%3Dz", "tab%09key"]
    assert [p.text for p in root.iter(NS + "Prefix")][1:] == ["%C3%BCn%C3%AF/c%C3%B8d%C3%A9%20"]
    # Without encoding-type: escaped XML, byte-exact after parsing.
    root = ET.fromstring(raw_list(cluster, bucket, Prefix="amp"))
    assert [k.text for k in root.iter(NS + "Key")] == ["amp&lt<gt>"]
    root = ET.fromstring(raw_list(cluster, bucket, "list_objects", EncodingType="url", Marker="a b/c+d", Prefix="p", Delimiter="/"))
    assert root.find(NS + "Marker").text == "a%20b/c%2Bd" and root.find(NS + "Prefix").text == "p"


def test_encoded_fields_are_the_ones_botocore_decodes(s3, cluster, bucket):
    """botocore asks every ListObjects, V2 and ListObjectVersions for
    encoding-type=url and decodes only some fields of each: a field encoded
    that it does not decode, or the reverse ('%' in a value), comes back
    changed. Every field must come back exactly as sent."""
    put_many(cluster, bucket, ["a\nb/1", "a\nb/2", "a\nc", "pct%41/x", "sp ace+/é&<", "z\n"])
    r = s3.list_objects(Bucket=bucket, Prefix="a\n", Delimiter="/", MaxKeys=1)
    assert (r["Prefix"], r["Delimiter"], r["NextMarker"]) == ("a\n", "/", "a\nb/")
    assert r["CommonPrefixes"] == [{"Prefix": "a\nb/"}] and "Contents" not in r
    r = s3.list_objects(Bucket=bucket, Prefix="a\n", Delimiter="/", Marker=r["NextMarker"])
    assert (r["Prefix"], r["Marker"], [o["Key"] for o in r["Contents"]]) == ("a\n", "a\nb/", ["a\nc"])
    r = s3.list_objects(Bucket=bucket, Prefix="pct%", Delimiter="\n")
    assert (r["Prefix"], r["Delimiter"], [o["Key"] for o in r["Contents"]]) == ("pct%", "\n", ["pct%41/x"])
    r = s3.list_objects(Bucket=bucket, Delimiter="\n")
    assert [c["Prefix"] for c in r["CommonPrefixes"]] == ["a\n", "z\n"]
    r = s3.list_objects_v2(Bucket=bucket, Prefix="a\n", Delimiter="/", StartAfter="a\n")
    assert (r["Prefix"], r["Delimiter"], r["StartAfter"]) == ("a\n", "/", "a\n")
    assert r["CommonPrefixes"] == [{"Prefix": "a\nb/"}] and [o["Key"] for o in r["Contents"]] == ["a\nc"]
    r = s3.list_objects_v2(Bucket=bucket, Prefix="pct%")
    assert (r["Prefix"], [o["Key"] for o in r["Contents"]]) == ("pct%", ["pct%41/x"])
    r = s3.list_object_versions(Bucket=bucket, Prefix="a\n", Delimiter="/", KeyMarker="a\n", MaxKeys=1)
    assert (r["Prefix"], r["Delimiter"], r["KeyMarker"], r["NextKeyMarker"]) == ("a\n", "/", "a\n", "a\nb/")
    r = s3.list_object_versions(Bucket=bucket, Prefix="sp ace+/", KeyMarker="pct%41/x")
    assert (r["Prefix"], r["KeyMarker"], [v["Key"] for v in r["Versions"]]) == ("sp ace+/", "pct%41/x", ["sp ace+/é&<"])
    # ListMultipartUploads: botocore neither asks nor decodes; with
    # encoding-type=url the fields AWS documents come back encoded.
    for key in ("a\nb/1", "pct%41/x"):
        s3.create_multipart_upload(Bucket=bucket, Key=key)
    r = s3.list_multipart_uploads(Bucket=bucket, Prefix="a\n", Delimiter="/", KeyMarker="a\n", EncodingType="url")
    assert (r["Prefix"], r["Delimiter"], r["KeyMarker"], r["EncodingType"]) == ("a%0A", "/", "a%0A", "url")
    assert r["CommonPrefixes"] == [{"Prefix": "a%0Ab/"}]
    r = s3.list_multipart_uploads(Bucket=bucket, Prefix="pct%", EncodingType="url")
    assert (r["Prefix"], [u["Key"] for u in r["Uploads"]]) == ("pct%25", ["pct%2541/x"])
    r = s3.list_multipart_uploads(Bucket=bucket, Prefix="pct%")
    assert (r["Prefix"], [u["Key"] for u in r["Uploads"]]) == ("pct%", ["pct%41/x"])
    for u in s3.list_multipart_uploads(Bucket=bucket)["Uploads"]:
        s3.abort_multipart_upload(Bucket=bucket, Key=u["Key"], UploadId=u["UploadId"])


def test_copy_object(s3, bucket):
    other = f"t-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=other)
    try:
        body = bytes(range(256)) * 12_000  # 3 MB: several chunks through the gateway
        src = "src dir/ünï+file?.bin"
        put = s3.put_object(Bucket=bucket, Key=src, Body=body, ContentType="application/x-src",
                            Metadata={"origin": "source"}, ChecksumAlgorithm="CRC32")
        r = s3.copy_object(Bucket=other, Key="copied", CopySource={"Bucket": bucket, "Key": src})
        assert r["CopyObjectResult"]["ETag"] == put["ETag"]
        assert r["CopyObjectResult"]["ChecksumCRC32"] == put["ChecksumCRC32"]
        g = s3.get_object(Bucket=other, Key="copied")
        assert g["Body"].read() == body and g["ContentType"] == "application/x-src" and g["Metadata"] == {"origin": "source"}
        # REPLACE takes the request's metadata.
        s3.copy_object(Bucket=bucket, Key="replaced", CopySource=f"{bucket}/{src}", MetadataDirective="REPLACE",
                       ContentType="text/x-new", Metadata={"new": "yes"})
        h = s3.head_object(Bucket=bucket, Key="replaced")
        assert h["ContentType"] == "text/x-new" and h["Metadata"] == {"new": "yes"} and h["ContentLength"] == len(body)
        # Onto itself: only with REPLACE; the bytes stay.
        with pytest.raises(ClientError) as e:
            s3.copy_object(Bucket=bucket, Key=src, CopySource={"Bucket": bucket, "Key": src})
        assert code(e) == "InvalidRequest"
        s3.copy_object(Bucket=bucket, Key=src, CopySource={"Bucket": bucket, "Key": src}, MetadataDirective="REPLACE", Metadata={"v": "2"})
        g = s3.get_object(Bucket=bucket, Key=src)
        assert g["Metadata"] == {"v": "2"} and g["ETag"] == put["ETag"] and g["Body"].read() == body
        # versionId=null is the only version; others are refused clearly.
        s3.copy_object(Bucket=bucket, Key="v", CopySource={"Bucket": bucket, "Key": src, "VersionId": "null"})
        with pytest.raises(ClientError) as e:
            s3.copy_object(Bucket=bucket, Key="v", CopySource={"Bucket": bucket, "Key": src, "VersionId": "abc"})
        assert code(e) == "InvalidArgument" and "version" in e.value.response["Error"]["Message"]
        with pytest.raises(ClientError) as e:
            s3.copy_object(Bucket=bucket, Key="x", CopySource={"Bucket": bucket, "Key": "missing"})
        assert code(e) == "NoSuchKey"
        with pytest.raises(ClientError) as e:
            s3.copy_object(Bucket=bucket, Key="x", CopySource={"Bucket": "no-such-bucket-here", "Key": "k"})
        assert code(e) == "NoSuchBucket"
        # Empty objects copy too.
        s3.put_object(Bucket=bucket, Key="empty", Body=b"")
        s3.copy_object(Bucket=bucket, Key="empty2", CopySource=f"{bucket}/empty")
        assert s3.get_object(Bucket=bucket, Key="empty2")["Body"].read() == b""
    finally:
        remove_bucket(s3, other)


def test_copy_source_conditions(s3, bucket):
    import datetime
    etag = s3.put_object(Bucket=bucket, Key="s", Body=b"conditional")["ETag"]
    past = datetime.datetime(2000, 1, 1, tzinfo=datetime.timezone.utc)
    future = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=1)
    ok = [{"CopySourceIfMatch": etag}, {"CopySourceIfNoneMatch": '"other"'}, {"CopySourceIfModifiedSince": past},
          {"CopySourceIfUnmodifiedSince": future}, {"CopySourceIfMatch": etag, "CopySourceIfUnmodifiedSince": past}]
    bad = [{"CopySourceIfMatch": '"other"'}, {"CopySourceIfNoneMatch": etag}, {"CopySourceIfModifiedSince": future},
           {"CopySourceIfUnmodifiedSince": past}, {"CopySourceIfNoneMatch": etag, "CopySourceIfModifiedSince": past}]
    for cond in ok:
        s3.copy_object(Bucket=bucket, Key="d", CopySource=f"{bucket}/s", **cond)
    for cond in bad:
        with pytest.raises(ClientError) as e:
            s3.copy_object(Bucket=bucket, Key="d2", CopySource=f"{bucket}/s", **cond)
        assert code(e) == "PreconditionFailed", cond
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="d2")


def test_delete_objects(s3, cluster, bucket):
    keys = [f"del/{i:04} é+" for i in range(1000)]
    put_many(cluster, bucket, keys, body=lambda k: b"d")
    r = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys[:500]] + [{"Key": "never-existed"}]})
    assert sorted(d["Key"] for d in r["Deleted"]) == sorted(keys[:500] + ["never-existed"]) and "Errors" not in r
    objects = [{"Key": k, "VersionId": "null"} for k in keys[500:700]] + [{"Key": keys[700], "VersionId": "3HL4kqtJl"}]
    r = s3.delete_objects(Bucket=bucket, Delete={"Objects": objects, "Quiet": True})
    assert "Deleted" not in r and [(e["Key"], e["Code"]) for e in r["Errors"]] == [(keys[700], "InvalidArgument")]
    left = [o["Key"] for p in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket) for o in p.get("Contents", [])]
    assert left == keys[700:]
    with pytest.raises(ClientError) as e:
        s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": f"k{i}"} for i in range(1001)]})
    assert code(e) == "MalformedXML"


def _without_integrity(request, **kwargs):
    for h in list(request.headers):
        if h.lower() == "content-md5" or h.lower().startswith("x-amz-checksum") or h.lower().startswith("x-amz-sdk-checksum"):
            del request.headers[h]


def _wrong_md5(request, **kwargs):
    _without_integrity(request)
    request.headers["Content-MD5"] = base64.b64encode(b"0" * 16).decode()


def test_delete_objects_needs_an_integrity_header(cluster, bucket):
    for hook, want in ((_without_integrity, "InvalidRequest"), (_wrong_md5, "BadDigest")):
        c = client(cluster)
        c.meta.events.register("before-sign.s3.DeleteObjects", hook)
        with pytest.raises(ClientError) as e:
            c.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "k"}]})
        assert code(e) == want


def virtual_client(cluster, **config):
    """Virtual-hosted-style requests to <bucket>.s3.localhost, which no
    resolver knows: the server itself is the HTTP proxy, so requests arrive
    with the request target in absolute form and the virtual Host header."""
    return boto3.client(
        "s3", endpoint_url=f"http://{S3_DOMAIN}:{cluster.port}", aws_access_key_id=ACCESS, aws_secret_access_key=SECRET,
        region_name=REGION,
        config=Config(retries={"max_attempts": 1}, s3={"addressing_style": "virtual"},
                      proxies={"http": cluster.endpoint}, **config),
    )


@pytest.mark.parametrize("signature", ["s3v4", "s3"])
def test_virtual_hosted_style(s3, cluster, bucket, signature):
    seen = []
    v = virtual_client(cluster, signature_version=signature)
    v.meta.events.register("before-send.s3", lambda request, **kw: seen.append(request.url))
    v.put_object(Bucket=bucket, Key="vh dir/ü+k", Body=b"virtual")
    assert seen[-1].startswith(f"http://{bucket}.{S3_DOMAIN}:{cluster.port}/vh%20dir/")
    assert v.get_object(Bucket=bucket, Key="vh dir/ü+k")["Body"].read() == b"virtual"
    assert s3.get_object(Bucket=bucket, Key="vh dir/ü+k")["Body"].read() == b"virtual"
    r = v.list_objects_v2(Bucket=bucket, Delimiter="/")
    assert r["CommonPrefixes"] == [{"Prefix": "vh dir/"}] and r["Name"] == bucket
    v.copy_object(Bucket=bucket, Key="copy", CopySource={"Bucket": bucket, "Key": "vh dir/ü+k"})
    v.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "copy"}]})
    assert [o["Key"] for o in v.list_objects(Bucket=bucket)["Contents"]] == ["vh dir/ü+k"]
    v.head_bucket(Bucket=bucket)
    url = v.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "vh dir/ü+k"}, ExpiresIn=60)
    assert url.startswith(f"http://{bucket}.{S3_DOMAIN}")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": cluster.endpoint}))
    assert opener.open(url).read() == b"virtual"


# ---- aws cli ----

TREE = {
    "plain.txt": b"plain\n",
    "a dir/ü file.txt": "ünïcødé\n".encode(),
    "a dir/sub dir/x+y=z.bin": bytes(range(256)) * 40,
    "日本/データ 1.txt": b"japanese\n",
    "deep/1/2/3/4/five.txt": b"5" * 3000,
    "pct%20name.txt": b"percent\n",
    "empty": b"",
}


def test_aws_cli_sync_ls_rm(cluster, s3, bucket, tmp_path):
    up, down = tmp_path / "up", tmp_path / "down"
    # Older than their upload: sync compares a local mtime (sub-second) with
    # LastModified (whole seconds), which a file written and uploaded within
    # the same second would lose.
    write_tree(up, TREE, age=3600)
    aws(cluster, "s3", "sync", str(up), f"s3://{bucket}/tree")
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]}
    assert keys == {f"tree/{k}" for k in TREE}
    aws(cluster, "s3", "sync", f"s3://{bucket}/tree", str(down))
    same_tree(up, down)
    # Nothing changed: a second sync copies nothing.
    assert aws(cluster, "s3", "sync", str(up), f"s3://{bucket}/tree").stdout.strip() == ""
    # Deletes propagate with --delete.
    (up / "plain.txt").unlink()
    aws(cluster, "s3", "sync", "--delete", str(up), f"s3://{bucket}/tree")
    aws(cluster, "s3", "sync", "--delete", f"s3://{bucket}/tree", str(down))
    same_tree(up, down)
    listing = aws(cluster, "s3", "ls", "--recursive", f"s3://{bucket}/").stdout
    for rel, data in TREE.items():
        if rel != "plain.txt":
            assert any(line.endswith(f" tree/{rel}") and f" {len(data)} " in line for line in listing.splitlines()), rel
    assert "PRE a dir/" in aws(cluster, "s3", "ls", f"s3://{bucket}/tree/").stdout
    aws(cluster, "s3", "rm", "--recursive", f"s3://{bucket}/tree/a dir")
    left = {o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])}
    assert left == {f"tree/{k}" for k in TREE if not k.startswith("a dir/") and k != "plain.txt"}
    aws(cluster, "s3", "rm", "--recursive", f"s3://{bucket}/")
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket)


def test_aws_cli_copies(cluster, s3, bucket, tmp_path):
    other = f"t-{uuid.uuid4().hex[:12]}"
    aws(cluster, "s3", "mb", f"s3://{other}")
    try:
        write_tree(tmp_path / "src", TREE)
        aws(cluster, "s3", "cp", "--recursive", str(tmp_path / "src"), f"s3://{bucket}/src")
        aws(cluster, "s3", "cp", f"s3://{bucket}/src/a dir/ü file.txt", f"s3://{other}/one copy.txt")
        assert s3.get_object(Bucket=other, Key="one copy.txt")["Body"].read() == TREE["a dir/ü file.txt"]
        aws(cluster, "s3", "cp", "--recursive", f"s3://{bucket}/src", f"s3://{other}/all")
        aws(cluster, "s3", "cp", "--recursive", f"s3://{other}/all", str(tmp_path / "back"))
        same_tree(tmp_path / "src", tmp_path / "back")
        aws(cluster, "s3api", "copy-object", "--bucket", other, "--key", "all/plain.txt",
            "--copy-source", f"{other}/all/plain.txt", "--metadata-directive", "REPLACE",
            "--metadata", "color=blue", "--content-type", "text/x-replaced")
        head = json.loads(aws(cluster, "s3api", "head-object", "--bucket", other, "--key", "all/plain.txt").stdout)
        assert head["Metadata"] == {"color": "blue"} and head["ContentType"] == "text/x-replaced"
        assert head["ContentLength"] == len(TREE["plain.txt"])
    finally:
        aws(cluster, "s3", "rb", "--force", f"s3://{other}")
    assert other not in [b["Name"] for b in s3.list_buckets()["Buckets"]]


def test_listed_size_and_etag_are_of_one_write(s3, bucket):
    """A listing reads the key records and their metadata from one snapshot
    of the index: under concurrent overwrites every entry's Size and ETag
    are those of one value (they were read in two transactions, and a
    commit between them mixed two writes)."""
    values = [bytes([i]) * (1000 + i) for i in range(50)]
    size_of = {hashlib.md5(v).hexdigest(): len(v) for v in values}
    stop_at = time.time() + 6

    def write():
        i = 0
        while time.time() < stop_at:
            s3.put_object(Bucket=bucket, Key="hot", Body=values[i % len(values)])
            i += 1

    writers = [threading.Thread(target=write) for _ in range(4)]
    for t in writers:
        t.start()
    listed, mixed = 0, []
    try:
        while time.time() < stop_at:
            for o in s3.list_objects_v2(Bucket=bucket).get("Contents", []):
                listed += 1
                if size_of.get(o["ETag"].strip('"')) != o["Size"]:
                    mixed.append((o["ETag"], o["Size"]))
    finally:
        for t in writers:
            t.join()
    assert listed > 50 and not mixed, (listed, mixed[:5])
