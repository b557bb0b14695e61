//! `mock-llm`: the mock provider server as a process, for benchmarks and demos.

use std::process::ExitCode;
use std::time::Duration;

use clap::{ArgAction, Parser};
use mock_llm::{MockConfig, MockState, serve};
use tokio::net::TcpListener;

/// A real HTTP server speaking the OpenAI, Anthropic and Gemini wire formats.
#[derive(Debug, Parser)]
#[command(name = "mock-llm", version, about)]
struct Args {
    /// Port to listen on.
    #[arg(long, default_value_t = 8089)]
    port: u16,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Words per second when streaming (default: as fast as possible).
    #[arg(long)]
    tokens_per_sec: Option<f64>,
    /// Split stream events into writes at odd byte boundaries.
    #[arg(long, default_value_t = true, action = ArgAction::Set)]
    odd_splits: bool,
    /// Delay before the first byte of every response, in milliseconds.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let config = MockConfig {
        tokens_per_sec: args.tokens_per_sec.filter(|r| *r > 0.0),
        odd_splits: args.odd_splits,
        latency: Duration::from_millis(args.latency_ms),
    };
    let listener = match TcpListener::bind((args.host.as_str(), args.port)).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!(
                "mock-llm: cannot listen on {}:{}: {e}",
                args.host, args.port
            );
            return ExitCode::FAILURE;
        }
    };
    let port = listener.local_addr().map_or(args.port, |a| a.port());
    println!("mock-llm listening on http://{}:{port}", args.host);
    tokio::select! {
        served = serve(listener, MockState::new(config)) => {
            if let Err(e) = served {
                eprintln!("mock-llm: {e}");
                return ExitCode::FAILURE;
            }
        }
        _ = tokio::signal::ctrl_c() => {}
    }
    ExitCode::SUCCESS
}
