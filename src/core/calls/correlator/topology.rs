//! Who is connected to whom: every live channel, the bridge it is in, and Local channel pairs.
//!
//! A call's parties are found by walking from the caller's channel through bridges and through
//! Local channel pairs (`Local/…;1` ↔ `Local/…;2`), so a queue member reached through a Local
//! channel, a transfer target and a picker all show up as "talking with the caller", whatever
//! call (linkedid) they started in.

use foldhash::{HashMap, HashSet};
use std::time::SystemTime;

/// What a channel is to the call model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// Half of a Local channel pair; `pair` names both halves.
    Local { pair: String },
    /// A phone of the office: an endpoint whose context is one of `internal_contexts`.
    Internal { ext: String },
    /// Anything else: the outside caller, a trunk.
    External,
}

/// One live channel.
#[derive(Debug, Clone)]
pub struct Chan {
    /// The call (linkedid) the channel belongs to now.
    pub call: String,
    pub name: String,
    pub role: Role,
    /// The bridge it is in; empty when in none.
    pub bridge: String,
    /// For a dialed outside line: the number it dialed (`forwarded_to`).
    pub number: String,
    /// When it entered its current bridge.
    pub bridged_at: Option<SystemTime>,
}

/// The live channels and the bridges they are in.
#[derive(Default)]
pub struct Topology {
    pub chans: HashMap<String, Chan>,
    bridges: HashMap<String, HashSet<String>>,
    pairs: HashMap<String, Vec<String>>,
}

/// `Local/100@from-queue-00000001;1` → `Local/100@from-queue-00000001`; `None` for other
/// channel technologies.
pub fn local_pair(name: &str) -> Option<String> {
    let rest = name.strip_prefix("Local/")?;
    let base = rest
        .strip_suffix(";1")
        .or_else(|| rest.strip_suffix(";2"))
        .unwrap_or(rest);
    Some(format!("Local/{base}"))
}

impl Topology {
    pub fn add(&mut self, uniqueid: &str, chan: Chan) {
        if let Role::Local { pair } = &chan.role {
            self.pairs
                .entry(pair.clone())
                .or_default()
                .push(uniqueid.to_string());
        }
        if !chan.bridge.is_empty() {
            self.bridges
                .entry(chan.bridge.clone())
                .or_default()
                .insert(uniqueid.to_string());
        }
        self.chans.insert(uniqueid.to_string(), chan);
    }

    pub fn remove(&mut self, uniqueid: &str) -> Option<Chan> {
        let chan = self.chans.remove(uniqueid)?;
        self.leave(uniqueid, &chan.bridge);
        if let Role::Local { pair } = &chan.role {
            if let Some(halves) = self.pairs.get_mut(pair) {
                halves.retain(|u| u != uniqueid);
                if halves.is_empty() {
                    self.pairs.remove(pair);
                }
            }
        }
        Some(chan)
    }

    fn leave(&mut self, uniqueid: &str, bridge: &str) {
        if let Some(members) = self.bridges.get_mut(bridge) {
            members.remove(uniqueid);
            if members.is_empty() {
                self.bridges.remove(bridge);
            }
        }
    }

    /// Moves a channel into `bridge` (empty: out of any). Returns whether it changed.
    pub fn set_bridge(&mut self, uniqueid: &str, bridge: &str, at: SystemTime) -> bool {
        let Some(chan) = self.chans.get_mut(uniqueid) else {
            return false;
        };
        if chan.bridge == bridge {
            return false;
        }
        let old = std::mem::replace(&mut chan.bridge, bridge.to_string());
        if !bridge.is_empty() {
            chan.bridged_at = Some(at);
            self.bridges
                .entry(bridge.to_string())
                .or_default()
                .insert(uniqueid.to_string());
        }
        self.leave(uniqueid, &old);
        true
    }

    /// The channels (not Local halves) connected to `from` through bridges and Local pairs,
    /// `from` excluded, most recently bridged first.
    pub fn parties(&self, from: &str) -> Vec<&str> {
        let mut found: Vec<&str> = self
            .component(from)
            .into_iter()
            .filter(|u| *u != from && !matches!(self.chans[*u].role, Role::Local { .. }))
            .collect();
        found.sort_by_key(|u| std::cmp::Reverse(self.chans[*u].bridged_at));
        found
    }

    /// Every live channel connected to `from` through bridges and Local pairs, `from` included.
    /// Borrowed from the table: walked on every bridge change, so nothing is copied.
    pub fn component(&self, from: &str) -> Vec<&str> {
        let Some((from, _)) = self.chans.get_key_value(from) else {
            return Vec::new();
        };
        let mut found = vec![from.as_str()];
        let mut todo = vec![from.as_str()];
        while let Some(u) = todo.pop() {
            let Some(chan) = self.chans.get(u) else {
                continue;
            };
            let members = self.bridges.get(&chan.bridge).into_iter().flatten();
            let halves = match &chan.role {
                Role::Local { pair } => self.pairs.get(pair).map(Vec::as_slice),
                _ => None,
            };
            for n in members.chain(halves.into_iter().flatten()) {
                // A handful of channels: a scan of what was found beats a set.
                if self.chans.contains_key(n) && !found.contains(&n.as_str()) {
                    todo.push(n);
                    found.push(n);
                }
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chan(call: &str, name: &str, role: Role, bridge: &str) -> Chan {
        Chan {
            call: call.into(),
            name: name.into(),
            role,
            bridge: bridge.into(),
            number: String::new(),
            bridged_at: None,
        }
    }

    #[test]
    fn parties_are_found_through_bridges_and_local_pairs() {
        let mut t = Topology::default();
        let pair = "Local/100@q-0001".to_string();
        t.add("c", chan("c", "PJSIP/in-1", Role::External, "b1"));
        t.add(
            "l1",
            chan(
                "c",
                "Local/100@q-0001;1",
                Role::Local { pair: pair.clone() },
                "b1",
            ),
        );
        t.add(
            "l2",
            chan("c", "Local/100@q-0001;2", Role::Local { pair }, "b2"),
        );
        let ext = Role::Internal { ext: "100".into() };
        t.add("a", chan("c", "PJSIP/100-1", ext, "b2"));
        t.add("x", chan("c", "PJSIP/101-1", Role::External, ""));
        assert_eq!(t.parties("c"), ["a"]);
        assert!(t.set_bridge("a", "", SystemTime::now()));
        assert!(t.parties("c").is_empty());
        t.remove("l2");
        assert!(t.parties("c").is_empty());
        assert_eq!(
            local_pair("Local/100@q-0001;2").as_deref(),
            Some("Local/100@q-0001")
        );
        assert_eq!(local_pair("PJSIP/100-1"), None);
    }
}
