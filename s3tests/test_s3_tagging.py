"""Bucket tags, object tags (PutObjectTagging, GetObjectTagging, DeleteObjectTagging,
`x-amz-tagging` on PutObject, CopyObject and multipart; POST's `tagging`
field is in test_s3_post.py) and
GetObjectAttributes, with boto3 against a real cluster."""

import os

import pytest
from botocore.exceptions import ClientError

from conftest import code

MiB = 1 << 20


def tagset(pairs):
    return {"TagSet": [{"Key": k, "Value": v} for k, v in pairs]}


def tags_of(s3, bucket, key):
    return [(t["Key"], t["Value"]) for t in s3.get_object_tagging(Bucket=bucket, Key=key)["TagSet"]]


def tag_count(s3, bucket, key):
    """x-amz-tagging-count of a GET and of a HEAD (None when absent)."""
    g = s3.get_object(Bucket=bucket, Key=key)
    g["Body"].read()
    h = s3.head_object(Bucket=bucket, Key=key)
    return g.get("TagCount"), h["ResponseMetadata"]["HTTPHeaders"].get("x-amz-tagging-count")


def test_tags_set_read_replaced_and_deleted_without_touching_the_object(s3, bucket):
    body = os.urandom(1000)
    s3.put_object(Bucket=bucket, Key="k", Body=body, Tagging="team=storage&note=two%20words&empty=")
    assert tags_of(s3, bucket, "k") == [("team", "storage"), ("note", "two words"), ("empty", "")]
    assert tag_count(s3, bucket, "k") == (3, "3")
    before = s3.head_object(Bucket=bucket, Key="k")
    s3.put_object_tagging(Bucket=bucket, Key="k", Tagging=tagset([("a", "1"), ("ü:é", "日本 x+y=z@/._-")]))
    assert tags_of(s3, bucket, "k") == [("a", "1"), ("ü:é", "日本 x+y=z@/._-")]
    after = s3.head_object(Bucket=bucket, Key="k")
    # Tags are not the object: the same bytes, ETag and Last-Modified.
    assert (after["ETag"], after["LastModified"]) == (before["ETag"], before["LastModified"])
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == body
    s3.delete_object_tagging(Bucket=bucket, Key="k")
    assert tags_of(s3, bucket, "k") == []
    assert tag_count(s3, bucket, "k") == (None, None)
    # A new value of the key has only the tags it was written with.
    s3.put_object_tagging(Bucket=bucket, Key="k", Tagging=tagset([("old", "1")]))
    s3.put_object(Bucket=bucket, Key="k", Body=b"new")
    assert tags_of(s3, bucket, "k") == []
    for call in (lambda: s3.get_object_tagging(Bucket=bucket, Key="missing"),
                 lambda: s3.put_object_tagging(Bucket=bucket, Key="missing", Tagging=tagset([("a", "1")]))):
        with pytest.raises(ClientError) as e:
            call()
        assert code(e) == "NoSuchKey"


@pytest.mark.parametrize("pairs,want", [
    ([(f"k{i}", "v") for i in range(11)], "BadRequest"),
    ([("k" * 129, "v")], "InvalidTag"),
    ([("k", "v" * 257)], "InvalidTag"),
    ([("a", "1"), ("a", "2")], "InvalidTag"),
    ([("aws:reserved", "1")], "InvalidTag"),
    ([("comma,key", "1")], "InvalidTag"),
])
def test_tag_sets_aws_refuses(s3, bucket, pairs, want):
    s3.put_object(Bucket=bucket, Key="k", Body=b"x", Tagging="kept=1")
    with pytest.raises(ClientError) as e:
        s3.put_object_tagging(Bucket=bucket, Key="k", Tagging=tagset(pairs))
    assert code(e) == want and e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert tags_of(s3, bucket, "k") == [("kept", "1")]
    # The same set on a write refuses the write.
    header = "&".join(f"{k}={v}" for k, v in pairs)
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="other", Body=b"x", Tagging=header)
    assert code(e) == want
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="other")


def test_limits_that_pass(s3, bucket):
    pairs = [(f"k{i}", "v") for i in range(9)] + [("k" * 128, "v" * 256)]
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    s3.put_object_tagging(Bucket=bucket, Key="k", Tagging=tagset(pairs))
    assert tags_of(s3, bucket, "k") == pairs


def test_copies_keep_or_replace_tags(s3, bucket):
    s3.put_object(Bucket=bucket, Key="src", Body=b"source", Tagging="from=src")
    s3.copy_object(Bucket=bucket, Key="kept", CopySource={"Bucket": bucket, "Key": "src"})
    assert tags_of(s3, bucket, "kept") == [("from", "src")]
    s3.copy_object(Bucket=bucket, Key="replaced", CopySource={"Bucket": bucket, "Key": "src"},
                   TaggingDirective="REPLACE", Tagging="new=1")
    assert tags_of(s3, bucket, "replaced") == [("new", "1")]
    s3.copy_object(Bucket=bucket, Key="cleared", CopySource={"Bucket": bucket, "Key": "src"}, TaggingDirective="REPLACE")
    assert tags_of(s3, bucket, "cleared") == []
    # A metadata-only copy onto itself keeps the tags unless told otherwise.
    s3.copy_object(Bucket=bucket, Key="src", CopySource={"Bucket": bucket, "Key": "src"},
                   MetadataDirective="REPLACE", ContentType="text/plain")
    assert tags_of(s3, bucket, "src") == [("from", "src")]
    assert s3.head_object(Bucket=bucket, Key="src")["ContentType"] == "text/plain"
    s3.copy_object(Bucket=bucket, Key="src", CopySource={"Bucket": bucket, "Key": "src"},
                   MetadataDirective="REPLACE", TaggingDirective="REPLACE", Tagging="self=2")
    assert tags_of(s3, bucket, "src") == [("self", "2")]
    with pytest.raises(ClientError) as e:
        s3.copy_object(Bucket=bucket, Key="x", CopySource={"Bucket": bucket, "Key": "src"}, TaggingDirective="MERGE")
    assert code(e) == "InvalidArgument"


