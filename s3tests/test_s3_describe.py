"""Metadata files and bucket files stay true to the index (issue 15, item 6).

Every S3 value has a metadata file `<value file>.meta` (JSON) beside each
replica, and every bucket a file `/.mkv/buckets/<name>.json` on every volume.
These tests prove, on real clusters (nginx volumes, --replicas 2,
--subvolumes 4, each test on a cluster of its own), that:

1. `mkv verify` names exactly the replicas whose metadata file is missing,
   different or unreadable (kind "metadata"), `mkv repair` rewrites exactly
   those ("described"), byte-identical to what the write put there, and the
   files say what HeadObject says (ETag, size, headers, checksum, parts);
2. `verify` reports missing and different bucket files ("bucket file"),
   `repair` rewrites them; a bucket file of a bucket the index does not hold
   is reported and left for the operator;
3. `mkv rebalance` (direct, and through the server's REBALANCE) moves each
   metadata file with its value: after adding volumes, every value file has
   its metadata file beside it and no metadata file is alone; `verify
   --orphans` is clean, a stray metadata file is an orphan and `repair
   --delete-orphans` deletes it; objects read back as before;
4. the collector deletes the metadata files of replaced and deleted values
   with the values after --delete-grace;
5. a PutObject cut mid-body leaves no metadata file (and no value file)."""

import base64
import hashlib
import json
import os
import pathlib
import shutil
import socket
import subprocess
import time
import urllib.parse

import pytest
import urllib3

import rawsig
from conftest import ACCESS, ROOT, SECRET, client, free_port, temp_cluster, wait_port

KiB, MiB = 1 << 10, 1 << 20
BUCKET = "describe"
REPLICAS = 2
BOUND = 30  # seconds each test may take
HTTP = urllib3.PoolManager(retries=False)


@pytest.fixture(autouse=True)
def bounded():
    t = time.monotonic()
    yield
    took = time.monotonic() - t
    assert took < BOUND, f"the test took {took:.1f} s (bound {BOUND} s)"


# --- files on the volumes --------------------------------------------------------

class VFile:
    """A key's file on a volume: its value file or its metadata file."""

    def __init__(self, target, key, gen, meta, path):
        self.target, self.key, self.gen, self.meta, self.path = target, key, gen, meta, path

    def __repr__(self):
        return f"{'meta' if self.meta else 'value'} {self.key!r} gen {self.gen or '-'} on {self.target}"


def volume_files(cluster):
    """Every key file on every volume (hidden folders — nginx's, bucket
    files, multipart parts — left out), decoded from its path:
    <vol>/svNN/<hex>/<hex>/<base64 key>[.<gen>][.meta]."""
    out = []
    for port, d, _ in cluster.volumes:
        d = pathlib.Path(d)
        for root, dirs, files in os.walk(d):
            dirs[:] = [x for x in dirs if not x.startswith(".")]
            for f in files:
                p = pathlib.Path(root) / f
                rel = p.relative_to(d).parts
                assert len(rel) >= 4 and rel[0].startswith("sv"), f"unexpected file {p}"
                name = "/".join(rel[3:])
                meta = name.endswith(".meta")
                if meta:
                    name = name[: -len(".meta")]
                b64, dot, gen = name.rpartition(".")
                if not dot or len(gen) != 32:
                    b64, gen = name, ""
                out.append(VFile(f"localhost:{port}/{rel[0]}", base64.b64decode(b64), gen, meta, p))
    return out


def s3key(bucket, k):
    return f"/{bucket}/{k}".encode()


def bucket_file(volume_dir, name):
    return pathlib.Path(volume_dir) / ".mkv" / "buckets" / f"{name}.json"


