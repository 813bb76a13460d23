//! The audit log: one JSON line per run, hash-chained.
//!
//! Each line's `prev` field is the SHA-256 (hex) of the previous line's bytes
//! (without its newline); the first line's `prev` is the SHA-256 of the empty
//! string. Editing, inserting or deleting a line breaks the chain at the next
//! line. (Removing lines *at the end* cannot be seen from the file alone: keep
//! the head hash `audit verify` prints somewhere the sandbox cannot write.)
//!
//! Writers append under `flock(LOCK_EX)` with `O_APPEND`, reading the last
//! line's hash under the same lock, so concurrent runs neither interleave nor
//! fork the chain.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::plan::{Plan, Tier};
use crate::policy::{Access, Policy};
use crate::supervise::{Outcome, Status};

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// `err` is not named `source`: the message already ends with it, and a
    /// source would print it again under `{:#}`.
    #[error("audit log {path}: {what}: {err}")]
    Io {
        what: &'static str,
        path: PathBuf,
        err: std::io::Error,
    },
    #[error("audit log {path}: flock: {err}")]
    Lock { path: PathBuf, err: nix::Error },
    /// The sandbox could reach the log (see [`AuditLog::refuse_if_reachable`]).
    #[error("audit log {} lies inside a tree the sandbox can {}", path.display(), why)]
    Reachable { path: PathBuf, why: &'static str },
}

/// One run, as recorded.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    /// RFC 3339, UTC, at the end of the run.
    pub time: String,
    pub user: String,
    pub uid: u32,
    pub workspace: PathBuf,
    pub argv: Vec<String>,
    pub profile: String,
    pub profile_hash: String,
    pub tier: serde_json::Value,
    /// Which mechanism enforced each guarantee (the plan).
    pub enforcement: serde_json::Value,
    /// `exited` / `signaled` / `not_started` / `timed_out`, with its value.
    pub status: serde_json::Value,
    pub exit_code: i32,
    pub duration_ms: u64,
    pub timeout: bool,
    /// Network mode `proxy`: every destination the proxy allowed or refused (host, port,
    /// count, reason).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<crate::net::summary::SummaryReport>,
    /// What the exit step did in the workspace, when it did or said anything
    /// (a repository check cut short is on record here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_run: Option<crate::sandbox::mount::AfterRun>,
    /// SHA-256 of the previous line (the chain).
    pub prev: String,
}

impl Record {
    /// The record of one run (`prev` is filled in by [`AuditLog::append`]).
    pub fn of_run(
        policy: &Policy,
        plan: &Plan,
        argv: &[String],
        outcome: &Outcome,
        user: &str,
    ) -> Record {
        Record {
            time: now_rfc3339(),
            user: user.to_owned(),
            uid: nix::unistd::getuid().as_raw(),
            workspace: policy.workspace.clone(),
            argv: argv.to_vec(),
            profile: policy.profile.clone(),
            profile_hash: policy.profile_chain.hash(),
            tier: serde_json::to_value(plan.tier).unwrap_or_default(),
            enforcement: serde_json::to_value(&plan.enforcement).unwrap_or_default(),
            status: serde_json::to_value(&outcome.status).unwrap_or_default(),
            exit_code: outcome.exit_code,
            duration_ms: outcome.duration_ms,
            timeout: outcome.status == Status::TimedOut,
            network: None,
            after_run: None,
            prev: String::new(),
        }
    }

