//! The command line: the commands, Go-style single-dash flags placed
//! before the command (`mkv -volumes a,b -db /tmp/x server`) accepted
//! unchanged, and the `--config` TOML file under flags and environment.

use std::path::{Path, PathBuf};

use clap::{ArgAction, CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::bench::BenchArgs;
use crate::config::*;

#[derive(Parser, Debug)]
#[command(name = "mkv", version, about = "minikeyvalue-compatible blob store with an S3 gateway")]
pub struct Cli {
    #[command(flatten)]
    pub config: Config,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Serve the native API and the S3 gateway.
    Server,
    /// Regenerate the index from the volumes (into a fresh --db).
    Rebuild(RebuildArgs),
    /// Move every key to the volumes placement chooses now.
    Rebalance(RebalanceArgs),
    /// Check every key's replicas and, with --orphans, the volumes (read-only).
    Verify(VerifyArgs),
    /// Re-create missing or bad replicas, fix records, delete orphans.
    Repair(RepairArgs),
    /// Load generator: one bounded load against given URLs, JSON results
    /// (what bench/run uses).
    Bench(BenchArgs),
    /// S3 multipart uploads in progress: list them, or abort them.
    Uploads(UploadsArgs),
    /// S3 access keys kept in the index: create, import, list, delete.
    Key(KeyArgs),
    /// S3 buckets: which key may do what (allow, deny), list, info.
    Bucket(BucketArgs),
    /// Copy the index (--db) into a new folder, while the server runs.
    Backup(BackupArgs),
    /// Volumes up or down, index figures: from a server's admin listener
    /// (--server), or from --db and --volumes.
    Status(StatusArgs),
}

impl Command {
    /// Whether an admin command should print its report as JSON.
    pub fn json(&self) -> bool {
        match self {
            Command::Server => false,
            Command::Rebuild(a) => a.common.json,
            Command::Rebalance(a) => a.common.json,
            Command::Verify(a) => a.common.json,
            Command::Repair(a) => a.common.json,
            Command::Bench(_) => true,
            Command::Uploads(a) => a.json,
            Command::Key(a) => a.json,
            Command::Bucket(a) => a.json,
            Command::Backup(a) => a.json,
            Command::Status(a) => a.json,
        }
    }
}

/// Boolean flags: bare means true, a value needs `=` (as in Go), except that
/// `--md5sum false` with a separate `true`/`false` is also understood.
const BOOL_FLAGS: [&str; 2] = ["--protect", "--md5sum"];

/// Turn Go-style `-name` / `-name=value` flags into `--name` ones. Single
/// letters (`-v`, `-h`) and values such as negative numbers are left alone.
pub fn normalize_args(args: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (i, a) in args.into_iter().enumerate() {
        let name = a.strip_prefix('-').filter(|r| !r.starts_with('-')).map(|r| r.split('=').next().unwrap_or(""));
        let a = match name {
            Some(n) if i > 0 && n.len() > 1 && n.starts_with(|c: char| c.is_ascii_alphabetic()) && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') => {
                format!("-{a}")
            }
            _ => a,
        };
        match out.last_mut() {
            Some(prev) if BOOL_FLAGS.contains(&prev.as_str()) && (a == "true" || a == "false") => {
                prev.push('=');
                prev.push_str(&a);
            }
            _ => out.push(a),
        }
    }
    out
}

/// Why a `--config` file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("{path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path}: line {line}: {message}")]
    Toml { path: String, line: usize, message: String },
    #[error("{path}: unknown key {key:?} (keys are the long flags' names with `_`: volumes, db, replicas, delete_grace, s3_keys…)")]
    Unknown { path: String, key: String },
    #[error("{path}: {key}: {reason}")]
    Value { path: String, key: String, reason: &'static str },
}

