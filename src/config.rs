//! Configuration: one struct (`Config`) of the global flags, and the
//! flags of each command, from flags, `MKV_*` environment variables or a
//! TOML file (`--config`), in that precedence (how: `cli`).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};

/// Flags every admin command takes.
#[derive(Args, Debug, Clone, PartialEq, Eq)]
pub struct AdminArgs {
    /// Volume or server requests in flight at once.
    #[arg(long, env = "MKV_CONCURRENCY", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub concurrency: u32,
    /// Print the final report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug, Clone, PartialEq, Eq)]
pub struct RebuildArgs {
    #[command(flatten)]
    pub common: AdminArgs,
    /// Also read every value once to record its MD5 (the volumes do not
    /// store it).
    #[arg(long)]
    pub checksums: bool,
    /// Empty a --db that already holds keys (never the db of a running
    /// server).
    #[arg(long)]
    pub clear: bool,
}

#[derive(Args, Debug, Clone, PartialEq, Eq)]
pub struct RebalanceArgs {
    #[command(flatten)]
    pub common: AdminArgs,
    /// Move each key through this running server's REBALANCE (host:port), so
    /// its key locks apply: the safe way while it serves the same --db.
    #[arg(long)]
    pub server: Option<String>,
    /// Only keys starting with this.
    #[arg(long, default_value = "")]
    pub prefix: String,
}

#[derive(Args, Debug, Clone, PartialEq, Eq)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub common: AdminArgs,
    /// Read every replica and compare its MD5 with the record.
    #[arg(long)]
    pub checksums: bool,
    /// Also walk every volume for files the index does not reference.
    #[arg(long)]
    pub orphans: bool,
    /// Files younger than this are never orphans (writes and moves in flight).
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    pub min_orphan_age: Duration,
    /// Only keys starting with this.
    #[arg(long, default_value = "")]
    pub prefix: String,
}

#[derive(Args, Debug, Clone, PartialEq, Eq)]
pub struct RepairArgs {
    #[command(flatten)]
    pub common: AdminArgs,
    /// Re-create replicas through this running server's REBALANCE (host:port).
    #[arg(long)]
    pub server: Option<String>,
    /// Read every replica: replace those whose MD5 differs from the record,
    /// and record the MD5 of keys that have none.
    #[arg(long)]
    pub checksums: bool,
    /// Delete files the index does not reference (walks every volume).
    #[arg(long)]
    pub delete_orphans: bool,
    /// Files younger than this are never orphans (writes and moves in flight).
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    pub min_orphan_age: Duration,
    /// Only keys starting with this.
    #[arg(long, default_value = "")]
    pub prefix: String,
}

#[derive(Args, Debug, Clone, PartialEq, Eq)]
pub struct UploadsArgs {
    #[command(subcommand)]
    pub action: UploadsAction,
    /// Print as JSON on stdout.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Subcommand, Debug, Clone, PartialEq, Eq)]
pub enum UploadsAction {
    /// Every upload: key, id, initiated, parts, bytes.
    List {
        /// Only uploads of keys starting with this (`/bucket/prefix`).
        #[arg(long, default_value = "")]
        prefix: String,
    },
    /// Abort uploads: remove their parts from the volumes and the index.
    Abort {
        /// Upload ids to abort.
        ids: Vec<String>,
        /// Abort every upload initiated longer ago than this.
        #[arg(long, value_parser = parse_duration)]
        older_than: Option<Duration>,
    },
}

#[derive(Args, Debug, Clone, PartialEq, Eq)]
pub struct KeyArgs {
    #[command(subcommand)]
    pub action: KeyAction,
    /// Print as JSON on stdout.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Subcommand, Debug, Clone, PartialEq, Eq)]
pub enum KeyAction {
    /// Make a key: prints its access key id and secret (shown only now).
    Create { name: String },
    /// Add a key made elsewhere.
    Import {
        id: String,
        secret: String,
        #[arg(long)]
        name: String,
    },
    /// Every key: id, name, created (never secrets).
    List,
    /// Remove a key and its grants.
    Delete { id: String },
}

#[derive(Args, Debug, Clone, PartialEq, Eq)]
pub struct BucketArgs {
    #[command(subcommand)]
    pub action: BucketAction,
    /// Print as JSON on stdout.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Args, Debug, Clone, PartialEq, Eq)]
pub struct BackupArgs {
    /// New folder for the copy (`data.mdb`); refused if it holds anything.
    pub dest: PathBuf,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug, Clone, PartialEq, Eq)]
pub struct StatusArgs {
    /// Ask this running server's admin listener (its --admin-bind:--admin-port).
    #[arg(long)]
    pub server: Option<String>,
    /// Also count live objects and their bytes: a scan of the whole index
    /// (not with --server).
    #[arg(long, conflicts_with = "server")]
    pub bytes: bool,
    /// Print as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// The permissions `allow` adds and `deny` removes.
#[derive(Args, Debug, Clone, PartialEq, Eq)]
pub struct GrantArgs {
    pub bucket: String,
    /// Access key id.
    #[arg(long)]
    pub key: String,
    /// GET, HEAD, listings, copy from.
    #[arg(long)]
    pub read: bool,
    /// PUT, DELETE, multipart uploads.
    #[arg(long)]
    pub write: bool,
    /// Bucket configuration (policy) and DeleteBucket.
    #[arg(long)]
    pub owner: bool,
}

#[derive(Subcommand, Debug, Clone, PartialEq, Eq)]
pub enum BucketAction {
    /// Give a key permissions on a bucket.
    Allow(GrantArgs),
    /// Take permissions away from a key.
    Deny(GrantArgs),
    /// Every bucket: name, owner, created.
    List,
    /// A bucket's owner, grants, policy, object count and bytes.
    Info { bucket: String },
}

pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (examples: 1s, 500ms, 2m)"))
}

/// When index commits reach the disk (`--index-sync`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexSync {
    /// fsync at every commit, before its writers are answered.
    Commit,
    /// fsync every this long; commits are answered from the page cache.
    Every(Duration),
}

fn parse_index_sync(s: &str) -> Result<IndexSync, String> {
    if s == "commit" {
        return Ok(IndexSync::Commit);
    }
    match parse_duration(s) {
        Ok(d) if !d.is_zero() => Ok(IndexSync::Every(d)),
        _ => Err(format!("{s:?}: expected `commit` or a period such as 1s or 200ms")),
    }
}

/// What unsigned native requests may do (`--native`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum NativeMode {
    /// Everything the original serves.
    Rw,
    /// GET, HEAD and listings only.
    Ro,
    /// No native API: unsigned requests are anonymous S3 requests.
    Off,
}

