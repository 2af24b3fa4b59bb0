//! A host event's strings packed into one reusable buffer.
//!
//! The hook runs on the host's thread and the correlation thread frees what the hook
//! allocated. With one `String` per field that was a dozen `malloc`s per event on one thread
//! and a dozen `free`s on another, which defeats the allocator's per-thread caches (every
//! hook `malloc` took the slow, locked path) and made the hook's cost several microseconds.
//! Packing copies the strings into one buffer taken from a pool that the correlation thread
//! refills after unpacking, so the hook normally allocates nothing.

use std::time::SystemTime;

use crate::core::ingest::host_event::{ChannelChange, ChannelInfo, HostEvent};

/// Most strings one packed event carries.
pub const MAX_FIELDS: usize = 14;

/// Byte strings back to back in one buffer.
#[derive(Debug, Default)]
pub struct PackedStrings {
    buf: Vec<u8>,
    ends: [u32; MAX_FIELDS],
    len: usize,
}

impl PackedStrings {
    /// Starts packing into `buf` (emptied; its capacity is what is reused).
    pub fn new(mut buf: Vec<u8>) -> PackedStrings {
        buf.clear();
        PackedStrings {
            buf,
            ends: [0; MAX_FIELDS],
            len: 0,
        }
    }

    /// Appends one field; fields past [`MAX_FIELDS`] are ignored (a programming error, never
    /// a panic on the host's thread).
    pub fn push(&mut self, s: &[u8]) {
        if self.len == MAX_FIELDS {
            return;
        }
        self.buf.extend_from_slice(s);
        self.ends[self.len] = self.buf.len() as u32;
        self.len += 1;
    }

    /// Field `i` as text (invalid UTF-8 replaced); empty when absent.
    pub fn get(&self, i: usize) -> String {
        if i >= self.len {
            return String::new();
        }
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        let bytes = &self.buf[start..self.ends[i] as usize];
        // Valid UTF-8 (the usual case) is checked by the fast validator and copied as it is.
        match std::str::from_utf8(bytes) {
            Ok(s) => s.to_owned(),
            Err(_) => String::from_utf8_lossy(bytes).into_owned(),
        }
    }

    /// The buffer, for the pool.
    pub fn into_buffer(self) -> Vec<u8> {
        self.buf
    }
}

/// Which event the packed strings make, and in what field order.
#[derive(Debug)]
pub enum PackedKind {
    /// Fields: linkedid, uniqueid, name, caller number, caller name, dnid, context, exten,
    /// application, accountcode, hangup source, application data, bridge id.
    Channel {
        change: ChannelChange,
        hangup_cause: i32,
        created: Option<SystemTime>,
    },
    /// Fields: caller uniqueid (empty for none), peer uniqueid, peer linkedid, peer name,
    /// dialstring, status.
    Dial,
    /// Fields: linkedid, uniqueid, name, value.
    VarSet,
}

/// A host event as the hook hands it over.
#[derive(Debug)]
pub struct PackedEvent {
    pub kind: PackedKind,
    pub strings: PackedStrings,
    pub at: SystemTime,
}

impl PackedEvent {
    /// The owned event, and the buffer to give back to the pool.
    pub fn unpack(self) -> (HostEvent, Vec<u8>) {
        let f = |i| self.strings.get(i);
        let ev = match self.kind {
            PackedKind::Channel {
                change,
                hangup_cause,
                created,
            } => HostEvent::Channel {
                change,
                info: ChannelInfo {
                    linkedid: f(0),
                    uniqueid: f(1),
                    name: f(2),
                    caller_number: f(3),
                    caller_name: f(4),
                    dnid: f(5),
                    context: f(6),
                    exten: f(7),
                    appl: f(8),
                    accountcode: f(9),
                    hangup_source: f(10),
                    appl_data: f(11),
                    bridge: f(12),
                    hangup_cause,
                    created,
                },
                at: self.at,
            },
            PackedKind::Dial => {
                let caller = f(0);
                HostEvent::Dial {
                    caller_uniqueid: (!caller.is_empty()).then_some(caller),
                    peer_uniqueid: f(1),
                    peer_linkedid: f(2),
                    peer_name: f(3),
                    dialstring: f(4),
                    status: f(5),
                    at: self.at,
                }
            }
            PackedKind::VarSet => HostEvent::VarSet {
                linkedid: f(0),
                uniqueid: f(1),
                name: f(2),
                value: f(3),
                at: self.at,
            },
        };
        (ev, self.strings.into_buffer())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_channel_round_trips_and_the_buffer_comes_back() {
        let mut s = PackedStrings::new(Vec::with_capacity(300));
        let fields = [
            "1700.1",
            "1700.2",
            "PJSIP/100-0001",
            "79161234567",
            "Иван",
            "74951234567",
            "from-trunk",
            "s",
            "Dial",
            "",
            "dialplan/builtin",
        ];
        for f in fields {
            s.push(f.as_bytes());
        }
        let at = SystemTime::now();
        let (ev, buf) = PackedEvent {
            kind: PackedKind::Channel {
                change: ChannelChange::Dead,
                hangup_cause: 16,
                created: None,
            },
            strings: s,
            at,
        }
        .unpack();
        assert!(buf.capacity() >= 300);
        let HostEvent::Channel { change, info, .. } = ev else {
            panic!("not a channel: {ev:?}")
        };
        assert_eq!(change, ChannelChange::Dead);
        assert_eq!(info.caller_name, "Иван");
        assert_eq!(info.hangup_source, "dialplan/builtin");
        assert_eq!(info.accountcode, "");
        assert_eq!(info.hangup_cause, 16);
    }

    #[test]
    fn too_many_fields_and_bad_utf8_do_not_panic() {
        let mut s = PackedStrings::new(Vec::new());
        for _ in 0..MAX_FIELDS + 3 {
            s.push(b"x");
        }
        s.push(b"ignored");
        assert_eq!(s.get(MAX_FIELDS - 1), "x");
        assert_eq!(s.get(MAX_FIELDS), "");
        let mut s = PackedStrings::new(Vec::new());
        s.push(&[0xff, b'a']);
        assert_eq!(s.get(0), "\u{fffd}a");
    }
}