/// The `--config` file named on the command line (normalized), else in
/// MKV_CONFIG: it must be read before clap parses, to supply defaults.
fn config_path(args: &[String], env: Option<String>) -> Option<PathBuf> {
    let mut rest = args.iter().skip(1);
    while let Some(a) = rest.next() {
        if a == "--config" {
            return rest.next().map(PathBuf::from);
        }
        if let Some(path) = a.strip_prefix("--config=") {
            return Some(path.into());
        }
    }
    env.filter(|e| !e.is_empty()).map(PathBuf::from)
}

/// `command` with the file's settings as its flags' defaults, so a flag or
/// an MKV_* variable still wins. Only the global flags (`Config`) may be
/// set there.
fn with_file_defaults(mut command: clap::Command, path: &Path) -> Result<clap::Command, FileError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| FileError::Read { path: shown.clone(), source })?;
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| FileError::Toml {
        path: shown.clone(),
        line: e.span().map_or(1, |s| text[..s.start].lines().count().max(1)),
        message: e.message().to_string(),
    })?;
    for (key, value) in table {
        let bad = |reason| FileError::Value { path: shown.clone(), key: key.clone(), reason };
        let Some(arg) = command.get_arguments().find(|a| a.get_id() == key.as_str() && a.is_global_set() && key != "config_file") else {
            return Err(FileError::Unknown { path: shown, key });
        };
        let many = matches!(arg.get_action(), ArgAction::Append);
        let delimiter = arg.get_value_delimiter();
        let scalar = |v: &toml::Value| match v {
            toml::Value::String(s) => Ok(s.clone()),
            toml::Value::Integer(i) => Ok(i.to_string()),
            toml::Value::Boolean(b) => Ok(b.to_string()),
            _ => Err(bad("expected a string, an integer, true or false")),
        };
        let values: Vec<String> = match &value {
            toml::Value::Array(items) if many => items.iter().map(scalar).collect::<Result<_, _>>()?,
            toml::Value::Array(_) => return Err(bad("takes one value, not a list")),
            // As in MKV_VOLUMES: "a:1,b:2".
            v => match (scalar(v)?, delimiter) {
                (s, Some(d)) => s.split(d).map(str::to_string).collect(),
                (s, None) => vec![s],
            },
        };
        command = command.mut_arg(key, |a| a.default_values(values));
    }
    Ok(command)
}

