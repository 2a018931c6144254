"""The AWS SDK for JavaScript v3 (s3tests/js/sdk.mjs, its packages installed
by `scripts/deps --test`) against a real cluster: default CRC32 checksums,
aws-chunked streams with trailers, lib-storage multipart, presigned URLs."""

import os
import pathlib
import subprocess
import uuid

from conftest import ACCESS, SECRET

JS = pathlib.Path(__file__).parent / "js"


def test_aws_sdk_for_javascript(cluster, s3):
    assert (JS / "node_modules/@aws-sdk/client-s3").is_dir(), "the SDK is missing: run scripts/deps --test"
    bucket = f"js-{uuid.uuid4().hex[:10]}"
    r = subprocess.run(["node", "sdk.mjs", cluster.endpoint, ACCESS, SECRET, bucket], cwd=JS, capture_output=True,
                       text=True, timeout=300, env={**os.environ, "NODE_NO_WARNINGS": "1"})
    assert r.returncode == 0, f"{r.stdout}\n{r.stderr[-3000:]}"
    assert bucket not in [b["Name"] for b in s3.list_buckets()["Buckets"]]
