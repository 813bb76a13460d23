//! What the proxy allowed and refused during a run, per destination: the exit line on
//! stderr and the serde form for `--report json` and the audit record.

use std::collections::BTreeMap;

use super::verdict::{Decision, Reason};

/// How a connection or lookup reached the proxy.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Via {
    /// `HTTP_PROXY`-style: CONNECT or an absolute-form request.
    Explicit,
    /// A connection to an address handed out by the resolver.
    Transparent,
    /// A DNS question to the resolver (no connection was made).
    Dns,
}

/// One destination, decision and reason, with how often it happened.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Destination {
    /// The host as written (names normalised; text that is not a host, escaped).
    pub host: String,
    /// None for DNS questions.
    pub port: Option<u16>,
    pub decision: Decision,
    pub reason: String,
    pub via: Via,
    pub count: u64,
    /// Bytes relayed from the sandbox to the destination, and back.
    pub bytes_out: u64,
    pub bytes_in: u64,
}

type Key = (String, Option<u16>, Decision, String, Via);

/// The per-destination record of a run.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    entries: BTreeMap<Key, Destination>,
    /// Decisions not itemized because the table was full (see [`MAX_DESTINATIONS`]).
    untracked: Totals,
}

/// Counts by decision.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Totals {
    pub allowed: u64,
    pub blocked: u64,
    pub failed: u64,
}

impl Totals {
    fn add(&mut self, decision: Decision, n: u64) {
        let slot = match decision {
            Decision::Allowed => &mut self.allowed,
            Decision::Blocked => &mut self.blocked,
            Decision::Failed => &mut self.failed,
        };
        *slot = slot.saturating_add(n);
    }

    fn sum(&self) -> u64 {
        self.allowed
            .saturating_add(self.blocked)
            .saturating_add(self.failed)
    }
}

/// The serde form: every destination, and the totals (`untracked` included).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SummaryReport {
    pub allowed: u64,
    pub blocked: u64,
    pub failed: u64,
    pub destinations: Vec<Destination>,
    /// Decisions counted in the totals but not listed: the sandbox made more distinct
    /// destinations than the table keeps (a flood of random names, say).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub untracked: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// How many distinct destinations a run itemizes. The sandbox chooses the names it asks
/// for (random names under an allowed wildcard, or anything at the resolver), so the table
/// must be bounded; beyond it decisions are only counted.
pub const MAX_DESTINATIONS: usize = 4096;

/// How many destinations the exit line names before "and N more".
const LINE_ENTRIES: usize = 8;

impl Summary {
    pub fn record(&mut self, host: &str, port: Option<u16>, via: Via, reason: &Reason) {
        let decision = reason.decision();
        let key = (host.to_string(), port, decision, reason.to_string(), via);
        if self.entries.len() >= MAX_DESTINATIONS && !self.entries.contains_key(&key) {
            self.untracked.add(decision, 1);
            return;
        }
        self.entries
            .entry(key)
            .or_insert_with(|| Destination {
                host: host.to_string(),
                port,
                decision,
                reason: reason.to_string(),
                via,
                count: 0,
                bytes_out: 0,
                bytes_in: 0,
            })
            .count += 1;
    }

    /// Add the bytes of a finished relay to its (allowed) destination.
    pub fn add_bytes(
        &mut self,
        host: &str,
        port: u16,
        via: Via,
        reason: &Reason,
        out: u64,
        inn: u64,
    ) {
        let key = (
            host.to_string(),
            Some(port),
            reason.decision(),
            reason.to_string(),
            via,
        );
        if let Some(d) = self.entries.get_mut(&key) {
            d.bytes_out += out;
            d.bytes_in += inn;
        }
    }

    /// How many destinations are itemized.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn blocked_connections(&self) -> u64 {
        self.report().total(Decision::Blocked, false)
    }

    pub fn report(&self) -> SummaryReport {
        let mut totals = self.untracked;
        for e in self.entries.values() {
            totals.add(e.decision, e.count);
        }
        SummaryReport {
            allowed: totals.allowed,
            blocked: totals.blocked,
            failed: totals.failed,
            destinations: self.entries.values().cloned().collect(),
            untracked: self.untracked.sum(),
        }
    }

    /// See [`SummaryReport::exit_line`].
    pub fn exit_line(&self) -> Option<String> {
        self.report().exit_line()
    }
}

