//! CLI entry: parse, dispatch, map errors to exit codes.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use shellcage::cli::{
    self, AuditCommand, Cli, Command, HomeCommand, HookAgent, PolicyCommand, ProfileCommand,
    RunOpts, SetupCommand,
};
use shellcage::overlay;
use shellcage::request::{self, Request};

/// Exit code when shellcage itself fails before running anything.
const EXIT_SETUP: u8 = 125;

fn main() -> ExitCode {
    // A layer a session holds is let go for `apply`, `discard` and cold runs on it.
    shellcage::overlay::on_release(shellcage::session::release_layer);
    let args: Vec<String> = std::env::args().collect();
    let invoked_as = args
        .first()
        .and_then(|a| std::path::Path::new(a).file_name())
        .map(|n| n.to_string_lossy().into_owned());
    let result = if invoked_as.as_deref() == Some("shellcage-sh") {
        init_tracing(0);
        shell(RunOpts::default(), &args[1..])
    } else if invoked_as.as_deref() == Some(shellcage::claude::PREFIX_LINK) {
        // CLAUDE_CODE_SHELL_PREFIX: Claude Code runs `PREFIX 'LINE'`.
        init_tracing(0);
        match &args[1..] {
            [line] => prefix(RunOpts::default(), line.clone()),
            other => Err(anyhow::anyhow!(
                "{}: expected one argument, the command line (got {})",
                shellcage::claude::PREFIX_LINK,
                other.len()
            )),
        }
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
            shellcage::say!("shellcage: {err:#}");
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
        Command::Run { opts, command } => {
            let cwd = request::current_dir()?;
            let req = Request::new(&opts, &cwd)?.command(command, false)?;
            Ok(shellcage::session::run(req)?)
        }
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
            opts,
        } => Ok(hook_claude_code(&opts)),
        Command::Explain {
            opts,
            json,
            targets,
        } => explain_cmd(&opts, json, &targets),
        Command::Install {
            agent: HookAgent::ClaudeCode,
            opts,
        } => install_cmd(&opts),
        Command::Prefix { opts, cmdline } => prefix(opts, cmdline),
        Command::Audit { command } => audit_cmd(command),
        Command::Home { command } => home_cmd(command),
        Command::Session { command } => shellcage::session::cli(&command),
        Command::Policy {
            command: PolicyCommand::Show { opts },
        } => policy_show(&opts),
        Command::Setup {
            command: SetupCommand::Apparmor { print },
        } => setup_apparmor(print),
        Command::Changes {
            layer,
            list,
            diff,
            json,
        } => {
            let t = layer_target(&layer)?;
            let mut out = std::io::stdout().lock();
            Ok(overlay::cmd::changes_cmd(&t, list, diff, json, &mut out)?)
        }
        Command::Apply {
            layer,
            dry_run,
            force,
            branch,
            audit,
            profile,
            paths,
        } => {
            let t = layer_target(&layer)?;
            // The profile's protected paths are never written by apply: `-p`,
            // else the profile the layer began with, else the default.
            let profile = profile.or_else(|| {
                overlay::Layer::open(&t.store, &t.workspace, &t.layer)
                    .ok()
                    .and_then(|l| l.meta.profile)
                    .map(|p| p.name)
            });
            let protected = Request::new(
                &RunOpts {
                    profile,
                    workspace: Some(t.workspace.clone()),
                    ..RunOpts::default()
                },
                &t.workspace,
            )?
            .policy
            .protect;
            let mut err = std::io::stderr().lock();
            if let Some(name) = branch {
                return Ok(overlay::cmd::branch_cmd(
                    &t,
                    &name,
                    &protected,
                    audit.as_deref(),
                    &mut err,
                )?);
            }
            let cwd = std::env::current_dir()?;
            let cwd = std::fs::canonicalize(&cwd).unwrap_or(cwd);
            let opts = overlay::ApplyOptions {
                dry_run,
                force,
                select: overlay::cmd::selection(&paths, &cwd, &t.workspace)?,
                protected,
                git_config: None,
            };
            let mut out = std::io::stdout().lock();
            Ok(overlay::cmd::apply_cmd(&t, &opts, &mut out, &mut err)?)
        }
        Command::Discard { layer } => {
            let t = layer_target(&layer)?;
            Ok(overlay::cmd::discard_cmd(
                &t,
                &mut std::io::stderr().lock(),
            )?)
        }
    }
}

