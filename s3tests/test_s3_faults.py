"""Faults under the S3 gateway, on a cluster of its own: a dead volume, a
client that disconnects mid-upload."""

import os
import signal
import socket
import subprocess
import time

import pytest
from botocore.exceptions import ClientError

import rawsig
from conftest import ACCESS, ROOT, SECRET, client, temp_cluster, wait_port


@pytest.fixture(scope="module")
def faulty():
    with temp_cluster() as c:
        yield c


def test_dead_volume_reads_fail_over_and_writes_keep_old_value(faulty):
    s3 = client(faulty)
    s3.create_bucket(Bucket="faults")
    bodies = {f"k{i}": os.urandom(1000 + i) for i in range(30)}
    for k, b in bodies.items():
        s3.put_object(Bucket="faults", Key=k, Body=b)
    _, _, proc = faulty.volumes[0]
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)
        # Two replicas out of three volumes: every object still reads whole.
        for k, b in bodies.items():
            assert s3.get_object(Bucket="faults", Key=k)["Body"].read() == b, k
        # An overwrite that needs the dead volume fails and keeps the old value.
        failed = 0
        for k, b in bodies.items():
            try:
                s3.put_object(Bucket="faults", Key=k, Body=b"new value")
            except ClientError as e:
                assert e.response["Error"]["Code"] == "InternalError"
                failed += 1
                assert s3.get_object(Bucket="faults", Key=k)["Body"].read() == b
        assert failed > 0
    finally:
        if proc.poll() is not None:
            faulty.volumes[0] = _restart_volume(faulty, 0)


