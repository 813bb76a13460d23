//! pyenv inside the sandbox: `~/.pyenv` is visible read-only, so the rehash
//! that pyenv's pip hook runs after every `pip install`/`uninstall`
//! (`pyenv.d/exec/pip-rehash/pip` calls `pyenv-rehash`) prints
//! `pyenv: cannot rehash: …/shims isn't writable` and, under the wrapper's
//! `set -e`, turns pip's success into exit status 1.
//!
//! pyenv has no variable that skips the rehash. It does honour
//! `PYENV_HOOK_PATH`, whose entries come *before* its own `pyenv.d`: a
//! shellcage exec hook there defines and exports a `pyenv-rehash` shell
//! function that does nothing. `pyenv-exec` sources the hook, then execs the
//! pip-rehash wrapper (bash), which imports the function and calls it
//! instead of the script. Only that chain sees it: an explicit
//! `pyenv rehash` still runs the real script (pyenv execs `pyenv-rehash`
//! by path search, which skips functions) and still says it cannot.
//! The shims are never made writable; the new console scripts are simply not
//! shimmed until the user runs `pyenv rehash` outside the sandbox.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::mount::{MountPlan, Shown};

/// The hook directory in the namespaces tier: a generated file in the
/// sandbox's own root, read-only.
pub const HOOK_DIR: &str = "/.shellcage/pyenv.d";

/// Where the hook lives below the hook directory (pyenv looks for
/// `<dir>/exec/*.bash` for `pyenv exec`).
pub const HOOK_FILE: &str = "exec/shellcage-no-rehash.bash";

/// The hook's text.
pub const HOOK: &str = "\
# shellcage: pyenv's shims are read-only in this sandbox, so the rehash pyenv's pip hook
# runs after `pip install` cannot work; skip it (run `pyenv rehash` outside the sandbox).
pyenv-rehash() { return 0; }
export -f pyenv-rehash
";

/// The sandbox's `PYENV_HOOK_PATH`: the hook directory first, then the
/// caller's own hook path (if the tool rules passed one).
pub fn hook_path(hook_dir: &str, caller: Option<&str>) -> String {
    match caller.filter(|c| !c.is_empty()) {
        Some(c) => format!("{hook_dir}:{c}"),
        None => hook_dir.to_string(),
    }
}

/// The pyenv root the sandbox's pyenv uses (`PYENV_ROOT` as passed, else
/// `~/.pyenv`), if pyenv is installed there.
fn root(home: &Path, vars: &BTreeMap<String, String>) -> Option<PathBuf> {
    let root = vars
        .get("PYENV_ROOT")
        .filter(|r| r.starts_with('/'))
        .map_or_else(|| home.join(".pyenv"), PathBuf::from);
    root.join("libexec/pyenv").is_file().then_some(root)
}

/// Namespaces tier: when pyenv's root is visible read-only, add the hook as
/// a generated file and point `PYENV_HOOK_PATH` at it. Nothing otherwise.
pub fn apply(plan: &mut MountPlan, home: &Path, vars: &mut BTreeMap<String, String>) {
    let Some(root) = root(home, vars) else {
        return;
    };
    if plan.shows(&root.join("shims")) != (Shown::Bound { readonly: true }) {
        return;
    }
    let at = Path::new(HOOK_DIR).join(HOOK_FILE);
    if plan.add_file(&at, HOOK.as_bytes().to_vec(), 0o444).is_ok() {
        let path = hook_path(HOOK_DIR, vars.get("PYENV_HOOK_PATH").map(String::as_str));
        vars.insert("PYENV_HOOK_PATH".into(), path);
    }
}

/// Container tier: the hook goes into the per-run directory `dir` (removed
/// after the run), when pyenv is installed.
pub fn apply_in_dir(dir: &Path, home: &Path, vars: &mut BTreeMap<String, String>) {
    if root(home, vars).is_none() {
        return;
    }
    let hooks = dir.join("pyenv.d");
    let file = hooks.join(HOOK_FILE);
    let written = file
        .parent()
        .is_some_and(|p| std::fs::create_dir_all(p).is_ok())
        && std::fs::write(&file, HOOK).is_ok();
    if written {
        let path = hook_path(
            &hooks.display().to_string(),
            vars.get("PYENV_HOOK_PATH").map(String::as_str),
        );
        vars.insert("PYENV_HOOK_PATH".into(), path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hook_path_puts_shellcage_first() {
        assert_eq!(hook_path("/run/sc/pyenv.d", None), "/run/sc/pyenv.d");
        assert_eq!(hook_path("/run/sc/pyenv.d", Some("")), "/run/sc/pyenv.d");
        assert_eq!(
            hook_path("/run/sc/pyenv.d", Some("/a:/b")),
            "/run/sc/pyenv.d:/a:/b"
        );
    }

    #[test]
    fn hook_is_valid_bash_and_defines_the_function() {
        let out = std::process::Command::new("bash")
            .args(["-c", &format!("{HOOK}\ntype -t pyenv-rehash; pyenv-rehash; echo rc=$?; bash -c 'type -t pyenv-rehash'")])
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "function\nrc=0\nfunction\n"
        );
    }
}
