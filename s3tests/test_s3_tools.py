"""rclone, s3cmd and restic (the Debian packages) against a real cluster:
the listing, copy and delete calls they build on, path style and
virtual-hosted; restic's repository from init to prune.
Over HTTPS (tls_cluster, a self-signed certificate made at test time): the
aws cli and rclone."""

import base64
import json
import os
import shutil
import subprocess
import time
import uuid
import zlib

import pytest

from conftest import ACCESS, REGION, S3_DOMAIN, SECRET, aws, client, remove_bucket, same_tree, write_tree

TIMEOUT = 60

TREE = {
    "plain.txt": b"plain\n",
    "a dir/ü file.txt": "ünïcødé\n".encode(),
    "a dir/sub dir/x+y=z.bin": bytes(range(256)) * 40,
    "日本/データ 1.txt": b"japanese\n",
    "deep/1/2/3/five.log": b"5" * 3000,
}


def keys_of(s3, bucket, prefix=""):
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sorted(o["Key"] for p in pages for o in p.get("Contents", []))


def run(argv, env, check=True):
    r = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=TIMEOUT)
    if check and r.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    return r


# ---- rclone: configured only through the environment ----

def rclone_env(cluster, tmp_path, virtual=False):
    # The AWS SDK inside rclone also reads AWS_* (a CA bundle it then fails
    # to load on plain http, profiles): only the RCLONE_* settings count.
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
        "RCLONE_CONFIG": str(tmp_path / "rclone.conf"),  # never written: the remote is all env
        "RCLONE_CONFIG_MKV_TYPE": "s3",
        "RCLONE_CONFIG_MKV_PROVIDER": "Other",
        "RCLONE_CONFIG_MKV_ENDPOINT": cluster.endpoint,
        "RCLONE_CONFIG_MKV_ACCESS_KEY_ID": ACCESS,
        "RCLONE_CONFIG_MKV_SECRET_ACCESS_KEY": SECRET,
        "RCLONE_CONFIG_MKV_REGION": REGION,
    }
    if virtual:
        # <bucket>.s3.localhost resolves nowhere: the server is also the proxy.
        env |= {"RCLONE_CONFIG_MKV_ENDPOINT": f"http://{S3_DOMAIN}:{cluster.port}",
                "RCLONE_CONFIG_MKV_FORCE_PATH_STYLE": "false", "HTTP_PROXY": cluster.endpoint, "NO_PROXY": ""}
    return env


def rclone(env, *args, check=True):
    return run(["rclone", "--retries", "1", "--low-level-retries", "1", "--contimeout", "10s", "--timeout", "30s", *args], env, check)


@pytest.fixture
def fresh(s3):
    """A bucket name the tool creates; removed afterwards if left."""
    name = f"tool-{uuid.uuid4().hex[:10]}"
    yield name
    remove_bucket(s3, name)


@pytest.fixture
def tls_s3(tls_cluster):
    return client(tls_cluster)


@pytest.fixture
def tls_fresh(tls_s3):
    """As `fresh`, on the HTTPS cluster."""
    name = f"tool-{uuid.uuid4().hex[:10]}"
    yield name
    remove_bucket(tls_s3, name)