impl SummaryReport {
    /// What was decided after `before` (an earlier report of the same proxy): a session's
    /// proxy serves all its commands, and a command's report is the difference of the
    /// summaries at its start and end (with what commands running at the same time did).
    pub fn since(&self, before: &SummaryReport) -> SummaryReport {
        let key = |d: &Destination| (d.host.clone(), d.port, d.decision, d.reason.clone(), d.via);
        let earlier: std::collections::HashMap<_, &Destination> =
            before.destinations.iter().map(|d| (key(d), d)).collect();
        let destinations: Vec<Destination> = (self.destinations.iter())
            .filter_map(|d| {
                let mut d = d.clone();
                if let Some(b) = earlier.get(&key(&d)) {
                    d.count = d.count.saturating_sub(b.count);
                    d.bytes_out = d.bytes_out.saturating_sub(b.bytes_out);
                    d.bytes_in = d.bytes_in.saturating_sub(b.bytes_in);
                }
                (d.count > 0 || d.bytes_out > 0 || d.bytes_in > 0).then_some(d)
            })
            .collect();
        SummaryReport {
            allowed: self.allowed.saturating_sub(before.allowed),
            blocked: self.blocked.saturating_sub(before.blocked),
            failed: self.failed.saturating_sub(before.failed),
            destinations,
            untracked: self.untracked.saturating_sub(before.untracked),
        }
    }

    fn total(&self, decision: Decision, dns: bool) -> u64 {
        self.destinations
            .iter()
            .filter(|d| d.decision == decision && (d.via == Via::Dns) == dns)
            .map(|d| d.count)
            .fold(0, u64::saturating_add)
    }

    /// A report that came from another process (the proxy's, which parses what the
    /// sandbox sends): at most [`MAX_DESTINATIONS`] entries, and every text reduced to
    /// printable ASCII of bounded length, so nothing in it can reach a terminal as a
    /// control sequence or a fake line of ours.
    pub fn sanitized(mut self) -> SummaryReport {
        self.destinations.truncate(MAX_DESTINATIONS);
        for d in &mut self.destinations {
            d.host = printable(&d.host);
            d.reason = printable(&d.reason);
        }
        self
    }

    /// `shellcage: network: blocked 3 connections: a.example:443 ×2, 10.0.0.5:22`, with a
    /// `; refused 1 lookup: b.example` part for DNS questions; None when nothing was
    /// blocked.
    pub fn exit_line(&self) -> Option<String> {
        let mut parts = Vec::new();
        let conns = self.total(Decision::Blocked, false);
        if conns > 0 {
            let list = self.blocked_list(false);
            parts.push(format!(
                "blocked {conns} connection{}: {list}",
                plural(conns)
            ));
        }
        let lookups = self.total(Decision::Blocked, true);
        if lookups > 0 {
            let list = self.blocked_list(true);
            parts.push(format!(
                "refused {lookups} lookup{}: {list}",
                plural(lookups)
            ));
        }
        if self.untracked > 0 {
            parts.push(format!(
                "{} more decision{} not itemized (more than {MAX_DESTINATIONS} destinations)",
                self.untracked,
                plural(self.untracked)
            ));
        }
        if parts.is_empty() || (conns == 0 && lookups == 0 && self.blocked == 0) {
            return None;
        }
        Some(format!("shellcage: network: {}", parts.join("; ")))
    }

    /// Blocked destinations, most frequent first, merged over reasons.
    fn blocked_list(&self, dns: bool) -> String {
        let mut per: BTreeMap<String, u64> = BTreeMap::new();
        for d in &self.destinations {
            if d.decision != Decision::Blocked || (d.via == Via::Dns) != dns {
                continue;
            }
            let name = match d.port {
                Some(p) => format!("{}:{p}", d.host),
                None => d.host.clone(),
            };
            *per.entry(name).or_default() += d.count;
        }
        let mut list: Vec<(String, u64)> = per.into_iter().collect();
        list.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let mut shown: Vec<String> = list
            .iter()
            .take(LINE_ENTRIES)
            .map(|(name, n)| match n {
                1 => name.clone(),
                n => format!("{name} \u{d7}{n}"),
            })
            .collect();
        if list.len() > LINE_ENTRIES {
            shown.push(format!("and {} more", list.len() - LINE_ENTRIES));
        }
        shown.join(", ")
    }
}

/// Printable ASCII only (anything else as `?`), at most 200 characters.
fn printable(text: &str) -> String {
    let mut out: String = text
        .chars()
        .take(200)
        .map(|c| if (' '..='~').contains(&c) { c } else { '?' })
        .collect();
    if text.chars().count() > 200 {
        out.push_str("...");
    }
    out
}

