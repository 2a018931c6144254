//! The admin commands (`rebuild`, `rebalance`, `verify`, `repair`) run as the
//! real `mkv` binary against real nginx volumes, beside the in-process server
//! where the test needs one, as an operator would run them.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use common::*;
use futures::StreamExt;
use mkv::index::Index;
use mkv::placement::{key2path, key2volume};
use reqwest::StatusCode;
use serde_json::Value;

/// Cluster settings an admin command must share with the server.
#[derive(Clone)]
struct Setup {
    volumes: Vec<String>,
    db: PathBuf,
    replicas: u32,
    subvolumes: u32,
}

impl Setup {
    /// The server's config, with the admin commands' timeouts (the
    /// machine running the tests may be busy).
    fn config(&self) -> mkv::config::Config {
        let mut c = test_config(&self.volumes, &self.db, self.replicas, self.subvolumes);
        (c.voltimeout, c.io_timeout) = (Duration::from_secs(2), Duration::from_secs(5));
        c
    }

    fn args(&self) -> Vec<String> {
        let mut a = vec!["--volumes".to_string(), self.volumes.join(",")];
        a.extend(["--db".into(), self.db.display().to_string(), "--db-map-gib".into(), "1".into()]);
        a.extend(["--replicas".into(), self.replicas.to_string(), "--subvolumes".into(), self.subvolumes.to_string()]);
        a.extend(["--voltimeout".into(), "2s".into(), "--io-timeout".into(), "5s".into()]);
        a
    }

    fn placement(&self, key: &[u8]) -> Vec<String> {
        key2volume(key, &self.volumes, self.replicas as usize, self.subvolumes)
    }
}

/// What an admin run printed (`--json`) and how it exited.
#[derive(Debug)]
struct Run {
    ok: bool,
    report: Value,
}

impl Run {
    fn failures(&self) -> BTreeSet<(String, String, String)> {
        let s = |v: &Value| v.as_str().unwrap_or("").to_string();
        self.report["failures"].as_array().unwrap().iter().map(|f| (s(&f["kind"]), s(&f["key"]), s(&f["volume"]))).collect()
    }

    fn count(&self, field: &str) -> u64 {
        self.report[field].as_u64().unwrap()
    }
}

fn mkv_command(args: &[String]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_mkv"));
    c.args(args).env_remove("MKV_LOG");
    c
}

/// Run `mkv <setup flags> <command> --json <extra>` to the end.
fn admin(setup: &Setup, command: &str, extra: &[&str]) -> Run {
    let mut args = setup.args();
    args.extend([command.to_string(), "--json".into()]);
    args.extend(extra.iter().map(|s| s.to_string()));
    run_mkv(&args)
}

fn run_mkv(args: &[String]) -> Run {
    let out = mkv_command(args).stdin(Stdio::null()).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let report = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{args:?}: no JSON report ({e}): {stdout} {stderr}"));
    Run { ok: out.status.success(), report }
}

/// The same, off the async runtime, so the test can keep writing meanwhile.
async fn admin_async(setup: &Setup, command: &str, extra: &[&str]) -> Run {
    let (setup, command) = (setup.clone(), command.to_string());
    let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || admin(&setup, &command, &extra.iter().map(String::as_str).collect::<Vec<_>>())).await.unwrap()
}

fn setup_of(cl: &Cluster, volumes: &[&Volume], replicas: u32, subvolumes: u32) -> Setup {
    Setup { volumes: volumes.iter().map(|v| v.addr()).collect(), db: cl.tmp.path().join("db"), replicas, subvolumes }
}

/// Volumes and a server with the admin commands' timeouts.
fn cluster(volumes: usize, replicas: u32, subvolumes: u32) -> Cluster {
    Cluster::start_with(volumes, replicas, subvolumes, |c| (c.voltimeout, c.io_timeout) = (Duration::from_secs(2), Duration::from_secs(5)))
}

