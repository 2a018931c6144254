"""A real browser against the S3 gateway: headless Chromium (Debian's
`chromium`, installed by `scripts/deps --test`) opens a page served from
another origin (a loopback port of this process) whose script

  (a) uploads with a presigned PUT URL (fetch, preflighted),
  (b) uploads with a form POST whose policy boto3's generate_presigned_post
      made (fetch with a FormData: a multipart/form-data CORS request), once
      with the default answer (204) and once with success_action_status=201,
  (c) fetches the objects back with fetch() and reads their ETag headers,

and writes what it saw as JSON into the page. With CORS rules that allow the
page's origin all of it works; against a bucket without rules, or with rules
for another origin only, every fetch() rejects with a TypeError, as browsers
answer a CORS failure, and the preflight keeps the PUT from ever happening.

Chromium is driven through its DevTools protocol over a pipe
(--remote-debugging-pipe: JSON messages ending in NUL on fds 3 and 4), so
no extra package and no debugging port are needed. Every wait is bounded,
and Chromium (its own process group) is stopped by PID whatever happens."""

import base64
import contextlib
import fcntl
import http.server
import json
import os
import select
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import uuid

import pytest
from botocore.exceptions import ClientError

from conftest import client, stop

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def rules_for(origin):
    return {"CORSRules": [{
        "AllowedOrigins": [origin], "AllowedMethods": ["GET", "PUT", "POST", "HEAD"],
        "AllowedHeaders": ["*"], "ExposeHeaders": ["ETag"], "MaxAgeSeconds": 60,
    }]}


# Bytes that a text round trip would not keep.
PUT_BODY = bytes(range(256)) + "put by the browser ü\n".encode()
POST_BODY = b"\x00\xff posted by a form \xe2\x82\xac\r\n" * 3


class DevTools:
    """A DevTools protocol client over Chromium's --remote-debugging-pipe."""

    def __init__(self, proc, to_browser, from_browser):
        self.proc, self.wfd, self.rfd = proc, to_browser, from_browser
        self.buf = b""
        self.next_id = 0
        self.events = []

    def _read_message(self, deadline):
        while b"\0" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no answer from chromium")
            if self.proc.poll() is not None:
                raise RuntimeError(f"chromium exited with {self.proc.returncode}")
            ready, _, _ = select.select([self.rfd], [], [], min(left, 0.5))
            if ready:
                chunk = os.read(self.rfd, 1 << 16)
                if not chunk:
                    raise RuntimeError("chromium closed its DevTools pipe")
                self.buf += chunk
        msg, self.buf = self.buf.split(b"\0", 1)
        return json.loads(msg)

    def call(self, method, params=None, session=None, timeout=20):
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        data = json.dumps(msg).encode() + b"\0"
        while data:
            data = data[os.write(self.wfd, data):]
        deadline = time.monotonic() + timeout
        while True:
            m = self._read_message(deadline)
            if m.get("id") == self.next_id:
                if "error" in m:
                    raise RuntimeError(f"{method}: {m['error']}")
                return m["result"]
            if "method" in m:
                self.events.append(m)

    def messages(self):
        """What the page's console and Chromium's log said, as text."""
        out = []
        for e in self.events:
            p = e.get("params", {})
            if e["method"] == "Log.entryAdded":
                out.append(f"{p['entry']['level']}: {p['entry']['text']}")
            elif e["method"] == "Runtime.consoleAPICalled":
                out.append(f"console.{p['type']}: " + " ".join(str(a.get("value", a.get("description"))) for a in p["args"]))
            elif e["method"] == "Runtime.exceptionThrown":
                out.append(f"exception: {p['exceptionDetails'].get('exception', {}).get('description')}")
        return out


