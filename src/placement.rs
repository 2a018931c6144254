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
fn original_can_store(name: &str, suffix: usize) -> bool {
    let file = name.rsplit('/').next().unwrap_or(name);
    !name.ends_with('/') && !name.contains("//") && name.split('/').all(|s| s.len() <= NAME_MAX) && file.len() + suffix <= NAME_MAX
}

/// Length of a generation: 16 hex digits of the write's start time (µs
/// since the epoch), then 16 random ones. Unique per write; ordered by time.
pub const GEN_LEN: usize = 32;
/// Separates a per-write file name from its generation. Outside both base64
/// alphabets, so no original name contains it (the original's rebuild fails
/// to decode such a name and skips it).
const GEN_MARK: char = '.';
/// Appended to a per-write file's name to name the value's metadata file
/// (`describe`). Per-write names leave room for it under `NAME_MAX`.
pub const META_SUFFIX: &str = ".meta";

/// A new generation, for a value about to be written (see [`GEN_LEN`]).
pub fn new_generation() -> String {
    let micros = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64);
    format!("{micros:016x}{}", hex::encode(rand::random::<[u8; 8]>()))
}

/// Whether `s` is a generation as [`new_generation`] makes them.
pub fn is_generation(s: &str) -> bool {
    s.len() == GEN_LEN && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Seconds since the epoch at which a generation's write began.
pub fn generation_secs(gen: &str) -> u64 {
    u64::from_str_radix(gen.get(..16).unwrap_or("0"), 16).map_or(0, |us| us / 1_000_000)
}

/// Path of a key's file on a volume, starting with `/`: the original's
/// path for a value without generation (native writes), the per-write path
/// `<original path>.<generation>` for a value with one (S3 writes).
pub fn key2path(key: &[u8], gen: &str) -> String {
    if gen.is_empty() {
        return base_path(key, 0);
    }
    let mut path = base_path(key, 1 + gen.len() + META_SUFFIX.len());
    path.push(GEN_MARK);
    path.push_str(gen);
    path
}

/// The original's path (or the extension's), with room for `suffix` more
/// bytes in the file name.
fn base_path(key: &[u8], suffix: usize) -> String {
    let m = md5(key);
    let name = STANDARD.encode(key);
    if original_can_store(&name, suffix) {
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

/// Decode a file path below a volume's hex folders back to its key and
/// generation (empty for the original's names). `hex` is the two hex folders
/// (`"5d/41"`), `name` what follows them. Returns `None` if the name is not
/// one of ours or does not hash to `hex` (a name nginx mangled, or a stray
/// file). Callers check `key2path(key, gen)` gives the path back.
pub fn path2key(hex: &str, name: &str) -> Option<(Vec<u8>, String)> {
    let (name, gen) = match name.rsplit_once(GEN_MARK) {
        Some((name, gen)) if is_generation(gen) => (name, gen),
        Some(_) => return None,
        None => (name, ""),
    };
    let key = if let Some(ext) = name.strip_prefix("~/") {
        let (dirs, file) = ext.rsplit_once('/').map_or(("", ext), |(d, f)| (d, f));
        let file = file.strip_prefix('~')?;
        let joined: String = dirs.split('/').chain(std::iter::once(file)).collect();
        URL_SAFE_NO_PAD.decode(joined).ok()?
    } else {
        STANDARD.decode(name).ok()?
    };
    let m = md5(&key);
    (format!("{:02x}/{:02x}", m[0], m[1]) == hex).then(|| (key, gen.to_string()))
}

/// The target volumes (with `/svNN` when `subvolumes > 1`) for a key, in
/// placement order.
pub fn key2volume(key: &[u8], volumes: &[String], replicas: usize, subvolumes: u32) -> Vec<String> {
    let mut scored: Vec<([u8; 16], &String)> = volumes
        .iter()
        .map(|v| (Md5::new().chain_update(key).chain_update(v.as_bytes()).finalize().into(), v))
        .collect();
    // Stable sort, descending by score: ties keep the configured order.
    scored.sort_by_key(|s| std::cmp::Reverse(s.0));
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
        assert_eq!(key2path(b"hello", ""), "/5d/41/aGVsbG8=");
        assert_eq!(key2path(b"helloworld", ""), "/fc/5e/aGVsbG93b3JsZA==");
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
            let p = key2path(key, "");
            assert!(!p.contains('~'), "{p}");
            let (hex, name) = (&p[1..6], &p[7..]);
            assert_eq!(path2key(hex, name), Some((key.to_vec(), String::new())));
        }
    }

    #[test]
    fn names_with_slash_keep_original_nested_path() {
        // base64 of "/fixture/b64/>??>o0" contains '/', stored as nested folders.
        let key = b"/fixture/b64/>??>o0";
        let p = key2path(key, "");
        assert_eq!(&p[7..], STANDARD.encode(key));
        assert!(p[7..].contains('/'));
        assert_eq!(path2key(&p[1..6], &p[7..]), Some((key.to_vec(), String::new())));
    }

    #[test]
    fn extension_for_unstorable_names() {
        // "/a?" encodes as "L2E/": a trailing slash the original cannot store.
        assert_eq!(STANDARD.encode(b"/a?"), "L2E/");
        let long = vec![b'x'; 1024];
        let mut slashes = b"/".to_vec();
        slashes.extend_from_slice(&[0xff, 0xff, 0xff]); // "////" in base64
        for key in [b"/a?".to_vec(), long, slashes] {
            let p = key2path(&key, "");
            assert!(p[7..].starts_with("~/"), "{p}");
            assert!(p.split('/').all(|s| s.len() <= NAME_MAX));
            assert!(!p.ends_with('/') && !p.contains("//"));
            assert_eq!(path2key(&p[1..6], &p[7..]), Some((key, String::new())));
        }
    }

    #[test]
    fn extension_segments_cannot_collide() {
        // A key whose ext name is exactly one segment long vs a longer one
        // sharing that prefix: the file starts with '~', the folder does not.
        let p = key2path(&vec![b'y'; 600], "");
        let segs: Vec<&str> = p[9..].split('/').collect();
        assert!(segs[..segs.len() - 1].iter().all(|s| s.len() == EXT_SEGMENT && !s.starts_with('~')));
        assert!(segs.last().unwrap().starts_with('~'));
    }

    #[test]
    fn path2key_rejects_wrong_folder_and_junk() {
        assert_eq!(path2key("00/00", "aGVsbG8="), None);
        assert_eq!(path2key("5d/41", "not base64!"), None);
        assert_eq!(path2key("5d/41", "aGVsbG8=.0123"), None);
        assert_eq!(path2key("5d/41", "aGVsbG8=.0000000000000001012345678ABCDEF0"), None);
    }

    const GEN: &str = "00000000000000010123456789abcdef";

    #[test]
    fn generation_vectors() {
        assert_eq!(key2path(b"hello", GEN), "/5d/41/aGVsbG8=.00000000000000010123456789abcdef");
        assert_eq!(key2path(b"/a?", GEN), "/fa/8a/~/~L2E_.00000000000000010123456789abcdef");
        assert_eq!(path2key("5d/41", "aGVsbG8=.00000000000000010123456789abcdef"), Some((b"hello".to_vec(), GEN.to_string())));
        assert_eq!(generation_secs("0000000000f4240000000000000000ff"), 16);
        let (a, b) = (new_generation(), new_generation());
        assert!(is_generation(&a) && is_generation(&b) && a != b);
        assert!(generation_secs(&a) > 1_700_000_000);
    }

    #[test]
    fn generation_paths_round_trip_and_fit() {
        // 186 bytes: base64 of 248 characters fits the original's name but
        // not with a generation after it, which takes the extension. 165:
        // 220 characters fit with a generation, not with it and `.meta`.
        let near = vec![b'n'; 186];
        let meta_room = vec![b'm'; 165];
        assert!(key2path(&meta_room, GEN)[7..].starts_with("~/"));
        assert!(!key2path(&near, "").contains('~'));
        let with_gen = key2path(&near, GEN);
        assert!(with_gen[7..].starts_with("~/"), "{with_gen}");
        for key in [b"/hello".to_vec(), b"/fixture/b64/>??>o0".to_vec(), b"/a?".to_vec(), near, meta_room, vec![b'x'; 1024]] {
            let p = key2path(&key, GEN);
            assert!(format!("{p}{META_SUFFIX}").split('/').all(|s| s.len() <= NAME_MAX), "{p}");
            assert!(p.ends_with(&format!(".{GEN}")));
            assert_eq!(path2key(&p[1..6], &p[7..]), Some((key.clone(), GEN.to_string())));
            assert_ne!(p, key2path(&key, ""));
        }
    }
}
