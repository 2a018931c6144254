"""CORS as browsers meet it: bucket rules (Put/Get/DeleteBucketCors), the
OPTIONS preflight answered before any signature check, and the
Access-Control-* headers on actual requests."""

import pytest
import urllib3
from botocore.exceptions import ClientError

from conftest import code

RULES = {"CORSRules": [
    {"ID": "app", "AllowedOrigins": ["https://app.example.com", "https://*.staging.example.com"],
     "AllowedMethods": ["GET", "PUT", "HEAD"], "AllowedHeaders": ["content-type", "x-amz-*"],
     "ExposeHeaders": ["x-amz-meta-owner"], "MaxAgeSeconds": 600},
    {"AllowedOrigins": ["*"], "AllowedMethods": ["GET"]},
]}


def request(cluster, method, path, headers, port=None):
    r = urllib3.PoolManager(retries=False).request(method, f"http://127.0.0.1:{port or cluster.port}{path}", headers=headers)
    return r.status, r.headers, r.data.decode(errors="replace")


def test_rules_round_trip_and_refusals(s3, bucket):
    with pytest.raises(ClientError) as e:
        s3.get_bucket_cors(Bucket=bucket)
    assert code(e) == "NoSuchCORSConfiguration"
    s3.put_bucket_cors(Bucket=bucket, CORSConfiguration=RULES)
    got = s3.get_bucket_cors(Bucket=bucket)["CORSRules"]
    assert got[0]["AllowedOrigins"] == RULES["CORSRules"][0]["AllowedOrigins"] and got[0]["MaxAgeSeconds"] == 600
    assert got[0]["ID"] == "app" and got[1]["AllowedOrigins"] == ["*"]
    with pytest.raises(ClientError) as e:
        s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": [{"AllowedOrigins": ["*"], "AllowedMethods": ["PATCH"]}]})
    assert code(e) == "InvalidRequest"
    s3.delete_bucket_cors(Bucket=bucket)
    with pytest.raises(ClientError) as e:
        s3.get_bucket_cors(Bucket=bucket)
    assert code(e) == "NoSuchCORSConfiguration"


@pytest.mark.parametrize("port", ["main", "s3"])
def test_preflight_before_authentication(cluster, s3, bucket, port):
    port = cluster.port if port == "main" else cluster.s3_port
    path = f"/{bucket}/photo.jpg"
    # No rules yet: refused as S3 does.
    status, _, body = request(cluster, "OPTIONS", path, {"Origin": "https://app.example.com", "Access-Control-Request-Method": "PUT"}, port)
    assert status == 403 and "<Code>CORSResponse</Code>" in body
    s3.put_bucket_cors(Bucket=bucket, CORSConfiguration=RULES)
    status, h, _ = request(cluster, "OPTIONS", path, {"Origin": "https://app.example.com", "Access-Control-Request-Method": "PUT",
                                                      "Access-Control-Request-Headers": "Content-Type, X-Amz-Date"}, port)
    assert status == 200, h
    assert h["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert "PUT" in h["Access-Control-Allow-Methods"] and h["Access-Control-Max-Age"] == "600"
    assert h["Access-Control-Allow-Headers"].lower() == "content-type, x-amz-date"
    assert "Origin" in h["Vary"]
    # A wildcard origin rule, and what no rule allows.
    status, h, _ = request(cluster, "OPTIONS", path, {"Origin": "https://x.staging.example.com", "Access-Control-Request-Method": "GET"}, port)
    assert status == 200 and h["Access-Control-Allow-Origin"] == "https://x.staging.example.com"
    status, h, _ = request(cluster, "OPTIONS", path, {"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"}, port)
    assert status == 200 and h["Access-Control-Allow-Origin"] == "*"
    for headers in ({"Origin": "https://evil.example", "Access-Control-Request-Method": "PUT"},
                    {"Origin": "https://app.example.com", "Access-Control-Request-Method": "PUT", "Access-Control-Request-Headers": "authorization"},
                    {"Origin": "https://app.example.com", "Access-Control-Request-Method": "DELETE"}):
        status, _, body = request(cluster, "OPTIONS", path, headers, port)
        assert status == 403 and "<Code>CORSResponse</Code>" in body, headers
    status, _, body = request(cluster, "OPTIONS", path, {"Access-Control-Request-Method": "GET"}, port)
    assert status == 400 and "<Code>BadRequest</Code>" in body


def test_actual_requests_carry_cors_headers(cluster, s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"v", Metadata={"owner": "me"})
    s3.put_bucket_cors(Bucket=bucket, CORSConfiguration=RULES)
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "k"}, ExpiresIn=300)
    path = url.split(str(cluster.port), 1)[1]
    status, h, body = request(cluster, "GET", path, {"Origin": "https://app.example.com"})
    assert (status, body) == (200, "v")
    assert h["Access-Control-Allow-Origin"] == "https://app.example.com"
    exposed = [x.strip().lower() for x in h["Access-Control-Expose-Headers"].split(",")]
    assert "etag" in exposed and "x-amz-meta-owner" in exposed
    # Without Origin, or from an origin no rule allows for the method: none.
    status, h, _ = request(cluster, "GET", path, {})
    assert status == 200 and "Access-Control-Allow-Origin" not in h
    s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": [RULES["CORSRules"][0]]})
    status, h, _ = request(cluster, "GET", path, {"Origin": "https://evil.example"})
    assert status == 200 and "Access-Control-Allow-Origin" not in h
