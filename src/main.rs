use std::process::ExitCode;

use mkv::config::{self, Command};

fn main() -> ExitCode {
    let cli = match config::parse(std::env::args()) {
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
    let level = if cli.config.verbose { "info" } else { "warn" };
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("MKV_LOG").unwrap_or_else(|_| level.into()))
        .with_writer(std::io::stderr)
        .init();
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
    };
    match admin {
        Ok(true) => ExitCode::SUCCESS,
        // The report, with every failure, is printed already.
        Ok(false) => ExitCode::FAILURE,
        Err(e) => fail(e),
    }
}

fn fail(e: impl std::fmt::Display) -> ExitCode {
    eprintln!("mkv: {e}");
    ExitCode::FAILURE
}