@pytest.fixture(scope="module")
def browser():
    assert os.path.exists(CHROMIUM), "chromium missing: run scripts/deps --test"
    profile = tempfile.mkdtemp(prefix="mkv-chromium-")
    to_r, to_w = os.pipe()
    from_r, from_w = os.pipe()
    # Out of the way of 3 and 4, which the child's redirections set.
    to_r2, from_w2 = (fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in (to_r, from_w))
    os.close(to_r)
    os.close(from_w)
    log = open(os.path.join(profile, "chromium.log"), "wb")
    args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--remote-debugging-pipe", f"--user-data-dir={profile}", "--no-first-run",
            "--no-default-browser-check", "--disable-extensions", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--metrics-recording-only", "about:blank"]
    # bash puts the pipe ends on fds 3 (commands in) and 4 (answers out) and
    # execs the launcher, which execs Chromium: one PID throughout.
    proc = subprocess.Popen(
        ["bash", "-c", f'exec "$0" "$@" 3<&{to_r2} 4>&{from_w2} {to_r2}<&- {from_w2}>&-', CHROMIUM, *args],
        pass_fds=(to_r2, from_w2), stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
    )
    os.close(to_r2)
    os.close(from_w2)
    dt = DevTools(proc, to_w, from_r)
    try:
        try:
            dt.call("Browser.getVersion", timeout=60)
        except (RuntimeError, TimeoutError) as e:
            log.flush()
            with open(log.name, errors="replace") as f:
                raise RuntimeError(f"chromium did not start: {e}\n{f.read()[-3000:]}") from None
        yield dt
    finally:
        # SIGTERM to its process group (the browser, its zygote, renderers
        # and GPU process) while the leader still lives, SIGKILL after 10 s;
        # then SIGKILL what is left of the group if the browser had crashed.
        stop(proc)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        os.close(to_w)
        os.close(from_r)
        log.close()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="module")
def page_server():
    """Serves the page of the moment at http://127.0.0.1:<port>/ from a
    thread of this process: another origin than the cluster's."""
    pages = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = pages.get(self.path)
            self.send_response(200 if body else 404)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Cache-Control", "no-store")
            self.send_header("Content-Length", str(len(body or b"")))
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, *args):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    t.start()
    srv.pages = pages
    srv.origin = f"http://127.0.0.1:{srv.server_address[1]}"
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()
        t.join(10)


PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>running</title></head><body>
<script id="cfg" type="application/json">%s</script>
<pre id="result"></pre>
<script>
const cfg = JSON.parse(document.getElementById("cfg").textContent);
const bytes = b64 => Uint8Array.from(atob(b64), c => c.charCodeAt(0));
const b64 = buf => btoa(String.fromCharCode(...new Uint8Array(buf)));
const out = {origin: location.origin};
async function step(name, fn) {
  try { out[name] = await fn(); }
  catch (e) { out[name] = {error: e.name, message: String(e.message)}; }
}
(async () => {
  // (a) presigned PUT: not a simple request, so the browser preflights it.
  await step("put", async () => {
    const r = await fetch(cfg.put_url, {method: "PUT", body: new Blob([bytes(cfg.put_body)])});
    return {status: r.status, etag: r.headers.get("ETag"), body: await r.text()};
  });
  // (b) form POSTs: the policy fields, then the file, as a browser form sends them.
  for (const [i, post] of cfg.posts.entries()) {
    await step("post" + i, async () => {
      const form = new FormData();
      for (const [k, v] of Object.entries(post.fields)) form.append(k, v);
      form.append("file", new Blob([bytes(cfg.post_body)], {type: "application/octet-stream"}), "upload.bin");
      const r = await fetch(post.url, {method: "POST", body: form});
      return {status: r.status, etag: r.headers.get("ETag"), location: r.headers.get("Location"), body: await r.text()};
    });
  }
  // (c) fetch the objects back and read their ETag headers.
  for (const [i, url] of cfg.get_urls.entries()) {
    await step("get" + i, async () => {
      const r = await fetch(url);
      return {status: r.status, etag: r.headers.get("ETag"), body: b64(await r.arrayBuffer())};
    });
  }
  document.getElementById("result").textContent = JSON.stringify(out);
  document.title = "done";
})();
</script></body></html>
"""


def run_page(browser, page_server, cfg, timeout=60):
    """Open a page with cfg in a new tab; return the JSON it wrote."""
    path = f"/{uuid.uuid4().hex}.html"
    page_server.pages[path] = (PAGE % json.dumps(cfg).replace("</", "<\\/")).encode()
    browser.events.clear()
    target = browser.call("Target.createTarget", {"url": "about:blank"})["targetId"]
    try:
        session = browser.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Runtime", "Log", "Page"):
            browser.call(f"{domain}.enable", session=session)
        nav = browser.call("Page.navigate", {"url": page_server.origin + path}, session=session)
        assert "errorText" not in nav, nav
        deadline = time.monotonic() + timeout
        expr = "document.title === 'done' ? document.getElementById('result').textContent : null"
        while True:
            r = browser.call("Runtime.evaluate", {"expression": expr, "returnByValue": True}, session=session)
            value = r["result"].get("value")
            if value:
                return json.loads(value)
            if time.monotonic() > deadline:
                raise AssertionError(f"page did not finish in {timeout}s; browser said: {browser.messages()}")
            time.sleep(0.2)
    finally:
        with contextlib.suppress(Exception):
            browser.call("Target.closeTarget", {"targetId": target}, timeout=10)
        page_server.pages.pop(path, None)


def page_config(cluster, bucket):
    """What the page needs, all made by boto3 (SigV4): a presigned PUT URL,
    two POST forms (default answer; success_action_status=201) and
    presigned GET URLs for the three keys."""
    v4 = client(cluster, signature_version="s3v4")
    keys = ["put/obj.bin", "form/default.bin", "form/created.bin"]
    posts = [
        v4.generate_presigned_post(bucket, keys[1], ExpiresIn=300),
        v4.generate_presigned_post(bucket, keys[2], Fields={"success_action_status": "201"},
                                   Conditions=[{"success_action_status": "201"}], ExpiresIn=300),
    ]
    assert all("policy" in p["fields"] and "x-amz-signature" in p["fields"] for p in posts)
    return keys, {
        "put_url": v4.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": keys[0]}, ExpiresIn=300),
        "posts": posts,
        "get_urls": [v4.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": k}, ExpiresIn=300) for k in keys],
        "put_body": base64.b64encode(PUT_BODY).decode(),
        "post_body": base64.b64encode(POST_BODY).decode(),
    }


def test_browser_uploads_and_reads_back_through_cors(cluster, s3, bucket, browser, page_server):
    s3.put_bucket_cors(Bucket=bucket, CORSConfiguration=rules_for(page_server.origin))
    keys, cfg = page_config(cluster, bucket)
    assert str(cluster.port) not in page_server.origin  # another origin
    out = run_page(browser, page_server, cfg)
    said = browser.messages()
    assert out["origin"] == page_server.origin
    # (a) the presigned PUT, and its ETag read by the page.
    assert out["put"].get("status") == 200, (out["put"], said)
    put_etag = s3.head_object(Bucket=bucket, Key=keys[0])["ETag"]
    assert out["put"]["etag"] == put_etag
    # (c) the PUT object fetched back: same bytes, same ETag.
    assert out["get0"].get("status") == 200, (out["get0"], said)
    assert base64.b64decode(out["get0"]["body"]) == PUT_BODY
    assert out["get0"]["etag"] == put_etag
    # (b) the form POSTs: 204 by default, 201 with an XML answer when asked;
    # both answers readable by the page (CORS headers on them) with the ETag.
    failures = []
    for i, want in ((1, 204), (2, 201)):
        post, got = out[f"post{i - 1}"], out[f"get{i}"]
        try:
            assert post.get("status") == want, post
            etag = s3.head_object(Bucket=bucket, Key=keys[i])["ETag"]
            assert post["etag"] == etag, post
            if want == 201:
                assert "<PostResponse>" in post["body"] and f"<Key>{keys[i]}</Key>" in post["body"], post
                assert f"<ETag>{etag}</ETag>" in post["body"].replace("&quot;", '"'), post
            else:
                assert post["body"] == "", post
            assert got.get("status") == 200, got
            assert base64.b64decode(got["body"]) == POST_BODY
            assert got["etag"] == etag
        except (AssertionError, ClientError) as e:
            failures.append(f"form POST {i} (want {want}): {e}")
    assert not failures, "\n".join(failures) + f"\nbrowser said: {said}"


@pytest.mark.parametrize("rules", ["none", "other-origin"])
def test_browser_without_cors_fails_as_a_browser_must(cluster, s3, bucket, browser, page_server, rules):
    if rules == "other-origin":
        s3.put_bucket_cors(Bucket=bucket, CORSConfiguration=rules_for("http://127.0.0.1:1"))
    keys, cfg = page_config(cluster, bucket)
    # The objects exist with other bytes, so the GETs succeed on the server
    # and it is CORS alone that keeps their answers from the page.
    for k in keys:
        s3.put_object(Bucket=bucket, Key=k, Body=b"put by boto3")
    out = run_page(browser, page_server, cfg)
    for step in ("put", "post0", "post1", "get0", "get1", "get2"):
        assert out[step].get("error") == "TypeError", (step, out[step])
        assert "status" not in out[step] and "etag" not in out[step]
    # The preflight was refused, so the PUT itself was never sent.
    assert s3.get_object(Bucket=bucket, Key=keys[0])["Body"].read() == b"put by boto3"
    # What Chromium told the console names CORS as the cause.
    said = " ".join(browser.messages())
    assert "CORS policy" in said, said
