"""Operations: the request log, metrics, TLS (boto3; the aws cli and rclone over
TLS are in test_s3_tools.py, against the same tls_cluster)."""

import json
import os
import signal
import socket
import time
import urllib.request
import uuid

import boto3
import botocore.exceptions
import pytest
from botocore.config import Config

import rawsig
from conftest import ACCESS, REGION, SECRET, client, free_port, remove_bucket, temp_cluster


def request_lines(cluster):
    lines = (cluster.base / "server.log").read_text().splitlines()
    return [json.loads(l) for l in lines if l.startswith("{") and '"mkv::request"' in l]


def wait_lines(cluster, n):
    """The log line is written once the response is sent: wait for it."""
    deadline = time.time() + 5
    while len(request_lines(cluster)) < n and time.time() < deadline:
        time.sleep(0.05)
    return request_lines(cluster)


def test_request_log_json_s3_and_native():
    with temp_cluster(extra_env={"MKV_LOG_FORMAT": "json"}) as c:
        s3 = client(c)
        bucket = f"t-{uuid.uuid4().hex[:12]}"
        s3.create_bucket(Bucket=bucket)
        s3.put_object(Bucket=bucket, Key="a", Body=b"x" * 1000)
        url = client(c, signature_version="s3v4").generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "a"})
        assert urllib.request.urlopen(url).read() == b"x" * 1000
        signature = url.split("X-Amz-Signature=")[1].split("&")[0]
        req = urllib.request.Request(f"{c.endpoint}/native/key", data=b"hello", method="PUT")
        assert urllib.request.urlopen(req).status == 201
        lines = wait_lines(c, 4)
        assert len(lines) == 4, lines
        assert all(l["level"] == "INFO" for l in lines)
        f = [l["fields"] for l in lines]
        assert [(x["api"], x["operation"], x["status"]) for x in f] == [
            ("s3", "CreateBucket", 200), ("s3", "PutObject", 200), ("s3", "GetObject", 200), ("native", "PUT", 201)]
        put, get, native = f[1], f[2], f[3]
        assert put["bucket"] == bucket and put["bytes_in"] == 1000 and put["peer"].startswith("127.0.0.1:")
        assert get["bytes_out"] == 1000 and get["duration_ms"] >= 0
        assert native["bytes_in"] == 5 and native["bucket"] == "-" and len(native["request_id"]) == 16
        # The same id as the client saw, and no presigned credentials.
        head = s3.head_object(Bucket=bucket, Key="a")
        line = wait_lines(c, 5)[-1]["fields"]
        assert line["request_id"] == head["ResponseMetadata"]["RequestId"]
        assert "X-Amz-Signature=REDACTED" in get["uri"]
        assert signature not in (c.base / "server.log").read_text()


def test_metrics_name_s3_operations_never_buckets():
    admin = free_port()
    with temp_cluster(extra_args=["--admin-port", str(admin)]) as c:
        s3 = client(c)
        bucket = f"t-{uuid.uuid4().hex[:12]}"
        s3.create_bucket(Bucket=bucket)
        s3.put_object(Bucket=bucket, Key="a", Body=b"x" * 100)
        up = s3.create_multipart_upload(Bucket=bucket, Key="m")
        want = ['mkv_requests_total{api="s3",operation="PutObject",status="2xx"} 1',
                'mkv_requests_total{api="s3",operation="CreateMultipartUpload",status="2xx"} 1',
                "mkv_multipart_uploads_in_progress 1", "mkv_index_keys 1"]
        deadline = time.time() + 5
        while True:
            text = urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics").read().decode()
            if all(w in text.splitlines() for w in want) or time.time() > deadline:
                break
            time.sleep(0.05)
        assert all(w in text.splitlines() for w in want), text
        assert bucket not in text
        s3.abort_multipart_upload(Bucket=bucket, Key="m", UploadId=up["UploadId"])
        assert "admin: /metrics, /health, /ready on 127.0.0.1:" in (c.base / "server.log").read_text()


