//! `mkv server`: one actix-web process serving the native API.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};

use crate::access::{Native, NativeAccess};
use crate::app::AppState;
use crate::config::{Config, IndexSync};
use crate::index::Index;
use crate::monitor;
use crate::native;
use crate::observe;
use crate::s3;
use crate::store::Store;
use crate::tls;

pub fn open_store(config: &Config) -> Result<Store, String> {
    config.check_volumes()?;
    let db = config.db_path()?;
    let synced = config.index_sync == IndexSync::Commit;
    let index = Index::open_with(db, config.db_map_gib << 30, synced).map_err(|e| format!("{}: {e}", db.display()))?;
    Ok(Store::new(index, Arc::new(config.clone())))
}

async fn dispatch(req: HttpRequest, body: web::Payload, app: web::Data<AppState>) -> HttpResponse {
    let s3_only = app.s3_only_port.is_some() && app.s3_only_port == Some(req.app_config().local_addr().port());
    // CORS preflights and browser form uploads are S3's, whoever sends them.
    if s3_only || s3::is_s3_request(&req) || req.method() == actix_web::http::Method::OPTIONS || s3::post::is_form_post(&req) {
        return s3::handle(req, body, app).await;
    }
    let keyed = || !app.store.config.s3_keys.is_empty() || app.store.index.has_keys().unwrap_or(true);
    match app.native.decide(req.peer_addr().map(|a| a.ip()), req.method().as_str(), keyed) {
        Native::Serve => native::handle(req, body, app).await,
        Native::ReadOnly => native::read_only(),
        // An anonymous S3 request.
        Native::NotNative => s3::handle(req, body, app).await,
    }
}

/// The server on already bound listeners (tests bind port 0): the main one
/// (native and S3) and optionally one for S3 alone. Await it to serve until
/// stopped through its handle (a graceful stop waits up to
/// `--shutdown-timeout` for requests in flight); `run` stops it on signals.
pub fn serve(store: Store, listener: std::net::TcpListener, s3_listener: Option<std::net::TcpListener>) -> std::io::Result<actix_web::dev::Server> {
    let s3_only_port = s3_listener.as_ref().map(|l| l.local_addr().map(|a| a.port())).transpose()?;
    let native = NativeAccess::from_config(&store.config);
    let grace = store.config.shutdown_timeout;
    let tls = match (&store.config.tls_cert, &store.config.tls_key) {
        (Some(cert), Some(key)) => Some(tls::server_config(cert, key).map_err(std::io::Error::other)?),
        _ => None,
    };
    let mut server = HttpServer::new(move || {
        let metrics = store.metrics.clone();
        let json_log = store.config.log_format == crate::config::LogFormat::Json;
        // One volume client per worker: hyper runs a pooled connection on
        // the runtime of the worker that opened it, and a graceful stop ends
        // idle workers first, which would cut another worker's upload on a
        // connection they shared.
        let state = web::Data::new(AppState { store: store.for_worker(), s3_only_port, native: native.clone() });
        App::new()
            .app_data(state)
            .wrap_fn(move |req, srv| observe::request(req, srv, metrics.clone(), json_log))
            .default_service(web::to(dispatch))
    })
    .disable_signals()
    .shutdown_timeout(grace.as_secs() + u64::from(grace.subsec_nanos() > 0));
    for l in std::iter::once(listener).chain(s3_listener) {
        server = match &tls {
            Some(config) => server.listen_rustls_0_23(l, config.clone())?,
            None => server.listen(l)?,
        };
    }
    Ok(server.run())
}

fn bind(host: &str, port: u16) -> Result<std::net::TcpListener, String> {
    let addr = format!("{host}:{port}");
    std::net::TcpListener::bind(&addr).map_err(|e| format!("cannot listen on {addr}: {e}"))
}