def check_pairs(cluster, expect_keys=None):
    """Every value file of a generation has its metadata file beside it and
    every metadata file its value; each S3 key has exactly REPLICAS value
    files, one generation, on REPLICAS distinct targets, all with
    byte-identical metadata files. Returns problems (lines) and
    {key: {target: VFile of the value}}."""
    problems, by_key = [], {}
    files = volume_files(cluster)
    where = {(f.target, f.key, f.gen, f.meta): f for f in files}
    for f in files:
        if not f.gen:
            if f.meta:
                problems.append(f"metadata file at a native path: {f}")
            continue  # a native value: no metadata file
        if (f.target, f.key, f.gen, not f.meta) not in where:
            problems.append(f"{f} is alone: no {'value' if f.meta else 'metadata file'} beside it")
    values = {}
    for f in files:
        if f.gen and not f.meta:
            values.setdefault(f.key, []).append(f)
    for key, vs in values.items():
        if len(vs) != REPLICAS or len({f.gen for f in vs}) != 1 or len({f.target for f in vs}) != REPLICAS:
            problems.append(f"{key!r}: value files {sorted(vs, key=repr)}, want {REPLICAS} of one generation")
        by_key[key] = replicas = {f.target: f for f in vs}
        metas = {(f.target, f.gen) for f in files if f.key == key and f.meta}
        contents = {pathlib.Path(str(f.path) + ".meta").read_bytes() for f in replicas.values()
                    if (f.target, f.gen) in metas}
        if len(contents) > 1:
            problems.append(f"{key!r}: the replicas' metadata files differ")
    if expect_keys is not None:
        missing = sorted(set(expect_keys) - set(by_key))
        if missing:
            problems.append(f"keys without value files: {missing}")
    return problems, by_key


def meta_of(vfile):
    return json.loads(pathlib.Path(str(vfile.path) + ".meta").read_bytes())


def wait_for(cond, timeout=10):
    deadline = time.time() + timeout
    while True:
        ok = cond()
        if ok or time.time() > deadline:
            return ok
        time.sleep(0.1)


# --- admin commands ---------------------------------------------------------------

def admin_json(cluster, *args):
    """`mkv ARGS --json`: (exit code, report, all output for messages)."""
    r = cluster.admin(*args, "--json")
    out = f"mkv {' '.join(args)}: exit {r.returncode}\nstdout:\n{r.stdout[-6000:]}\nstderr:\n{r.stderr[-3000:]}"
    try:
        report = json.loads(r.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise AssertionError(f"no JSON report\n{out}")
    return r.returncode, report, out


def items(report, which="failures"):
    """(kind, key, volume) of each item; a volume that is a URL unescaped
    (bucket files' URLs come escaped in more than one way)."""
    def volume(v):
        return urllib.parse.unquote(v) if v and v.startswith("http") else v
    return sorted((i["kind"], i.get("key"), volume(i.get("volume"))) for i in report[which])


# --- S3 side -----------------------------------------------------------------------

STORED = ("content-type", "cache-control", "content-disposition", "content-encoding", "content-language", "expires")


def header_value(v):
    return base64.b64decode(v["base64"]).decode("latin-1") if isinstance(v, dict) else v


def check_against_head(s3, bucket, key, meta, body=None):
    """Problems between a metadata file's JSON and HeadObject (ETag, size,
    stored headers and x-amz-meta-*, checksum, parts) and, given the bytes,
    their MD5."""
    h = s3.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
    hh = h["ResponseMetadata"]["HTTPHeaders"]
    p = []
    if meta.get("version") != 1:
        p.append(f"version {meta.get('version')}")
    if (meta.get("bucket"), meta.get("key")) != (bucket, key):
        p.append(f"names {meta.get('bucket')}/{meta.get('key')}")
    if meta.get("etag") != h["ETag"].strip('"'):
        p.append(f"etag {meta.get('etag')} vs HEAD {h['ETag']}")
    if meta.get("size") != h["ContentLength"]:
        p.append(f"size {meta.get('size')} vs HEAD {h['ContentLength']}")
    if body is not None:
        if meta.get("md5") != hashlib.md5(body).hexdigest():
            p.append(f"md5 {meta.get('md5')} vs the bytes' {hashlib.md5(body).hexdigest()}")
        if meta.get("size") != len(body):
            p.append(f"size {meta.get('size')} vs {len(body)} bytes")
    stored = {n: header_value(v) for n, v in meta.get("headers", [])}
    for n, v in stored.items():
        if hh.get(n) != v:
            p.append(f"header {n}: file {v!r}, HEAD {hh.get(n)!r}")
    for n, v in hh.items():
        if (n.startswith("x-amz-meta-") or n in STORED[1:]) and stored.get(n) != v:
            p.append(f"HEAD header {n}: {v!r}, file {stored.get(n)!r}")
    algos = [a for a in ("CRC32", "CRC32C", "CRC64NVME", "SHA1", "SHA256") if h.get(f"Checksum{a}")]
    c = meta.get("checksum")
    if algos:
        a = algos[0]
        want = {"algorithm": a, "type": h.get("ChecksumType"), "value": h[f"Checksum{a}"]}
        if c != want:
            p.append(f"checksum {c} vs HEAD {want}")
    elif c is not None:
        p.append(f"checksum {c}, HEAD shows none")
    parts = meta.get("parts", [])
    if sum(x["size"] for x in parts) not in (0, meta.get("size")):
        p.append(f"part sizes {parts} do not add up to {meta.get('size')}")
    if parts != [] and not meta.get("etag", "").endswith(f"-{len(parts)}"):
        p.append(f"{len(parts)} parts, ETag {meta.get('etag')}")
    # Each part as HEAD ?partNumber= answers it: size, own checksum, count.
    for n, part in enumerate(parts, 1):
        hp = s3.head_object(Bucket=bucket, Key=key, PartNumber=n, ChecksumMode="ENABLED")
        got = {"size": hp["ContentLength"], "count": hp.get("PartsCount")}
        want = {"size": part["size"], "count": len(parts)}
        if c:
            got["checksum"], want["checksum"] = hp.get(f"Checksum{c['algorithm']}"), part.get("checksum")
        if got != want:
            p.append(f"part {n}: file {want}, HEAD {got}")
    return [f"{bucket}/{key}: {x}" for x in p]


def multipart(s3, bucket, key, parts, algorithm="CRC32", **extra):
    kw = {"ChecksumAlgorithm": algorithm} if algorithm else {}
    up = s3.create_multipart_upload(Bucket=bucket, Key=key, **kw, **extra)["UploadId"]
    done = []
    for n, body in enumerate(parts, 1):
        r = s3.upload_part(Bucket=bucket, Key=key, UploadId=up, PartNumber=n, Body=body, **kw)
        part = {"PartNumber": n, "ETag": r["ETag"]}
        if algorithm:
            part[f"Checksum{algorithm}"] = r[f"Checksum{algorithm}"]
        done.append(part)
    s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=up, MultipartUpload={"Parts": done})
    return b"".join(parts)