    /// The command as one shell line (each word quoted only where a shell needs it).
    pub fn command_line(&self) -> String {
        self.argv
            .iter()
            .map(|a| crate::cli::sh_quote_if_needed(a))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// The `prev` of the first line.
pub fn genesis() -> String {
    sha256_hex(b"")
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut out = String::with_capacity(64);
    for b in digest.iter() {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// An audit log opened before the run (so a bad path fails before anything
/// runs, and the file exists to be masked inside the sandbox).
pub struct AuditLog {
    file: File,
    path: PathBuf,
}

impl AuditLog {
    /// Opens (creating, mode 0600) the log for appending.
    pub fn open(path: &Path) -> Result<Self, AuditError> {
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
            .map_err(|err| AuditError::Io {
                what: "cannot open",
                path: path.to_path_buf(),
                err,
            })?;
        let canon = std::fs::canonicalize(path).map_err(|err| AuditError::Io {
            what: "cannot resolve",
            path: path.to_path_buf(),
            err,
        })?;
        Ok(AuditLog { file, path: canon })
    }

    /// The canonical path (what the sandbox must not see).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Refuse a log the sandbox could reach: in any tier one inside a writable
    /// tree (it could be renamed, replaced or redirected around its mask
    /// between runs), and in the container tier (which cannot mask single
    /// files) one inside any visible tree. Elsewhere the mount plan masks it
    /// (`policy.hide`).
    pub fn refuse_if_reachable(&self, policy: &Policy, tier: Tier) -> Result<(), AuditError> {
        let path = &self.path;
        let writable = (policy.workspace_access == Access::Write
            && path.starts_with(&policy.workspace))
            || policy
                .paths
                .iter()
                .any(|r| r.access == Access::Write && path.starts_with(&r.path));
        if writable {
            return Err(AuditError::Reachable {
                path: path.clone(),
                why: "write (hint: keep the audit log outside the workspace and the --write paths)",
            });
        }
        if tier != Tier::Container {
            return Ok(());
        }
        let visible = path.starts_with(&policy.workspace)
            || path.starts_with("/tmp")
            || path.starts_with("/dev")
            || policy.paths.iter().any(|r| path.starts_with(&r.path));
        if visible {
            return Err(AuditError::Reachable {
                path: path.clone(),
                why: "see, and the container tier cannot hide single files (hint: put the audit log outside the workspace and the profile's paths)",
            });
        }
        Ok(())
    }

    /// Appends `record` (its `prev` is filled in here) as one line.
    pub fn append(self, mut record: Record) -> Result<(), AuditError> {
        let path = self.path.clone();
        let mut lock = Flock::lock(self.file, FlockArg::LockExclusive).map_err(|(_, err)| {
            AuditError::Lock {
                path: path.clone(),
                err,
            }
        })?;
        let io = |what: &'static str| {
            let path = path.clone();
            move |err| AuditError::Io { what, path, err }
        };
        record.prev = match last_line(&mut lock).map_err(io("cannot read"))? {
            Some(line) => sha256_hex(&line),
            None => genesis(),
        };
        let mut line = serde_json::to_vec(&record).map_err(|e| AuditError::Io {
            what: "cannot encode",
            path: path.clone(),
            err: std::io::Error::other(e),
        })?;
        line.push(b'\n');
        // One write of the whole line under the lock, O_APPEND: no interleaving.
        lock.write_all(&line).map_err(io("cannot append"))?;
        Ok(())
    }
}

/// The last complete line of `f` (without its newline), reading backwards.
fn last_line(f: &mut File) -> std::io::Result<Option<Vec<u8>>> {
    let len = f.seek(SeekFrom::End(0))?;
    if len == 0 {
        return Ok(None);
    }
    const CHUNK: u64 = 8192;
    let mut tail: Vec<u8> = Vec::new();
    let mut pos = len;
    let mut first = true;
    loop {
        let start = pos.saturating_sub(CHUNK);
        let mut buf = vec![0u8; (pos - start) as usize];
        f.seek(SeekFrom::Start(start))?;
        f.read_exact(&mut buf)?;
        buf.extend_from_slice(&tail);
        tail = buf;
        if first {
            first = false;
            // The final newline ends the last line; it does not start one.
            if tail.last() == Some(&b'\n') {
                tail.pop();
            }
        }
        if let Some(i) = tail.iter().rposition(|&b| b == b'\n') {
            return Ok(Some(tail[i + 1..].to_vec()));
        }
        if start == 0 {
            return Ok(Some(tail));
        }
        pos = start;
    }
}

/// What `audit verify` found.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every line is valid JSON and chained; `head` is the last line's hash.
    Good { lines: usize, head: String },
    /// Line `line` (1-based) is the first that does not fit.
    Broken { line: usize, reason: String },
}

pub fn verify(path: &Path) -> Result<Verdict, AuditError> {
    let file = File::open(path).map_err(|err| AuditError::Io {
        what: "cannot open",
        path: path.to_path_buf(),
        err,
    })?;
    let mut reader = BufReader::new(file);
    let mut prev = genesis();
    let mut n = 0;
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let read = reader
            .read_until(b'\n', &mut buf)
            .map_err(|err| AuditError::Io {
                what: "cannot read",
                path: path.to_path_buf(),
                err,
            })?;
        if read == 0 {
            return Ok(Verdict::Good {
                lines: n,
                head: prev,
            });
        }
        n += 1;
        let broken = |reason: String| Ok(Verdict::Broken { line: n, reason });
        if buf.pop() != Some(b'\n') {
            return broken("incomplete line (no newline at the end)".into());
        }
        let record: Record = match serde_json::from_slice(&buf) {
            Ok(r) => r,
            Err(e) => return broken(format!("not an audit record: {e}")),
        };
        if record.prev != prev {
            return broken(format!(
                "chain broken: prev is {}, the line before hashes to {prev} (a line was edited, inserted or deleted)",
                record.prev
            ));
        }
        prev = sha256_hex(&buf);
    }
}

/// The last `n` records, oldest first (lines that do not parse are skipped).
pub fn tail(path: &Path, n: usize) -> Result<Vec<Record>, AuditError> {
    let file = File::open(path).map_err(|err| AuditError::Io {
        what: "cannot open",
        path: path.to_path_buf(),
        err,
    })?;
    let mut out = std::collections::VecDeque::with_capacity(n.min(1024));
    for line in BufReader::new(file).split(b'\n') {
        let line = line.map_err(|err| AuditError::Io {
            what: "cannot read",
            path: path.to_path_buf(),
            err,
        })?;
        if let Ok(r) = serde_json::from_slice::<Record>(&line) {
            if out.len() == n {
                out.pop_front();
            }
            if n > 0 {
                out.push_back(r);
            }
        }
    }
    Ok(out.into())
}

/// One readable line for `audit tail`.
pub fn describe(r: &Record) -> String {
    let exit = match r.status.get("kind").and_then(|k| k.as_str()) {
        Some("signaled") => format!("signal {}", r.status["value"]),
        Some("timed_out") => "timeout".into(),
        Some("not_started") => format!("not started ({})", r.exit_code),
        _ => format!("exit {}", r.exit_code),
    };
    let argv = r.command_line();
    format!(
        "{}  {:<16} {:>9}  {}  {}  {}",
        r.time,
        exit,
        format_duration(Duration::from_millis(r.duration_ms)),
        r.profile,
        r.workspace.display(),
        argv.chars()
            .map(|c| if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            })
            .collect::<String>()
    )
}

fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.1}s", d.as_secs_f64())
    } else {
        format!("{}m{:02}s", ms / 60_000, (ms / 1000) % 60)
    }
}

/// Now, as RFC 3339 UTC with seconds (`2025-01-31T12:00:00Z`).
pub fn now_rfc3339() -> String {
    rfc3339(SystemTime::now())
}

pub fn rfc3339(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian
/// (Howard Hinnant's civil-from-days algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(argv: &str) -> Record {
        Record {
            time: now_rfc3339(),
            user: "u".into(),
            uid: 1000,
            workspace: "/w".into(),
            argv: vec![argv.into()],
            profile: "dev".into(),
            profile_hash: "h".into(),
            tier: serde_json::json!("namespaces"),
            enforcement: serde_json::json!([]),
            status: serde_json::json!({"kind": "exited", "value": 0}),
            exit_code: 0,
            duration_ms: 5,
            timeout: false,
            network: None,
            after_run: None,
            prev: String::new(),
        }
    }

    #[test]
    fn dates() {
        let at = |s| rfc3339(UNIX_EPOCH + Duration::from_secs(s));
        assert_eq!(at(0), "1970-01-01T00:00:00Z");
        assert_eq!(at(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(at(1_709_251_199), "2024-02-29T23:59:59Z");
        assert_eq!(at(4_102_444_800), "2100-01-01T00:00:00Z");
    }

    #[test]
    fn chain_detects_edit_insert_delete() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.jsonl");
        for i in 0..5 {
            AuditLog::open(&path)
                .unwrap()
                .append(record(&format!("cmd{i}")))
                .unwrap();
        }
        let good = verify(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let last = text.lines().last().unwrap();
        assert_eq!(
            good,
            Verdict::Good {
                lines: 5,
                head: sha256_hex(last.as_bytes())
            }
        );
        let lines: Vec<&str> = text.lines().collect();
        let check = |lines: Vec<String>, want: usize| {
            std::fs::write(&path, lines.join("\n") + "\n").unwrap();
            match verify(&path).unwrap() {
                Verdict::Broken { line, .. } => assert_eq!(line, want),
                v => panic!("tampering not detected: {v:?}"),
            }
        };
        let own = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        // Edit line 2: line 3 no longer chains.
        let mut edited = own(&lines);
        edited[1] = edited[1].replace("cmd1", "cmdX");
        check(edited, 3);
        // Delete line 3: line 4 (now 3rd) breaks.
        let mut deleted = own(&lines);
        deleted.remove(2);
        check(deleted, 3);
        // Delete the first line.
        check(own(&lines[1..]), 1);
        // Insert a forged line in the middle.
        let mut inserted = own(&lines);
        inserted.insert(2, lines[1].to_string());
        check(inserted, 3);
        // Garbage.
        let mut garbage = own(&lines);
        garbage[4] = "{not json".into();
        check(garbage, 5);
    }

    #[test]
    fn last_line_over_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.jsonl");
        let long = "x".repeat(20_000);
        for a in ["short", long.as_str(), "end"] {
            AuditLog::open(&path).unwrap().append(record(a)).unwrap();
        }
        AuditLog::open(&path)
            .unwrap()
            .append(record(&long))
            .unwrap();
        assert!(matches!(
            verify(&path).unwrap(),
            Verdict::Good { lines: 4, .. }
        ));
        let t = tail(&path, 2).unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].argv, ["end"]);
    }
}
