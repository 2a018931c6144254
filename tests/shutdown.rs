//! Graceful shutdown of the real binary: SIGTERM during a 200 MiB upload
//! lets it finish, refuses new connections, and exits 0.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

struct Mkv {
    child: Child,
    port: u16,
    admin_port: u16,
}

impl Mkv {
    fn start(volumes: &[Volume], db: &std::path::Path) -> Mkv {
        let (port, admin_port) = (free_port(), free_port());
        let vols: Vec<String> = volumes.iter().map(Volume::addr).collect();
        let child = Command::new(env!("CARGO_BIN_EXE_mkv"))
            .args(["server", "--volumes", &vols.join(","), "--db", &db.display().to_string(), "--db-map-gib", "1"])
            .args(["--replicas", "2", "--subvolumes", "1", "--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--admin-port", &admin_port.to_string(), "--io-timeout", "10s", "--shutdown-timeout", "20s"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "mkv did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Mkv { child, port, admin_port }
    }

    fn signal(&self, sig: &str) {
        assert!(Command::new("kill").args([sig, &self.child.id().to_string()]).status().unwrap().success());
    }

    /// Exit status and stderr, waiting at most `limit`.
    fn wait(&mut self, limit: Duration) -> (Option<i32>, String) {
        let deadline = Instant::now() + limit;
        while self.child.try_wait().unwrap().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let status = self.child.try_wait().unwrap();
        if status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let mut err = String::new();
        self.child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
        (status.and_then(|s| s.code()), err)
    }
}

impl Drop for Mkv {
    fn drop(&mut self) {
        if self.child.try_wait().unwrap().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn admin_get(port: u16, path: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn sigterm_lets_an_upload_in_flight_finish() {
    let tmp = tempfile::tempdir().unwrap();
    let volumes: Vec<Volume> = (0..2).map(|i| Volume::start(&tmp.path().join(format!("vol{i}")))).collect();
    let mut mkv = Mkv::start(&volumes, &tmp.path().join("db"));
    const SIZE: usize = 200 << 20;
    let chunk = data(1 << 20, 7);
    let mut up = TcpStream::connect(("127.0.0.1", mkv.port)).unwrap();
    write!(up, "PUT /big HTTP/1.1\r\nHost: x\r\nContent-Length: {SIZE}\r\n\r\n").unwrap();
    for _ in 0..50 {
        up.write_all(&chunk).unwrap();
    }
    mkv.signal("-TERM");
    // No new connections; the admin listener says why it is not ready.
    let deadline = Instant::now() + Duration::from_secs(5);
    while TcpStream::connect(("127.0.0.1", mkv.port)).is_ok() {
        assert!(Instant::now() < deadline, "still accepting after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
    let ready = admin_get(mkv.admin_port, "/ready");
    assert!(ready.starts_with("HTTP/1.1 503") && ready.ends_with("shutting down\n"), "{ready}");
    for _ in 50..200 {
        up.write_all(&chunk).unwrap();
    }
    let mut status = String::new();
    BufReader::new(&up).read_line(&mut status).unwrap();
    assert!(status.starts_with("HTTP/1.1 201"), "{status}");
    drop(up);
    let (code, stderr) = mkv.wait(Duration::from_secs(15));
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("mkv: SIGTERM: no new connections") && stderr.contains("mkv: stopped"), "{stderr}");
    // The value is whole on both replicas.
    let index = mkv::index::Index::open(&tmp.path().join("db"), 1 << 30).unwrap();
    let rec = index.get(b"/big").unwrap().unwrap();
    assert_eq!(rec.volumes.len(), 2);
    for v in &rec.volumes {
        let file = v.split('/').next().and_then(|addr| volumes.iter().find(|vol| vol.addr() == addr)).unwrap();
        let path = file.dir.join(mkv::placement::key2path(b"/big", "").trim_start_matches('/'));
        assert_eq!(std::fs::metadata(&path).unwrap().len(), SIZE as u64, "{}", path.display());
    }
}

#[test]
fn sigint_on_an_idle_server_exits_0() {
    let tmp = tempfile::tempdir().unwrap();
    let volumes: Vec<Volume> = (0..2).map(|i| Volume::start(&tmp.path().join(format!("vol{i}")))).collect();
    let mut mkv = Mkv::start(&volumes, &tmp.path().join("db"));
    assert!(admin_get(mkv.admin_port, "/ready").starts_with("HTTP/1.1 200"));
    mkv.signal("-INT");
    let (code, stderr) = mkv.wait(Duration::from_secs(10));
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("mkv: SIGINT:"), "{stderr}");
}
