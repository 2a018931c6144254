"""A minimal, independent SigV4 signer for requests no SDK sends over plain
HTTP (aws-chunked payloads with and without trailers, bad signatures). Kept
apart from the server's Rust code so each checks the other."""

import datetime
import hashlib
import hmac
import http.client
import urllib.parse
import zlib
import base64

EMPTY = hashlib.sha256(b"").hexdigest()


def _h(key, msg):
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def signing_key(secret, date, region="us-east-1"):
    k = _h(("AWS4" + secret).encode(), date)
    k = _h(k, region)
    k = _h(k, "s3")
    return _h(k, "aws4_request")


def quote_path(path):
    return urllib.parse.quote(path, safe="/-_.~")


class Request:
    def __init__(self, endpoint_port, access, secret, method, path, headers=None, body=b"",
                 payload_hash=None, when=None, region="us-east-1"):
        self.port = endpoint_port
        self.method, self.path = method, path
        self.when = when or datetime.datetime.now(datetime.timezone.utc)
        self.amz_date = self.when.strftime("%Y%m%dT%H%M%SZ")
        self.date = self.when.strftime("%Y%m%d")
        self.scope = f"{self.date}/{region}/s3/aws4_request"
        self.key = signing_key(secret, self.date, region)
        self.body = body
        h = {k.lower(): v for k, v in (headers or {}).items()}
        h["host"] = f"127.0.0.1:{endpoint_port}"
        h["x-amz-date"] = self.amz_date
        h["x-amz-content-sha256"] = payload_hash or hashlib.sha256(body).hexdigest()
        signed = sorted(h)
        canonical = "\n".join([
            method, quote_path(path), "",
            "".join(f"{k}:{h[k].strip()}\n" for k in signed), ";".join(signed), h["x-amz-content-sha256"],
        ])
        sts = "\n".join(["AWS4-HMAC-SHA256", self.amz_date, self.scope, hashlib.sha256(canonical.encode()).hexdigest()])
        self.signature = hmac.new(self.key, sts.encode(), hashlib.sha256).hexdigest()
        h["authorization"] = (f"AWS4-HMAC-SHA256 Credential={access}/{self.scope}, "
                              f"SignedHeaders={';'.join(signed)}, Signature={self.signature}")
        self.headers = h

    def chunk_sig(self, prev, data):
        sts = "\n".join(["AWS4-HMAC-SHA256-PAYLOAD", self.amz_date, self.scope, prev, EMPTY,
                         hashlib.sha256(data).hexdigest()])
        return hmac.new(self.key, sts.encode(), hashlib.sha256).hexdigest()

    def trailer_sig(self, prev, trailer):
        sts = "\n".join(["AWS4-HMAC-SHA256-TRAILER", self.amz_date, self.scope, prev,
                         hashlib.sha256(trailer).hexdigest()])
        return hmac.new(self.key, sts.encode(), hashlib.sha256).hexdigest()

    def send(self, body=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        conn.request(self.method, quote_path(self.path), body=self.body if body is None else body, headers=self.headers)
        r = conn.getresponse()
        data = r.read()
        conn.close()
        return r.status, dict((k.lower(), v) for k, v in r.getheaders()), data


def crc32_b64(data):
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


def signed_chunks(req, data, chunk=65536, corrupt=None, trailer=None):
    """aws-chunked body with chunk signatures (and a signed trailer)."""
    out, prev = [], req.signature
    pieces = [data[i:i + chunk] for i in range(0, len(data), chunk)] + [b""]
    for n, piece in enumerate(pieces):
        sig = req.chunk_sig(prev, piece)
        prev = sig
        if corrupt == n:
            sig = "0" * 64
        out.append(f"{len(piece):x};chunk-signature={sig}\r\n".encode() + piece + b"\r\n")
    if trailer is not None:
        out[-1] = out[-1][:-2]  # the final chunk's CRLF is replaced by the trailer block
        block = trailer.encode() + b"\n"
        tsig = req.trailer_sig(prev, block)
        out.append(block.replace(b"\n", b"\r\n") + f"x-amz-trailer-signature:{tsig}\r\n\r\n".encode())
    return b"".join(out)


def unsigned_chunks(data, trailer, chunk=65536, final_crlf=True):
    out = [f"{len(data[i:i + chunk]):x}\r\n".encode() + data[i:i + chunk] + b"\r\n" for i in range(0, len(data), chunk)]
    out.append(b"0\r\n")
    if trailer:
        out.append(trailer.encode() + b"\r\n")
    if final_crlf:
        out.append(b"\r\n")
    return b"".join(out)


def presign_v4(port, access, secret, method, path, expires, when, region="us-east-1"):
    """A SigV4 presigned URL signed at `when` (to test expiry)."""
    amz_date, date = when.strftime("%Y%m%dT%H%M%SZ"), when.strftime("%Y%m%d")
    scope = f"{date}/{region}/s3/aws4_request"
    q = {"X-Amz-Algorithm": "AWS4-HMAC-SHA256", "X-Amz-Credential": f"{access}/{scope}", "X-Amz-Date": amz_date,
         "X-Amz-Expires": str(expires), "X-Amz-SignedHeaders": "host"}
    query = "&".join(f"{urllib.parse.quote(k, safe='-_.~')}={urllib.parse.quote(v, safe='-_.~')}" for k, v in sorted(q.items()))
    canonical = "\n".join([method, quote_path(path), query, f"host:127.0.0.1:{port}\n", "host", "UNSIGNED-PAYLOAD"])
    sts = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    sig = hmac.new(signing_key(secret, date, region), sts.encode(), hashlib.sha256).hexdigest()
    return f"http://127.0.0.1:{port}{quote_path(path)}?{query}&X-Amz-Signature={sig}"
