//! The `sockchat` binary: parses the command line and hands over to the
//! library.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use sockchat::cli::{Cli, Command};
use sockchat::server::{shutdown_signal, Server};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_level = match (&cli.command, cli.verbose) {
        (_, 2..) => "trace",
        (_, 1) => "debug",
        (Command::Serve(_), 0) => "info",
        (Command::Connect(_) | Command::Bench(_), 0) => "warn",
    };
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match run(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("sockchat: {error:#}");
            ExitCode::FAILURE
        }
    }
}

#[tokio::main]
async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve(args) => {
            let server = Server::bind(args.resolve()?).await?;
            let shutdown = shutdown_signal()?;
            for listening in server.listening() {
                // Scripts and tests wait for these lines; print them before
                // anyone is accepted.
                println!("{listening}");
            }
            if std::io::stdin().is_terminal() {
                let hub = server.hub();
                tokio::spawn(async move {
                    let input = tokio::io::BufReader::new(tokio::io::stdin());
                    if let Err(error) =
                        sockchat::console::run(hub, input, tokio::io::stdout()).await
                    {
                        tracing::warn!(%error, "console stopped");
                    }
                });
            }
            server.run(shutdown).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Connect(args) => sockchat::client::run(args).await,
        Command::Bench(args) => {
            let progress = !args.json && std::io::stderr().is_terminal();
            let report = sockchat::bench::run(&args.plan(), progress).await?;
            if let Some(path) = &args.plot {
                let title = format!(
                    "latency: {} clients, {} sending, over {}",
                    report.clients_connected,
                    report.senders,
                    format!("{:?}", report.wire).to_lowercase()
                );
                sockchat::bench::plot::latency_svg(&report, &title, path)?;
            }
            if args.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{report}");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
