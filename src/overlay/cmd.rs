//! The user commands: `shellcage changes`, `apply`, `discard`. main.rs only
//! resolves the workspace and the profile and calls these.

use std::io::Write;
use std::path::{Component, Path, PathBuf};
use std::time::SystemTime;

use super::changes::{self, show};
use super::store::{self, Layer, Store};
use super::{ApplyOptions, OverlayError, apply, branch, scan};

/// Which layer of which workspace.
pub struct Target {
    pub store: Store,
    /// Canonical workspace path.
    pub workspace: PathBuf,
    pub layer: String,
}

impl Target {
    fn open(&self) -> Result<Layer, OverlayError> {
        Layer::open(&self.store, &self.workspace, &self.layer)
    }
}

fn out_err(e: std::io::Error) -> OverlayError {
    OverlayError::io("cannot write", Path::new("stdout"), e)
}

/// `shellcage changes [--list] [--diff] [--json]`.
pub fn changes_cmd(
    t: &Target,
    list: bool,
    diff: bool,
    json: bool,
    out: &mut dyn Write,
) -> Result<i32, OverlayError> {
    if list {
        return list_cmd(t, json, out);
    }
    let layer = t.open()?;
    let entries = scan::scan(&layer.upper(), &t.workspace)?;
    let list = changes::changes(&entries, &layer.upper(), &t.workspace)?;
    if json {
        let v = serde_json::json!({
            "workspace": t.workspace,
            "layer": layer.name(),
            "begun": layer.meta.begun,
            "base_commit": layer.meta.base_commit,
            "changes": list,
        });
        writeln!(out, "{}", serde_json::to_string_pretty(&v).unwrap()).map_err(out_err)?;
    } else if diff {
        changes::write_diff(out, &list, &layer.upper(), &t.workspace)?;
    } else {
        changes::write_status(out, &list).map_err(out_err)?;
    }
    Ok(0)
}

fn list_cmd(t: &Target, json: bool, out: &mut dyn Write) -> Result<i32, OverlayError> {
    let layers = store::list_layers(&t.store, &t.workspace)?;
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&layers).unwrap()).map_err(out_err)?;
        return Ok(0);
    }
    if layers.is_empty() {
        writeln!(out, "no layers for {}", show(&t.workspace)).map_err(out_err)?;
        return Ok(0);
    }
    for l in layers {
        let line = match &l.problem {
            Some(p) => format!("{:<16} BROKEN: {p}", l.name),
            None => format!(
                "{:<16} {:>9}  {:>6} entries  begun {} ({} ago){}",
                l.name,
                human_bytes(l.bytes),
                l.entries,
                l.begun,
                age(&l.begun),
                l.base_commit
                    .as_deref()
                    .map(|c| format!("  on {}", &c[..c.len().min(12)]))
                    .unwrap_or_default()
            ),
        };
        writeln!(out, "{line}").map_err(out_err)?;
    }
    Ok(0)
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// "3m", "2h", "5d" since an RFC 3339 UTC time written by shellcage.
fn age(rfc3339: &str) -> String {
    let Some(then) = parse_rfc3339(rfc3339) else {
        return "?".into();
    };
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let s = now.saturating_sub(then);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
}

fn parse_rfc3339(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() != 20 || b[19] != b'Z' {
        return None;
    }
    let n = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (n(0..4)?, n(5..7)?, n(8..10)?);
    let (hh, mm, ss) = (n(11..13)?, n(14..16)?, n(17..19)?);
    // Days from civil (inverse of audit::civil_from_days).
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days * 86400 + hh * 3600 + mm * 60 + ss).ok()
}

/// PATH arguments of `apply` as workspace-relative paths (relative ones are
/// relative to `cwd`, like git's pathspecs).
pub fn selection(
    paths: &[PathBuf],
    cwd: &Path,
    workspace: &Path,
) -> Result<Vec<PathBuf>, OverlayError> {
    let mut out = Vec::new();
    for p in paths {
        let abs = if p.is_absolute() {
            p.clone()
        } else {
            cwd.join(p)
        };
        let mut norm = PathBuf::new();
        for c in abs.components() {
            match c {
                Component::ParentDir => {
                    norm.pop();
                }
                Component::CurDir => {}
                other => norm.push(other),
            }
        }
        let rel = norm.strip_prefix(workspace).map_err(|_| {
            OverlayError::Invalid(format!(
                "path {} is outside the workspace {}",
                p.display(),
                workspace.display()
            ))
        })?;
        if rel.as_os_str().is_empty() {
            return Ok(Vec::new()); // the whole workspace
        }
        out.push(rel.to_path_buf());
    }
    Ok(out)
}

