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
    let result = match cli.command {
        Command::Server => actix_web::rt::System::new().block_on(mkv::server::run(cli.config)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mkv: {e}");
            ExitCode::FAILURE
        }
    }
}