def test_rclone(cluster, s3, fresh, tmp_path):
    env = rclone_env(cluster, tmp_path)
    src = tmp_path / "src"
    write_tree(src, TREE)
    rclone(env, "mkdir", f"mkv:{fresh}")
    rclone(env, "copy", str(src), f"mkv:{fresh}/dir")
    assert keys_of(s3, fresh) == sorted(f"dir/{k}" for k in TREE)
    listed = rclone(env, "ls", f"mkv:{fresh}").stdout.splitlines()
    assert sorted(line.split(None, 1)[1] for line in listed) == sorted(f"dir/{k}" for k in TREE)
    assert {line.split(None, 1)[0] for line in listed} == {str(len(v)) for v in TREE.values()}
    # lsd: size, date, time, count, name (common prefixes).
    dirs = sorted(line.split(None, 4)[4] for line in rclone(env, "lsd", f"mkv:{fresh}/dir").stdout.splitlines())
    assert dirs == ["a dir", "deep", "日本"]
    rclone(env, "check", str(src), f"mkv:{fresh}/dir")
    rclone(env, "copy", f"mkv:{fresh}/dir", str(tmp_path / "back"))
    same_tree(src, tmp_path / "back")
    # sync: a deleted, a new, a changed file and a touched one (same bytes,
    # new mtime: rclone updates it with a copy onto itself).
    (src / "plain.txt").unlink()
    (src / "new file.txt").write_bytes(b"new\n")
    (src / "deep/1/2/3/five.log").write_bytes(b"changed\n")
    touched = src / "日本/データ 1.txt"
    os.utime(touched, (time.time() - 86400 * 30, time.time() - 86400 * 30))
    rclone(env, "sync", str(src), f"mkv:{fresh}/dir")
    rclone(env, "check", str(src), f"mkv:{fresh}/dir")
    assert "dir/plain.txt" not in keys_of(s3, fresh) and "dir/new file.txt" in keys_of(s3, fresh)
    head = s3.head_object(Bucket=fresh, Key="dir/日本/データ 1.txt")
    assert abs(float(head["Metadata"]["mtime"]) - touched.stat().st_mtime) < 1
    assert s3.get_object(Bucket=fresh, Key="dir/日本/データ 1.txt")["Body"].read() == TREE["日本/データ 1.txt"]
    rclone(env, "delete", f"mkv:{fresh}/dir", "--include", "*.txt")
    assert keys_of(s3, fresh) == ["dir/a dir/sub dir/x+y=z.bin", "dir/deep/1/2/3/five.log"]
    rclone(env, "purge", f"mkv:{fresh}")
    assert fresh not in [b["Name"] for b in s3.list_buckets()["Buckets"]]


def test_rclone_virtual_hosted(cluster, s3, fresh, tmp_path):
    env = rclone_env(cluster, tmp_path, virtual=True)
    src = tmp_path / "src"
    write_tree(src, TREE)
    rclone(env, "mkdir", f"mkv:{fresh}")
    rclone(env, "copy", str(src), f"mkv:{fresh}")
    rclone(env, "check", str(src), f"mkv:{fresh}")
    assert keys_of(s3, fresh) == sorted(TREE)
    rclone(env, "purge", f"mkv:{fresh}")
    assert fresh not in [b["Name"] for b in s3.list_buckets()["Buckets"]]


# ---- over HTTPS: tls_cluster (conftest), by address (IP SAN 127.0.0.1) ----

def crc32_b64(data):
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


def test_aws_cli_over_tls(tls_cluster, tls_s3, tls_fresh, tmp_path):
    c, bucket = tls_cluster, tls_fresh
    assert c.endpoint.startswith("https://127.0.0.1:")
    aws(c, "s3", "mb", f"s3://{bucket}")
    # 20 MiB: above the cli's 8 MiB multipart threshold, both ways (ranged
    # GETs down).
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(20 << 20))
    aws(c, "s3", "cp", str(big), f"s3://{bucket}/dir/big.bin")
    head = tls_s3.head_object(Bucket=bucket, Key="dir/big.bin")
    assert head["ContentLength"] == 20 << 20 and head["ETag"].endswith('-3"'), head
    aws(c, "s3", "cp", f"s3://{bucket}/dir/big.bin", str(tmp_path / "back.bin"))
    assert (tmp_path / "back.bin").read_bytes() == big.read_bytes()
    assert tls_s3.get_object(Bucket=bucket, Key="dir/big.bin")["Body"].read() == big.read_bytes()
    # PutObject with a CRC32: over https the body goes aws-chunked, unsigned,
    # the checksum in a trailer.
    small = tmp_path / "small.bin"
    small.write_bytes(os.urandom(1_000_000))
    want = crc32_b64(small.read_bytes())
    r = aws(c, "--debug", "s3api", "put-object", "--bucket", bucket, "--key", "crc", "--body", str(small),
            "--checksum-algorithm", "CRC32")
    sent = r.stderr.lower()
    assert "'x-amz-trailer': b'x-amz-checksum-crc32'" in sent or "'x-amz-trailer': 'x-amz-checksum-crc32'" in sent, sent[-3000:]
    assert "streaming-unsigned-payload-trailer" in sent
    assert json.loads(r.stdout)["ChecksumCRC32"] == want
    # GetObject with checksum mode: the cli checks the body against the
    # x-amz-checksum-crc32 the server sends (a mismatch fails the command).
    r = aws(c, "--debug", "s3api", "get-object", "--bucket", bucket, "--key", "crc", "--checksum-mode", "ENABLED",
            str(tmp_path / "crc.out"))
    assert json.loads(r.stdout)["ChecksumCRC32"] == want
    assert "Skipping checksum validation" not in r.stderr
    assert (tmp_path / "crc.out").read_bytes() == small.read_bytes()
    aws(c, "s3", "rb", "--force", f"s3://{bucket}")
    assert bucket not in [b["Name"] for b in tls_s3.list_buckets()["Buckets"]]


