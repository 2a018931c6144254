//! The request log and request metrics: one middleware around every request
//! of the main and S3 listeners. A request is logged and counted when its
//! response body has been sent (or the client went away), so durations and
//! byte counts include streamed bodies.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use actix_web::body::{BodySize, BoxBody, MessageBody};
use actix_web::dev::{Payload, Service, ServiceRequest, ServiceResponse};
use actix_web::{Error, HttpMessage, HttpRequest};
use bytes::Bytes;
use futures::StreamExt;

use crate::metrics::Metrics;
use crate::s3::{self, router::Route};

/// Native methods named in logs and metrics; any other is `OTHER` (a bounded set).
const NATIVE_OPS: [&str; 6] = ["GET", "HEAD", "PUT", "DELETE", "UNLINK", "REBALANCE"];

/// One request, logged and counted when dropped.
struct Exchange {
    metrics: Arc<Metrics>,
    start: Instant,
    /// An S3 answer's; a native request gets one only if it is logged.
    request_id: Option<String>,
    /// Where the S3 handler notes its route; peer, method and URI are read
    /// from it (and formatted) only when the request is logged.
    request: HttpRequest,
    /// Answered by the S3 handler (even before routing: a bad signature).
    s3_answer: bool,
    status: u16,
    bytes_in: Arc<AtomicU64>,
    bytes_out: u64,
    /// `--log-format json`: the request log's fields as JSON fields.
    json_log: bool,
}

impl Drop for Exchange {
    fn drop(&mut self) {
        let took = self.start.elapsed();
        let bytes_in = self.bytes_in.load(Ordering::Relaxed);
        let route = self.request.extensions().get::<Route>().map(|r| (r.op.name(), r.bucket.clone()));
        let method = self.request.method().as_str();
        let (api, operation, bucket) = match route {
            Some((op, bucket)) => ("s3", op, bucket),
            None if self.s3_answer => ("s3", "Unknown", None),
            None => ("native", native_op(method), None),
        };
        self.metrics.request_done(api, operation, self.status, bytes_in, self.bytes_out, took);
        if !tracing::enabled!(target: "mkv::request", tracing::Level::INFO) {
            return;
        }
        let line = RequestLine {
            request_id: self.request_id.take().unwrap_or_else(s3::new_request_id),
            peer: Peer(self.request.peer_addr()),
            api,
            operation,
            bucket: bucket.as_deref().unwrap_or("-"),
            method,
            // Presigned credentials redacted.
            uri: s3::loggable_uri(self.request.uri()),
            status: self.status,
            bytes_in,
            bytes_out: self.bytes_out,
            duration_ms: (took.as_secs_f64() * 1e6).round() / 1e3,
        };
        if !self.json_log {
            // One message, in the form the fields would print as (see
            // `TextFormat`).
            tracing::info!(target: "mkv::request", "{line}");
            return;
        }
        tracing::info!(
            target: "mkv::request",
            request_id = %line.request_id,
            peer = %line.peer,
            api = %line.api,
            operation = %line.operation,
            bucket = %line.bucket,
            method = %line.method,
            uri = %line.uri,
            status = line.status,
            bytes_in = line.bytes_in,
            bytes_out = line.bytes_out,
            duration_ms = line.duration_ms,
        );
    }
}

/// The fields of one request log line.
struct RequestLine<'a> {
    request_id: String,
    peer: Peer,
    api: &'a str,
    operation: &'a str,
    bucket: &'a str,
    method: &'a str,
    uri: String,
    status: u16,
    bytes_in: u64,
    bytes_out: u64,
    duration_ms: f64,
}

/// As the fields print in text logs: `name=value`, space separated.
impl std::fmt::Display for RequestLine<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "request_id={} peer={} api={} operation={} bucket={} method={} uri={} status={} bytes_in={} bytes_out={} duration_ms={}",
            self.request_id,
            self.peer,
            self.api,
            self.operation,
            self.bucket,
            self.method,
            self.uri,
            self.status,
            self.bytes_in,
            self.bytes_out,
            self.duration_ms
        )
    }
}

/// Text log lines as tracing's default format writes them, but a request
/// line's message is written as it is formatted: the default format visits
/// a dozen fields one by one and escapes a message character by character,
/// which cost as much as the rest of a missing-key GET (docs/benchmarks.md).
/// A request line needs no escaping: http parsing refuses control
/// characters in URIs, and the other fields are ours.
#[derive(Default)]
pub struct TextFormat {
    others: tracing_subscriber::fmt::format::Format,
}

