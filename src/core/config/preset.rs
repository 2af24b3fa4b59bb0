//! Provider presets: `preset = roistat | mango | xvb | calltracking | callkeeper` fills in a
//! section so the endpoint receives what the provider's own document describes. Keys written
//! in the section override (same param name) or extend the preset.

use super::request_spec::RequestSpec;
use super::SectionKind;

/// A provider whose format a section can speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    Roistat,
    Mango,
    Xvb,
    CallTracking,
    CallKeeper,
}

impl Preset {
    pub fn parse(s: &str) -> Option<Preset> {
        Some(match s.trim().to_ascii_lowercase().as_str() {
            "roistat" => Preset::Roistat,
            "mango" => Preset::Mango,
            "xvb" => Preset::Xvb,
            "calltracking" => Preset::CallTracking,
            "callkeeper" => Preset::CallKeeper,
            _ => return None,
        })
    }

    /// Fills the request (and type-specific settings) before the section's own keys apply.
    pub fn apply(self, _spec: &mut RequestSpec, _target: &mut SectionKind) {}
}