def _restart_volume(cluster, i):
    port, d, _ = cluster.volumes[i]
    p = subprocess.Popen([str(ROOT / "nginx" / "volume"), str(d)], env={**os.environ, "PORT": str(port), "WORKERS": "1"},
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    wait_port(port, p)
    return (port, d, p)


def test_client_disconnect_mid_upload_commits_nothing(faulty):
    s3 = client(faulty)
    s3.create_bucket(Bucket="cut")
    s3.put_object(Bucket="cut", Key="obj", Body=b"old")
    # Files a previous test's writes may still be collecting.
    before = set(_files(faulty))
    body = os.urandom(4 << 20)
    req = rawsig.Request(faulty.port, ACCESS, SECRET, "PUT", "/cut/obj", body=body)
    sock = socket.create_connection(("127.0.0.1", faulty.port))
    head = "PUT /cut/obj HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in req.headers.items())
    head += f"content-length: {len(body)}\r\n\r\n"
    sock.sendall(head.encode() + body[: len(body) // 2])
    sock.close()
    # The old value stays; no file of the cut upload remains once the
    # server has seen the disconnect (bounded wait, not a speed check).
    deadline = time.time() + 10
    while True:
        time.sleep(0.2)
        left = set(_files(faulty)) - before
        if not left or time.time() > deadline:
            break
    assert not left, left
    assert s3.get_object(Bucket="cut", Key="obj")["Body"].read() == b"old"


def _files(cluster):
    out = []
    for _, d, _ in cluster.volumes:
        for root, _, files in os.walk(d):
            if "/.nginx" in root:
                continue
            out += [os.path.join(root, f) for f in files]
    return out


def test_a_stopped_volume_fails_writes_fast_after_its_first_stall(faulty):
    s3 = client(faulty, read_timeout=60)
    s3.create_bucket(Bucket="stall")
    _, _, proc = faulty.volumes[1]
    outcomes = []
    os.killpg(proc.pid, signal.SIGSTOP)
    try:
        for i in range(12):
            t = time.monotonic()
            try:
                # A client (a connection) each: they land on every server worker.
                client(faulty, read_timeout=60).put_object(Bucket="stall", Key=f"k{i}", Body=b"x" * 100)
                outcomes.append(("ok", time.monotonic() - t))
            except ClientError as e:
                outcomes.append((e.response["Error"]["Code"], time.monotonic() - t))
    finally:
        os.killpg(proc.pid, signal.SIGCONT)
    failed = [o for o in outcomes if o[0] != "ok"]
    # The first write the stopped volume holds fails after the I/O timeout
    # (10 s here); later ones fail at once (a probe within --voltimeout, 1 s)
    # with a 503, instead of each holding its client for another timeout.
    assert len(failed) >= 2, outcomes
    assert failed[0][0] == "ServiceUnavailable" and failed[0][1] >= 9, outcomes
    assert all(code == "ServiceUnavailable" and took < 3 for code, took in failed[1:]), outcomes
    assert all(took < 3 for code, took in outcomes if code == "ok"), outcomes
    # Answering again, it takes writes again (the first probe clears it).
    for i in range(12):
        s3.put_object(Bucket="stall", Key=f"k{i}", Body=b"y")
        assert s3.get_object(Bucket="stall", Key=f"k{i}")["Body"].read() == b"y"


def test_native_deletes_fail_fast_on_a_stopped_volume(faulty):
    """A native DELETE is a volume write too: the first one a stopped volume
    holds fails after the I/O timeout, later ones at once (503); once the
    volume answers again they complete."""
    import urllib.request

    def call(method, key, body=None):
        req = urllib.request.Request(f"{faulty.endpoint}/native-del/{key}", data=body, method=method)
        t = time.monotonic()
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                return r.status, time.monotonic() - t
        except urllib.error.HTTPError as e:
            return e.code, time.monotonic() - t

    import base64
    import pathlib

    _, folder, proc = faulty.volumes[1]
    for i in range(12):
        assert call("PUT", f"k{i}", b"v")[0] == 201
    # The keys with a replica on the volume stopped (2 replicas of 3 volumes).
    names = {f"k{i}": base64.b64encode(f"/native-del/k{i}".encode()).decode() for i in range(12)}
    held = [k for k, n in names.items() if "/" not in n and any(pathlib.Path(folder).rglob(n))][:3]
    assert len(held) == 3, held
    os.killpg(proc.pid, signal.SIGSTOP)
    try:
        first = call("DELETE", held[0])
        later = [call("DELETE", k) for k in held[1:]]
    finally:
        os.killpg(proc.pid, signal.SIGCONT)
    assert first[0] == 503 and first[1] >= 9, first
    assert all(st == 503 and took < 3 for st, took in later), later
    # A DELETE refused at once changed nothing: the key is still there.
    assert all(call("GET", k)[0] == 200 for k in held[1:])  # the redirect followed
    for k in held:
        assert call("DELETE", k)[0] == 204
        assert call("GET", k)[0] == 404


def test_reads_stop_waiting_for_a_stopped_volume(faulty):
    """A native GET checks a replica with a HEAD before it redirects; a
    stopped volume makes that HEAD wait --voltimeout (1 s). Once one read
    found it silent, reads try it last: one slow read, not one in three."""
    import http.client

    def get(key):
        conn = http.client.HTTPConnection("127.0.0.1", faulty.port, timeout=30)
        t = time.monotonic()
        conn.request("GET", f"/native-read/{key}")
        status = conn.getresponse().status
        conn.close()
        return status, time.monotonic() - t

    for i in range(10):
        conn = http.client.HTTPConnection("127.0.0.1", faulty.port, timeout=30)
        conn.request("PUT", f"/native-read/k{i}", body=b"v")
        assert conn.getresponse().status == 201
    _, _, proc = faulty.volumes[1]
    os.killpg(proc.pid, signal.SIGSTOP)
    try:
        reads = [get(f"k{i % 10}") for i in range(30)]
    finally:
        os.killpg(proc.pid, signal.SIGCONT)
    assert all(st == 302 for st, _ in reads), reads
    assert sum(took > 0.8 for _, took in reads) <= 1, reads
    # A write's probe finds it answering again and clears the mark.
    conn = http.client.HTTPConnection("127.0.0.1", faulty.port, timeout=30)
    conn.request("PUT", "/native-read/after", body=b"v")
    assert conn.getresponse().status == 201
