//! What a PBX adapter tells the core, as owned values: the adapter copies out of the host's
//! structures on the call path and hands these over a channel; nothing here borrows from the host.

use std::time::SystemTime;

use compact_str::CompactString;

/// A change in one channel's life that matters to a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelChange {
    /// The channel was created.
    New,
    /// The channel's state became Up (answered, by a person or by the dialplan).
    Up,
    /// The channel is gone.
    Dead,
    /// Its linkedid or bridge changed, or it entered or left a queue: a transfer, a pickup,
    /// two calls bridged into one, a queue.
    Changed,
}

/// A snapshot of one channel at a change. Its strings are inline up to 24 bytes: about ten
/// of these per call are copied out of the host and most are only compared, not kept.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ChannelInfo {
    /// All channels of one call share this id.
    pub linkedid: CompactString,
    pub uniqueid: CompactString,
    /// e.g. `PJSIP/100-00000001`.
    pub name: CompactString,
    pub caller_number: CompactString,
    pub caller_name: CompactString,
    /// Number the caller dialed, as the channel driver saw it.
    pub dnid: CompactString,
    pub context: CompactString,
    pub exten: CompactString,
    /// Dialplan application running at the time (`Dial`, `Queue`, …).
    pub appl: CompactString,
    /// Its arguments (`Queue`: `sales,t,,,30`).
    pub appl_data: CompactString,
    /// The bridge the channel is in; empty when in none.
    pub bridge: CompactString,
    pub accountcode: CompactString,
    /// Q.850 cause; meaningful at `Dead`.
    pub hangup_cause: i32,
    /// Who asked for the hangup: the channel's own name when its far end hung up,
    /// `dialplan/builtin` for `Hangup()`, empty when unknown.
    pub hangup_source: CompactString,
    /// When the channel was created.
    pub created: Option<SystemTime>,
}

/// Everything an adapter reports. Each carries the time the adapter saw it.
#[derive(Debug, Clone, PartialEq)]
pub enum HostEvent {
    Channel {
        change: ChannelChange,
        info: ChannelInfo,
        at: SystemTime,
    },
    /// A dial attempt began (`status` empty) or ended (`ANSWER`, `BUSY`, …).
    Dial {
        /// Calling channel; `None` for an originated leg with no caller.
        caller_uniqueid: Option<String>,
        peer_uniqueid: String,
        peer_linkedid: String,
        peer_name: String,
        dialstring: String,
        status: String,
        at: SystemTime,
    },
    /// A channel variable was set.
    VarSet {
        linkedid: String,
        uniqueid: String,
        name: String,
        value: String,
        at: SystemTime,
    },
    /// A click-to-call the module placed: the call with this linkedid is `out`, from the
    /// extension `from` to the number `to`.
    Originated {
        linkedid: String,
        from: String,
        to: String,
        at: SystemTime,
    },
    /// `Set(WEBHOOK(name)=value)`: data attached to the whole call.
    CallData {
        linkedid: String,
        name: String,
        value: String,
        at: SystemTime,
    },
}
