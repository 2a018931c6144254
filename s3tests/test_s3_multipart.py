"""S3 multipart uploads against a real cluster: boto3, aws cli and rclone
transfers, restarts mid-upload, aborts checked on disk, every error code,
checksums (CRC32 composite, CRC64NVME full object), listings, part copies,
expiry and the `mkv uploads` admin command."""

import base64
import filecmp
import hashlib
import http.client
import json
import os
import pathlib
import shutil
import subprocess
import tempfile
import time
import urllib.request
import uuid
import zlib

import pytest
from awscrt import checksums as crt
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError

from conftest import ACCESS, ROOT, SECRET, aws, client, code, remove_bucket, temp_cluster

MiB = 1 << 20


@pytest.fixture
def mbucket(s3):
    """A bucket removed afterwards with any upload a test left."""
    name = f"m-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    yield name
    abort_all(s3, name)
    remove_bucket(s3, name)


def abort_all(s3, bucket):
    for page in s3.get_paginator("list_multipart_uploads").paginate(Bucket=bucket):
        for u in page.get("Uploads", []):
            s3.abort_multipart_upload(Bucket=bucket, Key=u["Key"], UploadId=u["UploadId"])


@pytest.fixture
def bigdir():
    """A temp folder for large files, removed afterwards."""
    d = pathlib.Path(tempfile.mkdtemp(prefix="mkv-mpu-"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


def random_file(path, size):
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, MiB)
            f.write(os.urandom(n))
            left -= n
    return path


def chunks(path, size):
    with open(path, "rb") as f:
        while block := f.read(size):
            yield block


def multipart_etag(path, part_size):
    md5s = [hashlib.md5(c).digest() for c in chunks(path, part_size)]
    return '"%s-%d"' % (hashlib.md5(b"".join(md5s)).hexdigest(), len(md5s))


def crc32_raw(data):
    return zlib.crc32(data).to_bytes(4, "big")


def b64(raw):
    return base64.b64encode(raw).decode()


def part_files(cluster, upload_id):
    """Part files of an upload on every volume's disk."""
    return [p for _, d, _ in cluster.volumes for p in pathlib.Path(d).glob(f"**/.mpu/{upload_id}/*")]


def test_boto3_upload_file_parallel(cluster, s3, mbucket, bigdir):
    src = random_file(bigdir / "src.bin", 40 * MiB)
    config = TransferConfig(multipart_threshold=8 * MiB, multipart_chunksize=8 * MiB, max_concurrency=5, use_threads=True)
    s3.upload_file(str(src), mbucket, "big/upload.bin", Config=config, ExtraArgs={"Metadata": {"md5chksum": "x+/="}})
    head = s3.head_object(Bucket=mbucket, Key="big/upload.bin", ChecksumMode="ENABLED")
    assert head["ETag"] == multipart_etag(src, 8 * MiB) and head["ETag"].endswith('-5"')
    assert head["ContentLength"] == 40 * MiB and head["Metadata"] == {"md5chksum": "x+/="}
    # boto3 uploads parts with CRC32: the object has their composite checksum.
    crcs = b"".join(crc32_raw(c) for c in chunks(src, 8 * MiB))
    assert head["ChecksumCRC32"] == f"{b64(crc32_raw(crcs))}-5" and head["ChecksumType"] == "COMPOSITE"
    s3.download_file(mbucket, "big/upload.bin", str(bigdir / "back.bin"), Config=config)
    assert filecmp.cmp(src, bigdir / "back.bin", shallow=False)
    # One part's range, and the part count.
    whole = src.read_bytes()
    g = s3.get_object(Bucket=mbucket, Key="big/upload.bin", PartNumber=2)
    assert g["Body"].read() == whole[8 * MiB:16 * MiB] and g["PartsCount"] == 5
    assert g["ContentRange"] == f"bytes {8 * MiB}-{16 * MiB - 1}/{40 * MiB}"
    h = s3.head_object(Bucket=mbucket, Key="big/upload.bin", PartNumber=5)
    assert h["ContentLength"] == 8 * MiB and h["PartsCount"] == 5
    with pytest.raises(ClientError) as e:
        s3.head_object(Bucket=mbucket, Key="big/upload.bin", PartNumber=6)
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 416
    # An ordinary mkv object: the native API redirects to a replica with the
    # whole value's MD5.
    c = http.client.HTTPConnection("127.0.0.1", cluster.port, timeout=30)
    c.request("GET", f"/{mbucket}/big/upload.bin")
    r = c.getresponse()
    r.read()
    assert r.status == 302 and r.getheader("content-md5") == hashlib.md5(whole).hexdigest()
    assert hashlib.md5(urllib.request.urlopen(r.getheader("location")).read()).digest() == hashlib.md5(whole).digest()
    c.close()


def test_aws_cli_cp_200mib(cluster, mbucket, bigdir):
    src = random_file(bigdir / "cli.bin", 200 * MiB)
    aws(cluster, "s3", "cp", str(src), f"s3://{mbucket}/cli/200.bin")
    head = json.loads(aws(cluster, "s3api", "head-object", "--bucket", mbucket, "--key", "cli/200.bin").stdout)
    assert head["ContentLength"] == 200 * MiB and head["ETag"] == multipart_etag(src, 8 * MiB)
    aws(cluster, "s3", "cp", f"s3://{mbucket}/cli/200.bin", str(bigdir / "back.bin"))
    assert subprocess.run(["cmp", str(src), str(bigdir / "back.bin")]).returncode == 0


def test_rclone_copy_100mib(cluster, s3, mbucket, bigdir):
    local = bigdir / "up"
    local.mkdir()
    random_file(local / "r.bin", 100 * MiB)
    # The AWS SDK inside rclone reads AWS_* too (a CA bundle it fails to
    # load on plain http): configure it only through RCLONE_*.
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
        "RCLONE_CONFIG_MKV_TYPE": "s3",
        "RCLONE_CONFIG_MKV_PROVIDER": "Other",
        "RCLONE_CONFIG_MKV_ENDPOINT": cluster.endpoint,
        "RCLONE_CONFIG_MKV_ACCESS_KEY_ID": ACCESS,
        "RCLONE_CONFIG_MKV_SECRET_ACCESS_KEY": SECRET,
        "RCLONE_CONFIG_MKV_REGION": "us-east-1",
        # Multipart above 16 MiB, in 16 MiB parts (its default cutoff is 200 MiB).
        "RCLONE_CONFIG_MKV_UPLOAD_CUTOFF": "16M",
        "RCLONE_CONFIG_MKV_CHUNK_SIZE": "16M",
        "RCLONE_CONFIG": str(bigdir / "rclone.conf"),  # never written
    }

    def rclone(*args):
        r = subprocess.run(["rclone", "--retries", "1", "--low-level-retries", "1", *args], env=env, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, f"rclone {args}: {r.stdout}\n{r.stderr}"

    rclone("copy", str(local), f"mkv:{mbucket}/rc")
    head = s3.head_object(Bucket=mbucket, Key="rc/r.bin")
    assert head["ETag"].endswith('-7"') and head["ContentLength"] == 100 * MiB
    rclone("check", str(local), f"mkv:{mbucket}/rc")
    back = bigdir / "down"
    rclone("copy", f"mkv:{mbucket}/rc", str(back))
    assert filecmp.cmp(local / "r.bin", back / "r.bin", shallow=False)


def test_restart_between_parts(cluster, mbucket):
    s3 = client(cluster)
    parts = [os.urandom(5 * MiB), os.urandom(5 * MiB), b"tail"]
    up = s3.create_multipart_upload(Bucket=mbucket, Key="restart", ContentType="text/x-mpu")["UploadId"]
    etags = [s3.upload_part(Bucket=mbucket, Key="restart", UploadId=up, PartNumber=1, Body=parts[0])["ETag"]]
    cluster.restart_server()
    s3 = client(cluster)
    etags.append(s3.upload_part(Bucket=mbucket, Key="restart", UploadId=up, PartNumber=2, Body=parts[1])["ETag"])
    cluster.restart_server()
    s3 = client(cluster)
    etags.append(s3.upload_part(Bucket=mbucket, Key="restart", UploadId=up, PartNumber=3, Body=parts[2])["ETag"])
    listed = s3.list_parts(Bucket=mbucket, Key="restart", UploadId=up)["Parts"]
    assert [(p["PartNumber"], p["ETag"], p["Size"]) for p in listed] == [(i + 1, etags[i], len(parts[i])) for i in range(3)]
    cluster.restart_server()
    s3 = client(cluster)
    done = s3.complete_multipart_upload(Bucket=mbucket, Key="restart", UploadId=up, MultipartUpload={
        "Parts": [{"PartNumber": i + 1, "ETag": etags[i]} for i in range(3)]})
    g = s3.get_object(Bucket=mbucket, Key="restart")
    assert g["Body"].read() == b"".join(parts) and g["ETag"] == done["ETag"] and g["ContentType"] == "text/x-mpu"
    assert part_files(cluster, up) == []


def test_abort_removes_part_files(cluster, s3, mbucket):
    up = s3.create_multipart_upload(Bucket=mbucket, Key="aborted")["UploadId"]
    for n in (1, 2):
        s3.upload_part(Bucket=mbucket, Key="aborted", UploadId=up, PartNumber=n, Body=os.urandom(MiB))
    assert len(part_files(cluster, up)) == 4  # two parts, two replicas
    # A part uploaded again replaces the old one, on disk too.
    s3.upload_part(Bucket=mbucket, Key="aborted", UploadId=up, PartNumber=1, Body=b"again")
    deadline = time.time() + 5
    while len(part_files(cluster, up)) != 4 and time.time() < deadline:
        time.sleep(0.05)
    assert sorted(p.stat().st_size for p in part_files(cluster, up)) == [5, 5, MiB, MiB]
    assert s3.list_parts(Bucket=mbucket, Key="aborted", UploadId=up)["Parts"][0]["Size"] == 5
    assert s3.abort_multipart_upload(Bucket=mbucket, Key="aborted", UploadId=up)["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert part_files(cluster, up) == []
    assert [p for _, d, _ in cluster.volumes for p in pathlib.Path(d).glob(f"**/.mpu/{up}")] == []
    with pytest.raises(ClientError) as e:
        s3.list_parts(Bucket=mbucket, Key="aborted", UploadId=up)
    assert code(e) == "NoSuchUpload"
    with pytest.raises(ClientError) as e:
        s3.abort_multipart_upload(Bucket=mbucket, Key="aborted", UploadId=up)
    assert code(e) == "NoSuchUpload"


def test_delete_bucket_with_uploads_in_progress(cluster, s3):
    name = f"m-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    ups = []
    for key in ("a", "b/c"):
        up = s3.create_multipart_upload(Bucket=name, Key=key)["UploadId"]
        s3.upload_part(Bucket=name, Key=key, UploadId=up, PartNumber=1, Body=os.urandom(MiB))
        ups.append((key, up))
    assert all(len(part_files(cluster, up)) == 2 for _, up in ups)
    # A live object keeps the bucket, uploads and all.
    s3.put_object(Bucket=name, Key="obj", Body=b"x")
    with pytest.raises(ClientError) as e:
        s3.delete_bucket(Bucket=name)
    assert code(e) == "BucketNotEmpty"
    assert len(s3.list_multipart_uploads(Bucket=name)["Uploads"]) == 2
    s3.delete_object(Bucket=name, Key="obj")
    # Uploads alone do not: they go with the bucket, part files and records.
    assert s3.delete_bucket(Bucket=name)["ResponseMetadata"]["HTTPStatusCode"] == 204
    with pytest.raises(ClientError) as e:
        s3.head_bucket(Bucket=name)
    with pytest.raises(ClientError) as e:
        s3.create_multipart_upload(Bucket=name, Key="late")
    assert code(e) == "NoSuchBucket"
    deadline = time.time() + 10
    while any(part_files(cluster, up) for _, up in ups) and time.time() < deadline:
        time.sleep(0.05)
    assert [p for _, up in ups for p in part_files(cluster, up)] == []
    s3.create_bucket(Bucket=name)
    try:
        while s3.list_multipart_uploads(Bucket=name).get("Uploads") and time.time() < deadline:
            time.sleep(0.05)
        assert "Uploads" not in s3.list_multipart_uploads(Bucket=name)
        for key, up in ups:
            with pytest.raises(ClientError) as e:
                s3.list_parts(Bucket=name, Key=key, UploadId=up)
            assert code(e) == "NoSuchUpload"
    finally:
        remove_bucket(s3, name)


def test_error_codes(s3, mbucket):
    bogus = "0" * 32

    def fails(want, call, *args, **kw):
        with pytest.raises(ClientError) as e:
            call(*args, **kw)
        assert code(e) == want, e.value.response
        return e

    k = {"Bucket": mbucket, "Key": "err"}
    fails("NoSuchUpload", s3.upload_part, **k, UploadId=bogus, PartNumber=1, Body=b"x")
    fails("NoSuchUpload", s3.list_parts, **k, UploadId="not-an-id")
    fails("NoSuchUpload", s3.abort_multipart_upload, **k, UploadId=bogus)
    fails("NoSuchUpload", s3.complete_multipart_upload, **k, UploadId=bogus,
          MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": '"x"'}]})
    fails("NoSuchBucket", s3.create_multipart_upload, Bucket="no-such-bucket-mpu", Key="x")
    up = s3.create_multipart_upload(**k)["UploadId"]
    # The upload is under another key only.
    fails("NoSuchUpload", s3.upload_part, Bucket=mbucket, Key="other", UploadId=up, PartNumber=1, Body=b"x")
    for bad in (0, 10001):
        fails("InvalidArgument", s3.upload_part, **k, UploadId=up, PartNumber=bad, Body=b"x")
    fails("BadDigest", s3.upload_part, **k, UploadId=up, PartNumber=1, Body=b"x", ChecksumCRC32="AAAAAA==")
    small = s3.upload_part(**k, UploadId=up, PartNumber=1, Body=b"small part")["ETag"]
    big = s3.upload_part(**k, UploadId=up, PartNumber=2, Body=os.urandom(5 * MiB))["ETag"]

    def complete(parts, **extra):
        return s3.complete_multipart_upload(**k, UploadId=up, MultipartUpload={"Parts": parts}, **extra)

    fails("InvalidPart", complete, [{"PartNumber": 3, "ETag": big}])
    fails("InvalidPart", complete, [{"PartNumber": 1, "ETag": big}])
    fails("InvalidPartOrder", complete, [{"PartNumber": 2, "ETag": big}, {"PartNumber": 1, "ETag": small}])
    fails("EntityTooSmall", complete, [{"PartNumber": 1, "ETag": small}, {"PartNumber": 2, "ETag": big}])
    # Conditional Complete: the key exists now.
    s3.put_object(**k, Body=b"existing")
    e = fails("PreconditionFailed", complete, [{"PartNumber": 2, "ETag": big}], IfNoneMatch="*")
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412
    fails("PreconditionFailed", complete, [{"PartNumber": 2, "ETag": big}], IfMatch='"nope"')
    etag = s3.head_object(**k)["ETag"]
    done = complete([{"PartNumber": 2, "ETag": big}], IfMatch=etag)
    assert done["ETag"].endswith('-1"')
    # Completing again with the same list answers the same; another list
    # finds no upload.
    assert complete([{"PartNumber": 2, "ETag": big}])["ETag"] == done["ETag"]
    fails("NoSuchUpload", complete, [{"PartNumber": 1, "ETag": small}])
    fails("NoSuchUpload", s3.upload_part, **k, UploadId=up, PartNumber=3, Body=b"late")


def test_part_checksums_crc32_composite(s3, mbucket):
    k = {"Bucket": mbucket, "Key": "crc32"}
    up = s3.create_multipart_upload(**k, ChecksumAlgorithm="CRC32")
    assert up["ChecksumAlgorithm"] == "CRC32" and up["ChecksumType"] == "COMPOSITE"
    bodies = [os.urandom(5 * MiB), b"last part"]
    parts = []
    for n, body in enumerate(bodies, 1):
        r = s3.upload_part(**k, UploadId=up["UploadId"], PartNumber=n, Body=body, ChecksumAlgorithm="CRC32")
        assert r["ChecksumCRC32"] == b64(crc32_raw(body))
        parts.append({"PartNumber": n, "ETag": r["ETag"], "ChecksumCRC32": r["ChecksumCRC32"]})
    listed = s3.list_parts(**k, UploadId=up["UploadId"])
    assert [p["ChecksumCRC32"] for p in listed["Parts"]] == [p["ChecksumCRC32"] for p in parts]
    bad = [dict(parts[0], ChecksumCRC32=b64(crc32_raw(b"other"))), parts[1]]
    with pytest.raises(ClientError) as e:
        s3.complete_multipart_upload(**k, UploadId=up["UploadId"], MultipartUpload={"Parts": bad})
    assert code(e) == "InvalidPart"
    # Parts a composite checksum combines are numbered 1, 2, 3, … (AWS).
    last = s3.upload_part(**k, UploadId=up["UploadId"], PartNumber=3, Body=b"x", ChecksumAlgorithm="CRC32")
    gap = [parts[0], {"PartNumber": 3, "ETag": last["ETag"], "ChecksumCRC32": last["ChecksumCRC32"]}]
    with pytest.raises(ClientError) as e:
        s3.complete_multipart_upload(**k, UploadId=up["UploadId"], MultipartUpload={"Parts": gap})
    assert code(e) == "InvalidPartOrder"
    done = s3.complete_multipart_upload(**k, UploadId=up["UploadId"], MultipartUpload={"Parts": parts})
    want = f"{b64(crc32_raw(b''.join(crc32_raw(b) for b in bodies)))}-2"
    assert done["ChecksumCRC32"] == want and done["ChecksumType"] == "COMPOSITE"
    g = s3.get_object(**k, ChecksumMode="ENABLED")
    assert g["Body"].read() == b"".join(bodies) and g["ChecksumCRC32"] == want


def test_part_checksums_crc64nvme_full_object(s3, mbucket):
    k = {"Bucket": mbucket, "Key": "crc64"}
    up = s3.create_multipart_upload(**k, ChecksumAlgorithm="CRC64NVME")
    assert up["ChecksumType"] == "FULL_OBJECT"
    bodies = [os.urandom(5 * MiB), os.urandom(MiB + 7)]
    crc64 = lambda data: b64(crt.crc64nvme(data).to_bytes(8, "big"))  # noqa: E731
    parts = []
    for n, body in enumerate(bodies, 1):
        r = s3.upload_part(**k, UploadId=up["UploadId"], PartNumber=n, Body=body, ChecksumAlgorithm="CRC64NVME")
        assert r["ChecksumCRC64NVME"] == crc64(body)
        parts.append({"PartNumber": n, "ETag": r["ETag"], "ChecksumCRC64NVME": r["ChecksumCRC64NVME"]})
    # A part with another algorithm than the upload's is refused.
    with pytest.raises(ClientError) as e:
        s3.upload_part(**k, UploadId=up["UploadId"], PartNumber=3, Body=b"x", ChecksumAlgorithm="CRC32")
    assert code(e) == "InvalidRequest"
    whole = b"".join(bodies)
    # The whole object's value in a header of the Complete (it describes the
    # object, not the part list in the body): a wrong one is refused.
    with pytest.raises(ClientError) as e:
        s3.complete_multipart_upload(**k, UploadId=up["UploadId"], MultipartUpload={"Parts": parts}, ChecksumCRC64NVME=crc64(b"other"), ChecksumType="FULL_OBJECT")
    assert code(e) == "BadDigest"
    done = s3.complete_multipart_upload(**k, UploadId=up["UploadId"], MultipartUpload={"Parts": parts}, ChecksumCRC64NVME=crc64(whole), ChecksumType="FULL_OBJECT")
    assert done["ChecksumCRC64NVME"] == crc64(whole) and done["ChecksumType"] == "FULL_OBJECT"
    # botocore checks the full-object value against the body it reads.
    g = s3.get_object(**k, ChecksumMode="ENABLED")
    assert g["Body"].read() == whole and g["ChecksumCRC64NVME"] == crc64(whole)


def test_listings_page(s3, mbucket):
    ids = {}
    for key in ["a/1", "a/2", "b", "b", "c d+e", "z/x/y"]:
        ids.setdefault(key, []).append(s3.create_multipart_upload(Bucket=mbucket, Key=key)["UploadId"])
    pages = list(s3.get_paginator("list_multipart_uploads").paginate(Bucket=mbucket, PaginationConfig={"PageSize": 2}))
    got = [(u["Key"], u["UploadId"]) for p in pages for u in p.get("Uploads", [])]
    assert got == [(k, i) for k in sorted(ids) for i in ids[k]] and len(pages) == 3
    pages = list(s3.get_paginator("list_multipart_uploads").paginate(Bucket=mbucket, Delimiter="/", PaginationConfig={"PageSize": 1}))
    prefixes = [c["Prefix"] for p in pages for c in p.get("CommonPrefixes", [])]
    keys = [u["Key"] for p in pages for u in p.get("Uploads", [])]
    assert prefixes == ["a/", "z/"] and keys == ["b", "b", "c d+e"]
    r = s3.list_multipart_uploads(Bucket=mbucket, Prefix="a/")
    assert [u["Key"] for u in r["Uploads"]] == ["a/1", "a/2"] and not r["IsTruncated"]
    r = s3.list_multipart_uploads(Bucket=mbucket, KeyMarker="b", UploadIdMarker=ids["b"][0])
    assert [(u["Key"], u["UploadId"]) for u in r["Uploads"]][:2] == [("b", ids["b"][1]), ("c d+e", ids["c d+e"][0])]
    # Parts page by number.
    up = ids["c d+e"][0]
    for n in (1, 2, 3, 5, 8):
        s3.upload_part(Bucket=mbucket, Key="c d+e", UploadId=up, PartNumber=n, Body=str(n).encode())
    pages = list(s3.get_paginator("list_parts").paginate(Bucket=mbucket, Key="c d+e", UploadId=up, PaginationConfig={"PageSize": 2}))
    assert [[p["PartNumber"] for p in page["Parts"]] for page in pages] == [[1, 2], [3, 5], [8]]
    r = s3.list_parts(Bucket=mbucket, Key="c d+e", UploadId=up, PartNumberMarker=5)
    assert [p["PartNumber"] for p in r["Parts"]] == [8] and not r["IsTruncated"]


def test_upload_part_copy(s3, mbucket):
    source = os.urandom(6 * MiB + 100)
    s3.put_object(Bucket=mbucket, Key="src/obj", Body=source)
    k = {"Bucket": mbucket, "Key": "copied"}
    up = s3.create_multipart_upload(**k)["UploadId"]
    src = {"Bucket": mbucket, "Key": "src/obj"}
    p1 = s3.upload_part_copy(**k, UploadId=up, PartNumber=1, CopySource=src, CopySourceRange=f"bytes=0-{5 * MiB - 1}")
    p2 = s3.upload_part_copy(**k, UploadId=up, PartNumber=2, CopySource=src, CopySourceRange=f"bytes={5 * MiB}-{len(source) - 1}")
    assert p1["CopyPartResult"]["ETag"] == '"%s"' % hashlib.md5(source[:5 * MiB]).hexdigest()
    with pytest.raises(ClientError) as e:
        s3.upload_part_copy(**k, UploadId=up, PartNumber=3, CopySource=src, CopySourceRange=f"bytes=0-{len(source)}")
    assert code(e) == "InvalidArgument"
    parts = [{"PartNumber": 1, "ETag": p1["CopyPartResult"]["ETag"]}, {"PartNumber": 2, "ETag": p2["CopyPartResult"]["ETag"]}]
    s3.complete_multipart_upload(**k, UploadId=up, MultipartUpload={"Parts": parts})
    assert s3.get_object(**k)["Body"].read() == source
    # A whole object as a part.
    up = s3.create_multipart_upload(Bucket=mbucket, Key="copied2")["UploadId"]
    p = s3.upload_part_copy(Bucket=mbucket, Key="copied2", UploadId=up, PartNumber=1, CopySource=src)
    s3.complete_multipart_upload(Bucket=mbucket, Key="copied2", UploadId=up,
                                 MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": p["CopyPartResult"]["ETag"]}]})
    assert s3.get_object(Bucket=mbucket, Key="copied2")["Body"].read() == source


def mkv(c, *args):
    binary = os.environ.get("MKV_BIN", str(ROOT / "target" / "debug" / "mkv"))
    vols = ",".join(f"localhost:{p}" for p, _, _ in c.volumes)
    r = subprocess.run([binary, "--volumes", vols, "--db", str(c.db), "--db-map-gib", "4", "--replicas", "2",
                        "--subvolumes", "4", *args], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_expiry_sweep_and_admin_command(monkeypatch):
    monkeypatch.setenv("MKV_MULTIPART_EXPIRY", "2s")
    with temp_cluster() as c:
        s3 = client(c)
        s3.create_bucket(Bucket="expiry")
        stale = s3.create_multipart_upload(Bucket="expiry", Key="stale")["UploadId"]
        s3.upload_part(Bucket="expiry", Key="stale", UploadId=stale, PartNumber=1, Body=b"stale part")
        assert len(part_files(c, stale)) == 2
        deadline = time.time() + 15
        while s3.list_multipart_uploads(Bucket="expiry").get("Uploads") and time.time() < deadline:
            time.sleep(0.2)
        assert "Uploads" not in s3.list_multipart_uploads(Bucket="expiry")
        assert part_files(c, stale) == []
    monkeypatch.delenv("MKV_MULTIPART_EXPIRY")
    with temp_cluster() as c:
        s3 = client(c)
        s3.create_bucket(Bucket="admin")
        up = s3.create_multipart_upload(Bucket="admin", Key="dir/k")["UploadId"]
        s3.upload_part(Bucket="admin", Key="dir/k", UploadId=up, PartNumber=1, Body=b"1234")
        listed = json.loads(mkv(c, "uploads", "list", "--json"))
        assert listed == [{"key": "/admin/dir/k", "upload_id": up, "initiated": listed[0]["initiated"], "parts": 1, "bytes": 4}]
        assert up in mkv(c, "uploads", "list")
        # Nothing is older than a day.
        assert "0 changed" in mkv(c, "uploads", "abort", "--older-than", "1d")
        assert "aborted /admin/dir/k" in mkv(c, "uploads", "abort", up)
        assert part_files(c, up) == []
        with pytest.raises(ClientError) as e:
            s3.list_parts(Bucket="admin", Key="dir/k", UploadId=up)
        assert code(e) == "NoSuchUpload"
        s3.delete_bucket(Bucket="admin")
