//! What every request handler is given (actix `App` data): the store of its
//! server worker and who may reach which API. Below both front ends, so
//! `native` and `s3` depend on it and not on `server`, which wires them up.

use crate::access::NativeAccess;
use crate::store::Store;

pub struct AppState {
    pub store: Store,
    /// The port that serves S3 alone (`--s3-port`), if any.
    pub s3_only_port: Option<u16>,
    /// Who may make unsigned native calls.
    pub native: NativeAccess,
}