/// `shellcage apply [--dry-run] [--force] [PATH…]`: 0 when everything selected
/// was applied, 1 when something was refused or skipped (named on stderr).
pub fn apply_cmd(
    t: &Target,
    opts: &ApplyOptions<'_>,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<i32, OverlayError> {
    let mut layer = t.open()?;
    let report = match apply::apply(&mut layer, opts) {
        Ok(r) => r,
        Err(e @ OverlayError::Conflicts(_)) => {
            let _ = writeln!(err, "shellcage: {e}");
            return Ok(1);
        }
        Err(e) => return Err(e),
    };
    let verb = if report.dry_run {
        "would apply"
    } else {
        "applied"
    };
    for (letter, p) in &report.applied {
        let what = match letter {
            'm' => "M".to_string(),
            c => c.to_string(),
        };
        writeln!(
            out,
            "{what}  {}{}",
            show(p),
            if *letter == 'm' { "  (mode)" } else { "" }
        )
        .map_err(out_err)?;
    }
    for (p, mode) in &report.stripped {
        let _ = writeln!(
            err,
            "shellcage: {}: setuid/setgid/sticky bits dropped (mode {mode:o} -> {:o})",
            show(p),
            mode & 0o777
        );
    }
    for p in &report.kept {
        let _ = writeln!(
            err,
            "shellcage: kept protected path {} (the layer deletes it or a parent)",
            show(p)
        );
    }
    for (p, why) in &report.skipped {
        let _ = writeln!(err, "shellcage: skipped {}: {why}", show(p));
    }
    if !report.conflicts.is_empty() {
        for (p, why) in &report.conflicts {
            let _ = writeln!(err, "shellcage: overwrote {} (--force): {why}", show(p));
        }
    }
    let _ = writeln!(
        err,
        "shellcage: {verb} {} from layer {:?}{}",
        plural(report.applied.len(), "change"),
        layer.name(),
        if report.dry_run {
            " (dry run: nothing changed)".to_string()
        } else if report.layer_empty {
            "; the layer is now empty".to_string()
        } else if !report.skipped.is_empty() {
            format!(
                "; {} stay in the layer (`shellcage discard` drops them)",
                plural(report.skipped.len(), "skipped path")
            )
        } else {
            String::new()
        }
    );
    Ok(if report.skipped.is_empty() { 0 } else { 1 })
}

fn plural(n: usize, w: &str) -> String {
    if n == 1 {
        format!("1 {w}")
    } else {
        format!("{n} {w}s")
    }
}

/// `shellcage apply --branch NAME`.
pub fn branch_cmd(
    t: &Target,
    name: &str,
    protected: &[PathBuf],
    audit: Option<&Path>,
    err: &mut dyn Write,
) -> Result<i32, OverlayError> {
    let layer = t.open()?;
    let r = branch::commit_branch(&layer, name, protected, audit)?;
    for (p, why) in &r.skipped {
        let _ = writeln!(err, "shellcage: not committed {}: {why}", show(p));
    }
    let _ = writeln!(
        err,
        "shellcage: created branch {name} at {} ({} on {}); the working tree, index, HEAD and current branch are unchanged; the layer is kept (`shellcage discard` drops it)",
        &r.commit,
        plural(r.files, "file"),
        &r.base[..r.base.len().min(12)]
    );
    Ok(0)
}

/// `shellcage discard`.
pub fn discard_cmd(t: &Target, err: &mut dyn Write) -> Result<i32, OverlayError> {
    let layer = t.open()?;
    let name = layer.name().to_string();
    layer.discard()?;
    let _ = writeln!(
        err,
        "shellcage: discarded layer {name:?} of {}",
        show(&t.workspace)
    );
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trip() {
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_780_000_000);
        let s = crate::audit::rfc3339(t);
        assert_eq!(parse_rfc3339(&s), Some(1_780_000_000));
        assert_eq!(parse_rfc3339("nonsense"), None);
    }

    #[test]
    fn selection_is_workspace_relative() {
        let ws = Path::new("/w");
        let sel = selection(
            &[PathBuf::from("a/../b"), PathBuf::from("/w/c")],
            Path::new("/w/sub"),
            ws,
        )
        .unwrap();
        assert_eq!(sel, vec![PathBuf::from("sub/b"), PathBuf::from("c")]);
        assert!(selection(&[PathBuf::from("../../etc")], Path::new("/w/sub"), ws).is_err());
        assert!(selection(&[PathBuf::from(".")], ws, ws).unwrap().is_empty());
    }
}
