//! The admin listener: /metrics after a few requests, /health, /ready.

mod common;

use std::time::{Duration, Instant};

use common::*;

async fn get(url: &str) -> (u16, String) {
    let r = client().get(url).send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// A request is counted once its answer is sent: scrape until `want` shows.
async fn scrape_until(c: &Cluster, want: &[&str]) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (status, text) = get(&c.server().admin_url("/metrics")).await;
        assert_eq!(status, 200);
        if want.iter().all(|w| text.lines().any(|l| l == *w)) || Instant::now() > deadline {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn metrics_after_requests() {
    let c = Cluster::start(3, 2, 1);
    let http = client();
    let body = data(1000, 1);
    assert_eq!(http.put(c.url("/k1")).body(body.clone()).send().await.unwrap().status(), 201);
    assert_eq!(http.get(c.url("/k1")).send().await.unwrap().status(), 302);
    assert_eq!(http.get(c.url("/nope")).send().await.unwrap().status(), 404);
    let want = [
        r#"mkv_requests_total{api="native",operation="PUT",status="2xx"} 1"#,
        r#"mkv_requests_total{api="native",operation="GET",status="3xx"} 1"#,
        r#"mkv_requests_total{api="native",operation="GET",status="4xx"} 1"#,
        r#"mkv_received_bytes_total{api="native"} 1000"#,
        r#"mkv_request_duration_seconds_count{api="native",operation="GET"} 2"#,
        "mkv_requests_in_flight 0",
        "mkv_index_keys 1",
        "mkv_multipart_uploads_in_progress 0",
        "mkv_pending_deletions 0",
        "mkv_writes_in_progress 0",
    ];
    let text = scrape_until(&c, &want).await;
    for w in want {
        assert!(text.lines().any(|l| l == w), "missing {w:?} in\n{text}");
    }
    // Two replicas written, each on a configured volume.
    let puts: u64 = text
        .lines()
        .filter(|l| l.starts_with("mkv_volume_requests_total{method=\"PUT\""))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(puts, 2, "{text}");
    assert!(c.volumes.iter().any(|v| text.contains(&format!("volume=\"{}\"", v.addr()))));
    assert!(!text.contains("volume=\"other\""));
    let used: u64 = text.lines().find_map(|l| l.strip_prefix("mkv_index_used_bytes ")).unwrap().parse().unwrap();
    let map: u64 = text.lines().find_map(|l| l.strip_prefix("mkv_index_map_size_bytes ")).unwrap().parse().unwrap();
    assert!(used > 0 && map == 1 << 30, "{used} {map}");
    // Keys never appear as labels.
    assert!(!text.contains("k1"));
}

#[tokio::test]
async fn health_and_readiness() {
    let mut c = Cluster::start(3, 2, 1);
    let admin = |p: &str| c.server().admin_url(p);
    assert_eq!(get(&admin("/health")).await, (200, "ok\n".into()));
    assert_eq!(get(&admin("/ready")).await, (200, "ready\n".into()));
    assert_eq!(get(&admin("/nope")).await.0, 404);
    // Two of three volumes still cover --replicas 2.
    c.volumes[0].stop();
    assert_eq!(get(&c.server().admin_url("/ready")).await.0, 200);
    // A hung volume does not answer within --voltimeout.
    c.volumes[1].pause();
    let (status, reason) = get(&c.server().admin_url("/ready")).await;
    c.volumes[1].resume();
    assert_eq!(status, 503);
    let (v0, v1) = (c.volumes[0].addr(), c.volumes[1].addr());
    assert_eq!(reason, format!("1 of 3 volumes answer, 2 needed (--replicas); not answering: {v0}, {v1}\n"));
    assert_eq!(get(&c.server().admin_url("/health")).await.0, 200);
    c.volumes[0].restart();
    assert_eq!(get(&c.server().admin_url("/ready")).await.0, 200);
}
