"""rclone and s3cmd (the Debian packages) against a real cluster: the
listing, copy and delete calls they build on, path style and virtual-hosted."""

import os
import shutil
import subprocess
import time
import uuid

import pytest

from conftest import ACCESS, REGION, S3_DOMAIN, SECRET, remove_bucket

TIMEOUT = 60

TREE = {
    "plain.txt": b"plain\n",
    "a dir/ü file.txt": "ünïcødé\n".encode(),
    "a dir/sub dir/x+y=z.bin": bytes(range(256)) * 40,
    "日本/データ 1.txt": b"japanese\n",
    "deep/1/2/3/five.log": b"5" * 3000,
}


def write_tree(root, tree):
    for rel, data in tree.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)


def same_tree(a, b):
    r = subprocess.run(["diff", "-r", str(a), str(b)], capture_output=True, text=True, timeout=TIMEOUT)
    assert r.returncode == 0, r.stdout + r.stderr


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


def test_tools_are_installed():
    for tool in ("rclone", "s3cmd"):
        assert shutil.which(tool), f"{tool} missing: run scripts/deps --test"