/// `shellcage setup apparmor [--print]`.
fn setup_apparmor(print: bool) -> anyhow::Result<i32> {
    use shellcage::apparmor;
    let exe = apparmor::current_exe()?;
    if print {
        let _ = write!(
            std::io::stdout().lock(),
            "{}",
            apparmor::render_profile(&exe)?
        );
        return Ok(0);
    }
    let done = apparmor::install(&exe, &apparmor::Installer::system())?;
    let _ = writeln!(
        std::io::stdout(),
        "{} {} and loaded it ({} -r): {} may now create user namespaces; check with 'shellcage doctor'",
        if done.replaced { "replaced" } else { "wrote" },
        done.path.display(),
        done.parser.display(),
        exe.display()
    );
    Ok(0)
}

/// The layer named by `--workspace`/`--layer`.
fn layer_target(opts: &cli::LayerOpts) -> anyhow::Result<overlay::cmd::Target> {
    let cwd = std::env::current_dir()?;
    Ok(overlay::cmd::Target {
        store: overlay::Store::from_env(&request::home_dir()?),
        workspace: request::resolve_workspace(opts.workspace.as_deref(), &cwd)?,
        layer: opts.layer.clone(),
    })
}

/// Exit code that makes Claude Code block the tool call and show stderr.
const EXIT_HOOK_BLOCK: i32 = 2;

/// `shellcage hook claude-code`: fail closed on anything unexpected.
fn hook_claude_code(opts: &RunOpts) -> i32 {
    use shellcage::claude::hook::{self, Answer};
    use std::io::Read;
    let mut input = Vec::new();
    if let Err(e) = std::io::stdin().take(64 << 20).read_to_end(&mut input) {
        shellcage::say!(
            "shellcage hook: cannot read the event on stdin: {e}; blocking the tool call"
        );
        return EXIT_HOOK_BLOCK;
    }
    match hook::handle(&input, opts) {
        Answer::Pass => 0,
        Answer::Json(answer) => {
            // Unanswered, the call would run unsandboxed: a failed write blocks it.
            let mut out = std::io::stdout().lock();
            match writeln!(out, "{answer}").and_then(|()| out.flush()) {
                Ok(()) => 0,
                Err(e) => {
                    shellcage::say!(
                        "shellcage hook: cannot write the answer on stdout: {e}; blocking the tool call"
                    );
                    EXIT_HOOK_BLOCK
                }
            }
        }
        Answer::Block(reason) => {
            shellcage::say!("shellcage hook: {reason}");
            EXIT_HOOK_BLOCK
        }
    }
}

/// `shellcage explain TARGET…`.
fn explain_cmd(opts: &RunOpts, json: bool, targets: &[String]) -> anyhow::Result<i32> {
    let cwd = std::env::current_dir()?;
    let text =
        shellcage::explain::cli::run(opts, &cwd, json, targets).map_err(anyhow::Error::msg)?;
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
    Ok(0)
}

/// `shellcage install claude-code`.
fn install_cmd(opts: &shellcage::cli::InstallOpts) -> anyhow::Result<i32> {
    let (lines, ok) = shellcage::claude::install::run(opts).map_err(anyhow::Error::msg)?;
    let mut out = std::io::stdout().lock();
    for l in lines {
        let _ = writeln!(out, "{l}");
    }
    Ok(if ok { 0 } else { 1 })
}

