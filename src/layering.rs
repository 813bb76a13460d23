//! The module map as a test: a module imports only from modules on a lower
//! floor (or from its own module tree), so describing never depends on
//! applying, and nothing low reaches back up. The README's architecture
//! section shows the same floors.

/// Each top-level module's floor; a new module gets a row here.
const FLOORS: &[(&str, u8)] = &[
    // Foundations: raw syscalls, stderr, the validated policy types.
    ("sys", 0),
    ("say", 0),
    ("policy", 0),
    // What blocks user namespaces (AppArmor, sysctls) and `setup apparmor`: reads
    // and writes files only, so probe can ask it before any clone.
    ("apparmor", 0),
    // What the kernel offers (with apparmor's answer on user namespaces);
    // clap definitions and POSIX shell words; git's config, key policy and repositories
    // (reads and writes files only); the egress proxy's engine (its rules validate the
    // profile's `[network]` lists; the process that runs it is sandbox::proxy).
    ("probe", 1),
    ("cli", 1),
    ("git", 1),
    // Notices to the user: the dropped-variables line with its once-per-session marker,
    // the closing hint (formats and remembers; the runtime dir check).
    ("notice", 1),
    ("net", 1),
    // Profiles → Policy (network lists checked with net's rules); Policy + features → Plan.
    ("profile", 2),
    ("plan", 2),
    // Command line + environment + profile → Request; describing and applying a sandbox
    // (the proxy process, its listeners inside the namespace).
    ("request", 3),
    ("sandbox", 3),
    // Waiting for a sandbox; judging a path or host against a request's policy (explain).
    ("supervise", 4),
    ("explain", 4),
    // The audit log (its record is built from a plan and an outcome); Claude Code's hook
    // (file tools judged by explain), install and shell-prefix helpers.
    ("audit", 5),
    ("claude", 5),
    // Commands (overlay: `changes`, `apply`, `discard` and the layer store; it uses the audit
    // log's hashing, clock and tail).
    ("entrypoint", 6),
    ("overlay", 6),
    // One run: everything below (an overlay workspace's layer is held through `overlay`).
    ("launch", 7),
    // Sessions: a warm sandbox that runs many commands, each concluded as a run is.
    ("session", 8),
    // What this machine can do, and the sessions that run on it.
    ("doctor", 9),
];

fn floor(module: &str) -> u8 {
    FLOORS
        .iter()
        .find(|(m, _)| *m == module)
        .map(|(_, f)| *f)
        .unwrap_or_else(|| panic!("module {module} has no floor in src/layering.rs"))
}

/// Every `crate::NAME` in `text`.
fn crate_refs(text: &str) -> Vec<&str> {
    text.match_indices("crate::")
        .map(|(i, _)| {
            let rest = &text[i + "crate::".len()..];
            let end = rest
                .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
                .unwrap_or(rest.len());
            &rest[..end]
        })
        .filter(|m| !m.is_empty())
        .collect()
}

fn sources(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn no_module_imports_from_a_higher_or_equal_floor() {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut wrong = Vec::new();
    for file in files {
        let rel = file.strip_prefix(&src).unwrap();
        let name = rel.to_str().unwrap();
        // Tests may reach anywhere; main.rs and lib.rs are the top.
        if name.ends_with("tests.rs") || name.contains("/tests/") {
            continue;
        }
        if ["main.rs", "lib.rs", "layering.rs"].contains(&name) {
            continue;
        }
        let module = name.split(['/', '.']).next().unwrap();
        let text = std::fs::read_to_string(&file).unwrap();
        // A trailing `#[cfg(test)] mod tests { … }` is test code.
        let text = text.split("#[cfg(test)]\nmod tests").next().unwrap();
        for used in crate_refs(text) {
            if used != module && floor(used) >= floor(module) {
                wrong.push(format!("{name} uses crate::{used}"));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports that run up or sideways: {wrong:#?}"
    );
}

#[test]
fn every_module_has_a_floor() {
    let lib = include_str!("lib.rs");
    for line in lib.lines() {
        if let Some(m) = line.strip_prefix("pub mod ") {
            floor(m.trim_end_matches(';'));
        }
    }
}
