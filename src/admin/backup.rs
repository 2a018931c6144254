//! `mkv backup DEST`: a hot copy of the index. LMDB copies the environment
//! inside one read transaction, so the copy is consistent while the server
//! keeps serving and writing; compaction leaves free pages out.

use std::time::Instant;

use super::{existing_db, AdminError};
use crate::config::{BackupArgs, Config};

pub fn run(config: Config, args: BackupArgs) -> Result<bool, AdminError> {
    // Anything already there may be another backup, or an index in use.
    if std::fs::read_dir(&args.dest).is_ok_and(|mut d| d.next().is_some()) {
        return Err(AdminError::DestNotEmpty(args.dest.display().to_string()));
    }
    let index = existing_db(&config)?;
    let start = Instant::now();
    let bytes = index.copy_to(&args.dest)?;
    let (path, seconds) = (args.dest.join("data.mdb"), start.elapsed().as_secs_f64());
    if args.json {
        println!("{}", serde_json::json!({ "command": "backup", "path": path, "bytes": bytes, "seconds": seconds }));
    } else {
        println!("backup: {} ({bytes} bytes), {seconds:.2} s", path.display());
    }
    Ok(true)
}