def test_multipart_upload_tags_and_attributes(s3, bucket):
    up = s3.create_multipart_upload(Bucket=bucket, Key="mp", Tagging="kind=multipart", ChecksumAlgorithm="CRC32")["UploadId"]
    parts = [os.urandom(5 * MiB), os.urandom(5 * MiB), os.urandom(1234)]
    done = []
    for n, body in enumerate(parts, 1):
        r = s3.upload_part(Bucket=bucket, Key="mp", UploadId=up, PartNumber=n, Body=body, ChecksumAlgorithm="CRC32")
        done.append({"PartNumber": n, "ETag": r["ETag"], "ChecksumCRC32": r["ChecksumCRC32"]})
    etag = s3.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=up, MultipartUpload={"Parts": done})["ETag"]
    assert tags_of(s3, bucket, "mp") == [("kind", "multipart")]
    a = s3.get_object_attributes(Bucket=bucket, Key="mp", ObjectAttributes=["ETag", "Checksum", "ObjectParts", "StorageClass", "ObjectSize"])
    assert a["ETag"] == etag.strip('"') and a["ObjectSize"] == sum(map(len, parts)) and a["StorageClass"] == "STANDARD"
    assert a["Checksum"]["ChecksumType"] == "COMPOSITE" and a["Checksum"]["ChecksumCRC32"].endswith("-3")
    op = a["ObjectParts"]
    assert op["TotalPartsCount"] == 3 and op["IsTruncated"] is False
    assert [(p["PartNumber"], p["Size"], p["ChecksumCRC32"]) for p in op["Parts"]] == \
        [(d["PartNumber"], len(b), d["ChecksumCRC32"]) for d, b in zip(done, parts)]
    # Paged: one part after part 1.
    page = s3.get_object_attributes(Bucket=bucket, Key="mp", ObjectAttributes=["ObjectParts"], MaxParts=1, PartNumberMarker=1)
    op = page["ObjectParts"]
    assert [p["PartNumber"] for p in op["Parts"]] == [2] and op["IsTruncated"] is True and op["NextPartNumberMarker"] == 2
    assert "ETag" not in page and "ObjectSize" not in page


def test_object_attributes_of_a_plain_object(s3, bucket):
    r = s3.put_object(Bucket=bucket, Key="k", Body=b"attributes", ChecksumAlgorithm="SHA256")
    a = s3.get_object_attributes(Bucket=bucket, Key="k", ObjectAttributes=["ETag", "Checksum", "ObjectParts", "ObjectSize"])
    assert a["ETag"] == r["ETag"].strip('"') and a["ObjectSize"] == 10
    assert a["Checksum"] == {"ChecksumSHA256": r["ChecksumSHA256"], "ChecksumType": "FULL_OBJECT"}
    assert "ObjectParts" not in a and "StorageClass" not in a
    assert a["LastModified"] == s3.head_object(Bucket=bucket, Key="k")["LastModified"]
    with pytest.raises(ClientError) as e:
        s3.get_object_attributes(Bucket=bucket, Key="missing", ObjectAttributes=["ETag"])
    assert code(e) == "NoSuchKey"
    with pytest.raises(ClientError) as e:
        s3.get_object_attributes(Bucket=bucket, Key="k", ObjectAttributes=["Color"])
    assert code(e) == "InvalidArgument"



def test_bucket_tags(s3, bucket):
    with pytest.raises(ClientError) as e:
        s3.get_bucket_tagging(Bucket=bucket)
    assert code(e) == "NoSuchTagSet" and e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    pairs = [(f"k{i}", f"v{i}") for i in range(49)] + [("cost center", "ü 1")]
    r = s3.put_bucket_tagging(Bucket=bucket, Tagging=tagset(pairs))
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert [(t["Key"], t["Value"]) for t in s3.get_bucket_tagging(Bucket=bucket)["TagSet"]] == pairs
    for bad in ([(f"k{i}", "v") for i in range(51)], [("a", "1"), ("a", "2")], [("aws:x", "1")]):
        with pytest.raises(ClientError) as e:
            s3.put_bucket_tagging(Bucket=bucket, Tagging=tagset(bad))
        assert code(e) == "InvalidTag"
    assert len(s3.get_bucket_tagging(Bucket=bucket)["TagSet"]) == 50
    s3.delete_bucket_tagging(Bucket=bucket)
    with pytest.raises(ClientError) as e:
        s3.get_bucket_tagging(Bucket=bucket)
    assert code(e) == "NoSuchTagSet"
    with pytest.raises(ClientError) as e:
        s3.put_bucket_tagging(Bucket="no-such-bucket-here", Tagging=tagset([("a", "1")]))
    assert code(e) == "NoSuchBucket"