/// `shellcage --prefix LINE`: Claude Code's CLAUDE_CODE_SHELL_PREFIX.
fn prefix(mut opts: RunOpts, cmdline: String) -> anyhow::Result<i32> {
    use shellcage::claude;
    // Our own hook, started by Claude Code through the prefix: it only reads
    // the event and answers, and it must see the host to judge paths.
    if let Some(hook_opts) = claude::own_hook_line(&cmdline) {
        return Ok(hook_claude_code(&hook_opts));
    }
    claude::check_agent_env(&std::env::current_dir()?).map_err(anyhow::Error::msg)?;
    let home = request::home_dir()?;
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
    // Claude Code sets these for its commands (git must not open an editor)
    // and its hooks (the project root).
    for name in ["GIT_EDITOR", "CLAUDECODE", "CLAUDE_PROJECT_DIR"] {
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

/// `shellcage home list|reset`.
fn home_cmd(command: HomeCommand) -> anyhow::Result<i32> {
    use shellcage::sandbox::home;
    let root = home::store_root(&request::home_dir()?);
    let workspace = |arg: Option<std::path::PathBuf>| -> anyhow::Result<std::path::PathBuf> {
        let cwd = request::current_dir()?;
        Ok(match arg {
            // A deleted project's homes can still be reset by its path.
            Some(p) => std::fs::canonicalize(&p).unwrap_or_else(|_| cwd.join(p)),
            None => request::resolve_workspace(None, &cwd)?,
        })
    };
    let mut out = std::io::stdout().lock();
    match command {
        HomeCommand::List { workspace: ws, all } => {
            let ws = if all { None } else { Some(workspace(ws)?) };
            for h in home::list(&root, ws.as_deref())? {
                let (profile, net, wsp) = match &h.meta {
                    Some(m) => (
                        m.profile.clone(),
                        format!("{:?}", m.network).to_lowercase(),
                        m.workspace.display().to_string(),
                    ),
                    None => ("?".into(), "?".into(), "?".into()),
                };
                let _ = writeln!(
                    out,
                    "{}\t{profile}\tnet={net}\t{:.1} MiB\t{}",
                    wsp,
                    h.bytes as f64 / (1u64 << 20) as f64,
                    h.dir.display()
                );
            }
            Ok(0)
        }
        HomeCommand::Reset {
            workspace: ws,
            profile,
        } => {
            let ws = workspace(ws)?;
            let homes: Vec<_> = home::list(&root, Some(&ws))?
                .into_iter()
                .filter(|h| {
                    profile.is_none() || h.meta.as_ref().map(|m| &m.profile) == profile.as_ref()
                })
                .collect();
            // A session of the workspace keeps its home for its life: it ends first, once
            // its running commands have (a command still running keeps the home, and the
            // reset is refused).
            for s in shellcage::session::list() {
                if s.workspace == ws {
                    if let Err(e) = shellcage::session::drain(&s, std::time::Duration::from_secs(5))
                    {
                        tracing::debug!(%e, "home reset: session not ended");
                    }
                }
            }
            home::reset(&homes)?;
            let _ = writeln!(
                out,
                "removed {} kept sandbox home{} of {}",
                homes.len(),
                if homes.len() == 1 { "" } else { "s" },
                ws.display()
            );
            Ok(0)
        }
    }
}

/// `shellcage policy show`: the managed floor, and what it does to a run.
fn policy_show(opts: &RunOpts) -> anyhow::Result<i32> {
    use shellcage::profile::managed;
    let floor = managed::load()?;
    let cwd = request::current_dir()?;
    let mut out = std::io::stdout().lock();
    match Request::new(opts, &cwd) {
        Ok(req) => {
            let (f, applied) = match &req.floor {
                Some((f, a)) => (Some(f), Some(a)),
                None => (None, None),
            };
            let _ = out.write_all(managed::render(f, applied).as_bytes());
            let p = &req.policy;
            let _ = writeln!(
                out,
                "a run with these options: profile {} ({}), tier {}, network {}, workspace {} ({}), timeout {}, audit {}",
                p.profile,
                p.source,
                p.tier.name(),
                managed::net_name(p.network),
                p.workspace.display(),
                managed::workspace_mode(p),
                p.limits
                    .timeout
                    .map_or("none".to_string(), |t| format!("{}s", t.as_secs())),
                p.audit
                    .as_ref()
                    .map_or("none".to_string(), |a| a.display().to_string()),
            );
            Ok(0)
        }
        Err(e) => {
            let _ = out.write_all(managed::render(floor.as_ref(), None).as_bytes());
            let _ = writeln!(out, "a run with these options is REFUSED (exit 125): {e}");
            Ok(1)
        }
    }
}

fn audit_cmd(command: AuditCommand) -> anyhow::Result<i32> {
    use shellcage::audit::{self, Verdict};
    match command {
        AuditCommand::Verify { file } => match audit::verify(&file)? {
            Verdict::Good { lines, head } => {
                let _ = writeln!(
                    std::io::stdout(),
                    "{}: {lines} good lines; head sha256 {head}",
                    file.display()
                );
                Ok(0)
            }
            Verdict::Broken { line, reason } => {
                let _ = writeln!(
                    std::io::stdout(),
                    "{}: line {line}: {reason}",
                    file.display()
                );
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
    let req = Request::new(&opts, &cwd)?;
    let shell = req
        .policy
        .shell_path()
        .ok_or_else(|| {
            anyhow::anyhow!(
                "sh: none of the profile's shells exists ({:?})",
                req.policy.shell
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
    Ok(shellcage::session::run(req.command(argv, interactive)?)?)
}

fn profile_cmd(command: ProfileCommand) -> anyhow::Result<i32> {
    let mut out = std::io::stdout().lock();
    match command {
        ProfileCommand::List => {
            let home = request::home_dir()?;
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
            let opts = RunOpts {
                profile: Some(name),
                ..RunOpts::default()
            };
            let policy = Request::new(&opts, &cwd)?.policy;
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
            let opts = RunOpts {
                profile: Some(file.display().to_string()),
                ..RunOpts::default()
            };
            let policy = Request::new(&opts, &cwd)?.policy;
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
