//! The native API against real nginx volumes: every row of the reference table.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use reqwest::{Method, StatusCode};

fn m(name: &str) -> Method {
    Method::from_bytes(name.as_bytes()).unwrap()
}

async fn put(c: &reqwest::Client, url: &str, body: Vec<u8>) -> StatusCode {
    c.put(url).body(body).send().await.unwrap().status()
}

async fn list(c: &reqwest::Client, url: &str) -> serde_json::Value {
    let r = c.get(url).send().await.unwrap();
    assert_eq!(r.status(), 200, "{url}");
    assert_eq!(r.headers()["content-type"], "application/json");
    serde_json::from_slice(&r.bytes().await.unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn api_table() {
    let cl = Cluster::start(3, 3, 10);
    let c = client();
    let url = cl.url("/wehave");
    assert_eq!(put(&c, &url, b"bigswag".to_vec()).await, 201);
    assert_eq!(put(&c, &url, b"again".to_vec()).await, 403);
    assert_eq!(c.put(cl.url("/empty")).body("").send().await.unwrap().status(), 411);

    for method in [Method::GET, Method::HEAD] {
        let r = c.request(method, &url).send().await.unwrap();
        assert_eq!(r.status(), 302);
        let h = r.headers();
        assert_eq!(h["content-md5"], md5_hex(b"bigswag"));
        assert_eq!(h["key-balance"], "balanced");
        let vols: Vec<&str> = h["key-volumes"].to_str().unwrap().split(',').collect();
        assert_eq!(vols.len(), 3);
        let loc = h["location"].to_str().unwrap();
        assert!(vols.iter().any(|v| loc.starts_with(&format!("http://{v}/"))), "{loc}");
        assert_eq!(h["content-length"], "0");
    }
    let body = follow_client().get(&url).send().await.unwrap().bytes().await.unwrap();
    assert_eq!(&body[..], b"bigswag");

    // Header names as the original writes them.
    let raw = raw_response(cl.server().port, "HEAD /wehave HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert!(raw.contains("Content-Md5: ") && raw.contains("Key-Volumes: ") && raw.contains("Key-Balance: balanced"), "{raw}");

    assert_eq!(c.get(cl.url("/nothere")).send().await.unwrap().status(), 404);
    assert_eq!(c.get(cl.url("/wehave?bogus")).send().await.unwrap().status(), 403);
    assert_eq!(c.get(cl.url("/?list&limit=abc")).send().await.unwrap().status(), 400);

    // UNLINK hides the key, keeps data, lists it as unlinked.
    assert_eq!(c.request(m("UNLINK"), &url).send().await.unwrap().status(), 204);
    assert_eq!(c.request(m("UNLINK"), &url).send().await.unwrap().status(), 404);
    assert_eq!(c.get(&url).send().await.unwrap().status(), 404);
    assert_eq!(list(&c, &cl.url("/?list")).await, serde_json::json!({"next": "", "keys": []}));
    assert_eq!(list(&c, &cl.url("/?unlinked")).await, serde_json::json!({"next": "", "keys": ["/wehave"]}));
    // An unlinked key may be written again.
    assert_eq!(put(&c, &url, b"second".to_vec()).await, 201);
    assert_eq!(follow_client().get(&url).send().await.unwrap().bytes().await.unwrap(), "second");

    assert_eq!(c.delete(&url).send().await.unwrap().status(), 204);
    assert_eq!(c.delete(&url).send().await.unwrap().status(), 404);
    assert_eq!(c.get(&url).send().await.unwrap().status(), 404);
    // DELETE removed every replica file.
    let files = walk_files(cl.tmp.path());
    assert!(files.is_empty(), "{files:?}");
}

fn raw_response(port: u16, request: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// Value files under a folder (skipping nginx's own state).
fn walk_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else { return out };
    for e in rd.flatten() {
        let p = e.path();
        let name = e.file_name();
        if name == ".nginx" || name == "db" {
            continue;
        }
        if p.is_dir() {
            out.extend(walk_files(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn protect_and_fallback() {
    let fb = "127.0.0.1:9";
    let cl = Cluster::start_with(2, 2, 1, |c| {
        c.protect = true;
        c.fallback = Some(fb.into());
    });
    let c = client();
    let url = cl.url("/p");
    assert_eq!(put(&c, &url, b"x".to_vec()).await, 201);
    assert_eq!(c.delete(&url).send().await.unwrap().status(), 403);
    assert_eq!(c.request(m("UNLINK"), &url).send().await.unwrap().status(), 204);
    // Unlinked: a GET goes to the fallback.
    let r = c.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 302);
    assert_eq!(r.headers()["location"], format!("http://{fb}/p"));
    assert_eq!(c.delete(&url).send().await.unwrap().status(), 204);
    let r = c.get(cl.url("/never")).send().await.unwrap();
    assert_eq!(r.headers()["location"], format!("http://{fb}/never"));
}

#[tokio::test(flavor = "multi_thread")]
async fn large_value_round_trip() {
    let cl = Cluster::start(3, 3, 10);
    let value = data(16 << 20, 7);
    let url = cl.url("/big/value");
    assert_eq!(put(&client(), &url, value.clone()).await, 201);
    let r = client().head(&url).send().await.unwrap();
    assert_eq!(r.headers()["content-md5"], md5_hex(&value));
    let got = follow_client().get(&url).send().await.unwrap().bytes().await.unwrap();
    assert!(got == value);
    // Every replica holds the whole value.
    let vols = r.headers()["key-volumes"].to_str().unwrap().to_string();
    for v in vols.split(',') {
        let u = format!("http://{v}{}", mkv::placement::key2path(b"/big/value", ""));
        assert_eq!(follow_client().get(&u).send().await.unwrap().bytes().await.unwrap().len(), value.len());
    }
}

/// Far more body bytes at once than `--write-buffer-mib` holds: writes wait
/// for room (never for each other), and every one completes whole.
#[tokio::test(flavor = "multi_thread")]
async fn concurrent_writes_beyond_the_write_buffer() {
    let cl = Cluster::start_with(3, 3, 10, |c| c.write_buffer_mib = 1);
    let writes = (0..24u64).map(|i| {
        let (url, value) = (cl.url(&format!("/budget/{i}")), data(700 << 10, i));
        async move { (put(&client(), &url, value.clone()).await, url, value) }
    });
    for (status, url, value) in futures::future::join_all(writes).await {
        assert_eq!(status, 201, "{url}");
        let got = follow_client().get(&url).send().await.unwrap().bytes().await.unwrap();
        assert!(got == value, "{url}: not the bytes written");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn paged_listing() {
    let cl = Cluster::start(2, 1, 1);
    let c = client();
    let mut want = Vec::new();
    let puts = (0..1000).map(|i| {
        let c = c.clone();
        let url = cl.url(&format!("/list/k{i:04}"));
        async move { put(&c, &url, format!("v{i}").into_bytes()).await }
    });
    // 32 at a time: a realistic client, not a connect storm on a busy machine.
    use futures::StreamExt;
    let statuses: Vec<StatusCode> = futures::stream::iter(puts).buffer_unordered(32).collect().await;
    assert!(statuses.iter().all(|s| *s == 201), "{statuses:?}");
    for i in 0..1000 {
        want.push(format!("/list/k{i:04}"));
    }
    assert_eq!(put(&c, &cl.url("/other"), b"x".to_vec()).await, 201);
    let mut got: Vec<String> = Vec::new();
    let mut start = String::new();
    let mut pages = 0;
    loop {
        let v = list(&c, &cl.url(&format!("/list/?list&limit=100&start={}", enc(start.as_bytes())))).await;
        pages += 1;
        got.extend(v["keys"].as_array().unwrap().iter().map(|k| k.as_str().unwrap().to_string()));
        start = v["next"].as_str().unwrap().to_string();
        if start.is_empty() {
            break;
        }
        assert!(pages < 20);
    }
    assert_eq!(pages, 10);
    assert_eq!(got, want);
}

#[tokio::test(flavor = "multi_thread")]
async fn too_many_keys_without_limit() {
    let cl = Cluster::start(1, 1, 1);
    let rec = mkv::index::Record { volumes: vec!["x".into()], deleted: mkv::index::Deleted::No, hash: String::new(), gen: String::new() };
    let keys: Vec<Vec<u8>> = (0..1_000_002u32).map(|i| format!("/m/{i:08}").into_bytes()).collect();
    cl.server().store.index.put_many(keys.iter().map(|k| (k.as_slice(), &rec))).unwrap();
    assert_eq!(client().get(cl.url("/m/?list")).send().await.unwrap().status(), 413);
    let v = list(&client(), &cl.url("/m/?list&limit=2")).await;
    assert_eq!(v, serde_json::json!({"next": "/m/00000002", "keys": ["/m/00000000", "/m/00000001"]}));
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_puts_of_one_key() {
    let cl = Cluster::start(3, 3, 1);
    let url = cl.url("/race");
    let tasks = (0..16u64).map(|i| {
        let (c, url) = (client(), url.clone());
        tokio::spawn(async move { (i, put(&c, &url, data(512 << 10, i)).await) })
    });
    let results: Vec<(u64, StatusCode)> = futures::future::join_all(tasks).await.into_iter().map(|r| r.unwrap()).collect();
    let winners: Vec<u64> = results.iter().filter(|r| r.1 == 201).map(|r| r.0).collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    assert!(results.iter().all(|r| r.1 == 201 || r.1 == 409 || r.1 == 403), "{results:?}");
    let got = follow_client().get(&url).send().await.unwrap().bytes().await.unwrap();
    assert!(got == data(512 << 10, winners[0]));
}

#[tokio::test(flavor = "multi_thread")]
async fn awkward_keys_round_trip() {
    let cl = Cluster::start(3, 2, 10);
    let c = client();
    let long = format!("/{}", "k".repeat(1023));
    let keys: Vec<Vec<u8>> = vec![
        b"/with space/and more".to_vec(),
        "/ünïcode/ключ/🙂".as_bytes().to_vec(),
        b"/plus+sign".to_vec(),
        b"/pct%25=eq".to_vec(),
        b"/trailing/".to_vec(),
        b"/fixture/b64/>??>o0".to_vec(), // base64 contains '/'
        b"/a?".to_vec(),                 // base64 "L2E/" ends in '/'
        long.into_bytes(),
    ];
    assert!(keys.iter().any(|k| k.len() == 1024));
    for (i, k) in keys.iter().enumerate() {
        let url = cl.url(&enc(k));
        let v = format!("value {i}").into_bytes();
        assert_eq!(put(&c, &url, v.clone()).await, 201, "{}", String::from_utf8_lossy(k));
        let got = follow_client().get(&url).send().await.unwrap();
        assert_eq!(got.status(), 200, "{}", String::from_utf8_lossy(k));
        assert_eq!(got.bytes().await.unwrap(), v);
    }
    let listed = list(&c, &cl.url("/?list")).await;
    let mut want: Vec<String> = keys.iter().map(|k| String::from_utf8(k.clone()).unwrap()).collect();
    want.sort();
    let got: Vec<&str> = listed["keys"].as_array().unwrap().iter().map(|k| k.as_str().unwrap()).collect();
    assert_eq!(got, want);
    for k in &keys {
        assert_eq!(c.delete(cl.url(&enc(k))).send().await.unwrap().status(), 204);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn paused_volume_fails_put_in_bounded_time() {
    let cl = Cluster::start(3, 3, 1);
    let c = client();
    cl.volumes[1].pause();
    let value = data(4 << 20, 3);
    let start = Instant::now();
    let s = put(&c, &cl.url("/frozen"), value.clone()).await;
    let took = start.elapsed();
    // A stall past --io-timeout is a volume out of service: 503.
    assert_eq!(s, 503);
    // io-timeout is 3s in tests; the original would hang forever.
    assert!(took < Duration::from_secs(20), "{took:?}");
    assert_eq!(c.get(cl.url("/frozen")).send().await.unwrap().status(), 404);
    cl.volumes[1].resume();
    // The lock was released and the key is not live: a retry succeeds.
    assert_eq!(put(&c, &cl.url("/frozen"), value.clone()).await, 201);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got = follow_client().get(cl.url("/frozen")).send().await.unwrap().bytes().await.unwrap();
    assert!(got == value);
}

#[tokio::test(flavor = "multi_thread")]
async fn stopped_volume() {
    let mut cl = Cluster::start(3, 2, 1);
    let c = client();
    // Keys written while all volumes are up.
    let keys: Vec<String> = (0..20).map(|i| format!("/before/{i}")).collect();
    for k in &keys {
        assert_eq!(put(&c, &cl.url(k), k.clone().into_bytes()).await, 201);
    }
    cl.volumes[0].stop();
    let down = cl.volumes[0].addr();
    // Every existing key still redirects to a live replica.
    for k in &keys {
        let r = c.get(cl.url(k)).send().await.unwrap();
        assert_eq!(r.status(), 302, "{k}");
        assert!(!r.headers()["location"].to_str().unwrap().contains(&down));
    }
    // A new key placed on the dead volume fails and is not listed.
    let victim = (0..1000)
        .map(|i| format!("/after/{i}"))
        .find(|k| cl.server().store.placement(k.as_bytes()).iter().any(|v| v.starts_with(&down)))
        .unwrap();
    assert_eq!(put(&c, &cl.url(&victim), b"x".to_vec()).await, 500);
    assert_eq!(list(&c, &cl.url("/after/?list")).await["keys"], serde_json::json!([]));
    assert_eq!(list(&c, &cl.url("/after/?unlinked")).await["keys"], serde_json::json!([victim]));
    cl.volumes[0].restart();
    assert_eq!(put(&c, &cl.url(&victim), b"x".to_vec()).await, 201);
    let _ = Arc::new(());
}

/// A client whose connections come from `local` (any 127.0.0.0/8 address
/// reaches the server on 127.0.0.1).
fn client_from(local: &str) -> reqwest::Client {
    let ip: std::net::IpAddr = local.parse().unwrap();
    reqwest::Client::builder().local_address(ip).redirect(reqwest::redirect::Policy::none()).no_proxy().build().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn native_exposure_by_peer_and_mode() {
    let cl = Cluster::start_with(2, 2, 1, |c| {
        c.s3_keys = vec![("ak".into(), "sk".into())];
        c.native_allow = vec!["127.0.0.1/32".parse().unwrap()];
    });
    let (inside, outside) = (client_from("127.0.0.1"), client_from("127.0.0.2"));
    assert_eq!(put(&inside, &cl.url("/b/k"), b"v".to_vec()).await, 201);
    // As anonymous S3 requests: a bucket that does not exist is 404.
    assert_eq!(outside.get(cl.url("/b/k")).send().await.unwrap().status(), 404);
    cl.server().store.index.create_bucket("b", &mkv::index::BucketInfo::default()).unwrap();
    // Any other peer's unsigned request is an anonymous S3 request: denied,
    // whatever the method, with S3's XML error.
    for (method, status, code) in [("PUT", 403, "AccessDenied"), ("GET", 403, "AccessDenied"), ("DELETE", 403, "AccessDenied"), ("UNLINK", 501, "NotImplemented")] {
        let resp = outside.request(Method::from_bytes(method.as_bytes()).unwrap(), cl.url("/b/k")).body("x").send().await.unwrap();
        assert_eq!(resp.status(), status, "{method}");
        assert!(resp.text().await.unwrap().contains(&format!("<Code>{code}</Code>")), "{method}");
    }
    assert_eq!(inside.get(cl.url("/b/k")).send().await.unwrap().status(), 302);
    assert_eq!(list(&inside, &cl.url("/b/?list")).await["keys"], serde_json::json!(["/b/k"]));

    // Read-only: reads and listings served, writes refused.
    let ro = Cluster::start_with(2, 2, 1, |c| c.native = Some(mkv::config::NativeMode::Ro));
    let c = client();
    assert_eq!(put(&c, &ro.url("/k"), b"v".to_vec()).await, 403);
    for method in ["DELETE", "UNLINK", "REBALANCE"] {
        assert_eq!(c.request(Method::from_bytes(method.as_bytes()).unwrap(), ro.url("/k")).send().await.unwrap().status(), 403, "{method}");
    }
    assert_eq!(c.get(ro.url("/k")).send().await.unwrap().status(), 404);
    assert_eq!(list(&c, &ro.url("/?list")).await["keys"], serde_json::json!([]));
    // Without keys and flags: the original's open API, from any peer (once a
    // key exists, from loopback only: see `access`'s unit tests; every peer
    // here is a loopback one).
    let open = Cluster::start(2, 2, 1);
    assert_eq!(put(&client_from("127.0.0.2"), &open.url("/k"), b"v".to_vec()).await, 201);
}
