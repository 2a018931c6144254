"""S3 writes are atomic and crash-safe, each test on a cluster of its own.

Proves that: a server killed with SIGKILL in the middle of concurrent
PutObject, CompleteMultipartUpload or CopyObject calls comes back with every
object whole (the old value or the new one, never missing, never mixed, ETag
and length matching the bytes) and with every acknowledged write kept (also
with the index fsynced only periodically, `--index-sync`), and
logs a recovery line at start-up; readers racing writers on one key only ever
see whole written values with valid checksums; a GET fails over from a
stopped (SIGSTOP) volume within the volume timeout, not the I/O timeout;
the files of replaced and deleted values leave the volumes after the delete
grace; and small values answered from memory follow every change."""

import base64
import collections
import functools
import hashlib
import os
import random
import re
import signal
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
from botocore.exceptions import ClientError, FlexibleChecksumError

from conftest import client, free_port, temp_cluster

KiB, MiB = 1 << 10, 1 << 20
BUCKET = "atomic"
# conftest's servers: --replicas 2, --io-timeout 10s, the default --voltimeout.
VOLTIMEOUT, REPLICAS = 1.0, 2


@pytest.fixture
def fresh():
    """A cluster for one test: the tests kill, stop and restart its processes."""
    with temp_cluster() as c:
        yield c


# --- helpers ---------------------------------------------------------------

def md5hex(data):
    return hashlib.md5(data).hexdigest()


def multipart_etag(parts):
    return f"{hashlib.md5(b''.join(hashlib.md5(p).digest() for p in parts)).hexdigest()}-{len(parts)}"


def etag(resp):
    return resp["ETag"].strip('"')


def random_value(lo=64 * KiB, hi=256 * KiB):
    return os.urandom(random.randint(lo, hi))


def put_values(s3, bucket, values):
    """PutObject each key -> bytes; returns key -> (bytes, ETag) as expected."""
    for k, v in values.items():
        s3.put_object(Bucket=bucket, Key=k, Body=v)
    return {k: (v, md5hex(v)) for k, v in values.items()}


def kill9(cluster):
    os.killpg(cluster.server.pid, signal.SIGKILL)
    cluster.server.wait()


