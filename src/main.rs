use std::process::ExitCode;

use clap::Parser;
use pxbackup_sidecar::config::{Cli, Command, DocsCommand, RunArgs, Settings, TelemetryCommand};
use pxbackup_sidecar::{app, docs, families, logging, telemetry};

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
            let settings = match settings(*args) {
                Ok(s) => s,
                Err(code) => return ExitCode::from(code),
            };
            logging::init(
                settings.log_format,
                &settings.log_level,
                telemetry::own_log_path(&settings).as_deref(),
            );
            exit(run(settings))
        }
        Command::Telemetry {
            command: TelemetryCommand::Preview(args),
        } => {
            let settings = match settings(*args) {
                Ok(s) => s,
                Err(code) => return ExitCode::from(code),
            };
            // Log lines to stderr only: the own-log copy belongs to the running sidecar.
            logging::init(settings.log_format, &settings.log_level, None);
            exit(preview(settings))
        }
        Command::Docs { command } => exit(docs_command(command)),
    }
}

/// The generated reference pages: printed, or written into the repository's docs/.
fn docs_command(command: DocsCommand) -> Result<(), u8> {
    let fail = |e: docs::DocsError| {
        eprintln!("pxbackup-sidecar: {e}");
        1u8
    };
    match command {
        DocsCommand::Flags => print!("{}", docs::flags()),
        DocsCommand::Metrics => print!("{}", docs::metrics().map_err(fail)?),
        DocsCommand::Write { root } => {
            for path in docs::write(&root).map_err(fail)? {
                println!("{}", path.display());
            }
        }
    }
    Ok(())
}

fn settings(args: RunArgs) -> Result<Settings, u8> {
    Settings::from_args(args).map_err(|e| {
        eprintln!("pxbackup-sidecar: {e}");
        EXIT_CONFIG
    })
}

fn exit(result: Result<(), u8>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(code) => ExitCode::from(code),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, u8> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("pxbackup-sidecar: cannot start the runtime: {e}");
            1u8
        })
}

fn run(settings: Settings) -> Result<(), u8> {
    runtime()?.block_on(app::run(settings)).map_err(|e| {
        tracing::error!(error = %e, "fatal");
        eprintln!("pxbackup-sidecar: {e}");
        e.exit_code()
    })
}

/// The bundles as pretty JSON on stdout, what would become of them on stderr.
fn preview(settings: Settings) -> Result<(), u8> {
    let clock = pxbackup_sidecar::clock::Clock::System;
    let preview = runtime()?
        .block_on(app::preview_telemetry(settings, clock))
        .map_err(|e| {
            eprintln!("pxbackup-sidecar: {e}");
            e.exit_code()
        })?;
    let json = serde_json::to_string_pretty(&preview.bundles).map_err(|e| {
        eprintln!("pxbackup-sidecar: {e}");
        1u8
    })?;
    println!("{json}");
    eprintln!("pxbackup-sidecar: {}", preview.status);
    Ok(())
}