pub async fn run(config: Config) -> Result<(), String> {
    let store = open_store(&config)?;
    // The LMDB environment stays open until the process ends: closing it
    // while blocking-pool threads still hold reader slots makes their exit
    // write into the unmapped reader table (a segfault seen at shutdown).
    let index = store.index.clone();
    std::mem::forget(index.clone());
    let listener = bind(&config.bind, config.port)?;
    let s3_listener = config.s3_port.map(|p| bind(&config.bind, p)).transpose()?;
    let admin_listener = config.admin_port.map(|p| bind(&config.admin_bind, p)).transpose()?;
    // Before any request: a write recorded in flight now is one the end of
    // the previous run cut.
    let recovered = store.recover().await.map_err(|e| format!("recovery: {e}"))?;
    eprintln!("mkv: {}", crate::store::gc::recovery_line(&recovered));
    actix_web::rt::spawn(crate::store::gc::collect_forever(store.clone()));
    // Bucket changes a crash or an admin command without --volumes left
    // undescribed on the volumes: written again, in the background.
    let describing = store.clone();
    actix_web::rt::spawn(async move {
        if let Err(e) = describing.describe_buckets().await {
            tracing::warn!("describing buckets on the volumes: {e}");
        }
    });
    actix_web::rt::spawn(s3::multipart::sweep_forever(store.clone(), config.multipart_expiry));
    let index_keys = store.index.key_infos().map_err(|e| e.to_string())?.len();
    eprintln!("mkv: {}", startup_line(&config, index_keys));
    let signals = Signals::new().map_err(|e| format!("signals: {e}"))?;
    let stopping = Arc::new(AtomicBool::new(false));
    let admin = admin_listener.map(|l| monitor::serve(store.clone(), l, stopping.clone())).transpose().map_err(|e| e.to_string())?;
    let admin_handle = admin.as_ref().map(|a| a.handle());
    if let Some(a) = admin {
        actix_web::rt::spawn(a);
    }
    let server = serve(store, listener, s3_listener).map_err(|e| e.to_string())?;
    actix_web::rt::spawn(stop_on_signals(signals, server.handle(), stopping, config.shutdown_timeout));
    let served = server.await.map_err(|e| e.to_string());
    // The admin listener answers (/ready: 503) until the drain ends.
    if let Some(h) = admin_handle {
        h.stop(false).await;
    }
    // With --index-sync PERIOD, what the last period committed.
    if config.index_sync != IndexSync::Commit {
        if let Err(e) = index.sync() {
            tracing::error!("index fsync at stop: {e}");
        }
    }
    eprintln!("mkv: stopped");
    served
}

/// SIGTERM and SIGINT, registered before serving so none is missed.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> std::io::Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals { term: signal(SignalKind::terminate())?, int: signal(SignalKind::interrupt())? })
    }

    async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}

/// The first signal stops accepting and lets requests in flight finish
/// (up to `grace`); a second one stops at once.
async fn stop_on_signals(mut signals: Signals, server: actix_web::dev::ServerHandle, stopping: Arc<AtomicBool>, grace: Duration) {
    let name = signals.next().await;
    stopping.store(true, Ordering::Relaxed);
    eprintln!("mkv: {name}: no new connections; requests in flight have up to {} to finish (again to stop now)", humantime::format_duration(grace));
    let drained = actix_web::rt::spawn(server.clone().stop(true));
    tokio::select! {
        _ = drained => {}
        name = signals.next() => {
            eprintln!("mkv: {name}: stopping now");
            server.stop(false).await;
        }
    }
}

/// Where the server listens and who may do what.
fn startup_line(config: &Config, index_keys: usize) -> String {
    let port = config.s3_port.map_or("same port".to_string(), |p| format!("same port and S3-only port {p}"));
    let s3 = match (config.s3_keys.len(), index_keys) {
        (0, 0) => "off (no --s3-key / MKV_S3_KEYS, no `mkv key`)".to_string(),
        (admins, keys) => format!("{admins} admin key(s), {keys} key(s) in the index, {port}; anonymous: denied unless a bucket policy allows"),
    };
    let admin = config.admin_port.map_or("off (no --admin-port)".to_string(), |p| format!("/metrics, /health, /ready on {}:{p}", config.admin_bind));
    format!(
        "listening on {}:{}{}, {} volumes, {} replicas; index: {}; native API: {}; S3: {s3}; admin: {admin}",
        config.bind,
        config.port,
        if config.tls_cert.is_some() { " (TLS)" } else { "" },
        config.volumes.len(),
        config.replicas,
        match config.index_sync {
            IndexSync::Commit => "fsync at every commit".to_string(),
            IndexSync::Every(p) => format!("fsync every {} (a power loss can lose that much)", humantime::format_duration(p)),
        },
        NativeAccess::from_config(config).describe(config.s3_keys.len() + index_keys > 0)
    )
}
