"""The index is a cache of the volumes (issue 15): after losing it entirely,
`mkv rebuild` gives back every S3 object whole (bytes, ETag, checksums,
stored headers, x-amz-meta-*, parts), every bucket (creation date, owner,
grants, policy, CORS rules) and every native key as before; with several
generations of a key on the volumes, the last acknowledged one. With the Go
original (built from ../shared/peers when `go` is there): volumes it wrote
rebuild as before, and its own rebuild on volumes mkv wrote recovers every
native key and skips, never mangles, the files of S3 values.

Each test runs on a cluster of its own (conftest's temp_cluster: nginx
volumes, --replicas 2, --subvolumes 4) and stops, wipes and restarts its
index. Keys are secrets and never on the volumes: they are imported again
with `mkv key import`."""

import base64
import datetime
import gzip
import hashlib
import json
import os
import pathlib
import shutil
import subprocess
import tempfile
import time
import urllib.parse

import boto3
import pytest
import urllib3
from botocore.config import Config
from botocore.exceptions import ClientError

from conftest import REGION, client, free_port, stop, temp_cluster, wait_port

KiB, MiB = 1 << 10, 1 << 20
SHARED, PRIVATE, PUBLIC, CORS, DATA = "rb-shared", "rb-private", "rb-public", "rb-cors", "rb-data"
# Answer headers that differ per request, not per object.
VOLATILE = {"date", "x-amz-request-id", "x-amz-id-2", "server", "connection", "keep-alive"}
HTTP = urllib3.PoolManager(retries=False)


# --- helpers -------------------------------------------------------------------

def admin_ok(cluster, *args):
    r = cluster.admin(*args)
    assert r.returncode == 0, f"mkv {' '.join(args)} exited {r.returncode}:\n{r.stdout}\n{r.stderr}"
    return r.stdout


def new_key(cluster, name):
    return json.loads(admin_ok(cluster, "key", "create", name, "--json"))


def as_key(cluster, k):
    return boto3.client("s3", endpoint_url=cluster.endpoint, aws_access_key_id=k["access_key_id"],
                        aws_secret_access_key=k["secret_access_key"], region_name=REGION,
                        config=Config(retries={"max_attempts": 1}))


def quoted(key):
    return urllib.parse.quote(key, safe="/")


def native_put(cluster, key, body):
    r = HTTP.request("PUT", f"http://127.0.0.1:{cluster.port}{quoted(key)}", body=body)
    assert r.status == 201, (key, r.status, r.data[:200])


def native_get(cluster, key):
    """A native GET: (status, the replicas named, bytes behind the redirect)."""
    r = HTTP.request("GET", f"http://127.0.0.1:{cluster.port}{quoted(key)}", redirect=False)
    if r.status != 302:
        return r.status, None, None
    body = HTTP.request("GET", r.headers["location"]).data
    return r.status, sorted(r.headers.get("key-volumes", "").split(",")), body


def native_list(port, prefix="/"):
    r = HTTP.request("GET", f"http://127.0.0.1:{port}{quoted(prefix)}?list")
    assert r.status == 200, (r.status, r.data[:200])
    return json.loads(r.data)["keys"]


def with_raw_headers(s3, event, headers, call):
    """Run call() with `headers` (bytes values, put on the wire as they are,
    after signing) added to `event` requests: a client sending non-UTF-8
    header values."""
    def add(request, **_):
        for name, value in headers.items():
            request.headers[name] = value
    s3.meta.events.register(f"before-send.s3.{event}", add)
    try:
        return call()
    finally:
        s3.meta.events.unregister(f"before-send.s3.{event}", add)


def form_post(cluster, url, fields, body, filename, content_type):
    form = {**fields, "file": (filename, body, content_type)}
    r = HTTP.request("POST", url, fields=form, redirect=False)
    assert r.status in (200, 201, 204), (r.status, r.data[:300])


def outcome(fn, **kw):
    """'ok', or the S3 error code (or HTTP status) a call failed with."""
    try:
        r = fn(**kw)
        if "Body" in r:
            r["Body"].read()
        return "ok"
    except ClientError as e:
        return e.response["Error"]["Code"]


def error_or(fn, pick, **kw):
    try:
        return pick(fn(**kw))
    except ClientError as e:
        return ("error", e.response["Error"]["Code"])


