//! `watchbus`: the watchbus server and its command-line clients.
//!
//! * `serve`: flags, `WATCHBUS_*` variables and a TOML file are resolved
//!   once into settings ([`settings`]), then the server runs ([`serve`]);
//! * `publish` and `watch`: HTTP clients of a running server;
//! * `bench`: a load generator.
//!
//! Errors reach [`main`] as `anyhow::Error`, are printed once as
//! `error: {:#}`, and map to an exit status in [`exit`].

mod bench;
mod client;
mod exit;
mod publish;
mod serve;
mod settings;
mod size;
mod sse;
mod token;
mod watch;

use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

/// A real-time event hub: publish JSON events to keys, watch them live over SSE or WebSocket, resume without loss.
#[derive(Debug, Parser)]
#[command(name = "watchbus", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server
    Serve(Box<settings::ServeArgs>),
    /// Publish an event (or one per line of standard input) and print its id
    Publish(publish::PublishArgs),
    /// Tail a subscription: one event per line, reconnecting with Last-Event-ID
    Watch(watch::WatchArgs),
    /// Load-test a running server: delivery, throughput, latency percentiles
    Bench(bench::BenchArgs),
    /// Sign a scoped token (a JWT naming the keys a client may reach) and print it
    Token(token::TokenArgs),
}

/// The command line, parsed. Every command's `--version` names the program
/// (`watchbus 0.1.0`, not clap's `watchbus-serve 0.1.0`), and a negative
/// number given to a flag reaches its parser, which says what the flag
/// accepts, instead of being taken for an unknown flag.
fn parse_args() -> Cli {
    let command = Cli::command().mut_subcommands(|command| {
        command
            .display_name("watchbus")
            .allow_negative_numbers(true)
    });
    let matches = command.get_matches();
    Cli::from_arg_matches(&matches).unwrap_or_else(|err| err.exit())
}

/// How long `main` waits for leftover tasks once the command is done.
const RUNTIME_SHUTDOWN: Duration = Duration::from_millis(250);

fn main() -> ExitCode {
    // Usage errors exit 2, `--help` and `--version` exit 0 (clap's own).
    let cli = parse_args();
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|runtime| {
            let result = runtime.block_on(run(cli.command));
            runtime.shutdown_timeout(RUNTIME_SHUTDOWN);
            result
        });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {}", exit::message(&err));
            ExitCode::from(exit::code(&err))
        }
    }
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve(args) => {
            let settings = settings::resolve(*args, &settings::ProcessEnv)
                .map_err(|err| anyhow::Error::new(exit::UsageError(err)))?;
            serve::run(settings).await
        }
        Command::Publish(args) => publish::run(args).await,
        Command::Watch(args) => watch::run(args).await,
        Command::Bench(args) => bench::run(args).await,
        Command::Token(args) => token::run(&args),
    }
}