def test_rclone_over_tls(tls_cluster, tls_s3, tls_fresh, tmp_path):
    env = rclone_env(tls_cluster, tmp_path)
    assert env["RCLONE_CONFIG_MKV_ENDPOINT"].startswith("https://127.0.0.1:")
    ca = ["--ca-cert", str(tls_cluster.ca)]
    # Without the certificate rclone refuses the server.
    assert rclone(env, "lsd", "mkv:", check=False).returncode != 0
    src = tmp_path / "src"
    # One file above the (lowered) upload cutoff: a multipart upload.
    write_tree(src, {**TREE, "big/eleven.bin": os.urandom(11 << 20)})
    multipart = ["--s3-upload-cutoff", "5M", "--s3-chunk-size", "5M"]
    rclone(env, *ca, "mkdir", f"mkv:{tls_fresh}")
    rclone(env, *ca, *multipart, "copy", str(src), f"mkv:{tls_fresh}/dir")
    assert keys_of(tls_s3, tls_fresh) == sorted(f"dir/{k}" for k in [*TREE, "big/eleven.bin"])
    assert tls_s3.head_object(Bucket=tls_fresh, Key="dir/big/eleven.bin")["ETag"].endswith('-3"')
    rclone(env, *ca, "check", str(src), f"mkv:{tls_fresh}/dir")
    rclone(env, *ca, "copy", f"mkv:{tls_fresh}/dir", str(tmp_path / "back"))
    same_tree(src, tmp_path / "back")
    rclone(env, *ca, "purge", f"mkv:{tls_fresh}")
    assert tls_fresh not in [b["Name"] for b in tls_s3.list_buckets()["Buckets"]]


# ---- s3cmd: a temporary config file ----

def s3cmd_config(cluster, tmp_path, signature_v2=False, virtual=False):
    if virtual:
        # <bucket>.s3.localhost resolves nowhere: the server is also the proxy.
        hosts = [f"host_base = {S3_DOMAIN}:{cluster.port}", f"host_bucket = %(bucket)s.{S3_DOMAIN}:{cluster.port}",
                 "proxy_host = 127.0.0.1", f"proxy_port = {cluster.port}"]
    else:
        hosts = [f"host_base = 127.0.0.1:{cluster.port}", f"host_bucket = 127.0.0.1:{cluster.port}"]
    lines = [
        "[default]",
        f"access_key = {ACCESS}",
        f"secret_key = {SECRET}",
        *hosts,
        "use_https = False",
        f"signature_v2 = {signature_v2}",
        f"bucket_location = {REGION}",
    ]
    path = tmp_path / f"s3cfg-{signature_v2}-{virtual}"
    path.write_text("\n".join(lines) + "\n")
    return path


def s3cmd(cfg, *args, check=True):
    return run(["s3cmd", "-c", str(cfg), "--no-progress", *args], {**os.environ}, check)


@pytest.mark.parametrize("signature_v2,virtual", [(False, False), (True, False), (False, True), (True, True)],
                         ids=["v4", "v2", "v4-virtual", "v2-virtual"])
