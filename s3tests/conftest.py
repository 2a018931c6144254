"""A real cluster for the client suite: 3 nginx volumes (nginx/volume) and
the mkv binary on free loopback ports, started once per session and stopped
by PID. Clients: boto3, aws cli, rclone, s3cmd, plain HTTP."""

import contextlib
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid

import boto3
import pytest
from botocore.config import Config

ROOT = pathlib.Path(__file__).resolve().parent.parent
ACCESS, SECRET = "mkvtestaccess", "mkvtestsecret/with+chars"
REGION = "us-east-1"
# Virtual-hosted-style requests: <bucket>.s3.localhost:<port>.
S3_DOMAIN = "s3.localhost"


def mkv_bin():
    return os.environ.get("MKV_BIN", str(ROOT / "target" / "debug" / "mkv"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, timeout=15):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process {proc.args} exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"port {port} did not open")


def stop(proc):
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGCONT)
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


class Cluster:
    def __init__(self, base, n_volumes=3, extra_args=(), extra_env=None, tls=None):
        self.base = pathlib.Path(base)
        # More server flags and environment (e.g. MKV_DELETE_GRACE), kept
        # for every (re)start.
        self.extra_args = list(extra_args)
        self.extra_env = dict(extra_env or {})
        # tls=(cert, key): both ports serve HTTPS; clients trust `ca`.
        self.ca = None
        if tls:
            self.ca = pathlib.Path(tls[0])
            self.extra_args += ["--tls-cert", str(tls[0]), "--tls-key", str(tls[1])]
        self.volumes = []  # (port, dir, proc)
        for i in range(n_volumes):
            d = self.base / f"vol{i}"
            port = free_port()
            p = subprocess.Popen(
                [str(ROOT / "nginx" / "volume"), str(d)],
                env={**os.environ, "PORT": str(port), "WORKERS": "1"},
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
            )
            wait_port(port, p)
            self.volumes.append((port, d, p))
        self.db = self.base / "db"
        self.port = free_port()
        self.s3_port = free_port()
        self.server = self.log = None
        self.start_server()

    @property
    def volume_names(self):
        return [f"localhost:{p}" for p, _, _ in self.volumes]

    def flags(self):
        """The flags the server and the admin commands share: volumes,
        index, replicas, subvolumes."""
        return ["--volumes", ",".join(self.volume_names), "--db", str(self.db), "--replicas", "2",
                "--subvolumes", "4", "--db-map-gib", "4"]

    def env(self):
        """The server's environment (its admin keys, S3 domain, extra_env)."""
        return {**os.environ, "MKV_S3_KEYS": f"{ACCESS}:{SECRET}", "MKV_S3_DOMAIN": S3_DOMAIN, **self.extra_env}

    def admin(self, *args, timeout=60):
        """Run `mkv <flags> ARGS…`, an admin command on this cluster's index
        and volumes with the server's settings; returns CompletedProcess (text)."""
        return subprocess.run([mkv_bin(), *self.flags(), *args], env=self.env(), capture_output=True, text=True,
                              timeout=timeout)

    def start_server(self):
        if self.log:
            self.log.close()
        self.log = open(self.base / "server.log", "ab")
        self.server = subprocess.Popen(
            [mkv_bin(), "server", *self.flags(), "--port", str(self.port),
             "--bind", "127.0.0.1", "--io-timeout", "10s", "--s3-port", str(self.s3_port), *self.extra_args],
            env=self.env(),
            stdout=self.log, stderr=self.log, start_new_session=True,
        )
        wait_port(self.port, self.server)

    def stop_server(self):
        """SIGTERM the server (by its process group) and wait for it."""
        stop(self.server)
        return self.server.returncode

    def restart_server(self):
        stop(self.server)
        self.start_server()

    @property
    def scheme(self):
        return "https" if self.ca else "http"

    @property
    def endpoint(self):
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def close(self):
        stop(self.server)
        for _, _, p in self.volumes:
            stop(p)
        if self.log:
            self.log.close()


@contextlib.contextmanager
def temp_cluster(**kwargs):
    """A cluster in a fresh folder, removed afterwards. Not pytest's tmp_path:
    its folders are private to root, and nginx's workers (nobody, when run as
    root) must reach the volume folders. kwargs go to Cluster."""
    base = tempfile.mkdtemp(prefix="mkv-s3tests-")
    os.chmod(base, 0o755)
    c = Cluster(base, **kwargs)
    try:
        yield c
    finally:
        c.close()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def cluster():
    with temp_cluster() as c:
        yield c


def self_signed(folder):
    """A certificate for localhost and 127.0.0.1, made now (openssl CLI)."""
    openssl = shutil.which("openssl")
    if not openssl:
        pytest.skip("no openssl CLI")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"], check=True, capture_output=True)
    return cert, key


@pytest.fixture(scope="session")
def tls_cluster(tmp_path_factory):
    """A cluster serving HTTPS with a self-signed certificate (cluster.ca)."""
    with temp_cluster(tls=self_signed(tmp_path_factory.mktemp("tls"))) as c:
        yield c


def client(cluster, **config):
    return boto3.client(
        "s3", endpoint_url=cluster.endpoint, aws_access_key_id=ACCESS, aws_secret_access_key=SECRET,
        region_name=REGION, verify=str(cluster.ca) if cluster.ca else None,
        config=Config(retries={"max_attempts": 1}, **config),
    )


@pytest.fixture(scope="session")
def s3(cluster):
    return client(cluster)


@pytest.fixture
def bucket(s3):
    name = f"t-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    yield name
    remove_bucket(s3, name)


def remove_bucket(s3, name):
    """Delete every object, then the bucket, whatever a test left."""
    try:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=name):
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if keys:
                s3.delete_objects(Bucket=name, Delete={"Objects": keys, "Quiet": True})
        s3.delete_bucket(Bucket=name)
    except s3.exceptions.NoSuchBucket:
        pass


def code(exc_info):
    """The S3 error code of a raised ClientError."""
    return exc_info.value.response["Error"]["Code"]


def tool_env(cluster):
    """Environment for aws cli, rclone and s3cmd subprocesses."""
    bindir = pathlib.Path(sys.executable).parent
    return {
        **os.environ,
        "PATH": f"{bindir}:{os.environ['PATH']}",
        "AWS_ACCESS_KEY_ID": ACCESS,
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_CONFIG_FILE": "/dev/null",
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
    }


def aws(cluster, *args, check=True, input=None):
    """Run aws cli against the cluster (trusting its certificate over TLS);
    returns CompletedProcess (text)."""
    exe = shutil.which("aws", path=tool_env(cluster)["PATH"])
    tls = ["--ca-bundle", str(cluster.ca)] if cluster.ca else []
    r = subprocess.run([exe, "--endpoint-url", cluster.endpoint, *tls, *args], env=tool_env(cluster),
                       capture_output=True, text=True, input=input, timeout=300)
    if check and r.returncode != 0:
        raise AssertionError(f"aws {' '.join(args)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    return r


def write_tree(root, tree, age=0):
    """Files of `tree` ({relative path: bytes}) under `root`, modified `age`
    seconds ago."""
    for rel, data in tree.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        if age:
            os.utime(p, (time.time() - age, time.time() - age))


def same_tree(a, b):
    r = subprocess.run(["diff", "-r", str(a), str(b)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
