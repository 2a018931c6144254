use std::process::ExitCode;

use mkv::cli::{self, Command};
use mkv::config;

fn main() -> ExitCode {
    let cli = match cli::parse(std::env::args()) {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand) {
                let _ = e.print();
                return ExitCode::SUCCESS;
            }
            let msg = e.render().to_string();
            eprintln!("mkv: {}", msg.lines().next().unwrap_or("bad arguments").trim_start_matches("error: "));
            return ExitCode::from(2);
        }
    };
    // Held to the end of main: dropping it writes the lines still queued.
    let _logs = init_logs(&cli.config);
    let json = cli.command.json();
    let admin = match cli.command {
        Command::Server => {
            return match actix_web::rt::System::new().block_on(mkv::server::run(cli.config)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(e),
            }
        }
        Command::Rebuild(a) => mkv::admin::run(json, mkv::admin::rebuild::run(cli.config, a)),
        Command::Rebalance(a) => mkv::admin::run(json, mkv::admin::rebalance::run(cli.config, a)),
        Command::Verify(a) => mkv::admin::run(json, mkv::admin::verify::run(cli.config, a)),
        Command::Repair(a) => mkv::admin::run(json, mkv::admin::repair::run(cli.config, a)),
        Command::Bench(a) => return mkv::bench::main(cli.config, a).map_or_else(fail, |()| ExitCode::SUCCESS),
        Command::Uploads(a) => mkv::admin::uploads::run(cli.config, a),
        Command::Key(a) => mkv::admin::access::keys(cli.config, a),
        Command::Bucket(a) => mkv::admin::access::buckets(cli.config, a),
        Command::Backup(a) => mkv::admin::backup::run(cli.config, a),
        Command::Status(a) => mkv::admin::status::run(cli.config, a),
    };
    match admin {
        Ok(true) => ExitCode::SUCCESS,
        // The report, with every failure, is printed already.
        Ok(false) => ExitCode::FAILURE,
        Err(e) => fail(e),
    }
}

/// Warnings and the request log (target `mkv::request`) by default, info
/// everywhere with -v; MKV_LOG, else RUST_LOG, overrides both.
///
/// Lines go to stderr from a thread of their own, gathered while it writes:
/// one `write(2)` per request line from the request's own thread cost more
/// than everything else a missing-key GET does (docs/benchmarks.md). When the
/// queue is full, a request's thread waits for room (nothing is dropped; the
/// queue bounds the memory).
fn init_logs(config: &config::Config) -> tracing_appender::non_blocking::WorkerGuard {
    use tracing_subscriber::EnvFilter;
    let default = if config.verbose { "info" } else { "warn,mkv::request=info" };
    let filter = EnvFilter::try_from_env("MKV_LOG").or_else(|_| EnvFilter::try_from_default_env()).unwrap_or_else(|_| default.into());
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .buffered_lines_limit(LOG_LINES_QUEUED)
        .thread_name("mkv-log")
        .finish(std::io::BufWriter::with_capacity(64 << 10, std::io::stderr()));
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer).with_ansi(ansi);
    match config.log_format {
        config::LogFormat::Text => logs.event_format(mkv::observe::TextFormat::default()).init(),
        config::LogFormat::Json => logs.json().init(),
    }
    guard
}

/// Log lines waiting for the log thread at most (a few MiB).
const LOG_LINES_QUEUED: usize = 16_384;

fn fail(e: impl std::fmt::Display) -> ExitCode {
    eprintln!("mkv: {e}");
    ExitCode::FAILURE
}