def snapshot(s3, objects):
    """What a client sees of each object: HEAD fields and the bytes' hash."""
    out = {}
    for (b, k) in objects:
        h = s3.head_object(Bucket=b, Key=k, ChecksumMode="ENABLED")
        g = s3.get_object(Bucket=b, Key=k)
        out[(b, k)] = {**{f: h.get(f) for f in ("ETag", "ContentLength", "ContentType", "Metadata", "CacheControl",
                                                  "ChecksumCRC32", "ChecksumSHA256", "ChecksumType", "PartsCount")},
                       "sha256": hashlib.sha256(g["Body"].read()).hexdigest()}
    return out


def buckets_described(cluster, names, timeout=5):
    """The server writes every bucket's file on every volume at start-up, in
    the background: wait (bounded) until a volume just added has them."""
    missing = lambda: [(d, b) for _, d, _ in cluster.volumes for b in names if not bucket_file(d, b).exists()]
    assert wait_for(lambda: not missing(), timeout), f"bucket files not written {timeout} s after start-up: {missing()}"


def stop_ok(cluster):
    """SIGTERM the server; it must exit 0 (its log's end otherwise)."""
    rc = cluster.stop_server()
    if rc != 0:
        cluster.log.flush()
        log = (cluster.base / "server.log").read_bytes()[-4000:].decode(errors="replace")
        raise AssertionError(f"the server exited {rc} on SIGTERM; its log ends:\n{log}")


