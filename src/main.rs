//! The `sockchat` binary: parses the command line and hands over to the
//! library.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use sockchat::cli::{Cli, Command};
use sockchat::door::console::ConsoleDoor;
use sockchat::server::{shutdown_signal, ServeConfig, Server};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse_args();
    let default_level = match (&cli.command, cli.verbose) {
        (_, 2..) => "trace",
        (_, 1) => "debug",
        (Command::Serve(_), 0) => "info",
        (
            Command::Connect(_)
            | Command::Bench(_)
            | Command::Man(_)
            | Command::Completions(_)
            | Command::HashPassword,
            0,
        ) => "warn",
    };
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let ansi = std::io::stderr().is_terminal();
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    match &cli.command {
        Command::Serve(args) => match sockchat::server::config::node_name(args) {
            Some(node) => logs
                .event_format(NodeNamed {
                    node,
                    format: tracing_subscriber::fmt::format().with_ansi(ansi),
                })
                .init(),
            None => logs.init(),
        },
        _ => logs.init(),
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("sockchat: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(cli));
    // A read of the terminal (the console's stdin) may still be blocked on a
    // runtime thread; it must not keep the process alive. Everything that
    // matters (history included) is finished by the time `run` returns.
    runtime.shutdown_timeout(Duration::from_millis(100));
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("sockchat: {}", one_line(&error));
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve(args) if args.print_config => {
            print!("{}", ServeConfig::describe(*args)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve(args) => {
            let mut server = Server::bind(ServeConfig::from_args(*args)?).await?;
            let shutdown = shutdown_signal()?;
            if let Some(line) = server.cluster_line() {
                println!("{line}");
            }
            for listening in server.listening() {
                // Scripts and tests wait for these lines; print them before
                // anyone is accepted.
                println!("{listening}");
            }
            if std::io::stdin().is_terminal() {
                server.add_door(Box::new(ConsoleDoor));
            }
            server.run(shutdown).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Connect(args) => sockchat::client::run(args).await,
        Command::Man(args) => {
            std::io::stdout().write_all(&sockchat::cli::manual_page(args.command.as_deref())?)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Completions(args) => {
            std::io::stdout().write_all(&sockchat::cli::completions(args.shell))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::HashPassword => {
            if std::io::stdin().is_terminal() {
                eprint!("password (shown as you type; pipe it in to keep it off the screen): ");
            }
            let mut password = String::new();
            std::io::stdin().read_line(&mut password)?;
            let password = password.trim_end_matches(['\r', '\n']);
            anyhow::ensure!(!password.is_empty(), "no password on standard input");
            let hash =
                sockchat::hub::operators::hash_password(password).map_err(anyhow::Error::msg)?;
            println!("{hash}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench(args) => {
            let progress = !args.json && std::io::stderr().is_terminal();
            let report = sockchat::loadgen::run(&args.plan(), progress).await?;
            if let Some(path) = &args.plot {
                let title = format!(
                    "latency: {} clients, {} sending, over {}{}",
                    report.clients_connected,
                    report.senders,
                    format!("{:?}", report.wire).to_lowercase(),
                    if report.tls { " (TLS)" } else { "" }
                );
                sockchat::loadgen::plot::latency_svg(&report, &title, path)?;
            }
            if args.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{report}");
            }
            // A run that lost something says so in its exit code too.
            match report.what_was_lost() {
                Some(lost) => {
                    eprintln!("sockchat bench: {lost}");
                    Ok(ExitCode::from(sockchat::loadgen::EXIT_LOST))
                }
                None => Ok(ExitCode::SUCCESS),
            }
        }
    }
}

/// An error and its causes in one line, each cause once: libraries often
/// repeat their cause in their own message.
fn one_line(error: &anyhow::Error) -> String {
    let mut line = error.to_string();
    for cause in error.chain().skip(1) {
        let cause = cause.to_string();
        if !line.contains(&cause) {
            line.push_str(": ");
            line.push_str(&cause);
        }
    }
    line
}

/// Starts each log line of a cluster node with its name (`node=n1`), so
/// that several nodes' logs gathered in one place say which said what.
struct NodeNamed<F> {
    node: String,
    format: F,
}

impl<S, N, F> tracing_subscriber::fmt::FormatEvent<S, N> for NodeNamed<F>
where
    F: tracing_subscriber::fmt::FormatEvent<S, N>,
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        context: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        write!(writer, "node={} ", self.node)?;
        self.format.format_event(context, writer, event)
    }
}