def test_s3cmd(cluster, s3, fresh, tmp_path, signature_v2, virtual):
    cfg = s3cmd_config(cluster, tmp_path, signature_v2, virtual)
    s3cmd(cfg, "mb", f"s3://{fresh}")
    assert fresh in s3cmd(cfg, "ls").stdout
    one, two = tmp_path / "one.txt", tmp_path / "two words é.bin"
    one.write_bytes(b"s3cmd one\n")
    two.write_bytes(os.urandom(100_000))
    s3cmd(cfg, "put", str(one), f"s3://{fresh}/dir/")
    s3cmd(cfg, "put", str(two), f"s3://{fresh}/dir/sub/{two.name}")
    s3cmd(cfg, "put", str(one), f"s3://{fresh}/top.txt")
    listing = s3cmd(cfg, "ls", f"s3://{fresh}/dir/").stdout
    assert f"s3://{fresh}/dir/one.txt" in listing and f"DIR  s3://{fresh}/dir/sub/" in listing
    assert f"s3://{fresh}/dir/sub/{two.name}" in s3cmd(cfg, "ls", "--recursive", f"s3://{fresh}").stdout
    s3cmd(cfg, "get", f"s3://{fresh}/dir/sub/{two.name}", str(tmp_path / "got"))
    assert (tmp_path / "got").read_bytes() == two.read_bytes()
    s3cmd(cfg, "del", f"s3://{fresh}/dir/one.txt")
    assert keys_of(s3, fresh) == [f"dir/sub/{two.name}", "top.txt"]
    # Not empty: refused; a recursive delete uses DeleteObjects.
    assert s3cmd(cfg, "rb", f"s3://{fresh}", check=False).returncode != 0
    s3cmd(cfg, "del", "--recursive", "--force", f"s3://{fresh}")
    assert keys_of(s3, fresh) == []
    s3cmd(cfg, "rb", f"s3://{fresh}")
    assert fresh not in [b["Name"] for b in s3.list_buckets()["Buckets"]]


# ---- restic: a backup repository in a bucket ----

def restic(cluster, repo, *args):
    env = {**os.environ, "AWS_ACCESS_KEY_ID": ACCESS, "AWS_SECRET_ACCESS_KEY": SECRET,
           "AWS_DEFAULT_REGION": REGION, "RESTIC_PASSWORD": "mkv restic test",
           "RESTIC_CACHE_DIR": str(repo / "cache"), "RESTIC_REPOSITORY": f"s3:{cluster.endpoint}/{repo.name}/repo"}
    return run(["restic", "--quiet", *args], env)


def test_restic(cluster, s3, fresh, tmp_path):
    repo = tmp_path / fresh
    src = repo / "src"
    write_tree(src, TREE | {"big.bin": os.urandom(3_000_000)})
    restic(cluster, repo, "init")
    restic(cluster, repo, "backup", str(src))
    (src / "plain.txt").write_bytes(b"changed\n")
    (src / "added.txt").write_bytes(b"added\n")
    restic(cluster, repo, "backup", str(src))
    # Every pack read back and its hashes checked.
    restic(cluster, repo, "check", "--read-data")
    restic(cluster, repo, "restore", "latest", "--target", str(repo / "back"))
    same_tree(src, repo / "back" / src.relative_to("/"))
    snapshots = json.loads(restic(cluster, repo, "snapshots", "--json").stdout)
    assert len(snapshots) == 2
    restic(cluster, repo, "forget", "--keep-last", "1", "--prune")
    assert len(json.loads(restic(cluster, repo, "snapshots", "--json").stdout)) == 1
    restic(cluster, repo, "check", "--read-data")
    keys = keys_of(s3, fresh, "repo/")
    assert "repo/config" in keys and any(k.startswith("repo/data/") for k in keys)
    # restic removes its lock files when done.
    assert not any(k.startswith("repo/locks/") for k in keys)


def test_tools_are_installed():
    for tool in ("rclone", "s3cmd", "restic"):
        assert shutil.which(tool), f"{tool} missing: run scripts/deps --test"
