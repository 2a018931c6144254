//! Test harness: real nginx volumes on free loopback ports (started with
//! `nginx/volume`, stopped by PID), and the mkv server in-process on port 0.
#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use mkv::config::Config;
use mkv::store::Store;

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn wait_for_port(port: u16, child: &mut Child) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// One nginx volume serving a folder.
pub struct Volume {
    pub port: u16,
    pub dir: PathBuf,
    child: Option<Child>,
}

impl Volume {
    pub fn start(dir: &Path) -> Volume {
        Self::start_on(dir, free_port())
    }

    pub fn start_on(dir: &Path, port: u16) -> Volume {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("nginx/volume");
        for _ in 0..5 {
            let mut child = Command::new(&script)
                .arg(dir)
                .env("PORT", port.to_string())
                .env("WORKERS", "1")
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .process_group(0)
                .spawn()
                .expect("start nginx/volume");
            if wait_for_port(port, &mut child) {
                return Volume { port, dir: dir.to_path_buf(), child: Some(child) };
            }
            let _ = Command::new("kill").args(["-KILL", "--", &format!("-{}", child.id())]).status();
            let _ = child.wait();
        }
        panic!("nginx volume did not start on port {port}");
    }

    pub fn addr(&self) -> String {
        format!("localhost:{}", self.port)
    }

    fn signal(&self, sig: &str) {
        if let Some(c) = &self.child {
            // The launcher execs nginx, which leads its own process group
            // (master and workers): signal them all.
            let _ = Command::new("kill").args([sig, "--", &format!("-{}", c.id())]).status();
        }
    }

    /// Freeze the volume (master and workers): connections hang.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    pub fn resume(&self) {
        self.signal("-CONT");
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill").args(["-CONT", "--", &format!("-{}", c.id())]).status();
            let _ = Command::new("kill").args(["-TERM", "--", &format!("-{}", c.id())]).status();
            let _ = c.wait();
            // Wait until the port is free so a restart on it works.
            let deadline = Instant::now() + Duration::from_secs(5);
            while TcpStream::connect(("127.0.0.1", self.port)).is_ok() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    pub fn restart(&mut self) {
        self.stop();
        *self = Volume::start_on(&self.dir.clone(), self.port);
    }
}

impl Drop for Volume {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The mkv server running in-process on its own actix system thread, with
/// its admin listener (`/metrics`, `/health`, `/ready`).
pub struct Server {
    pub port: u16,
    pub admin_port: u16,
    pub store: Store,
    handle: actix_web::dev::ServerHandle,
    admin: actix_web::dev::ServerHandle,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    pub fn start(config: Config) -> Server {
        let store = mkv::server::open_store(&config).expect("open store");
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let admin_listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let admin_port = admin_listener.local_addr().unwrap().port();
        let (tx, rx) = std::sync::mpsc::channel();
        let s = store.clone();
        let thread = std::thread::spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                let admin = mkv::monitor::serve(s.clone(), admin_listener, Default::default()).unwrap();
                let server = mkv::server::serve(s, listener, None).unwrap();
                tx.send((server.handle(), admin.handle())).unwrap();
                actix_web::rt::spawn(admin);
                let _ = server.await;
            })
        });
        let (handle, admin) = rx.recv().unwrap();
        Server { port, admin_port, store, handle, admin, thread: Some(thread) }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.admin_port, path)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let (h, admin) = (self.handle.clone(), self.admin.clone());
        // Stopping needs a runtime, and drop may run inside a test's runtime:
        // use a throwaway one on its own thread.
        std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
                admin.stop(false).await;
                h.stop(false).await
            })
        })
        .join()
        .unwrap();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A config for tests: the given volumes, a fresh db, short timeouts.
pub fn test_config(volumes: &[String], db: &Path, replicas: u32, subvolumes: u32) -> Config {
    let mut args = vec!["mkv".to_string(), "server".into()];
    args.extend(["--volumes".into(), volumes.join(",")]);
    args.extend(["--db".into(), db.display().to_string(), "--db-map-gib".into(), "1".into()]);
    args.extend(["--replicas".into(), replicas.to_string(), "--subvolumes".into(), subvolumes.to_string()]);
    args.extend(["--voltimeout".into(), "500ms".into(), "--io-timeout".into(), "3s".into()]);
    mkv::cli::parse(args).unwrap().config
}

/// Volumes plus a server over them, in one temp folder.
pub struct Cluster {
    pub tmp: tempfile::TempDir,
    pub volumes: Vec<Volume>,
    pub server: Option<Server>,
}

impl Cluster {
    pub fn start(n: usize, replicas: u32, subvolumes: u32) -> Cluster {
        Self::start_with(n, replicas, subvolumes, |_| {})
    }

    pub fn start_with(n: usize, replicas: u32, subvolumes: u32, tweak: impl FnOnce(&mut Config)) -> Cluster {
        let tmp = tempfile::tempdir().unwrap();
        let volumes: Vec<Volume> = (0..n).map(|i| Volume::start(&tmp.path().join(format!("vol{i}")))).collect();
        let mut config = test_config(&volumes.iter().map(Volume::addr).collect::<Vec<_>>(), &tmp.path().join("db"), replicas, subvolumes);
        tweak(&mut config);
        let server = Some(Server::start(config));
        Cluster { tmp, volumes, server }
    }

    pub fn server(&self) -> &Server {
        self.server.as_ref().unwrap()
    }

    pub fn url(&self, path: &str) -> String {
        self.server().url(path)
    }
}

/// A client that does not follow redirects (to see the 302s).
pub fn client() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).no_proxy().build().unwrap()
}

pub fn follow_client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

/// Deterministic pseudo-random bytes.
pub fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

pub fn md5_hex(b: &[u8]) -> String {
    use md5::Digest;
    hex::encode(md5::Md5::digest(b))
}

/// A key as a URL path: every byte but unreserved ones and `/` escaped.
pub fn enc(key: &[u8]) -> String {
    const SET: &percent_encoding::AsciiSet =
        &percent_encoding::NON_ALPHANUMERIC.remove(b'/').remove(b'-').remove(b'_').remove(b'.').remove(b'~');
    percent_encoding::percent_encode(key, SET).to_string()
}
