//! Command-line definitions (clap) and the POSIX-shell argument parser used by
//! `shellcage sh` and the `shellcage-sh` symlink.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::policy::{NetMode, TierChoice};

#[derive(Debug, Parser)]
#[command(
    name = "shellcage",
    version,
    about = "Run a command inside a Linux kernel sandbox",
    propagate_version = true
)]
pub struct Cli {
    /// More diagnostics on stderr (-v: debug, -vv: trace); RUST_LOG also works.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run one command in the sandbox.
    Run {
        #[command(flatten)]
        opts: RunOpts,
        /// The command and its arguments (after `--`).
        // No allow_hyphen_values: it would take a mistyped option of ours
        // (`--worksapce`) as the command; after `--` anything is accepted.
        #[arg(required = true, trailing_var_arg = true, value_name = "CMD")]
        command: Vec<String>,
    },
    /// Run a shell command line in the sandbox (`sh -c STRING`), or an
    /// interactive shell when no command is given on a terminal.
    Sh {
        #[command(flatten)]
        opts: RunOpts,
        /// Shell arguments: [-e] [-x] [-l] [-o OPT] -c STRING [ARG0 [ARG...]]
        #[arg(
            trailing_var_arg = true,
            allow_hyphen_values = true,
            value_name = "SHELL ARGS"
        )]
        args: Vec<String>,
    },
    /// What this kernel supports, which guarantees hold here, and how to fix what is missing.
    /// Exit 0 when a run with the profile would work here, 1 when it would be refused.
    Doctor {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
        /// Profile to evaluate.
        #[arg(long, default_value = "dev")]
        profile: String,
        /// Tier to evaluate (default: $SHELLCAGE_TIER, else the profile's).
        #[arg(long, value_enum, value_name = "TIER")]
        tier: Option<TierChoice>,
    },
    /// Devcontainer entrypoint: check the tier once, print what is enforced, then exec
    /// CMD (the agent) outside the sandbox with SHELL=shellcage-sh, so that the agent's
    /// shell commands run in the sandbox.
    Entrypoint {
        /// Profile for the agent's commands (exported as SHELLCAGE_PROFILE).
        #[arg(long, short = 'p', value_name = "NAME|FILE")]
        profile: Option<String>,
        /// Workspace (exported as SHELLCAGE_WORKSPACE; default as for `run`).
        #[arg(long, short = 'w', value_name = "DIR")]
        workspace: Option<std::path::PathBuf>,
        /// Tier (default: auto; the tier found is exported as SHELLCAGE_TIER).
        #[arg(long, value_enum, value_name = "TIER", default_value = "auto")]
        tier: TierChoice,
        /// The command to run, typically the agent.
        #[arg(
            required = true,
            trailing_var_arg = true,
            allow_hyphen_values = true,
            value_name = "CMD"
        )]
        command: Vec<String>,
    },
    /// Inspect profiles.
    Profile {
        #[command(subcommand)]
        command: ProfileCommand,
    },
    /// Answer an agent's tool hook (JSON on stdin): shell commands are
    /// rewritten to run through `shellcage sh -c`, file tools and web fetches
    /// are judged by the same profile (see README "Claude Code").
    Hook {
        #[arg(value_enum)]
        agent: HookAgent,
        /// The sandbox options the hook judges by and passes on to `shellcage sh`.
        #[command(flatten)]
        opts: RunOpts,
    },
    /// What the profile does with PATH or HOST[:PORT] (hidden, protected,
    /// read-only, writable, absent, allowed, refused) and which rule says so.
    /// Inside the sandbox it reads the policy in force from /run/shellcage/policy.json.
    Explain {
        #[command(flatten)]
        opts: RunOpts,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
        /// Paths (absolute, relative, ~/…) or hosts (HOST, HOST:PORT, URL).
        #[arg(required = true, value_name = "PATH|HOST[:PORT]")]
        targets: Vec<String>,
    },
    /// Install an agent integration into its settings (merging, idempotent).
    Install {
        #[arg(value_enum)]
        agent: HookAgent,
        #[command(flatten)]
        opts: InstallOpts,
    },
    /// Run one whole shell command line in the sandbox, as Claude Code's
    /// CLAUDE_CODE_SHELL_PREFIX (set it to a `shellcage-prefix` link to this
    /// binary; "/path/to/shellcage --prefix" works for Bash only): the snapshot
    /// directory is readable, the cwd file reaches the host.
    #[command(long_flag = "prefix")]
    Prefix {
        #[command(flatten)]
        opts: RunOpts,
        /// The command line, as one argument.
        #[arg(allow_hyphen_values = true, value_name = "COMMAND LINE")]
        cmdline: String,
    },
    /// The kept sandbox homes (`home = "persistent"`): caches and user installs
    /// of each workspace and profile.
    Home {
        #[command(subcommand)]
        command: HomeCommand,
    },
    /// The warm sessions of this user: list, status, stop.
    Session {
        #[command(subcommand)]
        command: SessionCommand,
    },
    /// The managed floor (/etc/shellcage/managed.toml) an administrator set.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Check or read an audit log.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// One-time host setup that needs root.
    Setup {
        #[command(subcommand)]
        command: SetupCommand,
    },
    /// What the workspace's copy-on-write layer changed, like `git status --short`
    /// (A/M/D/R/T); the host workspace is untouched until `apply`.
    Changes {
        #[command(flatten)]
        layer: LayerOpts,
        /// List this workspace's layers with their sizes and ages.
        #[arg(long)]
        list: bool,
        /// Unified diff (binary and large files are named, not shown).
        #[arg(long, conflicts_with = "list")]
        diff: bool,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Copy the layer's changes onto the host workspace (each file atomically);
    /// refuses, naming them, paths the user changed on the host meanwhile.
    /// Exit 0: all applied; 1: something refused or skipped (named on stderr).
    Apply {
        #[command(flatten)]
        layer: LayerOpts,
        /// Show what would be applied; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Overwrite host paths changed since the layer began.
        #[arg(long)]
        force: bool,
        /// Commit the changes onto a new git branch NAME (parent: the commit the
        /// layer began from) instead; the working tree, index and HEAD stay as they are.
        #[arg(long, value_name = "NAME", conflicts_with_all = ["dry_run", "force", "paths"])]
        branch: Option<String>,
        /// With --branch: list the commands of this audit log in the commit message.
        #[arg(long, value_name = "FILE", requires = "branch")]
        audit: Option<PathBuf>,
        /// Profile whose protected paths are never written (default: the one the layer
        /// began with, else $SHELLCAGE_PROFILE, else `dev`).
        #[arg(long, short = 'p', value_name = "NAME|FILE")]
        profile: Option<String>,
        /// Only these paths (relative to the current directory, or absolute).
        #[arg(value_name = "PATH")]
        paths: Vec<PathBuf>,
    },
    /// Throw a layer away (the workspace's other layers stay).
    Discard {
        #[command(flatten)]
        layer: LayerOpts,
    },
}

