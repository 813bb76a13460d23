//! Where a rule of the resolved policy is written: the profile file and line.
//!
//! The profile loader keeps the texts of the `extends` chain (for the hash);
//! this module parses them again with spans, expands each path entry the
//! way the loader does (`~`, `{workspace}`) and looks the policy's values up.
//! A value listed in several profiles of the chain is attributed to the one
//! nearest the root (where it was introduced); a scalar to the profile nearest
//! the loaded one that sets it (child wins).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use toml::de::{DeTable, DeValue};

/// One string entry of a profile: `filesystem.hide = [ "~/.ssh" ]` at line 141.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    /// `filesystem.hide`, `network.mode` …
    key: String,
    /// The text as written.
    raw: String,
    /// Index in the chain: 0 is the loaded profile, the last its root.
    depth: usize,
    line: usize,
}

/// The profile chain's entries, for looking rules up. Built once per policy
/// (the launch writes the policy file with it on every run), so lookups go
/// through maps made at construction: expanding every entry for every rule
/// was quadratic.
#[derive(Debug, Clone, Default)]
pub struct Locator {
    entries: Vec<Entry>,
    /// `(key, expanded path)` → the entry nearest the root.
    by_path: HashMap<(String, PathBuf), usize>,
    /// `filesystem.protect` raw path → the entry nearest the root.
    by_protect: HashMap<PathBuf, usize>,
    /// Profile ids (`builtin:dev`, a file path), by depth.
    ids: Vec<String>,
    home: PathBuf,
    workspace: PathBuf,
}

/// Keys whose values are lists of strings.
const LISTS: [(&str, &str); 4] = [
    ("filesystem", "read"),
    ("filesystem", "write"),
    ("filesystem", "hide"),
    ("filesystem", "protect"),
];
/// Keys whose values are strings.
const SCALARS: [(&str, &str); 2] = [("network", "mode"), ("filesystem", "workspace")];

/// The byte offsets of a text's newlines, for [`line_of`].
fn newlines(text: &str) -> Vec<usize> {
    text.bytes()
        .enumerate()
        .filter(|(_, b)| *b == b'\n')
        .map(|(i, _)| i)
        .collect()
}

/// 1-based line of `offset`, given the text's [`newlines`].
fn line_of(newlines: &[usize], offset: usize) -> usize {
    newlines.partition_point(|&n| n < offset) + 1
}

fn table<'a, 'i>(t: &'a DeTable<'i>, key: &str) -> Option<&'a DeValue<'i>> {
    t.iter()
        .find(|(k, _)| k.get_ref().as_ref() == key)
        .map(|(_, v)| v.get_ref())
}

impl Locator {
    /// `chain`: `(id, text)` from the loaded profile to its root.
    pub fn new(chain: &[(String, String)], home: &Path, workspace: &Path) -> Locator {
        let mut entries = Vec::new();
        for (depth, (_, text)) in chain.iter().enumerate() {
            let Ok(doc) = DeTable::parse(text) else {
                continue;
            };
            let doc = doc.get_ref();
            let nl = newlines(text);
            for (section, key) in LISTS.iter().chain(SCALARS.iter()) {
                let Some(DeValue::Table(sec)) = table(doc, section) else {
                    continue;
                };
                let Some((_, value)) = sec.iter().find(|(k, _)| k.get_ref().as_ref() == *key)
                else {
                    continue;
                };
                let items: Vec<_> = match value.get_ref() {
                    DeValue::Array(a) => a.iter().collect(),
                    _ => vec![value],
                };
                for item in items {
                    if let DeValue::String(s) = item.get_ref() {
                        entries.push(Entry {
                            key: format!("{section}.{key}"),
                            raw: s.to_string(),
                            depth,
                            line: line_of(&nl, item.span().start),
                        });
                    }
                }
            }
        }
        let mut l = Locator {
            entries,
            by_path: HashMap::new(),
            by_protect: HashMap::new(),
            ids: chain.iter().map(|(id, _)| id.clone()).collect(),
            home: home.to_path_buf(),
            workspace: workspace.to_path_buf(),
        };
        // Nearest the root wins: a deeper entry replaces a shallower one.
        for (i, e) in l.entries.iter().enumerate() {
            let deeper =
                |map_entry: Option<&usize>| map_entry.is_none_or(|&j| l.entries[j].depth < e.depth);
            if e.key == "filesystem.protect" {
                let k = PathBuf::from(&e.raw);
                if deeper(l.by_protect.get(&k)) {
                    l.by_protect.insert(k, i);
                }
            } else if LISTS
                .iter()
                .any(|(s, k)| e.key.strip_prefix(s).and_then(|r| r.strip_prefix('.')) == Some(*k))
            {
                let k = (e.key.clone(), l.expand(&e.raw));
                if deeper(l.by_path.get(&k)) {
                    l.by_path.insert(k, i);
                }
            }
        }
        l
    }

