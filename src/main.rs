use std::process::ExitCode;

use clap::Parser;
use pxbackup_sidecar::config::{Cli, Command, Settings};
use pxbackup_sidecar::{app, families, logging, telemetry};

#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// EX_USAGE: the configuration is wrong.
const EXIT_CONFIG: u8 = 64;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => e.exit(), // --help, --version
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    match cli.command {
        Command::Catalog => match serde_json::to_string_pretty(&families::catalog()) {
            Ok(json) => {
                println!("{json}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("pxbackup-sidecar: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Run(args) => {
            let settings = match Settings::from_args(*args) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("pxbackup-sidecar: {e}");
                    return ExitCode::from(EXIT_CONFIG);
                }
            };
            logging::init(
                settings.log_format,
                &settings.log_level,
                telemetry::own_log_path(&settings).as_deref(),
            );
            match run(settings) {
                Ok(()) => ExitCode::SUCCESS,
                Err(code) => ExitCode::from(code),
            }
        }
    }
}

fn run(settings: Settings) -> Result<(), u8> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("pxbackup-sidecar: cannot start the runtime: {e}");
            1u8
        })?;
    runtime.block_on(app::run(settings)).map_err(|e| {
        tracing::error!(error = %e, "fatal");
        eprintln!("pxbackup-sidecar: {e}");
        e.exit_code()
    })
}
