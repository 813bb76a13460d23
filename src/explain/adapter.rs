//! The one place that reaches into the launch path: the resolved policy and
//! the caller's home (request.rs), the sandbox's device nodes (sandbox::mount,
//! sandbox::devices).

use std::path::{Path, PathBuf};

use crate::cli::RunOpts;
use crate::policy::Policy;

use super::PolicyView;

/// `err` and its causes, `: `-separated (as anyhow's `{:#}` prints them).
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut s = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        let next = e.to_string();
        if !s.ends_with(&next) {
            s.push_str(": ");
            s.push_str(&next);
        }
        cur = e.source();
    }
    s
}

/// The policy a run with `opts` from `cwd` would get.
pub fn load_policy(opts: &RunOpts, cwd: &Path) -> Result<Policy, String> {
    crate::request::Request::new(opts, cwd)
        .map(|r| r.policy)
        .map_err(|e| error_chain(&e))
}

/// The judge's view of the policy a run with `opts` from `cwd` would get;
/// rules the managed floor adds name the floor's file and line.
pub fn load_view(opts: &RunOpts, cwd: &Path) -> Result<PolicyView, String> {
    let req = crate::request::Request::new(opts, cwd).map_err(|e| error_chain(&e))?;
    Ok(view_of_request(&req))
}

/// The view of a built request (its policy, flags and floor).
pub fn view_of_request(req: &crate::request::Request) -> PolicyView {
    let mut view = view_of(&req.policy, &req.opts);
    if let Some((floor, _)) = &req.floor {
        mark_managed(&mut view, floor, &req.policy);
    }
    view
}

/// Points the view's hide and protect rules that the floor adds at the floor
/// (it wins over a profile entry saying the same: the user cannot undo it).
fn mark_managed(view: &mut PolicyView, floor: &crate::profile::managed::Floor, policy: &Policy) {
    let at = |line: usize| Some(format!("{}:{line}", floor.file.display()));
    if let Some(item) = &floor.hide {
        for (pattern, raw) in floor.hide_patterns(policy) {
            for h in view.hide.iter_mut().filter(|h| h.pattern == pattern) {
                h.from = super::RuleSource {
                    key: "managed hide".into(),
                    raw: Some(raw.clone()),
                    at: at(item.line),
                };
            }
        }
    }
    if let Some(item) = &floor.protect {
        for p in &item.value {
            for v in view.protect.iter_mut().filter(|v| v.path == *p) {
                v.from = super::RuleSource {
                    key: "managed protect".into(),
                    raw: Some(p.display().to_string()),
                    at: at(item.line),
                };
            }
        }
    }
}

/// The view of an already built policy.
pub fn view_of(policy: &Policy, opts: &RunOpts) -> PolicyView {
    let mut view = PolicyView::new(policy, opts, &crate::sandbox::mount::DEV_NODES);
    if policy.devices.gpu {
        use crate::sandbox::devices::{GpuNodes, scan_gpu};
        let found = scan_gpu();
        let paths = found.nodes.iter().map(|n| &n.path);
        view.gpu_nodes = paths
            .chain(found.links.iter().map(|l| &l.path))
            .map(|p| GpuNodes::relative(p).display().to_string())
            .collect();
    }
    view
}

/// The content of the policy file the sandbox shows at [`super::POLICY_FILE`]
/// (read-only): the launch passes it to `sandbox::describe`, which shows it
/// there. Paths and rules only, never a file's content or a variable's value.
pub fn policy_file_json(req: &crate::request::Request) -> String {
    // Compact: it is written on every launch.
    serde_json::to_string(&view_of_request(req)).unwrap_or_default()
}

/// The caller's home directory, as the launch path finds it.
pub fn home_dir() -> Result<PathBuf, String> {
    crate::request::home_dir().map_err(|e| error_chain(&e))
}
