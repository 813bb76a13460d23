//! git safety: what a sandboxed command may leave behind for the host's git.
//!
//! - [`config`]: git's configuration syntax, read exactly as git reads it and
//!   written in one canonical form.
//! - [`policy`]: the table of keys that may cross from a sandbox to the host
//!   (default deny).
//! - [`merge`]: the key-by-key merge of a sandbox's private copy of
//!   `.git/config` into the host file.
//! - [`repo`]: which directories git would take as a repository (setup.c's
//!   rules), and an inventory of their config, commondir, hooks and links.
//! - [`neutralise`]: undoing what a run did to those (refused keys out,
//!   hooks renamed, commondir removed, links out of the workspace disabled).
//! - [`files`]: reading and replacing git's files without following links,
//!   with git's lock protocol.

pub mod config;
pub mod files;
pub mod merge;
pub mod neutralise;
pub mod policy;
pub mod repo;

use std::path::PathBuf;

/// The user's global git config files in the order git reads them (later
/// wins): `/etc/gitconfig`, `$XDG_CONFIG_HOME/git/config` (default
/// `~/.config/git/config`), `~/.gitconfig`. Read with this module's reader;
/// includes are not followed.
pub fn global_files() -> Vec<PathBuf> {
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let mut files = vec![PathBuf::from("/etc/gitconfig")];
    files.extend(xdg_config_home().map(|x| x.join("git/config")));
    files.extend(home.map(|h| h.join(".gitconfig")));
    files
}

/// `$XDG_CONFIG_HOME` when absolute, else `~/.config`.
pub fn xdg_config_home() -> Option<PathBuf> {
    std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
}

/// The last value of the flat, lower-case `key` in `text` (a config file).
pub fn last_value(text: &[u8], key: &[u8]) -> Option<Vec<u8>> {
    let config = config::Config::parse(text).ok()?;
    let entry = config.entries.iter().rev().find(|e| e.key == key)?;
    Some(entry.value.clone().unwrap_or_else(|| b"true".to_vec()))
}

/// The value git's global configuration gives `key` (see [`global_files`]).
pub fn global_value(key: &[u8]) -> Option<Vec<u8>> {
    // Later files win: look from the last one back.
    global_files().iter().rev().find_map(|f| {
        let text = files::read_regular(f, config::MAX_CONFIG_SIZE)
            .ok()
            .flatten()?;
        last_value(&text, key)
    })
}
