//! The native minikeyvalue HTTP API, byte-compatible with the original.

use actix_web::http::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use actix_web::http::{Method, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};

use crate::error::Error;
use crate::index::{Record, Scan};
use crate::placement::key2path;
use crate::app::AppState;
use crate::store::Store;
use crate::urlenc::{percent_decode, query_pairs};

/// The original refuses unpaged listings longer than this.
const MAX_UNPAGED_KEYS: usize = 1_000_000;

/// The key a native request addresses: the percent-decoded path.
pub fn request_key(req: &HttpRequest) -> Vec<u8> {
    percent_decode(req.uri().path().as_bytes())
}

fn empty(status: StatusCode) -> HttpResponse {
    HttpResponse::build(status).insert_header((CONTENT_LENGTH, HeaderValue::from_static("0"))).finish()
}

fn error_response(e: &Error) -> HttpResponse {
    let status = e.native_status();
    if status.is_server_error() {
        tracing::warn!("{e}");
    }
    empty(status)
}

/// A write from a native peer while the native API is read-only (`--native ro`).
pub fn read_only() -> HttpResponse {
    empty(StatusCode::FORBIDDEN)
}

pub async fn handle(req: HttpRequest, body: web::Payload, app: web::Data<AppState>) -> HttpResponse {
    let mut resp = route(req, body, app).await;
    // Header names as Go writes them (Content-Md5, Key-Volumes).
    resp.head_mut().set_camel_case_headers(true);
    resp
}

async fn route(req: HttpRequest, body: web::Payload, app: web::Data<AppState>) -> HttpResponse {
    let key = request_key(&req);
    let query = req.uri().query().unwrap_or("");
    let method = req.method().as_str();
    if !query.is_empty() && req.method() == Method::GET {
        return list(&app, &key, query).await;
    }
    let store = &app.store;
    match method {
        "GET" | "HEAD" => get(&app, &key).await,
        "PUT" => {
            let len = req.headers().get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
            match store.put_new(&key, len, body).await {
                Ok(_) => empty(StatusCode::CREATED),
                Err(e) => error_response(&e),
            }
        }
        "DELETE" | "UNLINK" => match store.delete(&key, method == "UNLINK").await {
            Ok(()) => empty(StatusCode::NO_CONTENT),
            Err(e) => error_response(&e),
        },
        "REBALANCE" => match store.rebalance(&key).await {
            Ok(_) => empty(StatusCode::NO_CONTENT),
            Err(e @ (Error::NotFound | Error::Locked)) => error_response(&e),
            Err(e) => {
                tracing::warn!("rebalance: {e}");
                empty(StatusCode::BAD_REQUEST)
            }
        },
        _ => empty(StatusCode::METHOD_NOT_ALLOWED),
    }
}

async fn get(app: &AppState, key: &[u8]) -> HttpResponse {
    let store = &app.store;
    let rec = match store.record(key) {
        Ok(r) => r,
        Err(e) => return error_response(&e),
    };
    let mut resp = HttpResponse::build(StatusCode::FOUND);
    if let Some(hash) = rec.as_ref().map(|r| &r.hash).filter(|h| !h.is_empty()) {
        // The hash is of the whole value, whatever range is asked for.
        resp.insert_header(("Content-Md5", hash.as_str()));
    }
    let location = match rec.filter(|r| r.is_live()) {
        None => match &store.config.fallback {
            Some(fb) => format!("http://{fb}{}", String::from_utf8_lossy(key)),
            None => return resp.status(StatusCode::NOT_FOUND).insert_header((CONTENT_LENGTH, "0")).finish(),
        },
        Some(rec) => {
            let balance = if store.is_balanced(key, &rec) { "balanced" } else { "unbalanced" };
            resp.insert_header(("Key-Balance", balance));
            resp.insert_header(("Key-Volumes", rec.volumes.join(",")));
            match locate(store, key, rec).await {
                Some(url) => url,
                None => return resp.status(StatusCode::NOT_FOUND).insert_header((CONTENT_LENGTH, "0")).finish(),
            }
        }
    };
    resp.insert_header((LOCATION, location)).insert_header((CONTENT_LENGTH, "0")).finish()
}

/// The URL of the first replica of a live record (random order, as the
/// original's `rand.Perm`, but volumes marked stalled or slow last) that
/// answers a HEAD within the volume timeout; `Store::locate` for a record
/// already read. The file path is the same on every volume, so it is made
/// once. If no replica answers and the record changed meanwhile (the value
/// was replaced), it starts over with the new one.
async fn locate(store: &Store, key: &[u8], mut record: Record) -> Option<String> {
    for _ in 0..3 {
        let path = key2path(key, &record.gen);
        let n = record.volumes.len();
        let start = if n > 1 { rand::random_range(0..n) } else { 0 };
        // A random rotation, then the rest in random direction: every order
        // of up to 3 replicas is possible, with no allocation.
        let step = if n > 2 && rand::random::<bool>() { n - 1 } else { 1 };
        for marked in [false, true] {
            for i in 0..n {
                let volume = &record.volumes[(start + i * step) % n];
                if store.volumes.try_last(volume) != marked {
                    continue;
                }
                let url = format!("http://{volume}{path}");
                if store.volumes.exists(&url).await {
                    return Some(url);
                }
            }
        }
        match store.record(key).ok().flatten().filter(Record::is_live) {
            Some(now) if now != record => record = now,
            _ => return None,
        }
    }
    None
}