def headers_of(resp):
    return {n: v for n, v in resp["ResponseMetadata"]["HTTPHeaders"].items() if n not in VOLATILE}


def to_second(t):
    return t.replace(microsecond=0).isoformat()


def stop_wipe(cluster):
    """Stop the server (SIGTERM, by PID) and delete its index folder."""
    assert cluster.stop_server() == 0, "the server did not exit 0 on SIGTERM"
    shutil.rmtree(cluster.db)
    assert not cluster.db.exists()


def rebuild(cluster):
    """`mkv rebuild --json` on the cluster's (wiped) index: (exit code,
    report or None, all output)."""
    r = cluster.admin("rebuild", "--json", timeout=120)
    out = f"exit {r.returncode}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr[-3000:]}"
    try:
        report = json.loads(r.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        report = None
    return r.returncode, report, out


def compare(before, after):
    """Every differing entry of two snapshots (dicts), as readable lines."""
    lines = []
    for name in sorted(set(before) | set(after), key=str):
        b, a = before.get(name, "<absent>"), after.get(name, "<absent>")
        if b != a:
            if isinstance(b, dict) and isinstance(a, dict):
                for f in sorted(set(b) | set(a)):
                    if b.get(f, "<absent>") != a.get(f, "<absent>"):
                        lines.append(f"{name} [{f}]: before {b.get(f, '<absent>')!r}, after {a.get(f, '<absent>')!r}")
            else:
                lines.append(f"{name}: before {b!r}, after {a!r}")
    return lines


def mkv_key_files(volume_dir):
    """Every file under a volume folder but nginx's own: relative path -> sha256."""
    out = {}
    for root, dirs, files in os.walk(volume_dir):
        dirs[:] = [d for d in dirs if d != ".nginx"]
        for f in files:
            p = os.path.join(root, f)
            out[os.path.relpath(p, volume_dir)] = hashlib.sha256(pathlib.Path(p).read_bytes()).hexdigest()
    return out


# --- what the tests write ------------------------------------------------------------

class World:
    """The buckets, keys and objects one test wrote, and how to read them all."""

    def __init__(self, cluster):
        self.c = cluster
        self.s3 = client(cluster)
        self.alice = new_key(cluster, "alice")
        self.bob = new_key(cluster, "bob")
        self.objects = {}   # (bucket, key) -> bytes
        self.multipart = set()  # (bucket, key) of objects completed from parts
        self.native = {}    # native key -> bytes
        self.native_under_bucket = set()  # (bucket, key) written natively

    def keys(self):
        return {"alice": self.alice, "bob": self.bob}

    def clients(self):
        return {"admin": client(self.c), "alice": as_key(self.c, self.alice), "bob": as_key(self.c, self.bob)}

    def write(self):
        s3, c = self.s3, self.c
        alice = as_key(c, self.alice)
        # Buckets: two of alice's (bob may read one), a public-read one, one
        # with CORS rules, one for most objects.
        alice.create_bucket(Bucket=SHARED)
        alice.create_bucket(Bucket=PRIVATE)
        admin_ok(c, "bucket", "allow", SHARED, "--key", self.bob["access_key_id"], "--read")
        for b in (PUBLIC, CORS, DATA):
            s3.create_bucket(Bucket=b)
        s3.put_bucket_tagging(Bucket=DATA, Tagging={"TagSet": [{"Key": "cost", "Value": "storage team"}]})
        s3.put_bucket_versioning(Bucket=DATA, VersioningConfiguration={"Status": "Suspended"})
        s3.put_bucket_policy(Bucket=PUBLIC, Policy=json.dumps({"Version": "2012-10-17", "Statement": [
            {"Sid": "PublicRead", "Effect": "Allow", "Principal": "*", "Action": ["s3:GetObject"],
             "Resource": [f"arn:aws:s3:::{PUBLIC}/*"]}]}))
        s3.put_bucket_cors(Bucket=CORS, CORSConfiguration={"CORSRules": [
            {"ID": "web", "AllowedOrigins": ["https://app.example.com"], "AllowedMethods": ["GET", "PUT"],
             "AllowedHeaders": ["*"], "ExposeHeaders": ["ETag", "x-amz-meta-author"], "MaxAgeSeconds": 600},
            {"AllowedOrigins": ["*"], "AllowedMethods": ["GET"]}]})

        def put(bucket, key, body, who=s3, **kw):
            who.put_object(Bucket=bucket, Key=key, Body=body, **kw)
            self.objects[(bucket, key)] = body

        # PutObject with every stored header, user metadata (UTF-8 and a
        # non-UTF-8 byte) and SHA256 / CRC32C checksums.
        text = "the full report\n".encode() * 500
        zipped = gzip.compress(text)
        # botocore refuses non-ASCII metadata: those go on the wire as raw
        # bytes (UTF-8, and Latin-1 which is not UTF-8).
        raw = {"x-amz-meta-author": "Zoë".encode(), "x-amz-meta-latin": b"caf\xe9"}
        with_raw_headers(s3, "PutObject", raw, lambda: put(
            DATA, "put/full.txt.gz", zipped, ContentType="text/plain; charset=utf-8", CacheControl="max-age=60, private",
            ContentDisposition='attachment; filename="report.txt"', ContentEncoding="gzip", ContentLanguage="fr",
            Expires=datetime.datetime(2031, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc),
            Metadata={"plain": "x y", "dashed-name": "1"}, ChecksumAlgorithm="SHA256"))
        put(DATA, "put/crc32c.bin", os.urandom(70 * KiB), ContentType="application/octet-stream",
            Metadata={"k": "v"}, ChecksumAlgorithm="CRC32C", Tagging="team=storage&empty=&note=two%20words")
        put(DATA, "put/plain", b"")  # empty, nothing stored but the defaults
        put(DATA, "dir/ünï cødé 🙂.txt", b"odd name", ContentType="text/plain")
        # CopyObject with REPLACE to a new key, and onto itself (a metadata-only copy).
        s3.copy_object(Bucket=DATA, Key="copy/replaced", CopySource={"Bucket": DATA, "Key": "put/crc32c.bin"},
                       MetadataDirective="REPLACE", ContentType="image/png", CacheControl="no-cache",
                       Metadata={"copied": "yes"}, TaggingDirective="REPLACE", Tagging="copied=yes")
        self.objects[(DATA, "copy/replaced")] = self.objects[(DATA, "put/crc32c.bin")]
        put(DATA, "copy/self", b"same bytes, new metadata", ContentType="text/plain", Metadata={"v": "1"})
        with_raw_headers(s3, "CopyObject", {"x-amz-meta-note": "Zoë again".encode()}, lambda: s3.copy_object(
            Bucket=DATA, Key="copy/self", CopySource={"Bucket": DATA, "Key": "copy/self"},
            MetadataDirective="REPLACE", ContentType="text/markdown", ContentDisposition="inline", Metadata={"v": "2"}))
        # Multipart: CRC32 composite, 3 parts; CRC64NVME full object, 2 parts.
        self.complete(DATA, "mp/composite", [os.urandom(5 * MiB), os.urandom(5 * MiB), os.urandom(3 * KiB + 1)],
                      "CRC32", None, ContentType="video/mp4", Metadata={"kind": "composite"})
        self.complete(DATA, "mp/full", [os.urandom(5 * MiB), os.urandom(MiB + 7)], "CRC64NVME", "FULL_OBJECT",
                      ContentType="application/x-tar", CacheControl="max-age=1", Metadata={"kind": "full"},
                      Tagging="kind=full")
        # Tags set after the write (the metadata files rewritten in place).
        s3.put_object_tagging(Bucket=DATA, Key="mp/composite", Tagging={"TagSet": [{"Key": "ü:é", "Value": "日本 x+y"}]})
        # A browser form upload (POST Object, SigV4 policy).
        v4 = client(c, signature_version="s3v4")
        p = v4.generate_presigned_post(PUBLIC, "forms/${filename}", Fields={"x-amz-meta-owner": "web", "Content-Type": "image/png"},
                                       Conditions=[["starts-with", "$key", "forms/"], {"x-amz-meta-owner": "web"},
                                                   {"Content-Type": "image/png"}], ExpiresIn=300)
        photo = os.urandom(40 * KiB)
        form_post(c, p["url"], p["fields"], photo, "photo.png", "image/png")
        self.objects[(PUBLIC, "forms/photo.png")] = photo
        # Objects of the other buckets, alice's by alice.
        put(SHARED, "doc", b"alice's shared doc", who=alice, ContentType="text/plain", Metadata={"by": "alice"})
        put(PRIVATE, "secret", b"alice's secret", who=alice)
        put(PUBLIC, "pub/photo.jpg", b"jpeg bytes", ContentType="image/jpeg")
        put(CORS, "page.html", b"<html></html>", ContentType="text/html", Metadata={"author": "web"})
        # Native keys, one of them under a bucket's prefix (an S3 object too).
        for k, v in {"/native/plain": b"native value", "/native/dir/with space ü": os.urandom(10 * KiB),
                     f"/{DATA}/native-under-bucket": b"from the native API"}.items():
            native_put(c, k, v)
            self.native[k] = v
        self.native_under_bucket.add((DATA, "native-under-bucket"))

    def complete(self, bucket, key, parts, algorithm, kind, **kw):
        s3 = self.s3
        extra = {"ChecksumType": kind} if kind else {}
        up = s3.create_multipart_upload(Bucket=bucket, Key=key, ChecksumAlgorithm=algorithm, **extra, **kw)["UploadId"]
        done = []
        for n, body in enumerate(parts, 1):
            r = s3.upload_part(Bucket=bucket, Key=key, UploadId=up, PartNumber=n, Body=body, ChecksumAlgorithm=algorithm)
            field = f"Checksum{algorithm}"
            done.append({"PartNumber": n, "ETag": r["ETag"], field: r[field]})
        r = s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=up, MultipartUpload={"Parts": done})
        assert r["ETag"].endswith(f'-{len(parts)}"'), r
        self.objects[(bucket, key)] = b"".join(parts)
        self.multipart.add((bucket, key))

    # --- snapshots ---------------------------------------------------------------

    def snapshot(self):
        """Everything a client can see of what was written, keyed by a name."""
        c = client(self.c)
        snap = {}
        for (b, k), body in sorted(self.objects.items()):
            h = c.head_object(Bucket=b, Key=k, ChecksumMode="ENABLED")
            snap[f"head {b}/{k}"] = headers_of(h)
            snap[f"head fields {b}/{k}"] = {f: h.get(f) for f in (
                "ETag", "ContentLength", "ContentType", "Metadata", "CacheControl", "ContentDisposition",
                "ContentEncoding", "ContentLanguage", "ExpiresString", "ChecksumCRC32", "ChecksumCRC32C",
                "ChecksumCRC64NVME", "ChecksumSHA256", "ChecksumSHA1", "ChecksumType", "PartsCount")}
            snap[f"last-modified {b}/{k}"] = to_second(h["LastModified"])
            snap[f"tags {b}/{k}"] = c.get_object_tagging(Bucket=b, Key=k)["TagSet"]
            g = c.get_object(Bucket=b, Key=k, ChecksumMode="ENABLED")
            data = g["Body"].read()  # botocore validates the checksum here
            snap[f"get {b}/{k}"] = {"bytes": hashlib.sha256(data).hexdigest(), "right bytes": data == body, **headers_of(g)}
            if (b, k) in self.multipart:
                for n in (1, 2):
                    p = c.head_object(Bucket=b, Key=k, PartNumber=n, ChecksumMode="ENABLED")
                    snap[f"head part {n} {b}/{k}"] = headers_of(p)
        for b in self.buckets():
            listed = [o for page in c.get_paginator("list_objects_v2").paginate(Bucket=b) for o in page.get("Contents", [])]
            snap[f"list {b}"] = [(o["Key"], o["ETag"], o["Size"], to_second(o["LastModified"]), o.get("StorageClass"))
                                 for o in listed if (b, o["Key"]) not in self.native_under_bucket]
            # A native value has no metadata file: its MD5 (the S3 ETag) comes
            # back only with `rebuild --checksums`, as before issue 15.
            snap[f"list native {b}"] = [(o["Key"], o["Size"]) for o in listed if (b, o["Key"]) in self.native_under_bucket]
            snap[f"policy {b}"] = error_or(c.get_bucket_policy, lambda r: json.loads(r["Policy"]), Bucket=b)
            snap[f"cors {b}"] = error_or(c.get_bucket_cors, lambda r: r["CORSRules"], Bucket=b)
            snap[f"tags {b}"] = error_or(c.get_bucket_tagging, lambda r: r["TagSet"], Bucket=b)
            snap[f"versioning {b}"] = c.get_bucket_versioning(Bucket=b).get("Status")
            info = json.loads(admin_ok(self.c, "bucket", "info", b, "--json"))
            snap[f"info {b}"] = info
        for who, cl in self.clients().items():
            snap[f"buckets seen by {who}"] = [(x["Name"], to_second(x["CreationDate"])) for x in cl.list_buckets()["Buckets"]]
        snap["permissions"] = self.permissions()
        for k in sorted(self.native):
            status, volumes, data = native_get(self.c, k)
            snap[f"native {k}"] = {"status": status, "volumes": volumes, "right bytes": data == self.native[k]}
        snap["native list"] = native_list(self.c.port, "/native/")
        return snap

    def buckets(self):
        return [SHARED, PRIVATE, PUBLIC, CORS, DATA]

    def permissions(self):
        out = {}
        reads = {SHARED: "doc", PRIVATE: "secret", PUBLIC: "pub/photo.jpg", DATA: "put/plain"}
        for who, cl in self.clients().items():
            for b, k in reads.items():
                out[f"{who} GetObject {b}"] = outcome(cl.get_object, Bucket=b, Key=k)
                out[f"{who} ListObjectsV2 {b}"] = outcome(cl.list_objects_v2, Bucket=b)
        for b, k in reads.items():
            r = HTTP.request("GET", f"http://127.0.0.1:{self.c.s3_port}/{b}/{quoted(k)}")
            out[f"anonymous GetObject {b}"] = r.status
        r = HTTP.request("OPTIONS", f"http://127.0.0.1:{self.c.s3_port}/{CORS}/page.html",
                         headers={"Origin": "https://app.example.com", "Access-Control-Request-Method": "PUT"})
        out["CORS preflight"] = (r.status, r.headers.get("access-control-allow-origin"), r.headers.get("access-control-max-age"))
        return out

    def check_written(self, snap):
        """The set-up did what it says (so a comparison failure is the rebuild's)."""
        full = snap[f"head fields {DATA}/put/full.txt.gz"]
        assert full["Metadata"] == {"author": "Zoë".encode().decode("latin-1"), "plain": "x y", "dashed-name": "1",
                                    "latin": "caf\xe9"}, full
        assert full["ContentEncoding"] == "gzip" and full["CacheControl"] == "max-age=60, private" and full["ChecksumSHA256"], full
        assert snap[f"head fields {DATA}/put/crc32c.bin"]["ChecksumCRC32C"]
        assert snap[f"head fields {DATA}/copy/self"]["Metadata"] == {"v": "2", "note": "Zoë again".encode().decode("latin-1")}
        assert snap[f"head fields {DATA}/copy/replaced"]["ContentType"] == "image/png"
        comp, fullobj = snap[f"head fields {DATA}/mp/composite"], snap[f"head fields {DATA}/mp/full"]
        assert comp["ChecksumType"] == "COMPOSITE" and comp["ChecksumCRC32"].endswith("-3") and comp["ETag"].endswith('-3"'), comp
        assert fullobj["ChecksumType"] == "FULL_OBJECT" and fullobj["ChecksumCRC64NVME"], fullobj
        assert all(v["right bytes"] for n, v in snap.items() if n.startswith("get ") or n.startswith("native /")), "a read gave wrong bytes"
        assert snap[f"head fields {PUBLIC}/forms/photo.png"]["Metadata"] == {"owner": "web"}
        p = snap["permissions"]
        assert p[f"bob GetObject {SHARED}"] == "ok" and p[f"bob GetObject {PRIVATE}"] == "AccessDenied", p
        assert p[f"alice GetObject {DATA}"] == "AccessDenied" and p[f"alice GetObject {PRIVATE}"] == "ok", p
        assert p[f"anonymous GetObject {PUBLIC}"] == 200 and p[f"anonymous GetObject {DATA}"] == 403, p
        assert p["CORS preflight"][0] == 200, p
        info = snap[f"info {SHARED}"]
        assert info["owner"] == self.alice["access_key_id"] and info["grants"][self.bob["access_key_id"]]["read"], info
        assert snap[f"cors {CORS}"][0]["ID"] == "web" and snap[f"policy {PUBLIC}"]["Statement"][0]["Sid"] == "PublicRead"
        assert all(s["status"] == 302 for n, s in snap.items() if n.startswith("native /"))

    def import_keys(self):
        for name, k in self.keys().items():
            admin_ok(self.c, "key", "import", k["access_key_id"], k["secret_access_key"], "--name", name)


