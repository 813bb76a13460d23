//! The attack suite (issue 3): each case is one real attempt inside
//! `shellcage run` plus a control that runs the same probe without the
//! protection and must see the secret or effect. scripts/attack-report runs
//! this binary and tabulates the `ATTACK\t…` lines each case prints.
//!
//! Cases are written as `attack!(name, "category", |c| { … })`: one #[test]
//! per case, `c` is a fresh `harness::Ctx` (workspace, fake $HOME, canary).

mod common;

macro_rules! attack {
    ($name:ident, $cat:literal, |$c:ident| $body:block) => {
        #[test]
        fn $name() {
            #[allow(unused_mut)]
            let Some(mut $c) = $crate::harness::Ctx::new(stringify!($name), $cat) else {
                return;
            };
            $body
        }
    };
}

#[path = "proxy_mode/cage.rs"]
mod cage;
#[path = "attacks/harness.rs"]
mod harness;
#[path = "net_proxy/support.rs"]
mod support;

#[path = "attacks/activity.rs"]
mod activity;
#[path = "attacks/devices.rs"]
mod devices;
#[path = "attacks/environment.rs"]
mod environment;
#[path = "attacks/envscan.rs"]
mod envscan;
#[path = "attacks/git.rs"]
mod git;
#[path = "attacks/kept_home.rs"]
mod kept_home;
#[path = "attacks/network.rs"]
mod network;
#[path = "attacks/persistence.rs"]
mod persistence;
#[path = "attacks/phrasing.rs"]
mod phrasing;
#[path = "attacks/privilege.rs"]
mod privilege;
#[path = "attacks/processes.rs"]
mod processes;
#[path = "attacks/proxy.rs"]
mod proxy;
#[path = "attacks/resources.rs"]
mod resources;
#[path = "attacks/secrets.rs"]
mod secrets;
#[path = "attacks/setid.rs"]
mod setid;
#[path = "attacks/terminal.rs"]
mod terminal;
