//! The `palaver` binary: a thin clap front over the library.

use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use clap::{Parser, Subcommand};
use secrecy::ExposeSecret;

use palaver::{Application, Config, server, telemetry};

#[derive(Parser)]
#[command(
    name = "palaver",
    version,
    about = "Self-hosted AI conversation backend"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the HTTP API (the default).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Run background job workers only (WORKER_CONCURRENCY of them), no HTTP.
    Worker,
    /// Print a development JWT (HS256, signed with JWT_SECRET or the embedded secret).
    Token {
        /// The user id (the token's `sub`).
        #[arg(long)]
        sub: String,
        /// Lifetime: 90s, 15m, 1h, 7d.
        #[arg(long, default_value = "1h")]
        ttl: String,
    },
    /// Call each configured provider once (model list) and report what works.
    Check,
    /// Print the OpenAPI document as JSON.
    Openapi,
}

/// Errors end the process with one line on stderr (`palaver: <VAR>: <message>` for a
/// configuration error), never a backtrace, whatever `RUST_BACKTRACE` says.
fn main() -> ExitCode {
    let started = Instant::now();
    let cli = Cli::parse();
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(err) => {
            eprintln!("palaver: {}: {}", err.var, err.message);
            return ExitCode::from(2);
        }
    };
    telemetry::init_tracing(config.log_format);
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|runtime| {
            runtime.block_on(run(cli.command.unwrap_or(Command::Serve), config, started))
        });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // `{:#}` puts the causes on the same line; `{:?}` would add the backtrace.
            eprintln!("palaver: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, mut config: Config, started: Instant) -> anyhow::Result<()> {
    match command {
        Command::Serve => {
            let app = Application::build(config).await?;
            tracing::info!(
                addr = %app.local_addr()?,
                backend = app.state().store.backend(),
                startup_ms = started.elapsed().as_millis() as u64,
                "palaver listening"
            );
            app.run_until(server::shutdown_signal()).await?;
            tracing::info!("palaver stopped");
        }
        Command::Migrate => {
            server::connect_store(&config).await?;
            tracing::info!("migrations applied");
        }
        Command::Worker => {
            if config.jobs.concurrency == 0 {
                anyhow::bail!("WORKER_CONCURRENCY is 0: `palaver worker` would run no job");
            }
            let state = server::build_state(config).await?;
            tracing::info!(
                concurrency = state.config.jobs.concurrency,
                queue = %state.config.jobs.queue,
                backend = state.jobs.backend(),
                startup_ms = started.elapsed().as_millis() as u64,
                "palaver worker running"
            );
            server::run_workers(state, server::shutdown_signal()).await?;
            tracing::info!("palaver worker stopped");
        }
        Command::Token { sub, ttl } => {
            let ttl = palaver::auth::parse_ttl(&ttl)
                .context("--ttl must look like 90s, 15m, 1h or 7d")?;
            server::resolve_jwt(&mut config)?;
            let secret = config
                .jwt
                .secret
                .as_ref()
                .context("`palaver token` signs with JWT_SECRET (HS256); it cannot mint tokens for a public-key setup")?;
            let token = palaver::auth::mint_hs256(
                secret.expose_secret().as_bytes(),
                &sub,
                ttl,
                config.jwt.issuer.as_deref(),
                config.jwt.audience.as_deref(),
            )?;
            println!("{token}");
        }
        Command::Check => {
            let providers = palaver::providers::Providers::from_config(&config)?;
            if providers.is_mock() {
                println!(
                    "no provider key is configured: Palaver answers from its built-in mock provider"
                );
            }
            let mut failed = 0;
            for provider in providers.all() {
                match provider.list_models().await {
                    Ok(models) => println!("ok    {:<18} {} models", provider.name(), models.len()),
                    Err(err) => {
                        failed += 1;
                        println!("FAIL  {:<18} {err}", provider.name());
                    }
                }
            }
            if failed > 0 {
                anyhow::bail!("{failed} provider(s) failed");
            }
        }
        Command::Openapi => {
            println!("{}", palaver::api::openapi().to_pretty_json()?);
        }
    }
    Ok(())
}