/// A network (`10.0.0.0/8`) or one address (`127.0.0.1`, `::1`).
fn parse_net(s: &str) -> Result<ipnet::IpNet, String> {
    s.parse::<ipnet::IpNet>()
        .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| format!("{s:?} is not an address or a network (examples: 127.0.0.1, 10.0.0.0/8, ::1)"))
}

/// How log lines look (`--log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    /// One JSON object a line.
    Json,
}

fn parse_s3_key(s: &str) -> Result<(String, String), String> {
    match s.split_once(':') {
        Some((a, k)) if !a.is_empty() && !k.is_empty() => Ok((a.to_string(), k.to_string())),
        _ => Err("expected ACCESS:SECRET".into()),
    }
}

#[derive(Args, Debug, Clone)]
pub struct Config {
    /// TOML file of settings named as these flags' fields (`replicas = 3`,
    /// `delete_grace = "60s"`, `s3_keys = ["AK:SECRET"]`); flags and MKV_*
    /// variables override it.
    #[arg(long = "config", global = true, env = "MKV_CONFIG")]
    pub config_file: Option<PathBuf>,
    /// Volume servers, host:port, comma separated.
    #[arg(long, global = true, env = "MKV_VOLUMES", value_delimiter = ',')]
    pub volumes: Vec<String>,
    /// Index folder (an LMDB environment; created if missing).
    #[arg(long, global = true, env = "MKV_DB")]
    pub db: Option<PathBuf>,
    /// Largest size the index may grow to, in GiB (address space, not disk).
    #[arg(long, global = true, env = "MKV_DB_MAP_GIB", default_value_t = 256)]
    pub db_map_gib: usize,
    /// When index commits reach the disk: `commit` (each commit is fsynced
    /// before its writers are answered), or a period such as `1s` (commits
    /// are answered once the OS holds them, which survives a crash of the
    /// process, and fsynced every period: a power loss can lose that much
    /// and may leave an index `mkv rebuild` has to replace; see
    /// docs/operations.md).
    #[arg(long, global = true, env = "MKV_INDEX_SYNC", default_value = "commit", value_parser = parse_index_sync)]
    pub index_sync: IndexSync,
    /// Copies of each value.
    #[arg(long, global = true, env = "MKV_REPLICAS", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    pub replicas: u32,
    /// svNN folders per volume (1 = none).
    #[arg(long, global = true, env = "MKV_SUBVOLUMES", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub subvolumes: u32,
    #[arg(long, global = true, env = "MKV_PORT", default_value_t = 3000)]
    pub port: u16,
    #[arg(long, global = true, env = "MKV_BIND", default_value = "0.0.0.0")]
    pub bind: String,
    /// Redirect GETs of missing keys to this host:port.
    #[arg(long, global = true, env = "MKV_FALLBACK")]
    pub fallback: Option<String>,
    /// Refuse DELETE of a key that was not UNLINKed first.
    #[arg(long, global = true, env = "MKV_PROTECT", num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value_t = false, action = clap::ArgAction::Set)]
    pub protect: bool,
    /// Record the MD5 of each value.
    #[arg(long, global = true, env = "MKV_MD5SUM", num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value_t = true, action = clap::ArgAction::Set)]
    pub md5sum: bool,
    /// Timeout of the HEAD that checks a replica before a redirect, and of
    /// connecting to a volume.
    #[arg(long, global = true, env = "MKV_VOLTIMEOUT", default_value = "1s", value_parser = parse_duration)]
    pub voltimeout: Duration,
    /// Longest a volume (or a client sending a body) may stay silent during a
    /// transfer before the request fails.
    #[arg(long, global = true, env = "MKV_IO_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub io_timeout: Duration,
    /// Most bytes of request bodies held in memory at once, in MiB, across
    /// all writes (read from clients, not yet taken by every volume); a
    /// write waits for room. Bounds the memory of many concurrent uploads.
    #[arg(long, global = true, env = "MKV_WRITE_BUFFER_MIB", default_value_t = 32, value_parser = clap::value_parser!(u64).range(1..=1 << 20))]
    pub write_buffer_mib: u64,
    /// Memory for small S3 values, in MiB (0: off): values written or read
    /// through the gateway are kept, and GetObject answers them without a
    /// volume round trip. Native values are never kept.
    #[arg(long, global = true, env = "MKV_CACHE_MIB", default_value_t = 64, value_parser = clap::value_parser!(u64).range(0..=1 << 20))]
    pub cache_mib: u64,
    /// Largest value the cache keeps, in KiB.
    #[arg(long, global = true, env = "MKV_CACHE_OBJECT_KIB", default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..=1 << 20))]
    pub cache_object_kib: u64,
    /// S3 credentials, ACCESS:SECRET; repeatable, or comma separated in
    /// MKV_S3_KEYS. Without any, the S3 gateway is off.
    #[arg(long = "s3-key", global = true, env = "MKV_S3_KEYS", value_delimiter = ',', value_parser = parse_s3_key)]
    pub s3_keys: Vec<(String, String)>,
    /// What unsigned native requests may do: rw, ro (GET, HEAD, listings)
    /// or off. Default rw (from the peers `--native-allow` admits).
    #[arg(long, global = true, env = "MKV_NATIVE", value_enum)]
    pub native: Option<NativeMode>,
    /// Peers whose unsigned requests are native calls (addresses or CIDR
    /// networks, comma separated); anyone else's are anonymous S3 requests.
    /// Default: everywhere without S3 keys (as the original), loopback only
    /// with them.
    #[arg(long = "native-allow", global = true, env = "MKV_NATIVE_ALLOW", value_delimiter = ',', value_parser = parse_net)]
    pub native_allow: Vec<ipnet::IpNet>,
    /// Also serve S3 alone on this port (unsigned requests there are
    /// anonymous S3 requests, denied).
    #[arg(long, global = true, env = "MKV_S3_PORT")]
    pub s3_port: Option<u16>,
    /// Region expected in signatures' credential scope; any region is
    /// accepted when unset.
    #[arg(long, global = true, env = "MKV_S3_REGION")]
    pub s3_region: Option<String>,
    /// Also serve virtual-hosted-style S3 under this domain
    /// (`bucket.s3.example.com` for `s3.example.com`); path style always works.
    #[arg(long, global = true, env = "MKV_S3_DOMAIN")]
    pub s3_domain: Option<String>,
    /// Multipart uploads not completed this long after they began are
    /// aborted by the server's background sweep.
    #[arg(long, global = true, env = "MKV_MULTIPART_EXPIRY", default_value = "7d", value_parser = parse_duration)]
    pub multipart_expiry: Duration,
    /// How long the files of a replaced or deleted S3 value stay on the
    /// volumes, so that redirects and reads already under way still find them.
    #[arg(long, global = true, env = "MKV_DELETE_GRACE", default_value = "60s", value_parser = parse_duration)]
    pub delete_grace: Duration,
    /// Log at info level everywhere (default: warnings, and the request
    /// log). MKV_LOG or RUST_LOG, when set, decide instead.
    #[arg(short = 'v', long, global = true, env = "MKV_VERBOSE")]
    pub verbose: bool,
    /// Serve /metrics, /health and /ready on this port (unauthenticated:
    /// see --admin-bind).
    #[arg(long, global = true, env = "MKV_ADMIN_PORT")]
    pub admin_port: Option<u16>,
    /// Address of the --admin-port listener.
    #[arg(long, global = true, env = "MKV_ADMIN_BIND", default_value = "127.0.0.1")]
    pub admin_bind: String,
    /// On SIGTERM or SIGINT, how long requests in flight may take to finish
    /// (whole seconds) before the server exits anyway.
    #[arg(long, global = true, env = "MKV_SHUTDOWN_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,
    /// Serve the main and S3 ports over HTTPS with this PEM certificate
    /// chain (leaf first); needs --tls-key.
    #[arg(long, global = true, env = "MKV_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, global = true, env = "MKV_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// Log lines as text or json.
    #[arg(long, global = true, env = "MKV_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

impl Config {
    pub fn db_path(&self) -> Result<&PathBuf, String> {
        self.db.as_ref().ok_or_else(|| "missing --db (or MKV_DB)".to_string())
    }

    pub fn check_volumes(&self) -> Result<(), String> {
        if self.volumes.is_empty() {
            return Err("missing --volumes (or MKV_VOLUMES)".into());
        }
        if let Some(bad) = self.volumes.iter().find(|v| v.is_empty() || v.contains(char::is_whitespace) || v.contains('/')) {
            return Err(format!("bad volume {bad:?}: expected host:port"));
        }
        Ok(())
    }
}

