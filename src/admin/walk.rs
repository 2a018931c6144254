//! Walking the volumes through nginx's JSON autoindex: `svNN` folders (or the
//! volume root), the two hex levels, then every file below them, including
//! nested folders (base64 names with `/`, the `~` extension). Three listing
//! stages run at once, each with at most `concurrency` requests in flight.

use std::collections::HashSet;
use std::time::{SystemTime, UNIX_EPOCH};

use futures::stream::{self, StreamExt};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use tokio::sync::mpsc;

use super::progress::{Item, Progress};
use crate::placement::{key2path, path2key, META_SUFFIX};
use crate::volume::{DirEntry, VolumeClient};

/// Where mkv before generations staged S3 uploads; its leftovers are
/// still found as orphans on volumes it wrote.
const STAGING_DIR: &str = ".staging";

/// Path characters sent as they are; everything else is escaped, so odd
/// names found on a volume still make valid URLs.
const PATH: &AsciiSet = &NON_ALPHANUMERIC.remove(b'/').remove(b'-').remove(b'_').remove(b'.').remove(b'~').remove(b'+').remove(b'=');

/// A file found on a volume.
#[derive(Debug, Clone)]
pub enum Entry {
    /// A key's file, exactly where mkv reads it, or its metadata file.
    Key(Found),
    /// A file in the hex folders that is no key's file (not one of our
    /// names, or a name nginx mangled): reported, never deleted.
    Stray(FileInfo),
    /// A leftover of an upload in a target's staging folder (written by
    /// mkv before generations).
    Staging(FileInfo),
}

#[derive(Debug, Clone)]
pub struct Found {
    /// `host:port[/svNN]`, as in records.
    pub target: String,
    pub key: Vec<u8>,
    /// The file's generation (empty: the original's path).
    pub gen: String,
    pub info: FileInfo,
    /// This is the value's metadata file (`describe`), not the value.
    pub meta: bool,
    /// The other file of the pair is in the same folder: a value's
    /// metadata file, a metadata file's value.
    pub paired: bool,
}

#[derive(Debug, Clone)]
pub struct FileInfo {
    pub url: String,
    pub size: u64,
    /// Seconds since the epoch (0 if nginx gave none).
    pub mtime: u64,
}

impl FileInfo {
    /// Whether the file is at least `min_age` old.
    pub fn older_than(&self, min_age: std::time::Duration) -> bool {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        now.saturating_sub(self.mtime) >= min_age.as_secs()
    }
}

fn is_subvolume(name: &str) -> bool {
    name.len() == 4 && name.starts_with("sv") && name[2..].bytes().all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b))
}

fn is_hex(name: &str) -> bool {
    name.len() == 2 && name.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn mtime(e: &DirEntry) -> u64 {
    e.mtime
        .as_deref()
        .and_then(|m| httpdate::parse_http_date(m).ok())
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs())
}

fn url(target: &str, path: &str) -> String {
    format!("http://{target}{}", utf8_percent_encode(path, PATH))
}

pub struct Walker {
    pub client: VolumeClient,
    pub concurrency: usize,
    /// Also list each target's staging folder (orphan hunting).
    pub staging: bool,
    pub progress: Progress,
}

impl Walker {
    /// A folder's entries; a failed listing is reported and counts as empty.
    async fn list(&self, url: &str) -> Vec<DirEntry> {
        match self.client.list_dir(url).await {
            Ok(entries) => entries,
            Err(e) => {
                self.progress.fail(Item::file("listing", url, e));
                Vec::new()
            }
        }
    }

