//! Temporary: runs `watchbus bench` while main.rs does not have the subcommand yet.

#[path = "../src/bench/mod.rs"]
mod bench;

use clap::Parser;

#[derive(Debug, Parser)]
struct Cli {
    #[command(flatten)]
    args: bench::BenchArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    bench::run(Cli::parse().args).await
}