# --- tests ---------------------------------------------------------------------------

def test_rebuild_recovers_every_s3_object_and_bucket():
    with temp_cluster() as c:
        w = World(c)
        w.write()
        before = w.snapshot()
        w.check_written(before)
        stop_wipe(c)
        w.import_keys()  # keys are secrets: never on the volumes
        code, report, out = rebuild(c)
        print(out)
        assert code == 0, out
        assert report is not None and report["failed"] == 0, out
        # Nothing to report: every key is known (admin keys from the server's
        # settings, the others imported), every value described, no value
        # replaced, no upload in progress.
        assert not report["failures"] and not report["actions"], out
        c.start_server()
        after = w.snapshot()
        diff = compare(before, after)
        assert not diff, f"{len(diff)} differences after rebuild:\n" + "\n".join(diff[:60]) + f"\n\nrebuild said:\n{out}"


def test_rebuild_takes_the_last_acknowledged_generation_and_reports_unknown_keys():
    # --delete-grace 60s: the replaced values' files are all still on the volumes.
    with temp_cluster(extra_args=["--delete-grace", "60s"]) as c:
        w = World(c)
        w.write()
        s3 = client(c)
        values = [os.urandom(1 * KiB + i) for i in range(8)]
        for i, v in enumerate(values):
            s3.put_object(Bucket=DATA, Key="hot", Body=v, Metadata={"round": str(i)},
                          **({"ChecksumAlgorithm": "CRC32"} if i % 2 else {}))
        w.objects[(DATA, "hot")] = values[-1]
        # One more: a multipart value replaced by a single-part one, and back.
        w.complete(DATA, "flip", [os.urandom(5 * MiB), b"tail"], "CRC32", None)
        s3.put_object(Bucket=DATA, Key="flip", Body=b"single now")
        w.complete(DATA, "flip", [os.urandom(5 * MiB), b"tail again"], "CRC32", None)
        before = w.snapshot()
        w.check_written(before)
        head = before[f"head fields {DATA}/hot"]
        assert head["ETag"] == f'"{hashlib.md5(values[-1]).hexdigest()}"' and head["Metadata"] == {"round": "7"}
        hot = f"/{DATA}/hot".encode()
        b64 = base64.b64encode(hot).decode()
        files = [p for _, d, _ in c.volumes for p in pathlib.Path(d).rglob(b64 + ".*") if not p.name.endswith(".meta")]
        assert len(files) >= 2 * len(values), f"the replaced generations are gone already: {files}"
        stop_wipe(c)
        # Keys imported only after the rebuild: it must name the key ids its
        # buckets mention that the index does not know.
        code, report, out = rebuild(c)
        print(out)
        assert code == 0, out
        problems = [f"the rebuild does not report {name}'s key id {k['access_key_id']} as unknown"
                    for name, k in w.keys().items() if k["access_key_id"] not in out]
        w.import_keys()
        c.start_server()
        after = w.snapshot()
        problems += compare(before, after)
        assert not problems, f"{len(problems)} problems after rebuild:\n" + "\n".join(problems[:60]) + f"\n\nrebuild said:\n{out}"


