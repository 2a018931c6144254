//! The admin listener (`--admin-port`): `/metrics` (Prometheus text),
//! `/health`, `/ready` and `/status` (JSON, what `mkv status` shows). Unauthenticated: bound to `--admin-bind`
//! (loopback by default), apart from the data listeners.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use actix_web::{web, App, HttpResponse, HttpServer};

use crate::index::IndexError;
use crate::store::Store;

/// Why the server is not ready (the body of a 503).
#[derive(Debug, thiserror::Error)]
pub enum NotReady {
    #[error("shutting down")]
    ShuttingDown,
    #[error("index: {0}")]
    Index(#[from] IndexError),
    #[error("{answering} of {total} volumes answer, {needed} needed (--replicas); not answering: {down}")]
    Volumes { answering: usize, total: usize, needed: usize, down: String },
}

/// The server's state as `/ready` tells it.
struct Monitored {
    store: Store,
    /// Set when the data listeners stop (a shutdown signal).
    stopping: Arc<AtomicBool>,
}

pub fn serve(store: Store, listener: std::net::TcpListener, stopping: Arc<AtomicBool>) -> std::io::Result<actix_web::dev::Server> {
    let state = web::Data::new(Monitored { store, stopping });
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .route("/metrics", web::get().to(metrics))
            .route("/health", web::get().to(health))
            .route("/ready", web::get().to(ready))
            .route("/status", web::get().to(status))
    })
    .workers(1)
    // The data server handles signals and stops this one after itself.
    .disable_signals()
    .listen(listener)?;
    Ok(server.run())
}

async fn metrics(state: web::Data<Monitored>) -> HttpResponse {
    let store = &state.store;
    store.metrics.value_cache_held(store.cache_bytes());
    match store.index.stats() {
        Ok(stats) => HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(store.metrics.render(&stats)),
        Err(e) => HttpResponse::InternalServerError().body(format!("index: {e}\n")),
    }
}

async fn status(state: web::Data<Monitored>) -> HttpResponse {
    let store = &state.store;
    match crate::admin::status::collect(&store.index, &store.volumes, &store.config.volumes).await {
        Ok(status) => HttpResponse::Ok().json(status),
        Err(e) => HttpResponse::InternalServerError().body(format!("{e}\n")),
    }
}

/// 200 while the process serves.
async fn health() -> HttpResponse {
    HttpResponse::Ok().body("ok\n")
}

async fn ready(state: web::Data<Monitored>) -> HttpResponse {
    match readiness(&state).await {
        Ok(()) => HttpResponse::Ok().body("ready\n"),
        Err(e) => HttpResponse::ServiceUnavailable().body(format!("{e}\n")),
    }
}

/// Not stopping, the index reads, and at least `--replicas` volumes answer
/// within `--voltimeout`.
async fn readiness(state: &Monitored) -> Result<(), NotReady> {
    if state.stopping.load(Ordering::Relaxed) {
        return Err(NotReady::ShuttingDown);
    }
    let store = &state.store;
    store.index.stats()?;
    let volumes = &store.config.volumes;
    let answers = futures::future::join_all(volumes.iter().map(|v| store.volumes.probe(v))).await;
    let down: Vec<&str> = volumes.iter().zip(&answers).filter(|(_, a)| a.is_err()).map(|(v, _)| v.as_str()).collect();
    let (answering, needed) = (volumes.len() - down.len(), store.config.replicas as usize);
    if answering < needed {
        return Err(NotReady::Volumes { answering, total: volumes.len(), needed, down: down.join(", ") });
    }
    Ok(())
}
