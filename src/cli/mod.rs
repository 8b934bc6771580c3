//! Command-line parsing and dispatch. Output format and exit codes are
//! chosen here, once.

mod check;
mod eval;
mod output;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

/// Exit codes shared by all commands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// Success.
    Ok = 0,
    /// The policy set has errors (or warnings under `--deny-warnings`).
    Invalid = 1,
    /// Bad usage, or a file could not be read.
    Usage = 2,
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> ExitCode {
        ExitCode::from(exit as u8)
    }
}

/// toolgate: policy compiler and decision engine for AI agents' tool calls.
#[derive(Debug, Parser)]
#[command(name = "toolgate", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check policy files and report every error and warning.
    Check(CheckArgs),
    /// Decide JSON Lines requests from stdin, one JSON response per line on stdout.
    Eval(EvalArgs),
}

/// How diagnostics are printed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
enum Format {
    /// For people, with source snippets (colour unless NO_COLOR is set or output is not a terminal).
    #[default]
    Human,
    /// A JSON array of diagnostics on stdout.
    Json,
}

#[derive(Debug, clap::Args)]
struct CheckArgs {
    /// Policy files or directories (all *.yaml/*.yml below, except *.test.yaml).
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
    /// Fail (exit 1) on warnings too.
    #[arg(long)]
    deny_warnings: bool,
}

#[derive(Debug, clap::Args)]
struct EvalArgs {
    /// Policy file or directory; may be given more than once.
    #[arg(long = "policy", required = true)]
    policies: Vec<PathBuf>,
    /// The longest request line accepted, in bytes.
    #[arg(long, default_value_t = eval::DEFAULT_MAX_LINE)]
    max_line_bytes: usize,
}

/// Parses the command line and runs the command.
pub fn run() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            return if error.use_stderr() { Exit::Usage.into() } else { Exit::Ok.into() };
        }
    };
    let exit = match cli.command {
        Command::Check(args) => check::run(&args.paths, args.format, args.deny_warnings),
        Command::Eval(args) => eval::run(&args.policies, args.max_line_bytes),
    };
    exit.into()
}