    /// `~` and `{workspace}` expanded as the loader does.
    fn expand(&self, raw: &str) -> PathBuf {
        let join = |base: &Path, rest: &str| {
            let rest = rest.trim_start_matches('/');
            if rest.is_empty() {
                base.to_path_buf()
            } else {
                base.join(rest)
            }
        };
        if raw == "~" || raw.starts_with("~/") {
            join(&self.home, &raw[1..])
        } else if let Some(rest) = raw.strip_prefix("{workspace}") {
            join(&self.workspace, rest)
        } else {
            crate::explain::resolve::lexical_normal(Path::new(raw))
        }
    }

    fn place(&self, e: &Entry) -> Place {
        let id = &self.ids[e.depth];
        let file = match id.strip_prefix("builtin:") {
            Some(name) => format!("profiles/{name}.toml (built-in)"),
            None => id.clone(),
        };
        Place {
            key: e.key.clone(),
            raw: e.raw.clone(),
            at: format!("{file}:{}", e.line),
        }
    }

    /// Where list `key` names `path` (after expansion), nearest the root.
    pub fn path_entry(&self, key: &str, path: &Path) -> Option<Place> {
        self.by_path
            .get(&(key.to_owned(), path.to_path_buf()))
            .map(|&i| self.place(&self.entries[i]))
    }

    /// Where `filesystem.protect` names `rel`, nearest the root.
    pub fn protect_entry(&self, rel: &Path) -> Option<Place> {
        self.by_protect
            .get(rel)
            .map(|&i| self.place(&self.entries[i]))
    }

    /// Where scalar `key` is set, nearest the loaded profile.
    pub fn scalar(&self, key: &str) -> Option<Place> {
        self.entries
            .iter()
            .filter(|e| e.key == key)
            .min_by_key(|e| e.depth)
            .map(|e| self.place(e))
    }
}

/// A rule's place in a profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    pub key: String,
    pub raw: String,
    /// `profiles/dev.toml (built-in):141` or `/home/u/.config/shellcage/profiles/x.toml:3`.
    pub at: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_lines_in_the_chain() {
        let root = "version = 1\n[filesystem]\nread = [\n  \"/usr\",\n  \"~/.cargo\",\n]\nhide = [\"~/.ssh\", \"/etc/ssh/*key*\"]\nprotect = [\".git/hooks\"]\n[network]\nmode = \"none\"\n";
        let child = "version = 1\nextends = \"dev\"\n[filesystem]\nhide = [\"~/.ssh\", \"{workspace}/secrets\"]\n[network]\nmode = \"loopback\"\n";
        let chain = vec![
            ("/u/p/child.toml".to_string(), child.to_string()),
            ("builtin:dev".to_string(), root.to_string()),
        ];
        let l = Locator::new(&chain, Path::new("/home/u"), Path::new("/w"));
        let p = l
            .path_entry("filesystem.hide", Path::new("/home/u/.ssh"))
            .unwrap();
        assert_eq!(p.at, "profiles/dev.toml (built-in):7");
        assert_eq!(p.raw, "~/.ssh");
        let p = l
            .path_entry("filesystem.hide", Path::new("/w/secrets"))
            .unwrap();
        assert_eq!(p.at, "/u/p/child.toml:4");
        let p = l
            .path_entry("filesystem.read", Path::new("/home/u/.cargo"))
            .unwrap();
        assert_eq!(p.at, "profiles/dev.toml (built-in):5");
        assert_eq!(
            l.protect_entry(Path::new(".git/hooks")).unwrap().at,
            "profiles/dev.toml (built-in):8"
        );
        let m = l.scalar("network.mode").unwrap();
        assert_eq!(
            (m.raw.as_str(), m.at.as_str()),
            ("loopback", "/u/p/child.toml:6")
        );
        assert!(l.path_entry("filesystem.read", Path::new("/opt")).is_none());
    }

    #[test]
    fn builtin_dev_hide_line_is_real() {
        let text = crate::profile::builtin_text("dev").unwrap();
        let chain = vec![("builtin:dev".to_string(), text.to_string())];
        let l = Locator::new(&chain, Path::new("/home/u"), Path::new("/w"));
        let p = l
            .path_entry("filesystem.hide", Path::new("/home/u/.ssh"))
            .unwrap();
        let line: usize = p.at.rsplit(':').next().unwrap().parse().unwrap();
        assert_eq!(text.lines().nth(line - 1).unwrap().trim(), "\"~/.ssh\",");
    }
}