#[derive(Debug, Subcommand)]
pub enum SetupCommand {
    /// Let this binary create user namespaces under Ubuntu's AppArmor restriction
    /// (23.10+): write an AppArmor profile for its real path to /etc/apparmor.d and
    /// load it with apparmor_parser (root), or print it.
    Apparmor {
        /// Print the profile on stdout instead of installing it (no root needed).
        #[arg(long)]
        print: bool,
    },
}

/// Which layer: `--workspace` and `--layer`.
#[derive(Debug, Clone, Args)]
pub struct LayerOpts {
    /// Workspace (default as for `run`).
    #[arg(long, short = 'w', value_name = "DIR")]
    pub workspace: Option<PathBuf>,
    /// Layer name.
    #[arg(long, value_name = "NAME", default_value = "default")]
    pub layer: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum HookAgent {
    /// Claude Code's PreToolUse hook.
    ClaudeCode,
}

/// `shellcage install claude-code` options.
#[derive(Debug, Clone, Default, Args)]
#[command(group = clap::ArgGroup::new("scope").args(["user", "project", "managed"]))]
pub struct InstallOpts {
    /// Your settings: $CLAUDE_CONFIG_DIR/settings.json, else ~/.claude/settings.json (default).
    #[arg(long)]
    pub user: bool,
    /// The project's shared settings: <workspace>/.claude/settings.json.
    #[arg(long)]
    pub project: bool,
    /// The managed settings file (/etc/claude-code/managed-settings.json, as
    /// root), with the keys that stop user and project settings from removing
    /// or undercutting the hook.
    #[arg(long)]
    pub managed: bool,
    /// Install the shell prefix (CLAUDE_CODE_SHELL_PREFIX = shellcage-prefix)
    /// for shell commands; the hook then judges the file tools only.
    #[arg(long)]
    pub prefix: bool,
    /// Say what is installed where, change nothing (exit 1 when not installed).
    #[arg(long)]
    pub check: bool,
    /// Profile for the agent's commands (default: dev, or $SHELLCAGE_PROFILE at run time).
    #[arg(long, short = 'p', value_name = "NAME|FILE")]
    pub profile: Option<String>,
    /// The shellcage binary the settings name (default: this one); the prefix
    /// link is made next to it.
    #[arg(long, value_name = "PATH")]
    pub bin: Option<PathBuf>,
    /// Write this settings file instead of the scope's (tests, unusual layouts).
    #[arg(long, value_name = "FILE", hide = true)]
    pub settings_file: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the hash chain: exit 0 with the count of good lines, or exit 1
    /// naming the first broken line.
    Verify { file: PathBuf },
    /// Print the most recent runs readably.
    Tail {
        /// How many runs.
        #[arg(short = 'n', default_value_t = 10)]
        n: usize,
        file: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum HomeCommand {
    /// List the kept homes of WORKSPACE (default: as for `run`), or of every
    /// workspace with --all: directory, profile, network mode, size.
    List {
        workspace: Option<PathBuf>,
        #[arg(long, conflicts_with = "workspace")]
        all: bool,
    },
    /// Delete the kept homes of WORKSPACE (default: as for `run`; the directory
    /// need not exist any more), or only those of --profile NAME. A home in use
    /// by a running sandbox is refused.
    Reset {
        workspace: Option<PathBuf>,
        #[arg(long, short = 'p', value_name = "NAME")]
        profile: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Print the floor in force, each key with its value and line, and what it
    /// changes or refuses for a run with these options (exit 1 when refused).
    Show {
        #[command(flatten)]
        opts: RunOpts,
    },
}

#[derive(Debug, Subcommand)]
pub enum ProfileCommand {
    /// List built-in and user profiles.
    List,
    /// Print a profile's TOML (built-in or user) and its resolved form.
    Show {
        #[arg(default_value = "dev")]
        name: String,
        /// Print only the resolved policy, as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Validate a profile file; exit 125 naming the file, key and value when it is bad.
    Check { file: PathBuf },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportArg {
    Json,
}

/// `shellcage session …`.
#[derive(Debug, Subcommand)]
pub enum SessionCommand {
    /// Every session of this user that answers.
    List,
    /// The session of a workspace (default: the current directory's).
    Status {
        #[arg(value_name = "WORKSPACE")]
        workspace: Option<PathBuf>,
    },
    /// End a workspace's session (or all with --all); the commands still running in it
    /// are killed.
    Stop {
        #[arg(long)]
        all: bool,
        #[arg(value_name = "WORKSPACE", conflicts_with = "all")]
        workspace: Option<PathBuf>,
    },
}

#[derive(Debug, Clone, Default, Args)]
pub struct RunOpts {
    /// Profile name or file (default: $SHELLCAGE_PROFILE, else `dev`).
    #[arg(long, short = 'p', value_name = "NAME|FILE")]
    pub profile: Option<String>,
    /// Workspace directory (default: $SHELLCAGE_WORKSPACE, else the top of the
    /// git work tree holding the current directory, else the current directory).
    #[arg(long, short = 'w', value_name = "DIR")]
    pub workspace: Option<PathBuf>,
    /// Work on a copy-on-write layer of the workspace: writes stay in the layer
    /// (review with `shellcage changes`, then `apply` or `discard`).
    #[arg(long)]
    pub overlay: bool,
    /// The layer to work on (implies --overlay; default: `default`).
    #[arg(long, value_name = "NAME")]
    pub layer: Option<String>,
    /// Make PATH visible read-only (repeatable).
    #[arg(long, value_name = "PATH")]
    pub read: Vec<PathBuf>,
    /// Make PATH visible read-write (repeatable).
    #[arg(long, value_name = "PATH")]
    pub write: Vec<PathBuf>,
    /// Network: none (default), loopback (private loopback with TCP allowed), proxy
    /// (only the hosts of [network] allow / --allow-host, through shellcage's proxy), host.
    #[arg(long, value_enum, value_name = "MODE")]
    pub net: Option<NetMode>,
    /// The sandbox home: persistent (caches and user installs of this workspace
    /// and profile kept between runs) or fresh (nothing kept). Default: the
    /// profile's `home`.
    #[arg(long, value_enum, value_name = "MODE")]
    pub home: Option<crate::policy::HomeMode>,
    /// Let the command reach NAME (repeatable; `*.example.org`, `NAME:PORT`; ports 80 and
    /// 443 by default) through the proxy; adds to the profile's list and turns network
    /// mode none into proxy.
    #[arg(long = "allow-host", value_name = "NAME")]
    pub allow_host: Vec<String>,
    /// Make a server inside reachable from this host's loopback at [HOST_ADDR:]PORT
    /// (repeatable; SANDBOX_PORT defaults to PORT). Every network mode but host.
    #[arg(long, value_name = "[HOST_ADDR:]PORT[:SANDBOX_PORT]")]
    pub publish: Vec<String>,
    /// Expose the host's GPU device nodes (/dev/nvidia*, /dev/nvidia-caps/*,
    /// /dev/dri/*) read-write with ioctl, and nothing else of /dev; refused (125)
    /// when the host has none. The profile key is `[devices] gpu`.
    #[arg(long)]
    pub gpu: bool,
    /// Isolation tier (default: $SHELLCAGE_TIER, else the profile's `tier`).
    #[arg(long, value_enum, value_name = "TIER")]
    pub tier: Option<TierChoice>,
    /// Pass NAME from the caller, or set NAME=VALUE (repeatable; passes
    /// secret-looking names too, and the report lists them).
    #[arg(long = "env", short = 'e', value_name = "NAME[=VALUE]")]
    pub env: Vec<String>,
    /// Kill the whole sandbox after DURATION (e.g. 90s, 10m, 1h30m); exit 124.
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true)]
    pub timeout: Option<String>,
    /// Cap the whole sandbox's memory (e.g. 4G; a cgroup): refused (125) where
    /// it cannot be enforced.
    #[arg(long, value_name = "SIZE")]
    pub memory: Option<String>,
    /// Cap the whole sandbox's CPU time in cores (e.g. 2, 0.5; a cgroup):
    /// refused (125) where it cannot be enforced.
    #[arg(long, value_name = "CORES")]
    pub cpu: Option<String>,
    /// Cap the sandbox's processes and threads at once (a cgroup's pids.max,
    /// and RLIMIT_NPROC in the namespaces tier): refused (125) where it cannot
    /// be enforced; `none` lifts the profile's.
    #[arg(long, value_name = "N")]
    pub processes: Option<String>,
    /// After the run, print a JSON summary on stderr (or to --report-file).
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub report: Option<ReportArg>,
    /// Write the JSON report to FILE instead of stderr.
    #[arg(long, value_name = "FILE")]
    pub report_file: Option<PathBuf>,
    /// Append a hash-chained JSON line about the run to FILE (never visible
    /// inside the sandbox); see `shellcage audit verify`.
    #[arg(long, value_name = "FILE")]
    pub audit: Option<PathBuf>,
    /// Run cold: build this command's sandbox from scratch, without a session
    /// (also `SHELLCAGE_SESSION=off`, or `session = "off"` in a profile).
    #[arg(long)]
    pub no_session: bool,
}

/// A parsed POSIX-shell invocation (`sh [-elx] [-o opt] -c STRING [ARG0 ARG...]`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShellArgs {
    pub login: bool,
    /// Flags passed through to the shell (`-e`, `-x`, `-o pipefail` …).
    pub flags: Vec<String>,
    /// The `-c` string; `None` means interactive (or read from stdin).
    pub command: Option<String>,
    /// `$0` and positional parameters after the string.
    pub rest: Vec<String>,
}

/// Short options a POSIX shell accepts before `-c` that we pass through.
const PASS_FLAGS: &str = "aefhmnuvxCBH";

/// Parse shell arguments as `sh` would. Errors name the offending argument.
pub fn parse_shell_args(args: &[String]) -> Result<ShellArgs, String> {
    let mut out = ShellArgs::default();
    let mut want_c = false;
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        if a == "--" {
            i += 1;
            break;
        }
        if a == "--login" || a == "-login" {
            out.login = true;
        } else if a == "-o" || a == "+o" {
            let opt = args
                .get(i + 1)
                .ok_or_else(|| format!("option {a} needs an argument"))?;
            out.flags.push(a.clone());
            out.flags.push(opt.clone());
            i += 1;
        } else if let Some(letters) = a
            .strip_prefix('-')
            .filter(|l| !l.is_empty() && !l.starts_with('-'))
        {
            for ch in letters.chars() {
                match ch {
                    'c' => want_c = true,
                    'l' => out.login = true,
                    'i' | 's' => {}
                    c if PASS_FLAGS.contains(c) => out.flags.push(format!("-{c}")),
                    c => return Err(format!("unsupported shell option -{c} in '{a}'")),
                }
            }
        } else if let Some(letters) = a.strip_prefix('+').filter(|l| !l.is_empty()) {
            for ch in letters.chars() {
                if !PASS_FLAGS.contains(ch) {
                    return Err(format!("unsupported shell option +{ch} in '{a}'"));
                }
                out.flags.push(format!("+{ch}"));
            }
        } else if a.starts_with("--") {
            return Err(format!("unsupported shell option '{a}'"));
        } else {
            break;
        }
        i += 1;
    }
    let rest = &args[i..];
    if want_c {
        let (cmd, tail) = rest
            .split_first()
            .ok_or("option -c needs a command string")?;
        out.command = Some(cmd.clone());
        out.rest = tail.to_vec();
    } else if !rest.is_empty() {
        return Err(format!(
            "running a script file is not supported ('{}'); use -c 'STRING' or shellcage run",
            rest[0]
        ));
    }
    Ok(out)
}

/// Quote `s` as one POSIX shell word: `'…'` with each `'` written `'\''`.
pub fn sh_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for ch in s.chars() {
        if ch == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(ch);
        }
    }
    out.push('\'');
    out
}

