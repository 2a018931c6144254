//! mkv: a minikeyvalue-compatible distributed blob store with an S3 gateway.

pub mod access;
pub mod app;
pub mod admin;
pub mod bench;
pub mod cli;
pub mod config;
pub mod describe;
pub mod error;
pub mod index;
pub mod metrics;
pub mod monitor;
pub mod native;
pub mod observe;
pub mod placement;
pub mod s3;
pub mod server;
pub mod store;
pub mod tls;
pub mod urlenc;
pub mod volume;
