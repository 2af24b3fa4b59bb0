//! How a call ended: the status word and who hung up (SPEC §2), decided from what the
//! correlator saw. Kept apart so the rules read as a table and are tested as one.

use crate::core::model::call::HangupBy;

/// A final DIALSTATUS as one of the words SPEC §2 lists; `None` for progress reports
/// (`RINGING`, `PROCEEDING`, `PROGRESS`) and dial begin (empty).
pub fn final_dial_status(s: &str) -> Option<&'static str> {
    Some(match s {
        "ANSWER" => "ANSWER",
        "BUSY" => "BUSY",
        "NOANSWER" => "NOANSWER",
        "CANCEL" => "CANCEL",
        "CONGESTION" => "CONGESTION",
        "CHANUNAVAIL" | "INVALIDARGS" | "DONTCALL" => "CHANUNAVAIL",
        "TORTURE" => "NOANSWER",
        _ => return None,
    })
}

/// `ANSWER` when anyone talked with the caller; else `BUSY` / `CONGESTION` / `CHANUNAVAIL`
/// when that was the last dial's outcome; else `CANCEL` when the caller hung up first
/// (abandoned while ringing, queued or in an IVR); else `NOANSWER` (the PBX gave up).
pub fn status(answered: bool, last_dial: Option<&str>, hangup_by: HangupBy) -> &'static str {
    if answered {
        return "ANSWER";
    }
    match last_dial {
        Some("BUSY") => "BUSY",
        Some("CONGESTION") => "CONGESTION",
        Some("CHANUNAVAIL") => "CHANUNAVAIL",
        _ if hangup_by == HangupBy::Caller => "CANCEL",
        _ => "NOANSWER",
    }
}

/// What the hangup sources say. A channel driver names the channel itself as the source when
/// its far end hung up, and the same name reaches the bridged peer (`ast_set_hangupsource`);
/// `Hangup()` writes `dialplan/builtin`, a dialplan that just ends writes nothing.
pub struct Hangups<'a> {
    /// The caller's channel name and its final hangup source.
    pub caller_name: &'a str,
    pub caller_source: &'a str,
    /// The caller's source names a channel that talked with the caller.
    pub source_is_party: bool,
    /// The last party that talked with the caller and is gone hung up itself.
    pub last_party_hung_up: bool,
}

pub fn hangup_by(h: &Hangups) -> HangupBy {
    if !h.caller_source.is_empty() && h.caller_source == h.caller_name {
        HangupBy::Caller
    } else if h.source_is_party || h.last_party_hung_up {
        HangupBy::Agent
    } else {
        HangupBy::Pbx
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn by(source: &str, party: bool, last: bool) -> HangupBy {
        hangup_by(&Hangups {
            caller_name: "PJSIP/in-1",
            caller_source: source,
            source_is_party: party,
            last_party_hung_up: last,
        })
    }

    #[test]
    fn who_hung_up() {
        assert_eq!(by("PJSIP/in-1", false, true), HangupBy::Caller);
        assert_eq!(by("PJSIP/100-2", true, false), HangupBy::Agent);
        assert_eq!(by("", false, true), HangupBy::Agent);
        assert_eq!(by("dialplan/builtin", false, false), HangupBy::Pbx);
        assert_eq!(by("", false, false), HangupBy::Pbx);
    }

    #[test]
    fn status_words() {
        use HangupBy::*;
        assert_eq!(status(true, Some("CANCEL"), Caller), "ANSWER");
        assert_eq!(status(false, Some("BUSY"), Pbx), "BUSY");
        assert_eq!(status(false, Some("CHANUNAVAIL"), Caller), "CHANUNAVAIL");
        // A queue or Dial timeout cancels the ringing members: still the PBX giving up.
        assert_eq!(status(false, Some("CANCEL"), Pbx), "NOANSWER");
        assert_eq!(status(false, Some("NOANSWER"), Pbx), "NOANSWER");
        assert_eq!(status(false, Some("CANCEL"), Caller), "CANCEL");
        assert_eq!(status(false, None, Caller), "CANCEL");
        assert_eq!(status(false, None, Agent), "NOANSWER");
        assert_eq!(final_dial_status("RINGING"), None);
        assert_eq!(final_dial_status("INVALIDARGS"), Some("CHANUNAVAIL"));
    }
}