/// `s` as is when it is made of characters no shell treats specially, else quoted.
pub fn sh_quote_if_needed(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_./:=@+,-%".contains(&b))
    {
        s.to_string()
    } else {
        sh_quote(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<ShellArgs, String> {
        parse_shell_args(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn common_agent_forms() {
        let a = p(&["-c", "echo hi"]).unwrap();
        assert_eq!(a.command.as_deref(), Some("echo hi"));
        assert!(!a.login);
        let a = p(&["-lc", "ls"]).unwrap();
        assert!(a.login);
        assert_eq!(a.command.as_deref(), Some("ls"));
        let a = p(&["-l", "-c", "ls", "zero", "one"]).unwrap();
        assert!(a.login);
        assert_eq!(a.rest, vec!["zero", "one"]);
        let a = p(&["-e", "-x", "-o", "pipefail", "-c", "x"]).unwrap();
        assert_eq!(a.flags, vec!["-e", "-x", "-o", "pipefail"]);
        let a = p(&["--login", "-c", "x"]).unwrap();
        assert!(a.login);
        let a = p(&["-ec", "x"]).unwrap();
        assert_eq!(a.flags, vec!["-e"]);
    }

    #[test]
    fn interactive_and_errors() {
        assert_eq!(p(&[]).unwrap().command, None);
        assert_eq!(p(&["-i"]).unwrap().command, None);
        assert!(p(&["-c"]).unwrap_err().contains("-c needs"));
        assert!(p(&["-o"]).unwrap_err().contains("needs an argument"));
        assert!(p(&["-Q", "-c", "x"]).unwrap_err().contains("-Q"));
        assert!(p(&["script.sh"]).unwrap_err().contains("script.sh"));
        assert!(p(&["--rcfile", "x"]).is_err());
    }

    #[test]
    fn command_string_is_passed_verbatim() {
        let s = "printf '%s\\n' \"$'\\x72m'\" && cat <<EOF\nx\nEOF";
        assert_eq!(p(&["-c", s]).unwrap().command.as_deref(), Some(s));
        assert_eq!(
            p(&["-c", "--", "-x"]).unwrap().command.as_deref(),
            Some("-x")
        );
    }
}