def test_tls_put_multipart_get_with_checksums(tls_cluster):
    c, cert = tls_cluster, tls_cluster.ca
    # By name (DNS SAN localhost) here; the aws cli and rclone tests
    # (test_s3_tools.py) reach the same server by address (IP SAN).
    s3 = boto3.client("s3", endpoint_url=f"https://localhost:{c.port}", aws_access_key_id=ACCESS,
                      aws_secret_access_key=SECRET, region_name=REGION, verify=str(cert),
                      config=Config(retries={"max_attempts": 1}))
    bucket = f"t-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    try:
        body = os.urandom(300_000)
        s3.put_object(Bucket=bucket, Key="one", Body=body, ChecksumAlgorithm="SHA256")
        got = s3.get_object(Bucket=bucket, Key="one", ChecksumMode="ENABLED")
        assert got["Body"].read() == body and "ChecksumSHA256" in got
        parts = [os.urandom(5 << 20), os.urandom(1000)]
        up = s3.create_multipart_upload(Bucket=bucket, Key="multi", ChecksumAlgorithm="CRC32")
        done = [{"PartNumber": i + 1, **{k: v for k, v in s3.upload_part(
            Bucket=bucket, Key="multi", UploadId=up["UploadId"], PartNumber=i + 1, Body=p,
            ChecksumAlgorithm="CRC32").items() if k in ("ETag", "ChecksumCRC32")}} for i, p in enumerate(parts)]
        s3.complete_multipart_upload(Bucket=bucket, Key="multi", UploadId=up["UploadId"],
                                     MultipartUpload={"Parts": done})
        got = s3.get_object(Bucket=bucket, Key="multi", ChecksumMode="ENABLED")
        assert got["Body"].read() == b"".join(parts)
        # The S3-only port is HTTPS too; plain HTTP gets no answer there.
        s3_only = boto3.client("s3", endpoint_url=f"https://127.0.0.1:{c.s3_port}", aws_access_key_id=ACCESS,
                               aws_secret_access_key=SECRET, region_name=REGION, verify=str(cert))
        assert s3_only.head_object(Bucket=bucket, Key="one")["ContentLength"] == len(body)
        with pytest.raises(Exception):
            urllib.request.urlopen(f"http://127.0.0.1:{c.port}/", timeout=5).read()
        # Clients that do not trust the certificate are refused.
        untrusting = boto3.client("s3", endpoint_url=f"https://localhost:{c.port}", aws_access_key_id=ACCESS,
                                  aws_secret_access_key=SECRET, region_name=REGION)
        with pytest.raises(botocore.exceptions.SSLError):
            untrusting.list_buckets()
        assert "(TLS)" in (c.base / "server.log").read_text()
    finally:
        remove_bucket(s3, bucket)


def test_request_log_of_uploads_the_client_cut():
    with temp_cluster(extra_env={"MKV_LOG_FORMAT": "json"}) as c:
        s3 = client(c)
        bucket = f"t-{uuid.uuid4().hex[:12]}"
        s3.create_bucket(Bucket=bucket)
        req = rawsig.Request(c.port, ACCESS, SECRET, "PUT", f"/{bucket}/cut", headers={"content-length": "100000"},
                             payload_hash="UNSIGNED-PAYLOAD")
        for method, path, headers in [("PUT", f"/{bucket}/cut", req.headers), ("PUT", "/native-cut", {"content-length": "100000"})]:
            with socket.create_connection(("127.0.0.1", c.port)) as s:
                s.sendall(f"{method} {path} HTTP/1.1\r\n".encode()
                          + "".join(f"{k}: {v}\r\n" for k, v in {"host": "x", **headers}.items()).encode() + b"\r\n"
                          + b"y" * 1000)
                time.sleep(0.3)
        lines = [l["fields"] for l in wait_lines(c, 3)[1:]]
        assert [(l["api"], l["operation"], l["bytes_in"]) for l in lines] == [("s3", "PutObject", 1000), ("native", "PUT", 1000)], lines
        assert lines[0]["bucket"] == bucket


def test_sigterm_lets_an_s3_upload_finish():
    with temp_cluster() as c:
        s3 = client(c)
        bucket = f"t-{uuid.uuid4().hex[:12]}"
        s3.create_bucket(Bucket=bucket)
        size, chunk = 200 << 20, os.urandom(1 << 20)
        req = rawsig.Request(c.port, ACCESS, SECRET, "PUT", f"/{bucket}/big", headers={"content-length": str(size)},
                             payload_hash="UNSIGNED-PAYLOAD")
        up = socket.create_connection(("127.0.0.1", c.port))
        up.sendall(f"PUT /{bucket}/big HTTP/1.1\r\n".encode()
                   + "".join(f"{k}: {v}\r\n" for k, v in req.headers.items()).encode() + b"\r\n")
        for _ in range(50):
            up.sendall(chunk)
        c.server.send_signal(signal.SIGTERM)
        deadline = time.time() + 5
        while True:
            try:
                socket.create_connection(("127.0.0.1", c.port), timeout=1).close()
            except OSError:
                break
            assert time.time() < deadline, "still accepting after SIGTERM"
            time.sleep(0.02)
        for _ in range(150):
            up.sendall(chunk)
        answer = up.makefile("rb").readline()
        up.close()
        assert answer.startswith(b"HTTP/1.1 200"), answer
        assert c.server.wait(15) == 0
        c.start_server()
        got = s3.get_object(Bucket=bucket, Key="big")["Body"].read()
        assert len(got) == size and got == chunk * 200
