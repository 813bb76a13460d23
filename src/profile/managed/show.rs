//! `shellcage policy show`: the floor in force, key by key with its line, and
//! what it did to one run.

use super::{Applied, Floor};

/// The floor's keys with their values and lines, then `applied`'s notes.
pub fn render(floor: Option<&Floor>, applied: Option<&Applied>) -> String {
    let Some(f) = floor else {
        return format!(
            "managed floor: none ({} does not exist; profiles and flags decide)\n",
            super::DEFAULT_PATH
        );
    };
    let mut out = format!(
        "managed floor: {} (chosen by {}; owned by root, not writable by others)\n",
        f.file.display(),
        f.chosen_by
    );
    let file = f.file.display();
    let mut key = |name: &str, v: Option<(&str, usize)>, unset: &str| {
        out.push_str(&match v {
            Some((written, line)) => format!("  {name:<16} = {written:<40} # {file}:{line}\n"),
            None => format!("  {name:<16}   {unset}\n"),
        });
    };
    macro_rules! item {
        ($field:ident, $unset:expr) => {
            key(
                stringify!($field),
                f.$field.as_ref().map(|i| (i.written.as_str(), i.line)),
                $unset,
            )
        };
    }
    item!(hide, "(not set: the profile's)");
    item!(protect, "(not set: the profile's)");
    item!(network_modes, "(not set: any)");
    item!(allow_hosts, "(not set: the profile's list)");
    item!(deny_hosts, "(not set)");
    item!(
        allow_private,
        "(not set: with allow_hosts, none; else the profile's)"
    );
    item!(tiers, "(not set: any)");
    item!(workspace_modes, "(not set: any)");
    item!(
        write_roots,
        "(not set: anywhere the profile or --write says)"
    );
    item!(
        env_pass,
        "(not set: --env passes any name but secret-looking ones)"
    );
    item!(max_timeout, "(not set: the profile's)");
    item!(audit, "(not set: the profile's or --audit)");
    item!(profiles, "(not set: any)");
    item!(landlock, "(not set: the profile's)");
    item!(env_files, "(not set: the profile's)");
    item!(devices, "(not set: any the profile or --gpu asks)");
    if let Some(a) = applied {
        if !a.notes.is_empty() {
            out.push_str("applied to this run:\n");
            for n in &a.notes {
                out.push_str(&format!("  {n}\n"));
            }
        }
    }
    out
}
