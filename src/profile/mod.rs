//! TEMPORARY STUB until the profile work item lands (same API).
use std::path::PathBuf;
use std::time::Duration;

use crate::policy::*;

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ProfileError(String);

pub struct LoadContext {
    pub home: PathBuf,
    pub workspace: PathBuf,
    pub user_dir: Option<PathBuf>,
}

pub fn builtin_names() -> &'static [&'static str] {
    &["dev"]
}

pub fn load(name: &str, ctx: &LoadContext) -> Result<Policy, ProfileError> {
    if name != "dev" {
        return Err(ProfileError(format!("unknown profile {name}")));
    }
    let h = |p: &str| ctx.home.join(p);
    let mut paths: Vec<PathRule> = [
        "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/etc", "/opt",
    ]
    .iter()
    .map(|p| PathRule {
        path: PathBuf::from(p),
        access: Access::Read,
        optional: true,
    })
    .collect();
    for p in [
        ".cargo",
        ".rustup",
        ".pyenv",
        ".nvm",
        ".local/bin",
        ".gitconfig",
    ] {
        paths.push(PathRule {
            path: h(p),
            access: Access::Read,
            optional: true,
        });
    }
    let hide = [
        ".ssh",
        ".aws",
        ".cargo/credentials",
        ".cargo/credentials.toml",
    ]
    .iter()
    .map(|p| HideRule { pattern: h(p) })
    .chain(
        [
            "/etc/shadow",
            "/etc/gshadow",
            "/etc/ssh/*key*",
            "/etc/ssl/private",
        ]
        .iter()
        .map(|p| HideRule {
            pattern: PathBuf::from(p),
        }),
    )
    .collect();
    Ok(Policy {
        profile: "dev".into(),
        source: "builtin:dev".into(),
        profile_hash: String::new(),
        tier: TierChoice::Full,
        workspace: ctx.workspace.clone(),
        workspace_access: Access::Write,
        home: ctx.home.clone(),
        paths,
        hide,
        protect: [
            ".git/hooks",
            ".git/config",
            ".envrc",
            ".vscode",
            ".idea",
            ".claude",
            ".codex",
            ".cursor",
            ".devcontainer",
            ".mcp.json",
        ]
        .iter()
        .map(PathBuf::from)
        .collect(),
        env_files: EnvFileScan {
            enabled: true,
            max_depth: 4,
            skip_dirs: vec![".git".into(), "node_modules".into(), "target".into()],
            allow_names: vec![".env.example".into()],
            max_dirs: 4000,
        },
        network: NetMode::None,
        landlock: Requirement::Required,
        env: EnvPolicy {
            pass: [
                "PATH",
                "LANG",
                "LC_*",
                "TERM",
                "TZ",
                "COLORTERM",
                "NO_COLOR",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
            set: Default::default(),
            explicit: vec![],
        },
        limits: Limits {
            timeout: None,
            open_files: 4096,
            file_size: 16 << 30,
            processes: None,
            tmp_size: 2 << 30,
            home_size: 1 << 30,
        },
        shell: vec![PathBuf::from("/bin/bash"), PathBuf::from("/bin/sh")],
        report: false,
    })
}

pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num.parse().map_err(|_| format!("invalid duration '{s}'"))?;
    match unit {
        "" | "s" => Ok(Duration::from_secs(n)),
        "ms" => Ok(Duration::from_millis(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        "h" => Ok(Duration::from_secs(n * 3600)),
        _ => Err(format!("invalid duration '{s}'")),
    }
}