impl<S, N> tracing_subscriber::fmt::FormatEvent<S, N> for TextFormat
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        use tracing_subscriber::fmt::time::FormatTime;
        if event.metadata().target() != "mkv::request" {
            return self.others.format_event(ctx, writer, event);
        }
        tracing_subscriber::fmt::time::SystemTime.format_time(&mut writer)?;
        writer.write_str("  INFO mkv::request: ")?;
        let mut written = Ok(());
        event.record(&mut |field: &tracing::field::Field, value: &dyn std::fmt::Debug| {
            if field.name() == "message" {
                written = write!(writer, "{value:?}");
            }
        });
        written?;
        writer.write_char('\n')
    }
}

/// A peer address as logged (`-` if unknown), formatted into the log line.
struct Peer(Option<std::net::SocketAddr>);

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(a) => a.fmt(f),
            None => f.write_str("-"),
        }
    }
}

fn native_op(method: &str) -> &'static str {
    NATIVE_OPS.into_iter().find(|m| *m == method).unwrap_or("OTHER")
}

/// The middleware (`App::wrap_fn`): counts the bytes of the request body as
/// the handler reads them, and those of the response body as they are sent.
pub fn request<S>(mut req: ServiceRequest, srv: &S, metrics: Arc<Metrics>, json_log: bool) -> impl Future<Output = Result<ServiceResponse<Observed>, Error>> + 'static
where
    S: Service<ServiceRequest, Response = ServiceResponse<BoxBody>, Error = Error>,
    S::Future: 'static,
{
    let bytes_in = Arc::new(AtomicU64::new(0));
    let counted = bytes_in.clone();
    let payload = req.take_payload().inspect(move |chunk| {
        if let Ok(b) = chunk {
            counted.fetch_add(b.len() as u64, Ordering::Relaxed);
        }
    });
    req.set_payload(Payload::Stream { payload: Box::pin(payload) });
    metrics.request_started();
    let mut exchange = Exchange {
        metrics,
        start: Instant::now(),
        request_id: None,
        request: req.request().clone(),
        s3_answer: false,
        // Until an answer: the client went away first (nginx's 499).
        status: 499,
        bytes_in,
        bytes_out: 0,
        json_log,
    };
    let answer = srv.call(req);
    async move {
        let res = match answer.await {
            Ok(res) => res,
            Err(e) => {
                exchange.status = e.as_response_error().status_code().as_u16();
                drop(exchange);
                return Err(e);
            }
        };
        exchange.status = res.status().as_u16();
        // An S3 answer carries its request id.
        if let Some(id) = res.headers().get("x-amz-request-id").and_then(|v| v.to_str().ok()) {
            exchange.s3_answer = true;
            exchange.request_id = Some(id.to_string());
        }
        Ok(res.map_body(|_, body| Observed { body, exchange }))
    }
}

/// A response body that counts what is sent and logs the request when it
/// is done with.
pub struct Observed {
    body: BoxBody,
    exchange: Exchange,
}

impl MessageBody for Observed {
    type Error = <BoxBody as MessageBody>::Error;

    fn size(&self) -> BodySize {
        self.body.size()
    }

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, Self::Error>>> {
        let this = &mut *self;
        let next = Pin::new(&mut this.body).poll_next(cx);
        if let Poll::Ready(Some(Ok(chunk))) = &next {
            this.exchange.bytes_out += chunk.len() as u64;
        }
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_text_request_line_is_the_fields_as_tracing_prints_them() {
        let line = RequestLine {
            request_id: "FBD7D86D1B8C9103".into(),
            peer: Peer(Some("127.0.0.1:50980".parse().unwrap())),
            api: "native",
            operation: "PUT",
            bucket: "-",
            method: "PUT",
            uri: "/k".into(),
            status: 201,
            bytes_in: 2,
            bytes_out: 0,
            duration_ms: 5.368,
        };
        assert_eq!(
            line.to_string(),
            "request_id=FBD7D86D1B8C9103 peer=127.0.0.1:50980 api=native operation=PUT bucket=- method=PUT uri=/k status=201 bytes_in=2 bytes_out=0 duration_ms=5.368"
        );
        assert!(Peer(None).to_string() == "-");
    }

    #[test]
    fn native_operations_are_a_bounded_set() {
        assert_eq!(native_op("UNLINK"), "UNLINK");
        assert_eq!(native_op("PROPFIND"), "OTHER");
    }
}
