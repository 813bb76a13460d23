//! Command-line definitions (clap) and the POSIX-shell argument parser used by
//! `shellcage sh` and the `shellcage-sh` symlink.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

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
        tier: Option<TierArg>,
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
        tier: TierArg,
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
    /// Answer an agent's pre-tool hook (JSON on stdin): Bash commands are
    /// rewritten to run through `shellcage sh -c`.
    Hook {
        #[arg(value_enum)]
        agent: HookAgent,
    },
    /// Run one whole shell command line in the sandbox, as Claude Code's
    /// CLAUDE_CODE_SHELL_PREFIX (set it to "/path/to/shellcage --prefix"):
    /// the snapshot directory is readable, the cwd file reaches the host.
    #[command(long_flag = "prefix")]
    Prefix {
        #[command(flatten)]
        opts: RunOpts,
        /// The command line, as one argument.
        #[arg(allow_hyphen_values = true, value_name = "COMMAND LINE")]
        cmdline: String,
    },
    /// Check or read an audit log.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum HookAgent {
    /// Claude Code's PreToolUse hook.
    ClaudeCode,
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
pub enum NetArg {
    None,
    Loopback,
    Host,
}

/// `--tier`: which isolation tier the run accepts (overrides the profile's `tier`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TierArg {
    /// Namespaces required: refuse (exit 125) where user namespaces fail.
    Full,
    /// Namespaces when possible, else the container tier (said on stderr and in the report).
    Auto,
    /// Landlock + seccomp only, no namespaces.
    Container,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportArg {
    Json,
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
    /// Make PATH visible read-only (repeatable).
    #[arg(long, value_name = "PATH")]
    pub read: Vec<PathBuf>,
    /// Make PATH visible read-write (repeatable).
    #[arg(long, value_name = "PATH")]
    pub write: Vec<PathBuf>,
    /// Network: none (default), loopback (private loopback with TCP allowed), host.
    #[arg(long, value_enum, value_name = "MODE")]
    pub net: Option<NetArg>,
    /// Isolation tier (default: $SHELLCAGE_TIER, else the profile's `tier`).
    #[arg(long, value_enum, value_name = "TIER")]
    pub tier: Option<TierArg>,
    /// Pass NAME from the caller, or set NAME=VALUE (repeatable; passes
    /// secret-looking names too, and the report lists them).
    #[arg(long = "env", short = 'e', value_name = "NAME[=VALUE]")]
    pub env: Vec<String>,
    /// Kill the whole sandbox after DURATION (e.g. 90s, 10m, 1h30m); exit 124.
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true)]
    pub timeout: Option<String>,
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