fn plural(n: u64) -> &'static str {
    if n == 1 { "" } else { "s" }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_keeps_only_what_was_decided_after_the_earlier_report() {
        let allowed = Reason::Allowed {
            rule: "b.example".into(),
        };
        let mut s = Summary::default();
        s.record("b.example", Some(443), Via::Explicit, &allowed);
        s.add_bytes("b.example", 443, Via::Explicit, &allowed, 10, 20);
        s.record(
            "a.example",
            Some(443),
            Via::Explicit,
            &Reason::NotInAllowlist,
        );
        let before = s.report();
        s.record("b.example", Some(443), Via::Explicit, &allowed);
        s.add_bytes("b.example", 443, Via::Explicit, &allowed, 1, 2);
        s.record(
            "c.example",
            Some(80),
            Via::Transparent,
            &Reason::NotInAllowlist,
        );
        let d = s.report().since(&before);
        assert_eq!((d.allowed, d.blocked, d.failed), (1, 1, 0));
        let hosts: Vec<(&str, u64, u64, u64)> = (d.destinations.iter())
            .map(|x| (x.host.as_str(), x.count, x.bytes_out, x.bytes_in))
            .collect();
        assert_eq!(hosts, [("b.example", 1, 1, 2), ("c.example", 1, 0, 0)]);
        assert_eq!(
            d.exit_line().unwrap(),
            "shellcage: network: blocked 1 connection: c.example:80"
        );
        // Nothing since: nothing listed.
        let again = s.report();
        assert_eq!(again.since(&again).destinations, []);
    }

    #[test]
    fn exit_line_lists_blocked_destinations_by_count() {
        let mut s = Summary::default();
        assert_eq!(s.exit_line(), None);
        let allowed = Reason::Allowed {
            rule: "b.example".into(),
        };
        s.record("b.example", Some(443), Via::Explicit, &allowed);
        assert_eq!(s.exit_line(), None);
        s.record(
            "a.example",
            Some(443),
            Via::Explicit,
            &Reason::NotInAllowlist,
        );
        s.record(
            "a.example",
            Some(443),
            Via::Transparent,
            &Reason::NotInAllowlist,
        );
        s.record("10.0.0.5", Some(22), Via::Explicit, &Reason::NotInAllowlist);
        assert_eq!(
            s.exit_line().unwrap(),
            "shellcage: network: blocked 3 connections: a.example:443 \u{d7}2, 10.0.0.5:22"
        );
        s.record("c.example", None, Via::Dns, &Reason::NotInAllowlist);
        assert!(
            s.exit_line()
                .unwrap()
                .ends_with("; refused 1 lookup: c.example")
        );
        s.add_bytes("b.example", 443, Via::Explicit, &allowed, 10, 20);
        let r = s.report();
        assert_eq!((r.allowed, r.blocked, r.failed), (1, 4, 0));
        let b = r
            .destinations
            .iter()
            .find(|d| d.host == "b.example")
            .unwrap();
        assert_eq!((b.bytes_out, b.bytes_in), (10, 20));
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["destinations"][0]["decision"], "blocked");
        assert_eq!(json["destinations"][0]["via"], "explicit");
    }

    #[test]
    fn the_table_is_bounded_and_the_rest_counted() {
        let mut s = Summary::default();
        for i in 0..MAX_DESTINATIONS + 10 {
            s.record(
                &format!("n{i}.example"),
                None,
                Via::Dns,
                &Reason::NotInAllowlist,
            );
        }
        let r = s.report();
        assert_eq!(r.destinations.len(), MAX_DESTINATIONS);
        assert_eq!((r.blocked, r.untracked), (MAX_DESTINATIONS as u64 + 10, 10));
        let line = s.exit_line().unwrap();
        assert!(line.contains("10 more decisions not itemized"), "{line}");
        // A known destination still counts.
        s.record("n0.example", None, Via::Dns, &Reason::NotInAllowlist);
        assert_eq!(s.report().destinations[0].count, 2);
    }

    #[test]
    fn a_report_from_another_process_is_sanitized() {
        let mut s = Summary::default();
        s.record(
            "a.example",
            Some(443),
            Via::Explicit,
            &Reason::NotInAllowlist,
        );
        let mut r = s.report();
        r.destinations[0].host = format!("\u{1b}]0;x\u{7}\nshellcage: fake {}", "y".repeat(300));
        let json = serde_json::to_string(&r).unwrap();
        let back: SummaryReport = serde_json::from_str(&json).unwrap();
        let clean = back.sanitized();
        let line = clean.exit_line().unwrap();
        assert!(
            line.chars()
                .all(|c| (' '..='~').contains(&c) || c == '\u{d7}'),
            "{line:?}"
        );
        assert!(clean.destinations[0].host.len() <= 203);
    }

    #[test]
    fn exit_line_is_bounded() {
        let mut s = Summary::default();
        for i in 0..20 {
            s.record(
                &format!("h{i}.example"),
                Some(443),
                Via::Explicit,
                &Reason::NotInAllowlist,
            );
        }
        let line = s.exit_line().unwrap();
        assert!(line.contains("blocked 20 connections"), "{line}");
        assert!(line.ends_with("and 12 more"), "{line}");
    }
}