def kill_during(cluster, ops, wait=10):
    """Run ops (name -> callable) all at once and kill -9 the server as soon as
    a random few (1 to a quarter) have been acknowledged, or after `wait`
    seconds. Returns the names of the acknowledged ops (returned without
    error, so answered before the kill). Every thread is joined."""
    target = random.randint(1, max(1, len(ops) // 4))
    acked, lock, enough = set(), threading.Lock(), threading.Event()

    def run(name, op):
        try:
            op()
        except Exception:
            return
        with lock:
            acked.add(name)
            if len(acked) >= target:
                enough.set()

    with ThreadPoolExecutor(len(ops)) as pool:
        try:
            for name, op in ops.items():
                pool.submit(run, name, op)
            enough.wait(wait)
        finally:
            kill9(cluster)
    return acked


def check_object(s3, bucket, key, old, new, acked):
    """One object after a crash: (kind of problem or None, what was read).
    old and new are (bytes, ETag); acked says the new one was acknowledged."""
    try:
        g = s3.get_object(Bucket=bucket, Key=key)
        body = g["Body"].read()
    except ClientError as e:
        return f"GET {e.response['Error']['Code']}", None
    except Exception as e:
        return f"GET {type(e).__name__}", None
    if body == new[0]:
        want = new
    elif body == old[0]:
        want = old
        if acked:
            return "acknowledged write lost (old value back)", None
    else:
        return "bytes neither old nor new", None
    if etag(g) != want[1]:
        return "ETag does not match the bytes", None
    try:
        h = s3.head_object(Bucket=bucket, Key=key)
    except ClientError as e:
        return f"HEAD {e.response['Error']['Code']}", None
    if h["ContentLength"] != len(body) or etag(h) != want[1]:
        return "HEAD length/ETag differ from GET", None
    return None, want


def verify_after_crash(cluster, bucket, old, new, acked):
    """Check every object of old/new (key -> (bytes, ETag)); fail with figures
    on any problem, else return key -> (bytes, ETag) now stored."""
    s3 = client(cluster)  # a new client: the old one's connections died with the server
    problems, examples, now = collections.Counter(), [], {}
    for k in old:
        kind, got = check_object(s3, bucket, k, old[k], new[k], k in acked)
        if kind:
            problems[kind] += 1
            examples.append(f"{k}: {kind}")
        else:
            now[k] = got
    assert not problems, (f"{sum(problems.values())} of {len(old)} objects bad after kill -9 "
                          f"({len(acked)} writes acknowledged): {dict(problems)}; e.g. {examples[:5]}")
    return now


def read_file(path):
    """A file's bytes, or None if it went away meanwhile."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None


def key_files(cluster, mkv_key):
    """Files on the volumes holding mkv_key's values: `<hex>/<hex>/<base64>`
    with an optional `.<generation>`, outside hidden folders."""
    m = hashlib.md5(mkv_key).digest()
    tail = f"{m[0]:02x}/{m[1]:02x}/{base64.b64encode(mkv_key).decode()}"
    pattern = re.compile(r"(^|/)" + re.escape(tail) + r"(\.[0-9a-f]{32})?$")
    out = []
    for _, d, _ in cluster.volumes:
        for root, dirs, files in os.walk(d):
            dirs[:] = [x for x in dirs if not x.startswith(".")]
            for f in files:
                path = os.path.join(root, f)
                if not f.startswith(".") and pattern.search(os.path.relpath(path, d)):
                    out.append(path)
    return out


# --- crashes ---------------------------------------------------------------

def crash_cycles(cluster, current, cycles, prepare, after=None):
    """`cycles` times: `prepare(cycle, current)` gives the ops (name ->
    callable) and each object's new (bytes, ETag); the server is killed -9
    while they run, restarted, and every object of `current` must be whole,
    old or new (`after(cycle)` then checks more). Returns the objects now
    stored; fails if no kill ever caught an op in flight."""
    interrupted = 0
    for cycle in range(cycles):
        ops, new = prepare(cycle, current)
        acked = kill_during(cluster, ops)
        interrupted += len(ops) - len(acked)
        cluster.start_server()
        current = verify_after_crash(cluster, BUCKET, current, new, acked)
        if after:
            after(cycle)
    assert interrupted, "the kill never caught an operation in flight"
    return current


# `1h`: no index fsync happens during the test, so every acknowledged write
# that survives lives only in the OS's page cache: durable against a crash of
# the process, as --index-sync PERIOD promises.
@pytest.mark.parametrize("index_sync", ["commit", "1h"])
def test_kill9_during_concurrent_overwrites(index_sync):
    with temp_cluster(extra_env={"MKV_DELETE_GRACE": "1s", "MKV_INDEX_SYNC": index_sync}) as fresh:
        s3 = client(fresh)
        s3.create_bucket(Bucket=BUCKET)

        def overwrites(_, current):
            new = {k: random_value() for k in current}
            w = client(fresh, max_pool_connections=len(new))
            ops = {k: functools.partial(w.put_object, Bucket=BUCKET, Key=k, Body=v) for k, v in new.items()}
            return ops, {k: (v, md5hex(v)) for k, v in new.items()}

        current = put_values(s3, BUCKET, {f"obj{i:02d}": random_value() for i in range(40)})
        current = crash_cycles(fresh, current, 3, overwrites)
        # Nothing leaks: the files of cut writes (recovery) and of replaced
        # values (the grace period) go, leaving each key's current replicas.
        deadline = time.time() + 20
        while True:
            extra = {k: len(key_files(fresh, f"/{BUCKET}/{k}".encode())) for k in current}
            extra = {k: n for k, n in extra.items() if n != REPLICAS}
            if not extra or time.time() > deadline:
                break
            time.sleep(0.5)
        assert not extra, f"keys whose file count is not {REPLICAS} after recovery and grace: {extra}"


def test_kill9_during_complete_multipart(fresh):
    s3 = client(fresh)
    s3.create_bucket(Bucket=BUCKET)

    def completions(_, current):
        s3 = client(fresh)
        new, completes = {}, {}
        for k in current:
            parts = [os.urandom(5 * MiB), random_value(1 * KiB, 64 * KiB)]
            up = s3.create_multipart_upload(Bucket=BUCKET, Key=k)["UploadId"]
            done = [{"PartNumber": n, "ETag": s3.upload_part(Bucket=BUCKET, Key=k, UploadId=up, PartNumber=n, Body=p)["ETag"]}
                    for n, p in enumerate(parts, 1)]
            new[k] = (b"".join(parts), multipart_etag(parts))
            completes[k] = dict(Bucket=BUCKET, Key=k, UploadId=up, MultipartUpload={"Parts": done})
        w = client(fresh, max_pool_connections=len(completes))
        return {k: functools.partial(w.complete_multipart_upload, **a) for k, a in completes.items()}, new

    crash_cycles(fresh, put_values(s3, BUCKET, {f"mp{i}": random_value() for i in range(8)}), 2, completions)


def test_kill9_during_copy_object(fresh):
    s3 = client(fresh)
    s3.create_bucket(Bucket=BUCKET)
    sources = {}

    def copies(cycle, current):
        sources[cycle] = put_values(s3, BUCKET, {f"src{cycle}/{k}": random_value() for k in current})
        w = client(fresh, max_pool_connections=len(current))
        ops = {k: functools.partial(w.copy_object, Bucket=BUCKET, Key=k, CopySource={"Bucket": BUCKET, "Key": f"src{cycle}/{k}"})
               for k in current}
        return ops, {k: sources[cycle][f"src{cycle}/{k}"] for k in current}

    def sources_whole(cycle):
        # The sources were only read: still whole.
        verify_after_crash(fresh, BUCKET, sources[cycle], sources[cycle], set())

    current = put_values(s3, BUCKET, {f"obj{i:02d}": random_value() for i in range(40)})
    crash_cycles(fresh, current, 2, copies, sources_whole)


def test_restart_recovery_log_line(fresh):
    s3 = client(fresh)
    s3.create_bucket(Bucket=BUCKET)
    keys = [f"obj{i:02d}" for i in range(20)]
    put_values(s3, BUCKET, {k: random_value() for k in keys})
    w = client(fresh, max_pool_connections=len(keys))
    kill_during(fresh, {k: functools.partial(w.put_object, Bucket=BUCKET, Key=k, Body=random_value()) for k in keys})
    log = fresh.base / "server.log"
    before = log.stat().st_size
    fresh.start_server()
    deadline = time.time() + 5
    while True:
        with open(log, "rb") as f:
            f.seek(before)
            after = f.read().decode(errors="replace")
        if "recovery" in after.lower() or time.time() > deadline:
            break
        time.sleep(0.1)
    assert "recovery" in after.lower(), f"no recovery line after restart; log since restart:\n{after[-2000:]}"


# --- contention --------------------------------------------------------------

def test_contention_readers_never_see_missing_or_mixed(fresh):
    size, seconds, writers, readers = 8 * MiB, 10, 8, 8
    s3 = client(fresh, max_pool_connections=writers + readers)
    s3.create_bucket(Bucket=BUCKET)
    first = os.urandom(size)
    s3.put_object(Bucket=BUCKET, Key="hot", Body=first, ChecksumAlgorithm="CRC32")
    written = {md5hex(first)}  # md5 of every value a PUT was started with
    counts, lock = collections.Counter(), threading.Lock()
    stop_at = time.time() + seconds

    def count(kind):
        with lock:
            counts[kind] += 1

    def write():
        while time.time() < stop_at:
            body = os.urandom(size)
            with lock:
                written.add(md5hex(body))
            try:
                s3.put_object(Bucket=BUCKET, Key="hot", Body=body, ChecksumAlgorithm="CRC32")
                count("writes ok")
            except ClientError as e:
                count(f"write error {e.response['Error']['Code']}")
            except Exception as e:
                count(f"write error {type(e).__name__}")

    def read():
        while time.time() < stop_at:
            try:
                g = s3.get_object(Bucket=BUCKET, Key="hot", ChecksumMode="ENABLED")
                body = g["Body"].read()  # botocore checks the CRC32 here
            except FlexibleChecksumError:
                count("read checksum mismatch")
                continue
            except ClientError as e:
                count(f"read error {e.response['Error']['Code']}")
                continue
            except Exception as e:
                count(f"read error {type(e).__name__}")
                continue
            m = md5hex(body)
            with lock:
                known = m in written
            if m != etag(g):
                count("read ETag != MD5 of bytes")
            elif not known:
                count("read bytes never written")
            elif "ChecksumCRC32" not in g:
                count("read without CRC32 checksum")
            else:
                count("reads ok")

    with ThreadPoolExecutor(writers + readers) as pool:
        futures = [pool.submit(write) for _ in range(writers)] + [pool.submit(read) for _ in range(readers)]
    for f in futures:
        f.result()
    bad_reads = {k: n for k, n in counts.items() if k.startswith("read") and k != "reads ok"}
    figures = f"{dict(counts)} ({len(written)} values written)"
    print(f"contention, {size >> 20} MiB values, {writers} writers, {readers} readers, {seconds} s: {figures}")
    assert counts["reads ok"] and counts["writes ok"], figures
    assert not bad_reads, figures


# --- a stopped volume ------------------------------------------------------------


def test_get_fails_over_fast_from_a_stopped_volume(fresh):
    bound = VOLTIMEOUT * REPLICAS + 2
    s3 = client(fresh)
    s3.create_bucket(Bucket=BUCKET)
    values = {f"obj{i:02d}": random_value(1 * KiB, 64 * KiB) for i in range(10)}
    put_values(s3, BUCKET, values)
    # A request past the bound fails on the client's side, keeping the test short.
    fast = client(fresh, read_timeout=bound + 1, connect_timeout=bound + 1)
    _, _, proc = fresh.volumes[0]
    slow = []
    os.killpg(proc.pid, signal.SIGSTOP)
    try:
        for k, v in values.items():
            for op in ("GET", "HEAD"):
                t = time.monotonic()
                try:
                    if op == "GET":
                        ok = fast.get_object(Bucket=BUCKET, Key=k)["Body"].read() == v
                    else:
                        ok = fast.head_object(Bucket=BUCKET, Key=k)["ContentLength"] == len(v)
                    outcome = "ok" if ok else "wrong answer"
                except Exception as e:
                    outcome = type(e).__name__
                took = time.monotonic() - t
                if outcome != "ok" or took >= bound:
                    slow.append(f"{op} {k}: {outcome} in {took:.1f}s")
            if len(slow) >= 3:
                break  # enough evidence; each costs up to the bound
    finally:
        os.killpg(proc.pid, signal.SIGCONT)
    assert not slow, f"with one volume stopped, requests over {bound:.0f}s or failed: {slow}"


# --- delete grace ----------------------------------------------------------------

def test_replaced_files_are_deleted_after_grace():
    with temp_cluster(extra_env={"MKV_DELETE_GRACE": "1s"}) as c:
        s3 = client(c)
        s3.create_bucket(Bucket=BUCKET)
        for _ in range(10):
            last = random_value(1 * KiB, 16 * KiB)
            s3.put_object(Bucket=BUCKET, Key="over", Body=last)
        s3.put_object(Bucket=BUCKET, Key="gone", Body=b"soon deleted")
        s3.delete_object(Bucket=BUCKET, Key="gone")
        over, gone = f"/{BUCKET}/over".encode(), f"/{BUCKET}/gone".encode()
        deadline = time.time() + 15
        while True:
            over_files, gone_files = key_files(c, over), key_files(c, gone)
            contents = [read_file(p) == last for p in over_files]
            if (len(over_files) == REPLICAS and all(contents) and not gone_files) or time.time() > deadline:
                break
            time.sleep(0.5)
        assert len(over_files) == REPLICAS and all(contents), f"overwritten key's files: {over_files} (current value: {contents})"
        assert not gone_files, f"deleted key's files left: {gone_files}"


# --- small values in memory (--cache-mib) ------------------------------------------

def cache_counts(admin):
    text = urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics").read().decode()
    return tuple(int(re.search(rf"^mkv_value_cache_{n}_total (\d+)$", text, re.M).group(1)) for n in ("hits", "misses"))


def native(c, method, key, body=None):
    req = urllib.request.Request(f"{c.endpoint}/{BUCKET}/{key}", data=body, method=method)
    return urllib.request.urlopen(req).status


def test_small_values_from_memory_follow_every_change():
    """GetObject answers small S3 values from memory, and every way a value
    changes (overwrite, copy, multipart, delete, a native rewrite, a restart)
    is seen at once: an entry is only ever the recorded generation's value."""
    admin = free_port()
    with temp_cluster(extra_args=["--admin-port", str(admin), "--cache-object-kib", "64"]) as c:
        s3 = client(c)
        s3.create_bucket(Bucket=BUCKET)
        get = lambda k, **kw: s3.get_object(Bucket=BUCKET, Key=k, **kw)["Body"].read()
        v1, v2 = os.urandom(4 * KiB), os.urandom(5 * KiB)
        s3.put_object(Bucket=BUCKET, Key="k", Body=v1)
        assert get("k") == v1
        assert cache_counts(admin) == (1, 0), "a value written through the gateway is kept"
        s3.put_object(Bucket=BUCKET, Key="k", Body=v2)
        assert get("k") == v2 and get("k", Range="bytes=100-199") == v2[100:200] and get("k", Range="bytes=-7") == v2[-7:]
        s3.copy_object(Bucket=BUCKET, Key="copy", CopySource={"Bucket": BUCKET, "Key": "k"})
        assert get("copy") == v2
        up = s3.create_multipart_upload(Bucket=BUCKET, Key="k")["UploadId"]
        e = s3.upload_part(Bucket=BUCKET, Key="k", UploadId=up, PartNumber=1, Body=v1)["ETag"]
        s3.complete_multipart_upload(Bucket=BUCKET, Key="k", UploadId=up, MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": e}]})
        assert get("k") == v1
        hits, misses = cache_counts(admin)
        assert (hits, misses) == (6, 0), (hits, misses)
        # A native DELETE and PUT: native values are never kept, the S3 one is gone.
        assert native(c, "DELETE", "k") == 204
        assert native(c, "PUT", "k", b"native value") == 201
        assert get("k") == b"native value"
        s3.delete_object(Bucket=BUCKET, Key="copy")
        with pytest.raises(ClientError) as err:
            get("copy")
        assert err.value.response["Error"]["Code"] == "NoSuchKey"
        assert cache_counts(admin) == (6, 0)
        # Larger than --cache-object-kib: streamed, never counted.
        big = os.urandom(64 * KiB + 1)
        s3.put_object(Bucket=BUCKET, Key="big", Body=big)
        assert get("big") == big and cache_counts(admin) == (6, 0)
        # After a restart memory is empty: the first read fills it.
        s3.put_object(Bucket=BUCKET, Key="k2", Body=v2)
        c.restart_server()
        assert get("k2") == v2 and get("k2") == v2
        assert cache_counts(admin) == (1, 1)
        c.extra_args += ["--cache-mib", "0"]
        c.restart_server()
        assert get("k2") == v2 and get("k2", Range="bytes=1-2") == v2[1:3]
        assert cache_counts(admin) == (0, 0), "--cache-mib 0: off"