    /// Walk every volume, sending what is found on `tx`. Returns when all is
    /// listed (or the receiver is gone).
    pub async fn walk(&self, volumes: &[String], tx: mpsc::Sender<Entry>) {
        let c = self.concurrency.max(1);
        // Targets: each volume's svNN folders, or the volume itself when its
        // root holds hex folders (--subvolumes 1). Both are walked if present.
        let roots = futures::future::join_all(volumes.iter().map(|v| async move {
            let entries = self.list(&url(v, "/")).await;
            let mut targets: Vec<String> = entries.iter().filter(|e| e.is_dir() && is_subvolume(&e.name)).map(|e| format!("{v}/{}", e.name)).collect();
            if entries.iter().any(|e| e.is_dir() && is_hex(&e.name)) {
                targets.push(v.clone());
            }
            targets
        }))
        .await;
        // Interleave volumes so the load spreads over all of them.
        let mut targets: Vec<(usize, String)> = roots.into_iter().flat_map(|t| t.into_iter().enumerate()).collect();
        targets.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        if self.staging {
            // The staging folder of a target that holds no keys yet, too.
            let mut all: Vec<String> = targets.iter().map(|t| t.1.clone()).collect();
            all.extend(volumes.iter().cloned());
            all.sort();
            all.dedup();
            stream::iter(all).for_each_concurrent(c, |t| self.staging_files(t, tx.clone())).await;
        }
        stream::iter(targets)
            .map(|(_, t)| async move {
                let hex1 = self.list(&url(&t, "/")).await;
                hex1.into_iter().filter(|e| e.is_dir() && is_hex(&e.name)).map(move |e| (t.clone(), e.name)).collect::<Vec<_>>()
            })
            .buffer_unordered(c)
            .flat_map(stream::iter)
            .map(|(t, h1)| async move {
                let hex2 = self.list(&url(&t, &format!("/{h1}/"))).await;
                hex2.into_iter().filter(|e| e.is_dir() && is_hex(&e.name)).map(move |e| (t.clone(), format!("{h1}/{}", e.name))).collect::<Vec<_>>()
            })
            .buffer_unordered(c)
            .flat_map(stream::iter)
            .for_each_concurrent(c, |(t, hex)| self.leaf(t, hex, tx.clone()))
            .await;
    }

    /// Every file below one `hh/hh` folder, nested folders included.
    async fn leaf(&self, target: String, hex: String, tx: mpsc::Sender<Entry>) {
        let mut folders = vec![String::new()];
        while let Some(rel) = folders.pop() {
            let listed = self.list(&url(&target, &format!("/{hex}/{rel}"))).await;
            let files: HashSet<&str> = listed.iter().filter(|e| !e.is_dir()).map(|e| e.name.as_str()).collect();
            for e in &listed {
                let name = format!("{rel}{}", e.name);
                if e.is_dir() {
                    folders.push(format!("{name}/"));
                    continue;
                }
                let path = format!("/{hex}/{name}");
                let info = FileInfo { url: url(&target, &path), size: e.size.unwrap_or(0), mtime: mtime(e) };
                let (value, meta) = match name.strip_suffix(META_SUFFIX) {
                    Some(value) => (value, true),
                    None => (name.as_str(), false),
                };
                // Only a file exactly at its key's path is that key's file.
                let entry = match path2key(&hex, value) {
                    Some((key, gen)) if key2path(&key, &gen) == format!("/{hex}/{value}") && !(meta && gen.is_empty()) => {
                        let leaf = e.name.as_str();
                        let paired = match meta {
                            true => files.contains(&leaf[..leaf.len() - META_SUFFIX.len()]),
                            false => files.contains(format!("{leaf}{META_SUFFIX}").as_str()),
                        };
                        Entry::Key(Found { target: target.clone(), key, gen, info, meta, paired })
                    }
                    _ => Entry::Stray(info),
                };
                if tx.send(entry).await.is_err() {
                    return;
                }
            }
        }
    }

    async fn staging_files(&self, target: String, tx: mpsc::Sender<Entry>) {
        let dir = format!("/{STAGING_DIR}/");
        for e in self.list(&url(&target, &dir)).await.into_iter().filter(|e| !e.is_dir()) {
            let info = FileInfo { url: url(&target, &format!("{dir}{}", e.name)), size: e.size.unwrap_or(0), mtime: mtime(&e) };
            if tx.send(Entry::Staging(info)).await.is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folder_names_and_urls() {
        assert!(is_subvolume("sv0A") && !is_subvolume("sv0a") && !is_subvolume("sv100"));
        assert!(is_hex("5d") && !is_hex("5D") && !is_hex("5"));
        assert_eq!(url("h:1/sv00", "/5d/41/a+b=/c d"), "http://h:1/sv00/5d/41/a+b=/c%20d");
        let e = DirEntry { name: "x".into(), kind: "file".into(), size: Some(1), mtime: Some("Tue, 24 Nov 2026 22:22:30 GMT".into()) };
        assert_eq!(mtime(&e), 1795558950);
    }
}
