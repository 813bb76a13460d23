//! `shellcage explain PATH | HOST[:PORT]`: the judge's answer, for people.

use std::path::Path;

use serde_json::json;

use super::{Judge, POLICY_FILE, PolicyView, load_view, net_name, resolve};
use crate::cli::RunOpts;

/// Does `t` name a host rather than a path? A URL, or a bare `name[:port]`
/// with a dot or `localhost` that is not an existing file here.
/// `HOST[:PORT]` of a URL (its scheme's port when it names none: http 80, https 443) or
/// of a bare `HOST[:PORT]`; `None` for what reads as a path.
fn as_host(t: &str, cwd: &Path) -> Option<String> {
    if let Some(h) = super::url_host(t) {
        let (scheme, rest) = t.split_once("://")?;
        let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
        let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        let port = match crate::net::rules::split_host_port(hostport) {
            Ok((_, Some(p))) => Some(p.to_string()),
            _ => match scheme.to_ascii_lowercase().as_str() {
                "http" | "ws" => Some("80".into()),
                "https" | "wss" => Some("443".into()),
                _ => None,
            },
        };
        return Some(match port {
            Some(p) => format!("{h}:{p}"),
            None => h,
        });
    }
    if t.contains('/') || t.starts_with('.') || t.starts_with('~') || cwd.join(t).exists() {
        return None;
    }
    let (host, port) = match t.strip_prefix('[') {
        Some(v6) => {
            let (h, rest) = v6.split_once(']')?;
            (format!("[{h}]"), rest.strip_prefix(':'))
        }
        None => match t.split_once(':') {
            Some((h, p)) if !p.contains(':') => (h.to_string(), Some(p)),
            Some(_) => return None,
            None => (t.to_string(), None),
        },
    };
    let plausible = host.contains('.') || host.contains(':') || host == "localhost";
    let host = host.to_ascii_lowercase();
    plausible.then(|| match port {
        Some(p) => format!("{host}:{p}"),
        None => host,
    })
}

fn opts_given(o: &RunOpts) -> bool {
    o.profile.is_some()
        || o.workspace.is_some()
        || !o.read.is_empty()
        || !o.write.is_empty()
        || o.net.is_some()
}

/// The policy to judge by: inside a sandbox (no options given and
/// [`POLICY_FILE`] present) the one in force, else the one a run with `opts`
/// from `cwd` would get. `true` when it is the one in force.
pub fn policy_in_force(opts: &RunOpts, cwd: &Path) -> Result<(PolicyView, bool), String> {
    if !opts_given(opts) && Path::new(POLICY_FILE).is_file() {
        return Ok((PolicyView::read(Path::new(POLICY_FILE))?, true));
    }
    Ok((load_view(opts, cwd)?, false))
}

/// The text (or JSON) `shellcage explain` prints.
pub fn run(opts: &RunOpts, cwd: &Path, json: bool, targets: &[String]) -> Result<String, String> {
    let (view, inside) = policy_in_force(opts, cwd)?;
    let judge = Judge::new(&view);
    let mut out = String::new();
    let mut items = Vec::new();
    if !json {
        out.push_str(&format!(
            "# profile {:?} ({}), workspace {}, network {}{}\n",
            view.profile,
            view.source,
            view.workspace.display(),
            net_name(view.network.mode),
            if inside {
                format!("; the policy in force, from {POLICY_FILE}")
            } else {
                String::new()
            }
        ));
    }
    for t in targets {
        if let Some(host) = as_host(t, cwd) {
            let f = judge.host(&host);
            out.push_str(&format!("{t}: {}\n", judge.describe(&f)));
            items.push(json!({"target": t, "kind": "host", "host": host,
                "verdict": f.verdict, "rule": judge.rule_text(&f.rule)}));
            continue;
        }
        let r = resolve(t, cwd, &view.home).map_err(|e| e.to_string())?;
        let mut judged = Vec::new();
        for (i, p) in r.candidates.iter().enumerate() {
            let f = judge.path(p);
            let what = judge.describe(&f);
            out.push_str(&match (i, p.as_path() == r.given.as_path()) {
                (0, true) => format!("{t}: {what}\n"),
                (0, false) => format!("{t} -> {}: {what}\n", p.display()),
                _ => format!("  also read as {}: {what}\n", p.display()),
            });
            judged.push(json!({"path": p, "verdict": f.verdict, "rule": judge.rule_text(&f.rule)}));
        }
        items.push(json!({"target": t, "kind": "path", "readings": judged}));
    }
    if json {
        let doc = json!({"profile": view.profile, "source": view.source,
            "workspace": view.workspace, "inside": inside, "results": items});
        return Ok(format!("{doc}\n"));
    }
    Ok(out)
}
