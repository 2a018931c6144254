//! Where a key lives: the file path on a volume (`key2path`) and which
//! volumes hold it (`key2volume`). Bit-exact with the original minikeyvalue;
//! see `docs/layout.md` for the extension used for names the original could
//! not store.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use md5::{Digest, Md5};

/// Longest file or folder name most filesystems accept.
const NAME_MAX: usize = 255;
/// Folder segment length in the extended layout; file segments start with `~`,
/// so a folder and a file name can never collide.
const EXT_SEGMENT: usize = 200;
/// Top folder (under the two hex levels) of the extended layout. `~` is not in
/// the standard base64 alphabet, so no original name can start with it.
pub const EXT_MARK: &str = "~";

fn md5(data: &[u8]) -> [u8; 16] {
    Md5::digest(data).into()
}

/// True when the original's path for this base64 name is a file nginx can
/// store and a rebuild can read back: no folder or file name over 255 bytes,
/// no trailing `/` (nginx would take it for a folder) and no `//` (nginx
/// merges slashes, losing the name).
fn original_can_store(name: &str) -> bool {
    !name.ends_with('/') && !name.contains("//") && name.split('/').all(|s| s.len() <= NAME_MAX)
}

/// Path of a key's file on a volume, starting with `/`.
pub fn key2path(key: &[u8]) -> String {
    let m = md5(key);
    let name = STANDARD.encode(key);
    if original_can_store(&name) {
        return format!("/{:02x}/{:02x}/{}", m[0], m[1], name);
    }
    let ext = URL_SAFE_NO_PAD.encode(key);
    let mut path = format!("/{:02x}/{:02x}/{}", m[0], m[1], EXT_MARK);
    let mut rest = ext.as_str();
    while rest.len() > EXT_SEGMENT {
        let (dir, tail) = rest.split_at(EXT_SEGMENT);
        path.push('/');
        path.push_str(dir);
        rest = tail;
    }
    path.push_str("/~");
    path.push_str(rest);
    path
}

/// Decode a file path below a volume's hex folders back to its key.
/// `hex` is the two hex folders (`"5d/41"`), `name` what follows them.
/// Returns `None` if the name is not one of ours or does not hash to `hex`
/// (a name nginx mangled, or a stray file).
pub fn path2key(hex: &str, name: &str) -> Option<Vec<u8>> {
    let key = if let Some(ext) = name.strip_prefix("~/") {
        let (dirs, file) = ext.rsplit_once('/').map_or(("", ext), |(d, f)| (d, f));
        let file = file.strip_prefix('~')?;
        let joined: String = dirs.split('/').chain(std::iter::once(file)).collect();
        URL_SAFE_NO_PAD.decode(joined).ok()?
    } else {
        STANDARD.decode(name).ok()?
    };
    let m = md5(&key);
    (format!("{:02x}/{:02x}", m[0], m[1]) == hex).then_some(key)
}

/// The target volumes (with `/svNN` when `subvolumes > 1`) for a key, in
/// placement order.
pub fn key2volume(key: &[u8], volumes: &[String], replicas: usize, subvolumes: u32) -> Vec<String> {
    let mut scored: Vec<([u8; 16], &String)> = volumes
        .iter()
        .map(|v| {
            let mut buf = Vec::with_capacity(key.len() + v.len());
            buf.extend_from_slice(key);
            buf.extend_from_slice(v.as_bytes());
            (md5(&buf), v)
        })
        .collect();
    // Stable sort, descending by score: ties keep the configured order.
    scored.sort_by(|a, b| b.0.cmp(&a.0));
    scored
        .into_iter()
        .take(replicas)
        .map(|(score, v)| {
            if subvolumes == 1 {
                v.clone()
            } else {
                let sv = u32::from_be_bytes([score[12], score[13], score[14], score[15]]) % subvolumes;
                format!("{v}/sv{sv:02X}")
            }
        })
        .collect()
}

/// Whether recorded volumes differ from where placement puts the key now.
pub fn needs_rebalance(recorded: &[String], wanted: &[String]) -> bool {
    recorded != wanted
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vols(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn path_vectors() {
        assert_eq!(key2path(b"hello"), "/5d/41/aGVsbG8=");
        assert_eq!(key2path(b"helloworld"), "/fc/5e/aGVsbG93b3JsZA==");
    }

    #[test]
    fn volume_vectors() {
        let v = vols(&["larry", "moe", "curly"]);
        assert_eq!(key2volume(b"hello", &v, 1, 3), vec!["larry/sv00"]);
        assert_eq!(key2volume(b"helloworld", &v, 1, 3), vec!["curly/sv01"]);
        assert_eq!(key2volume(b"world", &v, 1, 3), vec!["moe/sv02"]);
        assert_eq!(key2volume(b"blah", &v, 1, 3), vec!["curly/sv01"]);
    }

    #[test]
    fn placement_is_by_name_not_position() {
        let a = key2volume(b"/k", &vols(&["a:1", "b:2", "c:3"]), 2, 1);
        let b = key2volume(b"/k", &vols(&["c:3", "a:1", "b:2"]), 2, 1);
        assert_eq!(a, b);
        assert_eq!(key2volume(b"/k", &vols(&["a:1", "b:2"]), 3, 1).len(), 2);
    }

    #[test]
    fn original_paths_round_trip() {
        for key in [&b"/hello"[..], b"/a b/c+d%e=f", "/ünïcode/ключ".as_bytes()] {
            let p = key2path(key);
            assert!(!p.contains('~'), "{p}");
            let (hex, name) = (&p[1..6], &p[7..]);
            assert_eq!(path2key(hex, name).as_deref(), Some(key));
        }
    }

    #[test]
    fn names_with_slash_keep_original_nested_path() {
        // base64 of "/fixture/b64/>??>o0" contains '/', stored as nested folders.
        let key = b"/fixture/b64/>??>o0";
        let p = key2path(key);
        assert_eq!(&p[7..], STANDARD.encode(key));
        assert!(p[7..].contains('/'));
        assert_eq!(path2key(&p[1..6], &p[7..]).as_deref(), Some(&key[..]));
    }

    #[test]
    fn extension_for_unstorable_names() {
        // "/a?" encodes as "L2E/": a trailing slash the original cannot store.
        assert_eq!(STANDARD.encode(b"/a?"), "L2E/");
        let long = vec![b'x'; 1024];
        let mut slashes = b"/".to_vec();
        slashes.extend_from_slice(&[0xff, 0xff, 0xff]); // "////" in base64
        for key in [b"/a?".to_vec(), long, slashes] {
            let p = key2path(&key);
            assert!(p[7..].starts_with("~/"), "{p}");
            assert!(p.split('/').all(|s| s.len() <= NAME_MAX));
            assert!(!p.ends_with('/') && !p.contains("//"));
            assert_eq!(path2key(&p[1..6], &p[7..]), Some(key));
        }
    }

    #[test]
    fn extension_segments_cannot_collide() {
        // A key whose ext name is exactly one segment long vs a longer one
        // sharing that prefix: the file starts with '~', the folder does not.
        let p = key2path(&vec![b'y'; 600]);
        let segs: Vec<&str> = p[9..].split('/').collect();
        assert!(segs[..segs.len() - 1].iter().all(|s| s.len() == EXT_SEGMENT && !s.starts_with('~')));
        assert!(segs.last().unwrap().starts_with('~'));
    }

    #[test]
    fn path2key_rejects_wrong_folder_and_junk() {
        assert_eq!(path2key("00/00", "aGVsbG8="), None);
        assert_eq!(path2key("5d/41", "not base64!"), None);
    }
}