/// Stop a server and wait until this process can open its `--db` again (the
/// server lets go of the environment a moment after it stops).
fn stop(server: Server, db: &Path) {
    drop(server);
    let deadline = Instant::now() + Duration::from_secs(10);
    while Index::open(db, 1 << 30).is_err() {
        assert!(Instant::now() < deadline, "{} stayed open", db.display());
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// PUT every key with its value, `n` at a time.
async fn put_all(server: &Server, kv: &[(Vec<u8>, Vec<u8>)], n: usize) {
    let c = client();
    let puts = kv.iter().map(|(k, v)| {
        let (c, url, v) = (c.clone(), server.url(&enc(k)), v.clone());
        async move { (c.put(&url).body(v).send().await.unwrap().status(), url) }
    });
    let mut results = futures::stream::iter(puts).buffer_unordered(n);
    while let Some((status, url)) = results.next().await {
        assert_eq!(status, 201, "{url}");
    }
}

/// Every key reads back its value through the server, reported balanced.
async fn assert_readable(server: &Server, kv: &[(Vec<u8>, Vec<u8>)]) {
    let (c, follow) = (client(), follow_client());
    let checks = kv.iter().map(|(k, v)| {
        let (c, follow, url) = (c.clone(), follow.clone(), server.url(&enc(k)));
        async move {
            let head = c.head(&url).send().await.unwrap();
            assert_eq!(head.status(), 302, "{url}");
            assert_eq!(head.headers()["key-balance"], "balanced", "{url}");
            let got = follow.get(&url).send().await.unwrap();
            assert_eq!(got.status(), 200, "{url}");
            assert!(got.bytes().await.unwrap() == v[..], "{url}");
        }
    });
    futures::stream::iter(checks).buffer_unordered(16).collect::<Vec<()>>().await;
}

/// Each key's file is on exactly the targets placement names, no others.
fn assert_placed(setup: &Setup, dirs: &[(String, PathBuf)], keys: &[Vec<u8>]) {
    for key in keys {
        let mut found = BTreeSet::new();
        for (addr, dir) in dirs {
            for sv in 0..setup.subvolumes {
                let target = if setup.subvolumes == 1 { addr.clone() } else { format!("{addr}/sv{sv:02X}") };
                let folder = if setup.subvolumes == 1 { dir.clone() } else { dir.join(format!("sv{sv:02X}")) };
                if folder.join(&key2path(key, "")[1..]).is_file() {
                    found.insert(target);
                }
            }
        }
        let want: BTreeSet<String> = setup.placement(key).into_iter().collect();
        assert_eq!(found, want, "{}", String::from_utf8_lossy(key));
    }
}

fn dirs_of(volumes: &[&Volume]) -> Vec<(String, PathBuf)> {
    volumes.iter().map(|v| (v.addr(), v.dir.clone())).collect()
}

/// Keys whose standard base64 contains `/` (nested folders on the volumes).
fn slash_keys(n: usize) -> Vec<Vec<u8>> {
    (0..)
        .map(|i| format!("/b64/?>{i}?>").into_bytes())
        .filter(|k| base64::engine::general_purpose::STANDARD.encode(k).contains('/'))
        .take(n)
        .collect()
}

fn value_for(i: usize) -> Vec<u8> {
    let len = if i.is_multiple_of(50) { 70_000 + i } else { 1 + (i * 37) % 3000 };
    data(len, i as u64)
}

#[tokio::test(flavor = "multi_thread")]
async fn rebuild_matches_the_live_index() {
    let cl = cluster(3, 2, 10);
    let mut keys: Vec<Vec<u8>> = slash_keys(30);
    keys.push(format!("/{}", "L".repeat(1023)).into_bytes());
    keys.push(b"/a?".to_vec());
    keys.push(b"/\xff\xff\xff".to_vec());
    keys.push("/ünïcode/ключ/🙂".as_bytes().to_vec());
    keys.push(b"/with space/+plus=eq%".to_vec());
    let special = keys.len();
    keys.extend((0..2000 - special).map(|i| format!("/r/{i:04}/k").into_bytes()));
    let kv: Vec<(Vec<u8>, Vec<u8>)> = keys.iter().enumerate().map(|(i, k)| (k.clone(), value_for(i))).collect();
    put_all(cl.server(), &kv, 32).await;

    let live = &cl.server().store.index;
    assert_eq!(live.len().unwrap(), 2000);
    let setup = Setup { db: cl.tmp.path().join("rebuilt"), ..setup_of(&cl, &cl.volumes.iter().collect::<Vec<_>>(), 2, 10) };
    let run = admin_async(&setup, "rebuild", &["--checksums"]).await;
    assert!(run.ok, "{run:?}");
    assert_eq!((run.count("seen"), run.count("changed"), run.count("failed")), (4000, 2000, 0));

    let rebuilt = Index::open(&setup.db, 1 << 30).unwrap();
    assert_eq!(rebuilt.len().unwrap(), 2000);
    for (k, v) in &kv {
        let (want, want_meta) = live.get_with_meta(k).unwrap().unwrap();
        let (got, got_meta) = rebuilt.get_with_meta(k).unwrap().unwrap_or_else(|| panic!("{}", String::from_utf8_lossy(k)));
        assert_eq!(got, want, "{}", String::from_utf8_lossy(k));
        assert_eq!(got_meta.unwrap().size, want_meta.unwrap().size);
        assert_eq!(got.hash, md5_hex(v));
    }
    drop(rebuilt);
    // An index that holds keys is not emptied without --clear.
    let mut args = setup.args();
    args.push("rebuild".into());
    let again = tokio::task::spawn_blocking(move || mkv_command(&args).output().unwrap()).await.unwrap();
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(!again.status.success() && stderr.contains("already holds 2000 keys"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn rebalance_3_to_2_to_3_to_5_volumes() {
    let mut cl = cluster(3, 2, 4);
    cl.volumes.push(Volume::start(&cl.tmp.path().join("vol3")));
    cl.volumes.push(Volume::start(&cl.tmp.path().join("vol4")));
    let mut kv: Vec<(Vec<u8>, Vec<u8>)> = (0..300).map(|i| (format!("/m/{i}").into_bytes(), value_for(i))).collect();
    kv.extend(slash_keys(5).into_iter().enumerate().map(|(i, k)| (k, value_for(i))));
    let keys: Vec<Vec<u8>> = kv.iter().map(|(k, _)| k.clone()).collect();
    put_all(cl.server(), &kv, 16).await;
    let v = &cl.volumes;
    let all = dirs_of(&v.iter().collect::<Vec<_>>());

    // 3 -> 2, server stopped, direct mode.
    let two = setup_of(&cl, &[&v[0], &v[1]], 2, 4);
    stop(cl.server.take().unwrap(), &two.db);
    let run = admin_async(&two, "rebalance", &[]).await;
    assert!(run.ok, "{run:?}");
    assert!(run.count("changed") > 100, "{run:?}");
    assert_placed(&two, &all, &keys);
    let server = Server::start(two.config());
    assert_readable(&server, &kv).await;
    stop(server, &two.db);

    // 2 -> 3 and 3 -> 5 through the running server.
    for setup in [setup_of(&cl, &[&v[0], &v[1], &v[2]], 2, 4), setup_of(&cl, &v.iter().collect::<Vec<_>>(), 2, 4)] {
        let server = Server::start(setup.config());
        let addr = format!("127.0.0.1:{}", server.port);
        let run = admin_async(&setup, "rebalance", &["--server", &addr, "--concurrency", "8"]).await;
        assert!(run.ok, "{run:?}");
        assert!(run.count("changed") > 50, "{run:?}");
        assert_placed(&setup, &all, &keys);
        assert_readable(&server, &kv).await;
        let check = admin_async(&setup, "verify", &["--checksums", "--orphans", "--min-orphan-age", "0s"]).await;
        assert!(check.ok, "{check:?}");
        assert_eq!(check.count("seen"), keys.len() as u64);
        stop(server, &setup.db);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn rebalance_killed_halfway_then_rerun() {
    let mut cl = cluster(3, 1, 1);
    let kv: Vec<(Vec<u8>, Vec<u8>)> = (0..400).map(|i| (format!("/kill/{i}").into_bytes(), value_for(i))).collect();
    put_all(cl.server(), &kv, 16).await;
    stop(cl.server.take().unwrap(), &cl.tmp.path().join("db"));
    cl.volumes.push(Volume::start(&cl.tmp.path().join("vol3")));
    cl.volumes.push(Volume::start(&cl.tmp.path().join("vol4")));
    let v = &cl.volumes;
    let five = setup_of(&cl, &v.iter().collect::<Vec<_>>(), 1, 1);
    let index = Index::open(&five.db, 1 << 30).unwrap();
    let balanced = || kv.iter().filter(|(k, _)| index.get(k).unwrap().unwrap().volumes == five.placement(k)).count();
    let before = balanced();

    let mut args = five.args();
    args.extend(["rebalance".into(), "--concurrency".into(), "1".into()]);
    let mut child = mkv_command(&args).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while balanced() < before + 20 {
        assert!(Instant::now() < deadline, "rebalance made no progress");
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let halfway = balanced();
    assert!(halfway < kv.len(), "rebalance finished before it was killed");
    drop(index);

    let run = admin_async(&five, "rebalance", &[]).await;
    assert!(run.ok, "{run:?}");
    let keys: Vec<Vec<u8>> = kv.iter().map(|(k, _)| k.clone()).collect();
    assert_placed(&five, &dirs_of(&v.iter().collect::<Vec<_>>()), &keys);
    // Nothing left behind either: every file is referenced.
    let check = admin_async(&five, "verify", &["--checksums", "--orphans", "--min-orphan-age", "0s"]).await;
    assert!(check.ok, "{check:?}");
    let server = Server::start(five.config());
    assert_readable(&server, &kv).await;

    // A rebuild cannot know MD5s without reading values; repair records them.
    let fresh = Setup { db: cl.tmp.path().join("rebuilt"), ..five.clone() };
    assert!(admin_async(&fresh, "rebuild", &[]).await.ok);
    let run = admin_async(&fresh, "repair", &["--checksums"]).await;
    assert!(run.ok, "{run:?}");
    assert_eq!(run.count("changed"), 400);
    let rebuilt = Index::open(&fresh.db, 1 << 30).unwrap();
    for (k, v) in &kv {
        assert_eq!(rebuilt.get(k).unwrap().unwrap(), server.store.index.get(k).unwrap().unwrap());
        assert_eq!(rebuilt.get(k).unwrap().unwrap().hash, md5_hex(v));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_reports_and_repair_restores() {
    let cl = cluster(3, 2, 4);
    let kv: Vec<(Vec<u8>, Vec<u8>)> = (0..100).map(|i| (format!("/vr/{i}").into_bytes(), value_for(i))).collect();
    put_all(cl.server(), &kv, 16).await;
    let setup = setup_of(&cl, &cl.volumes.iter().collect::<Vec<_>>(), 2, 4);
    let index = &cl.server().store.index;
    let on = |addr: &str| -> Vec<(Vec<u8>, String)> {
        kv.iter()
            .filter_map(|(k, _)| {
                let rec = index.get(k).unwrap().unwrap();
                rec.volumes.iter().find(|t| t.starts_with(&format!("{addr}/"))).map(|t| (k.clone(), t.clone()))
            })
            .collect()
    };
    // Seven keys lose their copy on volume 0, by hand.
    let removed: Vec<(Vec<u8>, String)> = on(&cl.volumes[0].addr()).into_iter().take(7).collect();
    for (k, target) in &removed {
        let sv = target.rsplit('/').next().unwrap();
        std::fs::remove_file(cl.volumes[0].dir.join(sv).join(&key2path(k, "")[1..])).unwrap();
    }
    // One replica on volume 1 rots (same size, other bytes); an orphan and a
    // stray file appear (written through nginx, as leftovers would be).
    let (rotten, rotten_target) = on(&cl.volumes[1].addr()).into_iter().find(|(k, _)| !removed.iter().any(|r| &r.0 == k)).unwrap();
    let size = kv.iter().find(|(k, _)| *k == rotten).unwrap().1.len();
    let c = client();
    let put_file = |url: String, body: Vec<u8>| {
        let c = c.clone();
        async move { assert!(c.put(&url).body(body).send().await.unwrap().status().is_success(), "{url}") }
    };
    put_file(format!("http://{rotten_target}{}", key2path(&rotten, "")), data(size, 999)).await;
    let orphan_url = format!("http://{}/sv02{}", cl.volumes[2].addr(), key2path(b"/vr/nobody", ""));
    put_file(orphan_url.clone(), b"left behind".to_vec()).await;
    let stray_url = format!("http://{}/sv01/aa/bb/not-a-key", cl.volumes[2].addr());
    put_file(stray_url.clone(), b"?".to_vec()).await;

    let s = |b: &[u8]| String::from_utf8(b.to_vec()).unwrap();
    let missing: BTreeSet<(String, String, String)> = removed.iter().map(|(k, t)| ("missing".into(), s(k), t.clone())).collect();
    let run = admin_async(&setup, "verify", &[]).await;
    assert!(!run.ok);
    assert_eq!(run.failures(), missing);
    assert_eq!(run.count("seen"), 100);

    let run = admin_async(&setup, "verify", &["--checksums", "--orphans", "--min-orphan-age", "0s"]).await;
    let mut want = missing.clone();
    want.insert(("checksum".into(), s(&rotten), rotten_target.clone()));
    want.insert(("orphan".into(), "/vr/nobody".into(), orphan_url.clone()));
    want.insert(("stray".into(), String::new(), stray_url.clone()));
    assert_eq!(run.failures(), want);
    // Orphans younger than the default age are not reported (may be in flight).
    let run = admin_async(&setup, "verify", &["--orphans"]).await;
    let mut want = missing.clone();
    want.insert(("stray".into(), String::new(), stray_url.clone()));
    assert_eq!(run.failures(), want);

    // A stray is not mkv's to delete: the operator removes it.
    assert_eq!(c.delete(&stray_url).send().await.unwrap().status(), 204);
    let addr = format!("127.0.0.1:{}", cl.server().port);
    let run = admin_async(&setup, "repair", &["--server", &addr, "--checksums", "--delete-orphans", "--min-orphan-age", "0s"]).await;
    assert!(run.ok, "{run:?}");
    assert_eq!(run.count("changed"), 9);
    let actions = run.report["actions"].as_array().unwrap();
    assert!(actions.iter().any(|a| a["kind"] == "deleted bad replica" && a["volume"] == rotten_target.as_str()), "{actions:?}");
    assert!(actions.iter().any(|a| a["kind"] == "deleted orphan" && a["volume"] == orphan_url.as_str()), "{actions:?}");
    assert_eq!(actions.iter().filter(|a| a["kind"] == "restored").count(), 8, "{actions:?}");

    let run = admin_async(&setup, "verify", &["--checksums", "--orphans", "--min-orphan-age", "0s"]).await;
    assert!(run.ok, "{run:?}");
    assert_readable(cl.server(), &kv).await;
}

/// Copy a read-only fixture folder to one the volume's nginx may write.
fn copy_tree(from: &Path, to: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(to).unwrap();
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o755)).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), &dest).unwrap();
            std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
    }
}

/// Every key reads back through the server with the manifest's MD5.
async fn read_all(server: &Server, expected: &[(String, &Value)]) {
    let follow = follow_client();
    let reads = expected.iter().map(|(k, want)| {
        let (follow, url, md5) = (follow.clone(), server.url(&enc(k.as_bytes())), want["md5"].as_str().unwrap());
        async move {
            let got = follow.get(&url).send().await.unwrap();
            assert_eq!(got.status(), 200, "{url}");
            assert_eq!(md5_hex(&got.bytes().await.unwrap()), md5, "{url}");
        }
    });
    futures::stream::iter(reads).buffer_unordered(16).collect::<Vec<()>>().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn interop_with_volumes_of_the_original() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/go-mkv-volumes");
    let manifest: Value = serde_json::from_slice(&std::fs::read(fixtures.join("manifest.json")).unwrap()).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    // Under the original names when those ports are free: then placement
    // agrees with the original's and records must match byte for byte.
    let original: Vec<u16> = (3101..=3104).collect();
    let same_names = original.iter().all(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok());
    let mut volumes: Vec<Volume> = (1..=4)
        .map(|n| {
            let dir = tmp.path().join(format!("vol{n}"));
            copy_tree(&fixtures.join(format!("volumes/vol{n}")), &dir);
            if same_names { Volume::start_on(&dir, original[n - 1]) } else { Volume::start(&dir) }
        })
        .collect();
    let folder_of: BTreeMap<String, String> = volumes.iter().enumerate().map(|(i, v)| (v.addr(), format!("vol{}", i + 1))).collect();
    let four = Setup { volumes: volumes.iter().map(Volume::addr).collect(), db: tmp.path().join("db"), replicas: 2, subvolumes: 4 };

    // Go-style flags, as the original's users type them.
    let go = |command: &str, extra: &[&str]| {
        let mut a = vec!["-volumes".to_string(), four.volumes.join(","), "-db".into(), four.db.display().to_string()];
        a.extend(["-replicas".into(), "2".into(), "-subvolumes".into(), "4".into(), "-db-map-gib".into(), "1".into(), command.into()]);
        a.extend(["-json".into()]);
        a.extend(extra.iter().map(|s| s.to_string()));
        run_mkv(&a)
    };
    let run = go("rebuild", &["-checksums"]);
    assert!(run.ok, "{run:?}");
    assert_eq!((run.count("seen"), run.count("changed")), (396, 198));

    let server = Server::start(four.config());
    let index = &server.store.index;
    let mut expected: Vec<(String, &Value)> = manifest["live"].as_object().unwrap().iter().map(|(k, v)| (k.clone(), v)).collect();
    // The unlinked key's files are still there: a rebuild brings it back.
    expected.extend(manifest["unlinked"].as_object().unwrap().iter().map(|(k, v)| (k.clone(), v)));
    assert_eq!(index.len().unwrap(), expected.len() as u64);
    let mut slashed = 0;
    for (key, want) in &expected {
        let (rec, meta) = index.get_with_meta(key.as_bytes()).unwrap().unwrap_or_else(|| panic!("{key} not rebuilt"));
        assert!(rec.is_live(), "{key}");
        let folders: BTreeSet<String> = rec
            .volumes
            .iter()
            .map(|t| {
                let (addr, sv) = t.split_once('/').unwrap();
                format!("{}/{sv}", folder_of[addr])
            })
            .collect();
        let want_folders: BTreeSet<String> = want["replica_folders"].as_array().unwrap().iter().map(|f| f.as_str().unwrap().to_string()).collect();
        assert_eq!(folders, want_folders, "{key}");
        assert_eq!(meta.unwrap().size, want["size"].as_u64().unwrap(), "{key}");
        assert_eq!(rec.hash, want["md5"].as_str().unwrap(), "{key}");
        if same_names {
            let record = want["record"].as_str().unwrap();
            assert_eq!(rec.encode(), record.strip_prefix("DELETED").unwrap_or(record), "{key}");
        }
        if base64::engine::general_purpose::STANDARD.encode(key).contains('/') {
            slashed += 1;
        }
    }
    // The keys the original's own rebuild loses (nested base64 folders).
    assert!(slashed >= 10, "{slashed}");

    let mut listed: Vec<&str> = manifest["native_list_of_root"]["keys"].as_array().unwrap().iter().map(|k| k.as_str().unwrap()).collect();
    listed.push("/fixture/unlinked-one");
    listed.sort();
    let list: Value = serde_json::from_slice(&client().get(server.url("/?list")).send().await.unwrap().bytes().await.unwrap()).unwrap();
    assert_eq!(list["keys"], serde_json::json!(listed));

    read_all(&server, &expected).await;
    stop(server, &four.db);

    // Onto 3 volumes: two of the original's and an empty one; then the
    // other two go away and everything still reads.
    volumes.push(Volume::start(&tmp.path().join("vol5")));
    let three = Setup { volumes: vec![volumes[0].addr(), volumes[1].addr(), volumes[4].addr()], ..four.clone() };
    let run = admin_async(&three, "rebalance", &[]).await;
    assert!(run.ok, "{run:?}");
    volumes[2].stop();
    volumes[3].stop();
    let server = Server::start(three.config());
    read_all(&server, &expected).await;
    let c = client();
    for (key, _) in &expected {
        let head = c.head(server.url(&enc(key.as_bytes()))).send().await.unwrap();
        assert_eq!(head.headers()["key-balance"], "balanced", "{key}");
    }
}

async fn delete_retrying(c: &reqwest::Client, url: &str) {
    loop {
        match c.delete(url).send().await.unwrap().status() {
            StatusCode::NO_CONTENT => return,
            StatusCode::CONFLICT => tokio::time::sleep(Duration::from_millis(10)).await,
            s => panic!("DELETE {url}: {s}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn rebalance_and_verify_while_the_server_writes() {
    let mut cl = cluster(3, 2, 4);
    let old: Vec<(Vec<u8>, Vec<u8>)> = (0..200).map(|i| (format!("/old/{i}").into_bytes(), value_for(i))).collect();
    let doomed: Vec<(Vec<u8>, Vec<u8>)> = (0..100).map(|i| (format!("/del/{i}").into_bytes(), value_for(i))).collect();
    put_all(cl.server(), &old, 16).await;
    put_all(cl.server(), &doomed, 16).await;
    stop(cl.server.take().unwrap(), &cl.tmp.path().join("db"));
    cl.volumes.push(Volume::start(&cl.tmp.path().join("vol3")));
    let setup = setup_of(&cl, &cl.volumes.iter().collect::<Vec<_>>(), 2, 4);
    cl.server = Some(Server::start(setup.config()));
    let addr = format!("127.0.0.1:{}", cl.server().port);

    let new: Vec<(Vec<u8>, Vec<u8>)> = (0..200).map(|i| (format!("/new/{i}").into_bytes(), value_for(i + 7))).collect();
    let c = client();
    let deletes = async {
        for (k, _) in &doomed {
            delete_retrying(&c, &cl.url(&enc(k))).await;
        }
    };
    // The server moves the keys it is deleting; this process moves keys
    // nobody writes; verify reads everything meanwhile.
    let server_args = ["--server", &addr, "--prefix", "/del/", "--concurrency", "4"];
    let (_, _, through_server, direct, verify) = tokio::join!(
        put_all(cl.server(), &new, 8),
        deletes,
        admin_async(&setup, "rebalance", &server_args),
        admin_async(&setup, "rebalance", &["--prefix", "/old/", "--concurrency", "4"]),
        admin_async(&setup, "verify", &["--checksums"]),
    );
    assert!(through_server.ok, "{through_server:?}");
    assert!(direct.ok, "{direct:?}");
    assert!(verify.report["seen"].as_u64().unwrap() >= 200, "{verify:?}");

    let mut live = old.clone();
    live.extend(new.iter().cloned());
    assert_readable(cl.server(), &live).await;
    for (k, _) in &doomed {
        assert_eq!(c.get(cl.url(&enc(k))).send().await.unwrap().status(), 404);
    }
    let check = admin_async(&setup, "verify", &["--checksums", "--orphans", "--min-orphan-age", "0s"]).await;
    assert!(check.ok, "{check:?}");
    assert_eq!(check.count("seen"), 400);
    let unlinked: Value = serde_json::from_slice(&c.get(cl.url("/?unlinked")).send().await.unwrap().bytes().await.unwrap()).unwrap();
    assert_eq!(unlinked["keys"], serde_json::json!([]));
}

/// Write a value as S3 does: to files of a new generation, then switched in.
async fn s3_write(store: &mkv::store::Store, key: &[u8], value: Vec<u8>) -> mkv::index::Record {
    let body = futures::stream::iter(vec![Ok::<_, std::io::Error>(bytes::Bytes::from(value.clone()))]);
    let staged = store.stage(key, Some(value.len() as u64), body).await.unwrap();
    let _guard = store.locks.lock(key).await;
    store.commit_staged(staged, mkv::index::ObjectMeta::default()).await.unwrap();
    store.record(key).unwrap().unwrap()
}

/// Status of a GET of a record's file on its first volume.
async fn file_status(key: &[u8], rec: &mkv::index::Record) -> StatusCode {
    let url = mkv::volume::replica_url(&rec.volumes[0], key, &rec.gen);
    client().get(&url).send().await.unwrap().status()
}

#[tokio::test(flavor = "multi_thread")]
async fn generations_collector_rebuild_verify_repair() {
    let cl = Cluster::start_with(3, 2, 4, |c| {
        (c.voltimeout, c.io_timeout) = (Duration::from_secs(2), Duration::from_secs(5));
        c.delete_grace = Duration::ZERO;
    });
    let setup = setup_of(&cl, &cl.volumes.iter().collect::<Vec<_>>(), 2, 4);
    let store = &cl.server().store;
    let s = |b: &[u8]| String::from_utf8(b.to_vec()).unwrap();

    // Three S3 writes of one key; an S3 write then delete; a native PUT
    // replaced by an S3 write.
    let over: Vec<_> = futures::future::join_all((0..3).map(|i| s3_write(store, b"/g/over", vec![b'a' + i as u8; 100]))).await;
    let current = store.record(b"/g/over").unwrap().unwrap();
    assert!(over.contains(&current) && !current.gen.is_empty() && current.hash.len() == 32);
    let gone = s3_write(store, b"/g/gone", b"bye".to_vec()).await;
    store.remove(b"/g/gone").await.unwrap();
    put_all(cl.server(), &[(b"/g/native".to_vec(), value_for(7))], 1).await;
    let native = store.record(b"/g/native").unwrap().unwrap();
    assert!(native.gen.is_empty());
    s3_write(store, b"/g/native", value_for(8)).await;
    assert_eq!(store.index.tracked_counts().unwrap(), (4, 0));
    // Files waiting for the collector are not orphans.
    let run = admin_async(&setup, "verify", &["--checksums", "--orphans", "--min-orphan-age", "0s"]).await;
    assert!(run.ok, "{run:?}");

    // The collector deletes them all, and only them.
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.index.tracked_counts().unwrap() != (0, 0) {
        assert!(Instant::now() < deadline, "{:?} left", store.index.tracked_counts());
        store.collect_due().await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for rec in over.iter().filter(|r| **r != current) {
        assert_eq!(file_status(b"/g/over", rec).await, 404);
    }
    assert_eq!(file_status(b"/g/over", &current).await, 200);
    assert_eq!(file_status(b"/g/gone", &gone).await, 404);
    assert_eq!(file_status(b"/g/native", &native).await, 404);
    let native_now = store.record(b"/g/native").unwrap().unwrap();
    assert_eq!(file_status(b"/g/native", &native_now).await, 200);

    // An older value's file (as a crash within the grace period leaves).
    let old_gen = "00000000000000010000000000000000";
    let old_url = mkv::volume::replica_url(&current.volumes[1], b"/g/over", old_gen);
    assert!(client().put(&old_url).body("older").send().await.unwrap().status().is_success());
    // A key hidden by a cut native write (whole replicas, record not live),
    // and one UNLINKed on purpose.
    put_all(cl.server(), &[(b"/g/hidden".to_vec(), value_for(9)), (b"/g/unlinked".to_vec(), value_for(10))], 2).await;
    let hidden = store.record(b"/g/hidden").unwrap().unwrap();
    store.index.put(b"/g/hidden", &mkv::index::Record { deleted: mkv::index::Deleted::Soft, ..hidden.clone() }, None).unwrap();
    assert_eq!(client().request(reqwest::Method::from_bytes(b"UNLINK").unwrap(), cl.url("/g/unlinked")).send().await.unwrap().status(), 204);

    let run = admin_async(&setup, "verify", &["--orphans", "--min-orphan-age", "0s"]).await;
    assert!(!run.ok);
    let want: BTreeSet<(String, String, String)> =
        [("hidden".into(), "/g/hidden".into(), String::new()), ("orphan".into(), "/g/over".into(), old_url.clone())].into();
    assert_eq!(run.failures(), want);

    // A rebuild takes each key's newest value and reports the older one.
    let fresh = Setup { db: cl.tmp.path().join("db2"), ..setup.clone() };
    let run = admin_async(&fresh, "rebuild", &[]).await;
    assert!(run.ok, "{run:?}");
    let actions = run.report["actions"].as_array().unwrap();
    assert!(actions.iter().any(|a| a["kind"] == "older value left" && a["key"] == "/g/over"), "{actions:?}");
    let rebuilt = Index::open(&fresh.db, 1 << 30).unwrap();
    for key in [&b"/g/over"[..], b"/g/native", b"/g/hidden", b"/g/unlinked"] {
        let (want, got) = (store.record(key).unwrap().unwrap(), rebuilt.get(key).unwrap().unwrap());
        assert_eq!((&got.gen, &got.volumes), (&want.gen, &want.volumes), "{}", s(key));
    }
    assert_eq!(rebuilt.get(b"/g/gone").unwrap(), None);
    drop(rebuilt);

    // repair makes the hidden key live and deletes the older file.
    let run = admin_async(&setup, "repair", &["--delete-orphans", "--min-orphan-age", "0s"]).await;
    assert!(run.ok, "{run:?}");
    let actions = run.report["actions"].as_array().unwrap();
    assert!(actions.iter().any(|a| a["kind"] == "made live" && a["key"] == "/g/hidden"), "{actions:?}");
    assert!(actions.iter().any(|a| a["kind"] == "deleted orphan" && a["volume"] == old_url.as_str()), "{actions:?}");
    let run = admin_async(&setup, "verify", &["--checksums", "--orphans", "--min-orphan-age", "0s"]).await;
    assert!(run.ok, "{run:?}");
    assert_eq!(store.record(b"/g/hidden").unwrap().unwrap(), hidden);
    assert!(!store.record(b"/g/unlinked").unwrap().unwrap().is_live());
}

/// Every record with its metadata, in key order.
async fn all_records(index: &Index) -> Vec<(Vec<u8>, mkv::index::Record, Option<mkv::index::ObjectMeta>)> {
    let recs: Vec<(Vec<u8>, mkv::index::Record)> = mkv::admin::records(index.clone(), Vec::new()).map(Result::unwrap).collect().await;
    let metas = index.snapshot().unwrap().get_metas(&recs.iter().map(|(k, _)| k).collect::<Vec<_>>()).unwrap();
    recs.into_iter().zip(metas).map(|((k, r), m)| (k, r, m)).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn backup_while_the_server_writes() {
    let cl = cluster(2, 2, 4);
    let store = &cl.server().store;
    let before: Vec<(Vec<u8>, Vec<u8>)> = (0..300).map(|i| (format!("/b/{i}").into_bytes(), value_for(i))).collect();
    put_all(cl.server(), &before, 16).await;
    for i in 0..5 {
        s3_write(store, format!("/bucket/s3/{i}").as_bytes(), value_for(i)).await;
    }
    store.index.create_bucket("bucket", &mkv::index::BucketInfo { created: 7, ..Default::default() }).unwrap();

    // The copy is taken while another 300 keys go in.
    let setup = setup_of(&cl, &cl.volumes.iter().collect::<Vec<_>>(), 2, 4);
    let dest = cl.tmp.path().join("backups/one");
    let during: Vec<(Vec<u8>, Vec<u8>)> = (0..300).map(|i| (format!("/d/{i}").into_bytes(), value_for(i))).collect();
    let args = ["--db".to_string(), setup.db.display().to_string(), "backup".into(), dest.display().to_string(), "--json".into()];
    let (run, ()) = tokio::join!(tokio::task::spawn_blocking(move || run_mkv(&args)), put_all(cl.server(), &during, 8));
    let run = run.unwrap();
    assert!(run.ok, "{run:?}");
    let file = dest.join("data.mdb");
    assert_eq!(run.report["path"], file.display().to_string());
    assert_eq!(run.count("bytes"), std::fs::metadata(&file).unwrap().len());
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!((mode(&dest), mode(&file)), (0o700, 0o600));

    // Nothing written before it is missing, and every record it holds is the
    // server's. A native PUT under way is in it or not, or caught between its
    // two steps (volumes recorded, not live yet), as after a crash.
    let copy = Index::open(&dest, 1 << 30).unwrap();
    let (copied, live) = (all_records(&copy).await, all_records(&store.index).await);
    assert!(copied.len() >= 305 && copied.len() <= 605, "{}", copied.len());
    let live: BTreeMap<_, _> = live.into_iter().map(|(k, r, m)| (k, (r, m))).collect();
    for (k, r, m) in &copied {
        let (want, want_meta) = &live[k];
        if k.starts_with(b"/d/") && !r.is_live() {
            assert_eq!((&r.volumes, m), (&want.volumes, &None), "{}", String::from_utf8_lossy(k));
        } else {
            assert_eq!((r, m), (want, want_meta), "{}", String::from_utf8_lossy(k));
        }
    }
    let copied: BTreeSet<&Vec<u8>> = copied.iter().map(|(k, _, _)| k).collect();
    assert!(before.iter().all(|(k, _)| copied.contains(k)));
    assert!((0..5).all(|i| copied.contains(&format!("/bucket/s3/{i}").into_bytes())));
    assert_eq!(copy.buckets().unwrap(), store.index.buckets().unwrap());
    drop(copy);

    // A folder holding anything is refused, and a --db that is not an index.
    for (db, dest, says) in [(&setup.db, &dest, "is not empty"), (&cl.tmp.path().join("nodb"), &cl.tmp.path().join("b2"), "no index at")] {
        let out = mkv_command(&["--db".into(), db.display().to_string(), "backup".into(), dest.display().to_string()]).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && stderr.contains(says), "{stderr}");
    }
    assert!(!cl.tmp.path().join("nodb").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn status_from_the_server_and_offline() {
    let mut cl = cluster(2, 1, 4);
    let kv: Vec<(Vec<u8>, Vec<u8>)> = (0..40).map(|i| (format!("/st/{i}").into_bytes(), value_for(i))).collect();
    put_all(cl.server(), &kv, 8).await;
    let c = client();
    assert_eq!(c.request(reqwest::Method::from_bytes(b"UNLINK").unwrap(), cl.url("/st/0")).send().await.unwrap().status(), 204);
    let store = &cl.server().store;
    store.index.create_bucket("b", &mkv::index::BucketInfo { created: 7, ..Default::default() }).unwrap();
    cl.volumes[1].stop();
    let down = cl.volumes[1].addr();
    let setup = setup_of(&cl, &cl.volumes.iter().collect::<Vec<_>>(), 1, 4);

    let server = vec!["status".to_string(), "--server".into(), format!("127.0.0.1:{}", cl.server().admin_port), "--json".into()];
    let mut offline = setup.args();
    offline.extend(["status".into(), "--bytes".into(), "--json".into()]);
    let (from_server, offline) = tokio::join!(
        tokio::task::spawn_blocking(move || run_mkv(&server)),
        tokio::task::spawn_blocking(move || run_mkv(&offline))
    );
    let runs = [from_server.unwrap(), offline.unwrap()];
    for run in &runs {
        // A volume down is a failure (exit 1), and says why.
        assert!(!run.ok, "{run:?}");
        let r = &run.report;
        let vols = r["volumes"].as_array().unwrap();
        assert_eq!((vols[0]["up"].as_bool(), vols[0]["latency_ms"].is_f64()), (Some(true), true), "{r}");
        assert_eq!((vols[1]["volume"].as_str(), vols[1]["up"].as_bool()), (Some(down.as_str()), Some(false)), "{r}");
        assert!(vols[1]["error"].as_str().unwrap().contains("refused"), "{r}");
        let i = &r["index"];
        assert_eq!((i["keys"].as_u64(), i["buckets"].as_u64(), i["uploads"].as_u64()), (Some(40), Some(1), Some(0)), "{r}");
        assert!(i["used_bytes"].as_u64().unwrap() > 0 && i["map_size"].as_u64() == Some(1 << 30), "{r}");
        assert!(i["pending_deletions"].is_u64() && i["writes_in_progress"].is_u64(), "{r}");
    }
    // Only offline, with --bytes, is the index scanned.
    let bytes: usize = kv[1..].iter().map(|(_, v)| v.len()).sum();
    assert_eq!(runs[1].report["usage"], serde_json::json!({ "live_objects": 39, "bytes": bytes }));
    assert!(runs[0].report.get("usage").is_none());

    // Text, with every volume up: exit 0.
    cl.volumes[1].restart();
    let args = [setup.args(), vec!["status".into()]].concat();
    let out = tokio::task::spawn_blocking(move || mkv_command(&args).output().unwrap()).await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.starts_with("volumes: 2 of 2 up (free space unknown") && stdout.contains("objects: 40 "), "{stdout}");
    assert!(stdout.contains("bytes: not counted"), "{stdout}");
}

#[test]
fn config_file_then_environment_then_flags() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("db");
    let rec = mkv::index::Record { volumes: vec!["v:1".into()], deleted: mkv::index::Deleted::No, hash: String::new(), gen: String::new() };
    Index::open(&db, 1 << 30).unwrap().put(b"/k", &rec, None).unwrap();
    let file = tmp.path().join("mkv.toml");
    std::fs::write(&file, format!("db = {:?}\ndb_map_gib = 1\n", db.display().to_string())).unwrap();
    let status = |env_db: Option<&str>, flags: &[&str]| {
        let mut args = vec!["status".to_string(), "--json".into()];
        args.extend(flags.iter().map(|s| s.to_string()));
        let mut c = mkv_command(&args);
        c.env("MKV_CONFIG", &file).env_remove("MKV_DB");
        if let Some(d) = env_db {
            c.env("MKV_DB", d);
        }
        let out = c.output().unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
    };
    let (ok, out) = status(None, &[]);
    assert!(ok && out.contains(r#""keys":1"#), "{out}");
    let (ok, out) = status(Some("/nonexistent/env-db"), &[]);
    assert!(!ok && out.contains("no index at /nonexistent/env-db"), "{out}");
    let (ok, out) = status(Some("/nonexistent/env-db"), &["--db", &db.display().to_string()]);
    assert!(ok && out.contains(r#""keys":1"#), "{out}");
    std::fs::write(&file, "dbs = \"/x\"\n").unwrap();
    let (ok, out) = status(None, &[]);
    assert!(!ok && out.contains(r#"unknown key "dbs""#), "{out}");
}
