//! CLI entry: parse, dispatch, map errors to exit codes.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use shellcage::cli::{self, Cli, Command, ProfileCommand, RunOpts};
use shellcage::launch::{self, Request};

/// Exit code when shellcage itself fails before running anything.
const EXIT_SETUP: u8 = 125;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let invoked_as = args
        .first()
        .and_then(|a| std::path::Path::new(a).file_name())
        .map(|n| n.to_string_lossy().into_owned());
    let result = if invoked_as.as_deref() == Some("shellcage-sh") {
        init_tracing(0);
        shell(RunOpts::default(), &args[1..])
    } else {
        let cli = match Cli::try_parse_from(&args) {
            Ok(c) => c,
            Err(e) => {
                let code = if e.use_stderr() { EXIT_SETUP } else { 0 };
                let _ = e.print();
                return ExitCode::from(code);
            }
        };
        init_tracing(cli.verbose);
        dispatch(cli.command)
    };
    match result {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        Err(err) => {
            shellcage::launch::say(format_args!("shellcage: {err:#}"));
            ExitCode::from(EXIT_SETUP)
        }
    }
}

fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "shellcage=debug",
        _ => "shellcage=trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .without_time()
        .try_init();
}

fn dispatch(command: Command) -> anyhow::Result<i32> {
    match command {
        Command::Run { opts, command } => Ok(launch::run(Request {
            opts,
            argv: command,
            interactive: false,
        })?),
        Command::Sh { opts, args } => shell(opts, &args),
        Command::Doctor { json, profile } => shellcage::doctor::run(json, &profile),
        Command::Profile { command } => profile_cmd(command),
    }
}

/// `shellcage sh …` and `shellcage-sh …`: run a command line with the profile's shell.
fn shell(opts: RunOpts, args: &[String]) -> anyhow::Result<i32> {
    let parsed = cli::parse_shell_args(args).map_err(|e| anyhow::anyhow!("sh: {e}"))?;
    let cwd = std::env::current_dir()?;
    let policy = launch::build_policy(&opts, &cwd)?;
    let shell = policy
        .shell_path()
        .ok_or_else(|| {
            anyhow::anyhow!(
                "sh: none of the profile's shells exists ({:?})",
                policy.shell
            )
        })?
        .display()
        .to_string();
    let mut argv = vec![shell];
    if parsed.login {
        argv.push("-l".into());
    }
    argv.extend(parsed.flags.iter().cloned());
    let interactive = match &parsed.command {
        Some(cmd) => {
            argv.push("-c".into());
            argv.push(cmd.clone());
            argv.extend(parsed.rest.iter().cloned());
            false
        }
        None => {
            let tty = shellcage::sys::is_tty(0) && shellcage::sys::is_tty(2);
            if tty {
                argv.push("-i".into());
            }
            tty
        }
    };
    Ok(launch::run(Request {
        opts,
        argv,
        interactive,
    })?)
}

fn profile_cmd(command: ProfileCommand) -> anyhow::Result<i32> {
    let mut out = std::io::stdout().lock();
    match command {
        ProfileCommand::List => {
            for name in shellcage::profile::builtin_names() {
                let _ = writeln!(out, "{name}\tbuiltin");
            }
        }
        ProfileCommand::Show { name } => {
            let cwd = std::env::current_dir()?;
            let policy = launch::build_policy(
                &RunOpts {
                    profile: Some(name),
                    ..RunOpts::default()
                },
                &cwd,
            )?;
            let _ = writeln!(out, "{}", serde_json::to_string_pretty(&policy)?);
        }
        ProfileCommand::Check { file } => {
            let cwd = std::env::current_dir()?;
            let policy = launch::build_policy(
                &RunOpts {
                    profile: Some(file.display().to_string()),
                    ..RunOpts::default()
                },
                &cwd,
            )?;
            let _ = writeln!(
                out,
                "{}: ok (profile '{}', {} paths, {} hidden)",
                file.display(),
                policy.profile,
                policy.paths.len(),
                policy.hide.len()
            );
        }
    }
    Ok(0)
}
