//! `mkv server`: one actix-web process serving the native API.

use std::sync::Arc;

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};

use crate::config::Config;
use crate::index::Index;
use crate::native;
use crate::s3;
use crate::store::Store;

pub struct AppState {
    pub store: Store,
}

pub fn open_store(config: &Config) -> Result<Store, String> {
    config.check_volumes()?;
    let db = config.db_path()?;
    let index = Index::open(db, config.db_map_gib << 30).map_err(|e| format!("{}: {e}", db.display()))?;
    Ok(Store::new(index, Arc::new(config.clone())))
}

async fn dispatch(req: HttpRequest, body: web::Payload, app: web::Data<AppState>) -> HttpResponse {
    if app.store.config.verbose {
        tracing::info!("{} {}", req.method(), req.uri());
    }
    if s3::is_s3_request(&req) {
        return s3::handle(req, body, app).await;
    }
    native::handle(req, body, app).await
}

/// The server on an already bound listener (tests bind port 0); await it to
/// serve until interrupted, or stop it through its handle.
pub fn serve(store: Store, listener: std::net::TcpListener) -> std::io::Result<actix_web::dev::Server> {
    let state = web::Data::new(AppState { store });
    Ok(HttpServer::new(move || App::new().app_data(state.clone()).default_service(web::to(dispatch)))
        .listen(listener)?
        .run())
}

pub async fn run(config: Config) -> Result<(), String> {
    let store = open_store(&config)?;
    let addr = format!("{}:{}", config.bind, config.port);
    let listener = std::net::TcpListener::bind(&addr).map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    tracing::info!("mkv listening on {addr}, {} volumes, {} replicas", config.volumes.len(), config.replicas);
    serve(store, listener).map_err(|e| e.to_string())?.await.map_err(|e| e.to_string())
}
