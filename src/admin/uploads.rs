//! `mkv uploads list|abort`: the S3 multipart uploads in the index, for
//! operators. Abort removes an upload's part files from the volumes, then
//! its records, as S3's AbortMultipartUpload does; safe beside a running
//! server (a part still being written finds its upload gone and removes its
//! own files).

use std::time::Duration;

use serde::Serialize;

use super::{open_db, open_index, volume_client, AdminError, Item, Progress, Report};
use crate::config::{Config, UploadsAction, UploadsArgs};
use crate::s3::multipart::abort_upload;
use crate::s3::xml::iso8601;
use crate::store::now_secs;

pub fn run(config: Config, args: UploadsArgs) -> Result<bool, AdminError> {
    match args.action {
        UploadsAction::List { prefix } => list(&config, &prefix, args.json),
        UploadsAction::Abort { ids, older_than } => super::run(args.json, abort(config, ids, older_than)),
    }
}

#[derive(Debug, Serialize)]
struct Listed {
    key: String,
    upload_id: String,
    initiated: String,
    parts: usize,
    bytes: u64,
}

fn list(config: &Config, prefix: &str, json: bool) -> Result<bool, AdminError> {
    // Listing needs only the index: no --volumes.
    let index = open_db(config)?;
    let mut out = Vec::new();
    for (key, id, upload) in index.all_uploads()? {
        if !key.starts_with(prefix.as_bytes()) {
            continue;
        }
        let parts = index.parts(&id, 0, usize::MAX)?;
        out.push(Listed {
            key: String::from_utf8_lossy(&key).into_owned(),
            upload_id: id,
            initiated: iso8601(upload.initiated),
            parts: parts.len(),
            bytes: parts.iter().map(|(_, p)| p.size).sum(),
        });
    }
    if json {
        println!("{}", serde_json::to_string(&out).map_err(|e| AdminError::Config(e.to_string()))?);
    } else {
        for u in &out {
            println!("{}  {}  {:>5} parts  {:>12} bytes  {}", u.initiated, u.upload_id, u.parts, u.bytes, u.key);
        }
        println!("uploads: {} in progress", out.len());
    }
    Ok(true)
}

async fn abort(config: Config, ids: Vec<String>, older_than: Option<Duration>) -> Result<Report, AdminError> {
    if ids.is_empty() && older_than.is_none() {
        return Err(AdminError::Config("name the upload ids to abort, or --older-than".into()));
    }
    let index = open_index(&config)?;
    let client = volume_client(&config);
    let progress = Progress::start("uploads abort", "uploads", None);
    let cutoff = older_than.map(|d| now_secs().saturating_sub(d.as_secs()));
    let mut found = Vec::new();
    for (key, id, upload) in index.all_uploads()? {
        if !ids.contains(&id) && cutoff.is_none_or(|c| upload.initiated > c) {
            continue;
        }
        progress.seen(1);
        match abort_upload(&index, &client, &key, &id).await {
            Ok(true) => {
                progress.changed(1);
                progress.act(Item::key("aborted", &key, format!("upload {id}")));
            }
            // Completed or aborted meanwhile.
            Ok(false) => {}
            Err(e) => progress.fail(Item::key("abort", &key, format!("upload {id}: {e}"))),
        }
        found.push(id);
    }
    for id in ids.iter().filter(|i| !found.contains(i)) {
        progress.fail(Item::new("abort", None, None, format!("no upload {id}")));
    }
    Ok(progress.finish())
}
