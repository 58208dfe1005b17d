//! `hoard`: a self-hosted server for the GitHub Actions cache protocol.

mod cache;
mod config;
mod gc;
mod healthcheck;
mod redact;
mod runner;
mod serve;
mod verify;

use anyhow::Result;
use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "hoard",
    version,
    about = "Self-hosted GitHub Actions cache server"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the cache server.
    Serve(ServeArgs),
    /// Apply the eviction policy once; with --dry-run, print what would go.
    Gc {
        /// Print what would be removed, remove nothing
        #[arg(long)]
        dry_run: bool,
        /// Only this namespace
        #[arg(long)]
        namespace: Option<String>,
        /// Evaluate as of this RFC 3339 time instead of now
        #[arg(long)]
        at: Option<String>,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Re-read every stored entry and drop those whose bytes are missing or
    /// corrupt; with --dry-run, only report them. Exits 1 if any was found.
    Verify {
        /// Report bad entries, drop nothing
        #[arg(long)]
        dry_run: bool,
        /// Only this namespace
        #[arg(long)]
        namespace: Option<String>,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Validate the configuration and print it, secrets masked.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Tenant tokens for the tenant-token auth mode.
    Auth {
        #[command(subcommand)]
        action: AuthAction,
    },
    /// Send a runner's jobs through hoard and prove it (docs/runner-setup.md).
    Runner {
        #[command(subcommand)]
        action: RunnerAction,
    },
    /// List, delete and measure a server's caches through its management API
    /// (docs/management-api.md).
    Cache(cache::CacheArgs),
    /// Exit 0 when the server at --url (default: the configured listen address)
    /// answers its health check; for container health checks.
    Healthcheck {
        #[arg(long)]
        url: Option<String>,
        /// TOML configuration file
        #[arg(long, env = "HOARD_CONFIG")]
        config: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum ConfigAction {
    /// Load defaults, file and environment, validate, and print the result.
    Check {
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Subcommand)]
enum RunnerAction {
    /// Let the runner's environment (.env) set ACTIONS_RESULTS_URL and
    /// ACTIONS_CACHE_URL for its steps. Keeps a backup; running it again
    /// changes nothing.
    Patch {
        /// The runner's directory (with config.sh, run.sh and bin/)
        runner_dir: PathBuf,
        /// Only report: exit 0 patched, 1 not patched, 2 unknown layout
        #[arg(long, conflicts_with = "revert")]
        check: bool,
        /// Undo the patch
        #[arg(long)]
        revert: bool,
    },
    /// Print the runner .env lines that point its jobs at hoard.
    Env {
        /// hoard's URL as runners reach it [default: the configured public_url]
        #[arg(long)]
        url: Option<String>,
        /// TOML configuration file
        #[arg(long, env = "HOARD_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Run as a job step: report where this job's cache goes and what hoard
    /// makes of its token. Exit 0 when it goes through hoard.
    Check {
        /// Ask this URL instead of the one the cache client would use
        #[arg(long)]
        url: Option<String>,
    },
}

#[derive(Subcommand)]
enum AuthAction {
    /// Print a new random tenant token and the hash to configure for it.
    NewToken,
    /// Read a token from standard input and print the hash to configure for it.
    HashToken,
}

#[derive(clap::Args)]
pub struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:8080]
    #[arg(long, env = "HOARD_LISTEN")]
    listen: Option<String>,
    /// Base URL clients reach hoard at, used in signed URLs [default: from each request]
    #[arg(long, env = "HOARD_PUBLIC_URL")]
    public_url: Option<String>,
    #[command(flatten)]
    store: StoreArgs,
}

/// Where the store is: the same flags for the server and every command that
/// opens its store.
#[derive(clap::Args)]
pub struct StoreArgs {
    /// Directory for the default SQLite database and blobs [default: ./hoard-data]
    #[arg(long, env = "HOARD_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Metadata database: sqlite://path or postgres://... [default: SQLite in the data dir]
    #[arg(long, env = "HOARD_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// Blob storage: file:///path, s3://bucket/prefix, gs://..., az://... [default: the data dir]
    #[arg(long, env = "HOARD_STORAGE_URL")]
    storage_url: Option<String>,
    /// TOML configuration file
    #[arg(long, env = "HOARD_CONFIG")]
    config: Option<PathBuf>,
}

impl StoreArgs {
    /// The configuration (defaults, file, environment) with these flags over it.
    fn load(self) -> Result<config::Config> {
        let mut config = config::Config::load(self.config.as_deref())?;
        if let Some(v) = self.data_dir {
            config.data_dir = v;
        }
        if let Some(v) = self.database_url {
            config.database.url = v;
        }
        if let Some(v) = self.storage_url {
            config.storage.url = v;
        }
        config.validate()?;
        Ok(config)
    }
}

/// Keeps glibc's heap from growing with the number of I/O threads: arenas are
/// capped at two, and the mmap threshold is fixed above the 1 MiB I/O chunks so
/// they are reused from the heap rather than mapped, faulted in and zeroed by the
/// kernel for every chunk. Peak memory then follows the bytes in flight.
fn bound_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; it is called before any
    // other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 4 * 1024 * 1024);
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// Logs to standard output, as text or one JSON object per line. The server's
/// lines are written by a thread of their own (`queued`), so a request never
/// waits for the log's reader (a container runtime, a pipe); the guard flushes
/// what is queued when the server ends. Commands write directly: their exit
/// codes end the process at once and their lines interleave with their output.
fn init_logging(format: &str, queued: bool) -> Option<tracing_appender::non_blocking::WorkerGuard> {
    let (writer, guard) = if queued {
        let (w, g) = tracing_appender::non_blocking::NonBlockingBuilder::default()
            // Block rather than drop lines when the reader falls far behind.
            .lossy(false)
            .finish(std::io::stdout());
        (
            tracing_subscriber::fmt::writer::BoxMakeWriter::new(w),
            Some(g),
        )
    } else {
        (
            tracing_subscriber::fmt::writer::BoxMakeWriter::new(std::io::stdout),
            None,
        )
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("HOARD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(writer);
    if format == "json" {
        builder.json().with_current_span(true).init();
    } else {
        builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
            .init();
    }
    guard
}

/// A user's error is a message, not a crash: printed with its causes and no
/// backtrace, whatever RUST_BACKTRACE says; exit status 1.
fn main() -> std::process::ExitCode {
    bound_allocator();
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

fn run(command: Command) -> Result<()> {
    if let Command::Serve(args) = command {
        return run_server(args);
    }
    let _logging = init_logging("text", false);
    match command {
        Command::Serve(_) => unreachable!("handled above"),
        Command::Config {
            action: ConfigAction::Check { store },
        } => {
            let config = store.load()?;
            print!("{}", toml::to_string(&config.masked())?);
            Ok(())
        }
        Command::Auth { action } => {
            use hoard_server::auth::tenant::{new_token, TokenHash};
            let token = match action {
                AuthAction::NewToken => new_token(),
                AuthAction::HashToken => {
                    let mut line = String::new();
                    std::io::stdin().read_line(&mut line)?;
                    let token = line.trim().to_string();
                    anyhow::ensure!(!token.is_empty(), "no token on standard input");
                    token
                }
            };
            if matches!(action, AuthAction::NewToken) {
                println!("token = {token}");
            }
            println!("token_hash = \"{}\"", TokenHash::new(&token));
            Ok(())
        }
        Command::Gc {
            dry_run,
            namespace,
            at,
            store,
        } => {
            let config = store.load()?;
            let options = gc::Options {
                dry_run,
                namespace,
                at,
            };
            runtime()?.block_on(gc::run(config, options))
        }
        Command::Verify {
            dry_run,
            namespace,
            store,
        } => {
            let config = store.load()?;
            let whole =
                runtime()?.block_on(verify::run(config, verify::Options { dry_run, namespace }))?;
            if !whole {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Cache(args) => runtime()?.block_on(cache::run(args)),
        Command::Runner { action } => run_runner(action),
        Command::Healthcheck { url, config } => {
            let config = config::Config::load(config.as_deref())?;
            healthcheck::run(url.as_deref(), &config.listen)
        }
    }
}

fn run_server(args: ServeArgs) -> Result<()> {
    let listen = args.listen;
    let public_url = args.public_url;
    let mut config = args.store.load()?;
    if let Some(v) = listen {
        config.listen = v;
    }
    if let Some(v) = public_url {
        config.public_url = v;
    }
    config.validate()?;
    let _logging = init_logging(&config.log.format, true);
    // Blocking threads only do bounded disk work (no thread waits on a
    // client), so a few dozen keep the disk busy; more would only cost memory.
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(32)
        .build()?
        .block_on(serve::run(config))
}

fn run_runner(action: RunnerAction) -> Result<()> {
    match action {
        RunnerAction::Patch {
            runner_dir,
            check: true,
            ..
        } => {
            let (line, code) = match runner::patch::check(&runner_dir) {
                runner::patch::State::Patched => ("patched".to_string(), 0),
                runner::patch::State::Unpatched => ("not patched".to_string(), 1),
                runner::patch::State::Unknown(why) => (format!("unknown runner layout: {why}"), 2),
            };
            println!("{line}");
            std::process::exit(code);
        }
        RunnerAction::Patch {
            runner_dir, revert, ..
        } => {
            let done = if revert {
                runner::patch::revert(&runner_dir)
            } else {
                runner::patch::patch(&runner_dir)
            };
            match done {
                Ok(what) => {
                    println!("{what}");
                    Ok(())
                }
                Err(e) => {
                    eprintln!("error: {e:#}");
                    std::process::exit(2);
                }
            }
        }
        RunnerAction::Env { url, config } => {
            let config = config::Config::load(config.as_deref())?;
            let url = url
                .or_else(|| (!config.public_url.is_empty()).then(|| config.public_url.clone()))
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "say --url http://<hoard as runners reach it>:8080 (or set public_url)"
                    )
                })?;
            print!("{}", runner::env_lines(&url)?);
            Ok(())
        }
        RunnerAction::Check { url } => {
            let env = runner::check::JobEnv::from_process();
            let ok = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
                .block_on(runner::check::run(&env, url.as_deref()))?;
            if !ok {
                std::process::exit(1);
            }
            Ok(())
        }
    }
}
