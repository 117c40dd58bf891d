//! The `kvkeep` binary: parses arguments, sets up logging, runs the command and maps the outcome
//! to an exit code (0 ok, 1 failed, 2 usage or configuration error, 3 partially failed).

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = match kvkeep::cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            // clap prints help/version to stdout with success, usage errors to stderr.
            let _ = err.print();
            return if err.use_stderr() {
                ExitCode::from(kvkeep::cli::EXIT_USAGE)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    kvkeep::cli::init_logging(cli.verbose, cli.log_format);
    let code = kvkeep::cli::run(cli);
    ExitCode::from(code)
}
