//! CLI entry: parse, dispatch, map errors to exit codes.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use shellcage::cli::{self, AuditCommand, Cli, Command, HookAgent, ProfileCommand, RunOpts};
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
        Command::Doctor {
            json,
            profile,
            tier,
        } => shellcage::doctor::run(json, &profile, tier),
        Command::Entrypoint {
            profile,
            workspace,
            tier,
            command,
        } => shellcage::entrypoint::run(profile, workspace, tier, &command),
        Command::Profile { command } => profile_cmd(command),
        Command::Hook {
            agent: HookAgent::ClaudeCode,
        } => Ok(hook_claude_code()),
        Command::Prefix { opts, cmdline } => prefix(opts, cmdline),
        Command::Audit { command } => audit_cmd(command),
    }
}

/// Exit code that makes Claude Code block the tool call and show stderr.
const EXIT_HOOK_BLOCK: i32 = 2;

/// `shellcage hook claude-code`: fail closed on anything unexpected.
fn hook_claude_code() -> i32 {
    use std::io::Read;
    let mut input = Vec::new();
    if let Err(e) = std::io::stdin().take(64 << 20).read_to_end(&mut input) {
        eprintln!("shellcage hook: cannot read the event on stdin: {e}; blocking the tool call");
        return EXIT_HOOK_BLOCK;
    }
    let exe = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => {
            eprintln!(
                "shellcage hook: cannot find the shellcage binary: {e}; blocking the tool call"
            );
            return EXIT_HOOK_BLOCK;
        }
    };
    // Claude Code gives hooks the project root: the sandbox's workspace.
    let workspace = std::env::var_os("CLAUDE_PROJECT_DIR")
        .map(std::path::PathBuf::from)
        .filter(|p| p.is_absolute());
    match shellcage::claude::hook_answer(&input, &exe, workspace.as_deref()) {
        Ok(None) => 0,
        Ok(Some(answer)) => {
            println!("{answer}");
            0
        }
        Err(reason) => {
            eprintln!("shellcage hook: {reason}");
            EXIT_HOOK_BLOCK
        }
    }
}

/// `shellcage --prefix LINE`: Claude Code's CLAUDE_CODE_SHELL_PREFIX.
fn prefix(mut opts: RunOpts, cmdline: String) -> anyhow::Result<i32> {
    use shellcage::claude;
    let home = launch::home_dir()?;
    let snapshots = claude::snapshot_dir(&home);
    if snapshots.is_dir() {
        // Only the snapshots: the rest of ~/.claude (credentials) stays hidden.
        opts.read.push(snapshots);
    }
    let cwd_file = match claude::cwd_file_of(&cmdline) {
        Some(requested) => Some(
            claude::CwdFile::prepare(&requested, &claude::claude_tmpdir())
                .map_err(anyhow::Error::msg)?,
        ),
        None => None,
    };
    if let Some(f) = &cwd_file {
        opts.write.push(f.path.clone());
    }
    // Claude Code sets these for its commands; git must not open an editor.
    for name in ["GIT_EDITOR", "CLAUDECODE"] {
        if std::env::var_os(name).is_some() {
            opts.env.push(name.into());
        }
    }
    let result = shell(opts, &["-c".into(), cmdline]);
    if let Some(f) = cwd_file {
        f.finish();
    }
    result
}

fn audit_cmd(command: AuditCommand) -> anyhow::Result<i32> {
    use shellcage::audit::{self, Verdict};
    match command {
        AuditCommand::Verify { file } => match audit::verify(&file)? {
            Verdict::Good { lines, head } => {
                println!("{}: {lines} good lines; head sha256 {head}", file.display());
                Ok(0)
            }
            Verdict::Broken { line, reason } => {
                println!("{}: line {line}: {reason}", file.display());
                Ok(1)
            }
        },
        AuditCommand::Tail { n, file } => {
            let mut out = std::io::stdout().lock();
            for r in audit::tail(&file, n)? {
                if writeln!(out, "{}", audit::describe(&r)).is_err() {
                    break;
                }
            }
            Ok(0)
        }
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
            let home = launch::home_dir()?;
            let ctx = shellcage::profile::LoadContext {
                user_dir: Some(home.join(".config/shellcage/profiles")),
                workspace: std::env::current_dir()?,
                home,
            };
            for info in shellcage::profile::list(&ctx) {
                let what = match (&info.problem, &info.description) {
                    (Some(problem), _) => format!("BROKEN: {problem}"),
                    (None, Some(d)) => d.clone(),
                    (None, None) => String::new(),
                };
                let _ = writeln!(out, "{:<12} {:<40} {what}", info.name, info.source);
            }
        }
        ProfileCommand::Show { name, json } => {
            let cwd = std::env::current_dir()?;
            let policy = launch::build_policy(
                &RunOpts {
                    profile: Some(name),
                    ..RunOpts::default()
                },
                &cwd,
            )?;
            if json {
                let _ = writeln!(out, "{}", serde_json::to_string_pretty(&policy)?);
                return Ok(0);
            }
            // The profile's own text (built-in or file), then what it resolves to here.
            let text = match shellcage::profile::builtin_text(&policy.profile) {
                Some(t) if policy.source.starts_with("builtin:") => t.to_string(),
                _ => std::fs::read_to_string(&policy.source).unwrap_or_default(),
            };
            let _ = writeln!(
                out,
                "# {} ({})\n{}",
                policy.profile,
                policy.source,
                text.trim_end()
            );
            let _ = writeln!(
                out,
                "\n# resolved for workspace {}:",
                policy.workspace.display()
            );
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