# --- the Go original -------------------------------------------------------------

GO_SRC = pathlib.Path(__file__).resolve().parent.parent.parent / "shared" / "peers" / "minikeyvalue" / "src"


@pytest.fixture(scope="module")
def mkv_go():
    """The Go original built from ../shared/peers (offline, Debian's Go and libraries)."""
    go = shutil.which("go")
    if not go:
        pytest.skip("no `go` on PATH (scripts/deps --bench installs golang-go)")
    if not GO_SRC.is_dir():
        pytest.skip(f"no Go original at {GO_SRC}")
    out = pathlib.Path(tempfile.mkdtemp(prefix="mkv-go-"))
    try:
        shutil.copytree(GO_SRC, out / "src")
        env = {**os.environ, "GO111MODULE": "off", "GOPATH": "/usr/share/gocode", "GOCACHE": str(out / "cache"), "GOFLAGS": ""}
        r = subprocess.run([go, "build", "-o", str(out / "mkv-go"), "."], cwd=out / "src", env=env,
                           capture_output=True, text=True, timeout=300)
        if r.returncode != 0:
            pytest.skip(f"go build of the original failed (golang-github-syndtr-goleveldb-dev missing?): {r.stderr[-500:]}")
        yield out / "mkv-go"
    finally:
        shutil.rmtree(out, ignore_errors=True)