async fn list(app: &AppState, prefix: &[u8], query: &str) -> HttpResponse {
    let operation = query.split('&').next().unwrap_or("");
    let want_live = match operation {
        "list" => true,
        "unlinked" => false,
        _ => return empty(StatusCode::FORBIDDEN),
    };
    let params = query_pairs(query);
    let param = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_slice());
    let limit = match param("limit").filter(|v| !v.is_empty()) {
        None => 0,
        Some(v) => match std::str::from_utf8(v).ok().and_then(|s| s.parse::<i64>().ok()) {
            Some(n) => n.max(0) as usize,
            None => return empty(StatusCode::BAD_REQUEST),
        },
    };
    let start = param("start").filter(|s| !s.is_empty());
    let mut page = ListPage::new(want_live, limit);
    if let Err(e) = app.store.index.scan(prefix, start, |k, rec| page.visit(k, rec.is_live())) {
        return error_response(&e.into());
    }
    if page.too_many {
        return empty(StatusCode::PAYLOAD_TOO_LARGE);
    }
    HttpResponse::Ok().insert_header((CONTENT_TYPE, "application/json")).body(page.to_json())
}

/// One `?list`/`?unlinked` page, filled key by key in index order, with the
/// original's rules: `limit` keys (0 = all), then `next` is the following
/// key; over 1,000,000 keys without a limit is refused.
struct ListPage {
    want_live: bool,
    limit: usize,
    keys: Vec<Vec<u8>>,
    next: Vec<u8>,
    too_many: bool,
}

impl ListPage {
    fn new(want_live: bool, limit: usize) -> ListPage {
        ListPage { want_live, limit, keys: Vec::new(), next: Vec::new(), too_many: false }
    }

    fn visit(&mut self, key: &[u8], live: bool) -> Scan {
        if live != self.want_live {
            return Scan::Continue;
        }
        if self.keys.len() > MAX_UNPAGED_KEYS {
            self.too_many = true;
            return Scan::Stop;
        }
        if self.limit > 0 && self.keys.len() == self.limit {
            self.next = key.to_vec();
            return Scan::Stop;
        }
        self.keys.push(key.to_vec());
        Scan::Continue
    }

    /// `{"next":"…","keys":[…]}` byte for byte as the original.
    fn to_json(&self) -> String {
        let mut out = String::from("{\"next\":");
        go_json_string(&mut out, &self.next);
        out.push_str(",\"keys\":[");
        for (i, k) in self.keys.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            go_json_string(&mut out, k);
        }
        out.push_str("]}");
        out
    }
}

/// A JSON string exactly as Go's `encoding/json` writes it: HTML-sensitive
/// characters and U+2028/2029 escaped, invalid UTF-8 replaced by U+FFFD.
pub fn go_json_string(out: &mut String, bytes: &[u8]) {
    out.push('"');
    for c in String::from_utf8_lossy(bytes).chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => out.push_str(&format!("\\u{:04x}", c as u32)),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(b: &[u8]) -> String {
        let mut s = String::new();
        go_json_string(&mut s, b);
        s
    }

    fn fill(page: &mut ListPage, keys: &[(&str, bool)]) {
        for (k, live) in keys {
            if let Scan::Stop = page.visit(k.as_bytes(), *live) {
                break;
            }
        }
    }

    #[test]
    fn list_pages() {
        let keys = [("/a", true), ("/b", false), ("/c", true), ("/d", true), ("/e", true)];
        let mut p = ListPage::new(true, 2);
        fill(&mut p, &keys);
        assert_eq!(p.to_json(), r#"{"next":"/d","keys":["/a","/c"]}"#);
        let mut p = ListPage::new(true, 0);
        fill(&mut p, &keys);
        assert_eq!(p.to_json(), r#"{"next":"","keys":["/a","/c","/d","/e"]}"#);
        let mut p = ListPage::new(false, 0);
        fill(&mut p, &keys);
        assert_eq!(p.to_json(), r#"{"next":"","keys":["/b"]}"#);
        // A page that ends exactly at the last key has no next.
        let mut p = ListPage::new(true, 4);
        fill(&mut p, &keys);
        assert_eq!(p.to_json(), r#"{"next":"","keys":["/a","/c","/d","/e"]}"#);
        assert!(!p.too_many);
    }

    #[test]
    fn go_json_escapes() {
        assert_eq!(enc(b"/a b"), "\"/a b\"");
        assert_eq!(enc(b"/fixture/b64/>??>o0"), "\"/fixture/b64/\\u003e??\\u003eo0\"");
        assert_eq!(enc(b"<&>\"\\\n\x01"), "\"\\u003c\\u0026\\u003e\\\"\\\\\\n\\u0001\"");
        assert_eq!(enc("ü🙂".as_bytes()), "\"ü🙂\"");
        assert_eq!(enc(b"\xff"), "\"\u{fffd}\"");
        assert_eq!(enc("\u{2028}".as_bytes()), "\"\\u2028\"");
    }
}