def add_volume(cluster):
    """Start one more nginx volume (stopped with the cluster) and add it to
    the cluster's --volumes (for the next server start and admin command)."""
    d = cluster.base / f"vol{len(cluster.volumes)}"
    port = free_port()
    p = subprocess.Popen([str(ROOT / "nginx" / "volume"), str(d)], env={**os.environ, "PORT": str(port), "WORKERS": "1"},
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    wait_port(port, p)
    cluster.volumes.append((port, d, p))


# --- 1. metadata files: verify and repair --------------------------------------------

@pytest.mark.parametrize("mode", ["through the server", "direct"])
def test_verify_names_bad_metadata_files_and_repair_rewrites_them(mode):
    with temp_cluster() as c:
        s3 = client(c)
        s3.create_bucket(Bucket=BUCKET)
        bodies = {
            "plain": b"a plain value",
            "headers": os.urandom(3 * KiB),
            "checksum": os.urandom(70 * KiB),
            "untouched": b"nobody touches this one",
        }
        s3.put_object(Bucket=BUCKET, Key="plain", Body=bodies["plain"])
        s3.put_object(Bucket=BUCKET, Key="headers", Body=bodies["headers"], ContentType="text/x-test",
                      CacheControl="max-age=60", ContentDisposition='attachment; filename="h.bin"',
                      ContentLanguage="fr", Metadata={"color": "blue", "n": "1"})
        s3.put_object(Bucket=BUCKET, Key="checksum", Body=bodies["checksum"], ChecksumAlgorithm="SHA256",
                      Metadata={"kind": "checked"})
        s3.put_object(Bucket=BUCKET, Key="untouched", Body=bodies["untouched"], Metadata={"x": "y"})
        bodies["multipart"] = multipart(s3, BUCKET, "multipart", [os.urandom(5 * MiB), b"the tail"], "CRC32",
                                        ContentType="application/x-parts", Metadata={"parts": "two"})

        problems, by_key = check_pairs(c, [s3key(BUCKET, k) for k in bodies])
        assert not problems, problems
        # Each metadata file says what HeadObject says, on both replicas.
        for k, body in bodies.items():
            for f in by_key[s3key(BUCKET, k)].values():
                m = meta_of(f)
                problems += check_against_head(s3, BUCKET, k, m, body)
                if m.get("generation") != f.gen:
                    problems.append(f"{k}: generation {m.get('generation')} in a file of {f.gen}")
        mp = meta_of(next(iter(by_key[s3key(BUCKET, "multipart")].values())))
        assert [p["size"] for p in mp["parts"]] == [5 * MiB, len(b"the tail")] and all(p.get("checksum") for p in mp["parts"]), mp
        assert mp["etag"].endswith("-2") and mp["checksum"]["type"] == "COMPOSITE", mp
        assert not problems, "\n".join(problems)
        code, report, out = admin_json(c, "verify")
        assert code == 0 and not report["failures"], out

        originals = {f.path: pathlib.Path(str(f.path) + ".meta").read_bytes()
                     for reps in by_key.values() for f in reps.values()}

        def replica(k, i):
            return sorted(by_key[s3key(BUCKET, k)].values(), key=lambda f: f.target)[i]

        # One replica each: metadata file deleted, rewritten with a changed
        # header, replaced by garbage.
        deleted, changed, garbage = replica("plain", 0), replica("headers", 1), replica("multipart", 0)
        pathlib.Path(str(deleted.path) + ".meta").unlink()
        m = meta_of(changed)
        m["headers"] = [[n, "green" if n == "x-amz-meta-color" else v] for n, v in m["headers"]]
        assert m != meta_of(changed)
        pathlib.Path(str(changed.path) + ".meta").write_text(json.dumps(m))
        pathlib.Path(str(garbage.path) + ".meta").write_bytes(b"\x00not json{")
        tampered = {deleted, changed, garbage}
        want = sorted(("metadata", f.key.decode(), f.target) for f in tampered)

        code, report, out = admin_json(c, "verify")
        assert code != 0, out
        assert items(report) == want, f"verify should name exactly {want}\n{out}"

        why = {f.key.decode(): i["detail"] for f in tampered for i in report["failures"] if i["key"] == f.key.decode()}
        assert "no metadata file" in why[deleted.key.decode()], out
        assert "disagrees" in why[changed.key.decode()], out
        assert "unreadable" in why[garbage.key.decode()], out

        server = ["--server", f"127.0.0.1:{c.port}"] if mode == "through the server" else []
        code, report, out = admin_json(c, "repair", *server)
        assert code == 0 and not report["failures"], out
        described = [i for i in items(report, "actions") if i[0] == "described"]
        assert described == sorted(("described", f.key.decode(), f.target) for f in tampered), out
        # Nothing else was wrong, so nothing else is reported done (checked
        # last, after the files).
        other_actions = [i for i in report["actions"] if i["kind"] != "described"]

        # Back byte for byte: the tampered files as the write made them, the
        # others untouched.
        differ = [str(p) for p, data in originals.items() if pathlib.Path(str(p) + ".meta").read_bytes() != data]
        assert not differ, f"metadata files not as written after repair: {differ}\n{out}"
        problems, _ = check_pairs(c, [s3key(BUCKET, k) for k in bodies])
        assert not problems, problems
        code, report, out = admin_json(c, "verify")
        assert code == 0 and not report["failures"], out
        # And the objects are as they were.
        for k, body in bodies.items():
            assert s3.get_object(Bucket=BUCKET, Key=k)["Body"].read() == body, k
        assert not other_actions, (f"repair reports actions it did not take: every replica was there and in "
                                   f"place, only metadata files were rewritten: {other_actions}")


# --- 2. bucket files -------------------------------------------------------------

def test_verify_and_repair_bucket_files():
    with temp_cluster() as c:
        s3 = client(c)
        names = ["files-a", "files-b"]
        for b in names:
            s3.create_bucket(Bucket=b)
        s3.put_bucket_policy(Bucket="files-b", Policy=json.dumps({
            "Version": "2012-10-17",
            "Statement": [{"Sid": "PublicRead", "Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
                           "Resource": "arn:aws:s3:::files-b/*"}]}))
        dirs = [d for _, d, _ in c.volumes]
        url = {(i, b): f"http://localhost:{c.volumes[i][0]}/.mkv/buckets/{b}.json" for i in range(3) for b in names}
        written = {b: [json.loads(bucket_file(d, b).read_bytes()) for d in dirs] for b in names}
        for b in names:
            for f in written[b]:
                assert f["name"] == b and f["version"] == 1 and "created" in f, f
                assert "secret" not in json.dumps(f).lower(), f
        assert json.loads(written["files-b"][0]["policy"])["Statement"][0]["Sid"] == "PublicRead"
        code, report, out = admin_json(c, "verify")
        assert code == 0 and not report["failures"], out

        bucket_file(dirs[0], "files-a").unlink()
        changed = dict(written["files-b"][1], created=written["files-b"][1]["created"] - 1000)
        changed.pop("policy")
        bucket_file(dirs[1], "files-b").write_text(json.dumps(changed))
        code, report, out = admin_json(c, "verify")
        assert code != 0, out
        assert items(report) == sorted([("bucket file", None, url[0, "files-a"]), ("bucket file", None, url[1, "files-b"])]), out

        code, report, out = admin_json(c, "repair")
        assert code == 0 and not report["failures"], out
        described = [i for i in report["actions"] if i["kind"] == "described"]
        assert sorted(i["detail"].split(":")[0] for i in described) == ["bucket files-a", "bucket files-b"], out
        for b in names:
            now = [bucket_file(d, b).read_bytes() for d in dirs]
            assert all(x == now[0] for x in now), f"{b}: the volumes' files differ after repair"
            strip = lambda f: {k: v for k, v in f.items() if k != "updated_us"}
            assert strip(json.loads(now[0])) == strip(written[b][2]), (b, now[0], written[b][2])
        code, report, out = admin_json(c, "verify")
        assert code == 0 and not report["failures"], out

        # A file of a bucket the index does not hold: reported, never deleted
        # by repair (only an operator knows whether the bucket is gone).
        ghost = dict(json.loads(bucket_file(dirs[2], "files-a").read_bytes()), name="ghost-bucket")
        bucket_file(dirs[2], "ghost-bucket").write_text(json.dumps(ghost))
        ghost_url = f"http://localhost:{c.volumes[2][0]}/.mkv/buckets/ghost-bucket.json"
        code, report, out = admin_json(c, "verify")
        assert code != 0, out
        assert items(report) == [("bucket file", None, ghost_url)], out
        assert "ghost-bucket" in report["failures"][0]["detail"], out
        code, report, out = admin_json(c, "repair")
        assert code != 0, out
        assert items(report) == [("bucket file", None, ghost_url)] and not report["actions"], out
        assert bucket_file(dirs[2], "ghost-bucket").exists(), "repair deleted a bucket file of a bucket the index lacks"
        assert "ghost-bucket" not in [b["Name"] for b in s3.list_buckets()["Buckets"]]
        code, report, out = admin_json(c, "verify")
        assert code != 0 and items(report) == [("bucket file", None, ghost_url)], out
        bucket_file(dirs[2], "ghost-bucket").unlink()
        code, report, out = admin_json(c, "verify")
        assert code == 0 and not report["failures"], out


# --- 3. rebalance ------------------------------------------------------------------

def test_rebalance_moves_metadata_files_with_values():
    with temp_cluster(n_volumes=2) as c:
        s3 = client(c)
        s3.create_bucket(Bucket=BUCKET)
        objects = {}
        for i in range(40):
            k = f"obj/{i:02d}"
            objects[(BUCKET, k)] = os.urandom(100 + 517 * i)
            s3.put_object(Bucket=BUCKET, Key=k, Body=objects[(BUCKET, k)], Metadata={"i": str(i)},
                          ContentType="text/x-i", **({"ChecksumAlgorithm": "SHA256"} if i % 3 == 0 else {}))
        for i in range(2):
            objects[(BUCKET, f"mp/{i}")] = multipart(s3, BUCKET, f"mp/{i}", [os.urandom(5 * MiB), os.urandom(1000 + i)],
                                                     "CRC32", Metadata={"mp": str(i)})
        natives = {f"/native/{i}": os.urandom(200 + i) for i in range(5)}
        for k, v in natives.items():
            r = HTTP.request("PUT", f"http://127.0.0.1:{c.port}{k}", body=v)
            assert r.status == 201, (k, r.status)
        s3keys = [s3key(b, k) for b, k in objects]
        before = snapshot(s3, objects)
        problems, _ = check_pairs(c, s3keys)
        assert not problems, problems

        def moved_ok(stage):
            problems, by_key = check_pairs(c, s3keys)
            natives_found = {f.key for f in volume_files(c) if not f.gen}
            if natives_found != {k.encode() for k in natives}:
                problems.append(f"native keys on the volumes: {sorted(natives_found)}")
            new = c.volume_names[-1]
            on_new = [k for k, reps in by_key.items() if any(t.startswith(new + "/") for t in reps)]
            assert on_new, f"{stage}: no S3 value moved to the new volume {new}"
            assert not problems, f"{stage}:\n" + "\n".join(problems)
            code, report, out = admin_json(c, "verify", "--orphans", "--min-orphan-age", "0s")
            assert code == 0 and not report["failures"], f"{stage}\n{out}"
            after = snapshot(client(c), objects)
            assert after == before, f"{stage}: objects differ"
            for k, v in natives.items():
                r = HTTP.request("GET", f"http://127.0.0.1:{c.port}{k}", redirect=False)
                assert r.status == 302, (stage, k, r.status)
                assert HTTP.request("GET", r.headers["location"]).data == v, (stage, k)
            for (b, k), body in list(objects.items())[::7]:
                for f in by_key[s3key(b, k)].values():
                    problems += check_against_head(s3, b, k, meta_of(f), body)
            assert not problems, f"{stage}:\n" + "\n".join(problems)

        # Direct mode: the server stopped, a third volume added.
        stop_ok(c)
        add_volume(c)
        code, report, out = admin_json(c, "rebalance")
        assert code == 0 and not report["failures"] and report["changed"] > 0, out
        c.start_server()
        buckets_described(c, [BUCKET])
        s3 = client(c)
        moved_ok("direct rebalance to 3 volumes")

        # Through the server's REBALANCE: a fourth volume.
        add_volume(c)
        c.restart_server()
        buckets_described(c, [BUCKET])
        code, report, out = admin_json(c, "rebalance", "--server", f"127.0.0.1:{c.port}")
        assert code == 0 and not report["failures"] and report["changed"] > 0, out
        s3 = client(c)
        moved_ok("rebalance through the server to 4 volumes")

        # A metadata file no record names (copied to a volume that does not
        # hold the key) is an orphan; repair --delete-orphans deletes it.
        _, by_key = check_pairs(c)
        key = s3key(BUCKET, "obj/05")
        src = next(iter(by_key[key].values()))
        dirs = {f"localhost:{p}": pathlib.Path(d) for p, d, _ in c.volumes}
        volume, sv = src.target.split("/")
        rel = src.path.relative_to(dirs[volume] / sv)
        holders = {t.split("/")[0] for t in by_key[key]}
        other = next(v for v in dirs if v not in holders)
        stray = dirs[other] / sv / (str(rel) + ".meta")
        # Folders made here must be nginx's to delete in (its workers may run
        # as nobody).
        made = [p for p in reversed(stray.parents) if not p.exists()]
        stray.parent.mkdir(parents=True, exist_ok=True)
        for p in made:
            os.chmod(p, 0o777)
        shutil.copyfile(str(src.path) + ".meta", stray)
        code, report, out = admin_json(c, "verify", "--orphans", "--min-orphan-age", "0s")
        assert code != 0, out
        assert [(i["kind"], i.get("key")) for i in report["failures"]] == [("orphan", key.decode())], out
        assert report["failures"][0]["volume"].endswith(".meta"), out
        code, report, out = admin_json(c, "repair", "--delete-orphans", "--min-orphan-age", "0s",
                                       "--server", f"127.0.0.1:{c.port}")
        assert code == 0 and [(i["kind"], i.get("key")) for i in report["actions"]] == [("deleted orphan", key.decode())], out
        assert not stray.exists()
        code, report, out = admin_json(c, "verify", "--orphans", "--min-orphan-age", "0s")
        assert code == 0 and not report["failures"], out
        assert s3.get_object(Bucket=BUCKET, Key="obj/05")["Body"].read() == objects[(BUCKET, "obj/05")]


# --- 4. the collector ----------------------------------------------------------------

def test_collector_deletes_metadata_files_with_values():
    with temp_cluster(extra_args=["--delete-grace", "1s"]) as c:
        s3 = client(c)
        s3.create_bucket(Bucket=BUCKET)
        current = {}
        for r in range(4):
            for k in ("over/a", "over/b"):
                current[k] = os.urandom(1000 + 10 * r)
                s3.put_object(Bucket=BUCKET, Key=k, Body=current[k], Metadata={"round": str(r)},
                              **({"ChecksumAlgorithm": "CRC32"} if r % 2 else {}))
        # Multipart replaced by a single-part value, and the other way round.
        multipart(s3, BUCKET, "mp-then-put", [os.urandom(5 * MiB), b"x"])
        current["mp-then-put"] = b"single now"
        s3.put_object(Bucket=BUCKET, Key="mp-then-put", Body=current["mp-then-put"], Metadata={"v": "2"})
        s3.put_object(Bucket=BUCKET, Key="put-then-mp", Body=b"single first")
        current["put-then-mp"] = multipart(s3, BUCKET, "put-then-mp", [os.urandom(5 * MiB), b"y"], "CRC32")
        # A copy onto a new key, then a metadata-only copy onto itself.
        s3.copy_object(Bucket=BUCKET, Key="copied", CopySource={"Bucket": BUCKET, "Key": "over/a"})
        s3.copy_object(Bucket=BUCKET, Key="copied", CopySource={"Bucket": BUCKET, "Key": "copied"},
                       MetadataDirective="REPLACE", Metadata={"copy": "self"}, ContentType="text/x-copied")
        current["copied"] = current["over/a"]
        # Deleted: one by DeleteObject, two by DeleteObjects, one overwritten first.
        gone = ["gone/1", "gone/2", "gone/3", "gone/4"]
        for k in gone:
            s3.put_object(Bucket=BUCKET, Key=k, Body=b"soon gone " + k.encode(), Metadata={"k": k})
        s3.put_object(Bucket=BUCKET, Key="gone/4", Body=b"replaced, then gone")
        s3.delete_object(Bucket=BUCKET, Key="gone/1")
        s3.delete_object(Bucket=BUCKET, Key="gone/4")
        s3.delete_objects(Bucket=BUCKET, Delete={"Objects": [{"Key": "gone/2"}, {"Key": "gone/3"}]})
        keys = [s3key(BUCKET, k) for k in current]

        def settled():
            problems, by_key = check_pairs(c, keys)
            files = volume_files(c)
            left = [f for f in files if f.key in {s3key(BUCKET, k) for k in gone}]
            extra = [f for f in files if f.key not in {s3key(BUCKET, k) for k in current} and f not in left]
            counts = {k: sum(1 for f in files if f.key == k) for k in keys}
            bad_counts = {k: n for k, n in counts.items() if n != 2 * REPLICAS}
            return (not problems and not left and not extra and not bad_counts), (problems, left, extra, bad_counts, by_key)

        t = time.monotonic()
        ok = wait_for(lambda: settled()[0], timeout=12)
        problems, left, extra, bad_counts, by_key = settled()[1]
        assert ok, (f"after {time.monotonic() - t:.1f} s (grace 1 s): {problems}; files of deleted keys {left}; "
                    f"other files {extra}; keys without exactly {REPLICAS} values + metadata files: {bad_counts}")
        # What is left is the current value, described as HeadObject says.
        for k, body in current.items():
            for f in by_key[s3key(BUCKET, k)].values():
                assert f.path.read_bytes() == body, f
                problems += check_against_head(s3, BUCKET, k, meta_of(f), body)
        assert not problems, "\n".join(problems)
        m = meta_of(next(iter(by_key[s3key(BUCKET, "copied")].values())))
        assert dict(m["headers"]).get("x-amz-meta-copy") == "self" and dict(m["headers"]).get("content-type") == "text/x-copied", m
        code, report, out = admin_json(c, "verify", "--orphans", "--min-orphan-age", "0s")
        assert code == 0 and not report["failures"], out


# --- 5. an aborted write ----------------------------------------------------------------

def cut_put(cluster, key, size, send, headers=None):
    """A signed PutObject announcing `size` bytes that sends `send` of them
    and closes; returns a function that closes the connection (the caller
    looks at the volumes while the body is still coming)."""
    body = os.urandom(size)
    req = rawsig.Request(cluster.port, ACCESS, SECRET, "PUT", urllib.parse.quote(key), headers=headers or {},
                         body=body)
    sock = socket.create_connection(("127.0.0.1", cluster.port))
    head = f"PUT {urllib.parse.quote(key)} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in req.headers.items())
    head += f"content-length: {size}\r\n\r\n"
    sock.sendall(head.encode() + body[:send])
    return sock.close


def test_aborted_write_leaves_no_metadata_file():
    with temp_cluster(extra_args=["--delete-grace", "1s"]) as c:
        s3 = client(c)
        s3.create_bucket(Bucket=BUCKET)
        old = b"the value before the cut writes"
        s3.put_object(Bucket=BUCKET, Key="kept", Body=old, Metadata={"gen": "old"})
        meta = {"x-amz-meta-cut": "yes", "content-type": "text/x-cut"}
        cuts = [
            ("new/small", 16 * KiB, 5 * KiB),      # gathered in one volume write: never sent
            ("new/large", 4 * MiB, 1 * MiB),       # streamed to the volumes
            ("kept", 2 * MiB, 700 * KiB),          # over an existing value
            ("kept", 20 * KiB, 1),                 # same, a small one
        ]
        closers = [cut_put(c, f"/{BUCKET}/{k}", size, send, meta) for k, size, send in cuts]
        # While the bodies are still coming: no metadata file of theirs.
        time.sleep(0.5)
        early = [f for f in volume_files(c) if f.meta and f.key in {s3key(BUCKET, k) for k, _, _ in cuts}
                 and not (f.key == s3key(BUCKET, "kept") and meta_of_value_is_old(f, old))]
        for close in closers:
            close()
        assert not early, f"metadata files of writes still in flight: {early}"

        def settled():
            files = volume_files(c)
            new = [f for f in files if f.key in (s3key(BUCKET, "new/small"), s3key(BUCKET, "new/large"))]
            kept = [f for f in files if f.key == s3key(BUCKET, "kept")]
            return not new and len(kept) == 2 * REPLICAS, (new, kept)

        ok = wait_for(lambda: settled()[0], timeout=12)
        new, kept = settled()[1]
        assert ok, f"after the grace: files of cut new keys {new}; files of 'kept' {kept} (want its old value + metadata file on {REPLICAS} replicas)"
        problems, by_key = check_pairs(c, [s3key(BUCKET, "kept")])
        assert not problems, problems
        g = s3.get_object(Bucket=BUCKET, Key="kept")
        assert g["Body"].read() == old and g["Metadata"] == {"gen": "old"}
        for f in by_key[s3key(BUCKET, "kept")].values():
            problems += check_against_head(s3, BUCKET, "kept", meta_of(f), old)
        assert not problems, problems
        for k in ("new/small", "new/large"):
            with pytest.raises(s3.exceptions.ClientError):
                s3.head_object(Bucket=BUCKET, Key=k)
        code, report, out = admin_json(c, "verify", "--orphans", "--min-orphan-age", "0s")
        assert code == 0 and not report["failures"], out


def meta_of_value_is_old(f, old):
    """A metadata file of key 'kept' that describes its old value."""
    try:
        m = json.loads(f.path.read_bytes())
    except ValueError:
        return False
    return m.get("md5") == hashlib.md5(old).hexdigest()