/// Parse the command line, with the `--config` file's settings under the
/// flags and the environment; errors are one line.
pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Cli, clap::Error> {
    let args = normalize_args(args);
    let mut command = Cli::command();
    if let Some(path) = config_path(&args, std::env::var("MKV_CONFIG").ok()) {
        command = with_file_defaults(command, &path).map_err(|e| clap::Error::raw(clap::error::ErrorKind::InvalidValue, format!("{e}\n")))?;
    }
    let matches = command.try_get_matches_from_mut(args)?;
    let cli = Cli::from_arg_matches(&matches).map_err(|e| e.format(&mut command))?;
    // Checked here, not with clap's `requires`, which ignores the values a
    // file supplies.
    if cli.config.tls_cert.is_some() != cli.config.tls_key.is_some() {
        return Err(command.error(clap::error::ErrorKind::MissingRequiredArgument, "--tls-cert and --tls-key go together"));
    }
    Ok(cli)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn p(s: &str) -> Cli {
        parse(s.split_whitespace().map(String::from)).unwrap()
    }

    #[test]
    fn index_sync_is_commit_or_a_period() {
        assert_eq!(p("mkv server").config.index_sync, IndexSync::Commit);
        assert_eq!(p("mkv --index-sync 250ms server").config.index_sync, IndexSync::Every(Duration::from_millis(250)));
        assert_eq!(p("mkv --index-sync commit server").config.index_sync, IndexSync::Commit);
        for bad in ["0s", "never", ""] {
            assert!(parse(["mkv", "--index-sync", bad, "server"].map(String::from)).is_err(), "{bad}");
        }
    }

    #[test]
    fn every_command_parses_beside_the_global_flags() {
        // A command flag named like a global one makes clap panic at parse
        // time (the bench `list` once had `--native`).
        for cmd in [
            "mkv --native ro bench list --endpoint http://h:1 --bucket b --native-list --access-key a --secret-key b",
            "mkv bench get --url http://h:1/k/ --keys 1",
            "mkv bench put --url http://h:1/k/ --size 1KiB",
            "mkv bench thrash --url http://h:1/k/",
            "mkv bench s3 put --endpoint http://h:1 --bucket b --size 1KiB --access-key a --secret-key b",
            "mkv --db /x key list",
            "mkv --db /x bucket allow b --key K --read",
            "mkv --db /x uploads list",
            "mkv --volumes a:1 --db /x status",
            "mkv --volumes a:1 --db /x verify --orphans",
        ] {
            assert!(parse(cmd.split_whitespace().map(String::from)).is_ok(), "{cmd}");
        }
    }

    #[test]
    fn go_style_flags_before_command() {
        let c = p("mkv -volumes localhost:3001,localhost:3002 -db /tmp/indexdb/ -port 3000 -md5sum=false -protect server");
        assert_eq!(c.command, Command::Server);
        assert_eq!(c.config.volumes, ["localhost:3001", "localhost:3002"]);
        assert_eq!(c.config.db.unwrap(), PathBuf::from("/tmp/indexdb/"));
        assert!(!c.config.md5sum);
        assert!(c.config.protect);
        assert_eq!(c.config.replicas, 3);
    }

    #[test]
    fn double_dash_flags_after_command() {
        let c = p("mkv server --volumes a:1 --db /x --replicas 1 --subvolumes 1 --voltimeout 250ms --md5sum false -v");
        assert_eq!(c.config.replicas, 1);
        assert_eq!(c.config.voltimeout, Duration::from_millis(250));
        assert!(!c.config.md5sum && c.config.verbose);
        let c = p("mkv -replicas=2 -voltimeout=2s server");
        assert_eq!((c.config.replicas, c.config.voltimeout), (2, Duration::from_secs(2)));
    }

    #[test]
    fn bad_flags_are_errors() {
        for bad in ["mkv -replicas x server", "mkv -nosuch 1 server", "mkv -voltimeout 1parsec server", "mkv", "mkv -replicas 0 server"] {
            assert!(parse(bad.split_whitespace().map(String::from)).is_err(), "{bad}");
        }
    }

    #[test]
    fn admin_commands_in_both_styles() {
        let c = p("mkv -volumes a:1,b:2 -db /x -replicas 2 rebuild -checksums -concurrency 4");
        let Command::Rebuild(a) = c.command else { panic!("not rebuild") };
        assert!(a.checksums && !a.clear && !a.common.json);
        assert_eq!((a.common.concurrency, c.config.replicas), (4, 2));
        let c = p("mkv rebalance --volumes a:1 --db /x --server localhost:3000 --prefix /p/ --json");
        assert_eq!(
            c.command,
            Command::Rebalance(RebalanceArgs {
                common: AdminArgs { concurrency: 16, json: true },
                server: Some("localhost:3000".into()),
                prefix: "/p/".into()
            })
        );
        let c = p("mkv -db /x verify -orphans -min-orphan-age 0s");
        let Command::Verify(v) = c.command else { panic!("not verify") };
        assert!(v.orphans && !v.checksums && v.min_orphan_age == Duration::ZERO);
        let c = p("mkv repair --delete-orphans --checksums");
        let Command::Repair(r) = c.command else { panic!("not repair") };
        assert!(r.delete_orphans && r.checksums && r.server.is_none());
        assert_eq!(r.min_orphan_age, Duration::from_secs(600));
    }

    #[test]
    fn s3_keys() {
        let c = p("mkv server --s3-key a:b --s3-key c:d:e");
        assert_eq!(c.config.s3_keys, [("a".into(), "b".into()), ("c".into(), "d:e".into())]);
        assert!(parse(["mkv", "server", "--s3-key", "nocolon"].map(String::from)).is_err());
        assert_eq!(p("mkv server --s3-domain s3.localhost").config.s3_domain.as_deref(), Some("s3.localhost"));
    }

    #[test]
    fn uploads_command_and_expiry() {
        assert_eq!(p("mkv server").config.multipart_expiry, Duration::from_secs(7 * 86400));
        assert_eq!(p("mkv -multipart-expiry 2h server").config.multipart_expiry, Duration::from_secs(7200));
        assert_eq!(p("mkv server").config.delete_grace, Duration::from_secs(60));
        assert_eq!(p("mkv server --delete-grace 2s").config.delete_grace, Duration::from_secs(2));
        let c = p("mkv uploads list --prefix /b/ --json");
        assert_eq!(c.command, Command::Uploads(UploadsArgs { action: UploadsAction::List { prefix: "/b/".into() }, json: true }));
        assert!(c.command.json());
        let c = p("mkv uploads abort --older-than 1d a b");
        let Command::Uploads(UploadsArgs { action: UploadsAction::Abort { ids, older_than }, .. }) = c.command else { panic!("not abort") };
        assert_eq!((ids.len(), older_than), (2, Some(Duration::from_secs(86400))));
    }

    #[test]
    fn backup_command() {
        let c = p("mkv -db /x backup /backups/1 -json");
        assert_eq!(c.command, Command::Backup(BackupArgs { dest: "/backups/1".into(), json: true }));
        assert!(parse(["mkv", "backup"].map(String::from)).is_err());
    }

    #[test]
    fn status_command() {
        let c = p("mkv -db /x status -bytes");
        assert_eq!(c.command, Command::Status(StatusArgs { server: None, bytes: true, json: false }));
        let c = p("mkv status --server localhost:9100 --json");
        assert_eq!(c.command, Command::Status(StatusArgs { server: Some("localhost:9100".into()), bytes: false, json: true }));
        assert!(parse(["mkv", "status", "--server", "h:1", "--bytes"].map(String::from)).is_err());
    }

    #[test]
    fn log_format() {
        assert_eq!(p("mkv server").config.log_format, LogFormat::Text);
        assert_eq!(p("mkv -log-format json server").config.log_format, LogFormat::Json);
        assert!(parse(["mkv", "server", "--log-format", "xml"].map(String::from)).is_err());
    }

    #[test]
    fn admin_listener() {
        let c = p("mkv server").config;
        assert_eq!((c.admin_port, c.admin_bind.as_str()), (None, "127.0.0.1"));
        let c = p("mkv -admin-port 9100 -admin-bind 0.0.0.0 server").config;
        assert_eq!((c.admin_port, c.admin_bind.as_str()), (Some(9100), "0.0.0.0"));
    }

    #[test]
    fn tls_needs_cert_and_key() {
        let c = p("mkv server --tls-cert c.pem --tls-key k.pem").config;
        assert_eq!((c.tls_cert.unwrap(), c.tls_key.unwrap()), (PathBuf::from("c.pem"), PathBuf::from("k.pem")));
        assert!(p("mkv server").config.tls_cert.is_none());
        assert!(parse(["mkv", "server", "--tls-cert", "c.pem"].map(String::from)).is_err());
        assert!(parse(["mkv", "-tls-key", "k.pem", "server"].map(String::from)).is_err());
        let (_dir, path) = config_file(r#"tls_key = "k.pem""#);
        let c = p(&format!("mkv --config {path} server --tls-cert c.pem")).config;
        assert_eq!(c.tls_key.unwrap(), PathBuf::from("k.pem"));
    }

    #[test]
    fn shutdown_timeout() {
        assert_eq!(p("mkv server").config.shutdown_timeout, Duration::from_secs(30));
        assert_eq!(p("mkv server --shutdown-timeout 2m").config.shutdown_timeout, Duration::from_secs(120));
    }

    /// A `--config` file with this text, and the path to pass.
    fn config_file(text: &str) -> (tempfile::TempDir, String) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mkv.toml");
        std::fs::write(&path, text).unwrap();
        (dir, path.display().to_string())
    }

    #[test]
    fn config_file_under_flags_and_environment() {
        let (_dir, path) = config_file(
            r#"
            volumes = ["a:1", "b:2"]
            db = "/var/mkv/db"
            replicas = 2
            delete_grace = "90s"
            s3_keys = ["AK:SECRET", "AK2:S:2"]
            md5sum = false
            verbose = true
            native_allow = ["10.0.0.0/8", "::1"]
            s3_domain = "s3.file"
            log_format = "json"
            "#,
        );
        let c = p(&format!("mkv -config {path} server")).config;
        assert_eq!(c.volumes, ["a:1", "b:2"]);
        assert_eq!((c.db.unwrap(), c.replicas), (PathBuf::from("/var/mkv/db"), 2));
        assert_eq!(c.delete_grace, Duration::from_secs(90));
        assert_eq!(c.s3_keys, [("AK".into(), "SECRET".into()), ("AK2".into(), "S:2".into())]);
        assert!(!c.md5sum && c.verbose && c.log_format == LogFormat::Json);
        assert_eq!(c.native_allow.len(), 2);
        // Built-in defaults stay under what the file does not set.
        assert_eq!((c.subvolumes, c.port), (10, 3000));
        // Flags win, in either style, before or after the command.
        let c = p(&format!("mkv -replicas 3 server --config={path} --md5sum=true --volumes c:3 --log-format text")).config;
        assert_eq!((c.replicas, c.md5sum, c.log_format), (3, true, LogFormat::Text));
        assert_eq!(c.volumes, ["c:3"]);
        assert_eq!(c.delete_grace, Duration::from_secs(90));
        // So does the environment (a variable no other test sets).
        std::env::set_var("MKV_S3_DOMAIN", "s3.env");
        let from_env = p(&format!("mkv --config {path} server")).config.s3_domain;
        std::env::remove_var("MKV_S3_DOMAIN");
        assert_eq!(from_env.as_deref(), Some("s3.env"));
        // A list may also be written as its environment variable is.
        let (_dir, path) = config_file(r#"volumes = "a:1,b:2""#);
        assert_eq!(p(&format!("mkv --config {path} server")).config.volumes, ["a:1", "b:2"]);
    }

    #[test]
    fn config_file_errors_name_the_key() {
        let err = |text: &str| {
            let (_dir, path) = config_file(text);
            parse(["mkv", "--config", &path, "server"].map(String::from)).unwrap_err().to_string()
        };
        assert!(err("replicas = 2\nreplica = 3").contains(r#"unknown key "replica""#));
        // Only the global settings: a command's own flags are not.
        assert!(err("concurrency = 4").contains(r#"unknown key "concurrency""#));
        assert!(err("config_file = \"other.toml\"").contains("unknown key"));
        assert!(err("replicas = [1, 2]").contains("replicas: takes one value"));
        assert!(err("replicas = 1.5").contains("replicas: expected a string"));
        assert!(err("volumes = [{ a = 1 }]").contains("volumes: expected a string"));
        assert!(err("replicas = 2\nreplicas 3").contains("line 2: "));
        assert!(err("replicas = 0").contains("--replicas"));
        assert!(err("delete_grace = \"soon\"").contains("--delete-grace"));
        let missing = parse(["mkv", "--config", "/nonexistent/mkv.toml", "server"].map(String::from)).unwrap_err().to_string();
        assert!(missing.contains("/nonexistent/mkv.toml: No such file"), "{missing}");
    }

    #[test]
    fn config_path_from_flags_or_environment() {
        let args = |s: &str| normalize_args(s.split_whitespace().map(String::from));
        assert_eq!(config_path(&args("mkv -config a.toml server"), Some("env.toml".into())), Some("a.toml".into()));
        assert_eq!(config_path(&args("mkv server --config=b.toml"), None), Some("b.toml".into()));
        assert_eq!(config_path(&args("mkv server"), Some("env.toml".into())), Some("env.toml".into()));
        assert_eq!(config_path(&args("mkv server"), Some(String::new())), None);
    }

    #[test]
    fn negative_values_untouched() {
        assert_eq!(normalize_args(["mkv", "-port", "-1"].map(String::from)), ["mkv", "--port", "-1"]);
    }
}