def test_go_original_rebuild_on_our_volumes(mkv_go):
    with temp_cluster() as c:
        s3 = client(c)
        s3.create_bucket(Bucket=DATA)
        natives = {"/native/plain": b"native value", "/native/dir/with space": os.urandom(10 * KiB),
                   f"/{DATA}/native-under-bucket": b"from the native API", "/big": os.urandom(3 * MiB)}
        for k, v in natives.items():
            native_put(c, k, v)
        objects = {"put/one": b"s3 value", "put/two": os.urandom(20 * KiB), "a" * 300: b"a key over the original's name limit"}
        for k, v in objects.items():
            s3.put_object(Bucket=DATA, Key=k, Body=v, Metadata={"m": "1"}, ChecksumAlgorithm="SHA256")
        s3.copy_object(Bucket=DATA, Key="copy", CopySource={"Bucket": DATA, "Key": "put/one"}, MetadataDirective="REPLACE",
                       ContentType="text/plain")
        up = s3.create_multipart_upload(Bucket=DATA, Key="mp")["UploadId"]
        etag = s3.upload_part(Bucket=DATA, Key="mp", UploadId=up, PartNumber=1, Body=b"one part")["ETag"]
        s3.complete_multipart_upload(Bucket=DATA, Key="mp", UploadId=up, MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]})
        # Keys whose standard base64 holds a '/' land in nested folders, which
        # the original's rebuild does not walk (for its own writes too): keep
        # to keys it can find, and say so.
        for k in list(natives) + [f"/{DATA}/{k}" for k in (*objects, "copy", "mp")]:
            assert "/" not in base64.b64encode(k.encode()).decode(), f"pick another test key than {k!r}"
        assert c.stop_server() == 0
        files_before = {d: mkv_key_files(d) for _, d, _ in c.volumes}
        assert any(f.endswith(".meta") for fs in files_before.values() for f in fs), "no metadata files on the volumes"

        go_db = c.base / "go-db"
        go_args = [str(mkv_go), "-volumes", ",".join(c.volume_names), "-db", str(go_db), "-replicas", "2", "-subvolumes", "4"]
        r = subprocess.run([*go_args, "rebuild"], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
        # Its log: one line per key recorded, a decode error per file skipped.
        skipped = r.stdout.count("base64 decode error")
        port = free_port()
        go = subprocess.Popen([*go_args, "-port", str(port), "server"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
        try:
            wait_port(port, go)
            listed = native_list(port)
            assert sorted(listed) == sorted(natives), (f"the original's index after its rebuild lists {listed}, "
                                                       f"want exactly the native keys {sorted(natives)}\n{r.stdout[-3000:]}")
            for k, v in natives.items():
                g = HTTP.request("GET", f"http://127.0.0.1:{port}{quoted(k)}", redirect=False)
                assert g.status == 302, (k, g.status)
                assert HTTP.request("GET", g.headers["location"]).data == v, k
            for k in (*objects, "copy", "mp"):
                g = HTTP.request("GET", f"http://127.0.0.1:{port}{quoted(f'/{DATA}/{k}')}", redirect=False)
                assert g.status == 404, (k, g.status)
        finally:
            stop(go)
        assert skipped >= 2 * (len(objects) + 2), f"only {skipped} files skipped:\n{r.stdout[-3000:]}"
        files_after = {d: mkv_key_files(d) for _, d, _ in c.volumes}
        assert files_after == files_before, "the original's rebuild or server changed files on the volumes"
        # mkv still reads everything from the same volumes and its own index.
        c.start_server()
        for k, v in natives.items():
            assert native_get(c, k)[2] == v, k
        for k, v in objects.items():
            assert client(c).get_object(Bucket=DATA, Key=k)["Body"].read() == v, k


def test_volumes_the_go_original_wrote_rebuild_as_before(mkv_go):
    with temp_cluster() as c:
        assert c.stop_server() == 0
        port = free_port()
        go_args = [str(mkv_go), "-volumes", ",".join(c.volume_names), "-db", str(c.base / "go-db"), "-replicas", "2",
                   "-subvolumes", "4"]
        go = subprocess.Popen([*go_args, "-port", str(port), "server"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
        written = {"/go/plain": b"written by the original", "/go/dir/with space": os.urandom(20 * KiB),
                   f"/{DATA}/from-go": b"under a bucket's prefix", "/big": os.urandom(2 * MiB)}
        try:
            wait_port(port, go)
            for k, v in written.items():
                r = HTTP.request("PUT", f"http://127.0.0.1:{port}{quoted(k)}", body=v)
                assert r.status == 201, (k, r.status)
        finally:
            stop(go)
        shutil.rmtree(c.db)
        code, report, out = rebuild(c)
        assert code == 0 and report is not None and report["failed"] == 0, out
        c.start_server()
        assert native_list(c.port) == sorted(written), out
        for k, v in written.items():
            status, volumes, data = native_get(c, k)
            assert status == 302 and data == v and len(volumes) == 2, (k, status, volumes)


def test_rebuild_keeps_the_value_committed_last_over_cut_and_overtaken_writes():
    """Files of two other values beside a key's value, as a crash or a race
    leaves them within the delete grace: a generation that started later
    but has no metadata file (a write cut before its commit), and one that
    started later still, with a metadata file whose commit time is earlier
    (it lost the commit race). The rebuild keeps the value committed last
    and reports the others."""
    with temp_cluster() as c:
        s3 = client(c)
        s3.create_bucket(Bucket=DATA)
        value = os.urandom(3 * KiB)
        s3.put_object(Bucket=DATA, Key="k", Body=value, ContentType="text/x-kept", Metadata={"who": "kept"})
        head = s3.head_object(Bucket=DATA, Key="k")
        b64 = base64.b64encode(f"/{DATA}/k".encode()).decode()
        metas = [p for _, d, _ in c.volumes for p in pathlib.Path(d).rglob(b64 + ".*.meta")]
        assert len(metas) == 2, metas
        for meta_path in metas:
            kept = json.loads(meta_path.read_bytes())
            start = int(kept["generation"][:16], 16)
            folder, name = meta_path.parent, meta_path.name[: -len(".meta")]
            base = name[: -len(kept["generation"]) - 1]
            cut = f"{start + 1_000_000:016x}{'ab' * 8}"
            (folder / f"{base}.{cut}").write_bytes(b"cut before its commit")
            lost = f"{start + 2_000_000:016x}{'cd' * 8}"
            loser = b"overtaken at its commit"
            (folder / f"{base}.{lost}").write_bytes(loser)
            described = {**kept, "generation": lost, "written_us": kept["written_us"] - 1, "size": len(loser),
                         "md5": hashlib.md5(loser).hexdigest(), "etag": hashlib.md5(loser).hexdigest(),
                         "headers": [["content-type", "text/x-lost"]]}
            (folder / f"{base}.{lost}.meta").write_text(json.dumps(described))
        stop_wipe(c)
        code, report, out = rebuild(c)
        assert code == 0, out
        kinds = [a["kind"] for a in report["actions"]]
        assert "committed last" in kinds and "older value left" in kinds, out
        c.start_server()
        after = s3.head_object(Bucket=DATA, Key="k")
        assert (after["ETag"], after["ContentType"], after["Metadata"]) == (head["ETag"], "text/x-kept", {"who": "kept"})
        assert s3.get_object(Bucket=DATA, Key="k")["Body"].read() == value
        # The other values' files are orphans now: verify finds them.
        r = c.admin("verify", "--orphans", "--min-orphan-age", "0s", "--json")
        orphans = [f for f in json.loads(r.stdout.strip().splitlines()[-1])["failures"] if f["kind"] == "orphan"]
        assert len(orphans) == 6, r.stdout
