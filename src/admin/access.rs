//! `mkv key` and `mkv bucket`: S3 access keys and what each may do on which
//! bucket, kept in the index. They need only `--db` and work while the
//! server runs: it reads keys and grants per request.

use rand::Rng;
use serde::Serialize;

use super::{open_db, AdminError};
use crate::config::{BucketAction, BucketArgs, Config, GrantArgs, KeyAction, KeyArgs};
use crate::index::{Grant, Index, KeyInfo};
use crate::s3::xml::iso8601;
use crate::store::describe::put_bucket_files;
use crate::store::now_secs;

fn random_from(alphabet: &[u8], n: usize) -> String {
    let mut rng = rand::rng();
    (0..n).map(|_| alphabet[rng.random_range(0..alphabet.len())] as char).collect()
}

/// AWS-like: a 20-character id (`MK` + 18 uppercase letters and digits) and
/// a 40-character secret.
fn new_key() -> (String, String) {
    let id = format!("MK{}", random_from(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", 18));
    let secret = random_from(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/", 40);
    (id, secret)
}

#[derive(Serialize)]
struct NewKey<'a> {
    access_key_id: &'a str,
    secret_access_key: &'a str,
    name: &'a str,
}

#[derive(Serialize)]
struct ListedKey {
    access_key_id: String,
    name: String,
    created: String,
}

fn print<T: Serialize>(json: bool, value: &T, text: impl FnOnce() -> String) {
    if json {
        println!("{}", serde_json::to_string(value).expect("serializable"));
    } else {
        println!("{}", text());
    }
}

fn fail(message: String) -> Result<bool, AdminError> {
    eprintln!("mkv: {message}");
    Ok(false)
}

pub fn keys(config: Config, args: KeyArgs) -> Result<bool, AdminError> {
    let index = open_db(&config)?;
    match args.action {
        KeyAction::Create { name } => {
            let (id, secret) = new_key();
            if !index.create_key(&id, &KeyInfo { name: name.clone(), secret: secret.clone(), created: now_secs() })? {
                return fail(format!("key {id} exists already (run again)"));
            }
            let shown = NewKey { access_key_id: &id, secret_access_key: &secret, name: &name };
            print(args.json, &shown, || format!("access key id: {id}\nsecret access key: {secret}\nname: {name}\n(the secret is shown only now)"));
        }
        KeyAction::Import { id, secret, name } => {
            if config.s3_keys.iter().any(|(a, _)| *a == id) || !index.create_key(&id, &KeyInfo { name: name.clone(), secret, created: now_secs() })? {
                return fail(format!("key {id} exists already"));
            }
            print(args.json, &serde_json::json!({"access_key_id": id, "name": name}), || format!("imported {id} ({name})"));
        }
        KeyAction::List => {
            let listed: Vec<ListedKey> = index
                .key_infos()?
                .into_iter()
                .map(|(id, k)| ListedKey { access_key_id: id, name: k.name, created: iso8601(k.created) })
                .collect();
            print(args.json, &listed, || listed.iter().map(|k| format!("{}  {}  {}", k.access_key_id, k.created, k.name)).collect::<Vec<_>>().join("\n"));
        }
        KeyAction::Delete { id } => {
            let granted: Vec<String> = index.buckets()?.into_iter().filter(|(_, b)| b.grants.contains_key(&id)).map(|(n, _)| n).collect();
            if !index.delete_key(&id)? {
                return fail(format!("no key {id}"));
            }
            describe(&config, &index, &granted)?;
            print(args.json, &serde_json::json!({"deleted": id}), || format!("deleted {id} and its grants"));
        }
    }
    Ok(true)
}

#[derive(Serialize)]
struct BucketView {
    name: String,
    created: String,
    owner: Option<String>,
    grants: std::collections::BTreeMap<String, Grant>,
    #[serde(skip_serializing_if = "Option::is_none")]
    policy: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    objects: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bytes: Option<u64>,
}

fn grant_text(g: &Grant) -> String {
    let on = [(g.read, "read"), (g.write, "write"), (g.owner, "owner")];
    on.iter().filter(|(yes, _)| *yes).map(|(_, n)| *n).collect::<Vec<_>>().join(",")
}

/// Add (`allow`) or remove permissions of a key on a bucket.
fn change_grant(index: &Index, config: &Config, g: &GrantArgs, allow: bool) -> Result<Result<Grant, String>, AdminError> {
    if !(g.read || g.write || g.owner) {
        return Ok(Err("name at least one of --read, --write, --owner".into()));
    }
    if index.key_info(&g.key)?.is_none() {
        let why = match config.s3_keys.iter().any(|(a, _)| *a == g.key) {
            true => format!("{} is an admin key (--s3-key): it may do everything already", g.key),
            false => format!("no key {} (see `mkv key list`)", g.key),
        };
        return Ok(Err(why));
    }
    let changed = index.update_bucket(&g.bucket, |b| {
        let grant = b.grants.entry(g.key.clone()).or_default();
        for (asked, field) in [(g.read, &mut grant.read), (g.write, &mut grant.write), (g.owner, &mut grant.owner)] {
            if asked {
                *field = allow;
            }
        }
        let now = *grant;
        if now == Grant::default() {
            b.grants.remove(&g.key);
        }
        (true, now)
    })?;
    Ok(changed.ok_or_else(|| format!("no bucket {}", g.bucket)))
}

/// Write the changed buckets' files on the volumes (`describe`), which
/// `rebuild` reads. Without `--volumes` the server does it when it starts.
fn describe(config: &Config, index: &Index, names: &[String]) -> Result<(), AdminError> {
    if names.is_empty() {
        return Ok(());
    }
    if config.volumes.is_empty() {
        eprintln!("mkv: no --volumes: the bucket files on the volumes are written when the server next starts (or by `mkv repair`)");
        return Ok(());
    }
    super::block_on(async {
        let client = super::volume_client(config);
        for name in names {
            let info = index.bucket(name)?;
            for (volume, e) in put_bucket_files(&client, &config.volumes, name, info.as_ref()).await {
                eprintln!("mkv: bucket {name}: its file on {volume} is not up to date ({e}); `mkv repair` rewrites it");
            }
        }
        Ok(())
    })
}

pub fn buckets(config: Config, args: BucketArgs) -> Result<bool, AdminError> {
    let index = open_db(&config)?;
    match &args.action {
        BucketAction::Allow(g) | BucketAction::Deny(g) => {
            let allow = matches!(args.action, BucketAction::Allow(_));
            match change_grant(&index, &config, g, allow)? {
                Err(why) => return fail(why),
                Ok(now) => {
                    describe(&config, &index, std::slice::from_ref(&g.bucket))?;
                    print(args.json, &serde_json::json!({"bucket": g.bucket, "key": g.key, "grant": now}), || {
                        format!("{} on {}: {}", g.key, g.bucket, match grant_text(&now) { t if t.is_empty() => "nothing".into(), t => t })
                    })
                }
            }
        }
        BucketAction::List => {
            let views: Vec<BucketView> = index.buckets()?.into_iter().map(|(name, b)| view(name, b, None)).collect();
            print(args.json, &views, || {
                views.iter().map(|b| format!("{}  {}  owner {}", b.name, b.created, b.owner.as_deref().unwrap_or("-"))).collect::<Vec<_>>().join("\n")
            });
        }
        BucketAction::Info { bucket } => {
            let Some(info) = index.bucket(bucket)? else { return fail(format!("no bucket {bucket}")) };
            let usage = index.bucket_usage(bucket)?;
            let v = view(bucket.clone(), info, Some(usage));
            print(args.json, &v, || {
                let mut out = vec![
                    format!("bucket: {}", v.name),
                    format!("created: {}", v.created),
                    format!("owner: {}", v.owner.as_deref().unwrap_or("-")),
                    format!("objects: {}, bytes: {}", usage.0, usage.1),
                ];
                out.extend(v.grants.iter().map(|(k, g)| format!("grant: {k} {}", grant_text(g))));
                out.push(format!("policy: {}", v.policy.as_ref().map_or("none".to_string(), |p| p.to_string())));
                out.join("\n")
            });
        }
    }
    Ok(true)
}

fn view(name: String, b: crate::index::BucketInfo, usage: Option<(u64, u64)>) -> BucketView {
    BucketView {
        name,
        created: iso8601(b.created),
        owner: b.owner,
        grants: b.grants,
        policy: b.policy.map(|p| serde_json::from_str(&p).unwrap_or(serde_json::Value::String(p))),
        objects: usage.map(|u| u.0),
        bytes: usage.map(|u| u.1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_keys_look_like_aws_keys() {
        let (id, secret) = new_key();
        assert!(id.len() == 20 && id.starts_with("MK") && id.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()));
        assert_eq!(secret.len(), 40);
        assert_ne!(new_key().0, id);
    }
}
