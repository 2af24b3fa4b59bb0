//! `[general]`: settings for the whole module and defaults for every section.

use std::path::PathBuf;
use std::time::Duration;

use super::values;
use super::KeyError;
use crate::core::render::template::{DateFormat, FormatContext, Template};

/// The `[general]` section.
#[derive(Debug, Clone, PartialEq)]
pub struct General {
    /// Calls whose first channel starts in one of these contexts are `direction = out`.
    pub internal_contexts: Vec<String>,
    /// Rendered with `${recording}` into the `recording_url` field.
    pub recording_url: Option<Template>,
    /// Days a caller counts as a repeat caller (`is_duplicate`).
    pub repeat_window_days: u32,
    /// Durable queue, dead letters and caller history; default `<astspooldir>/webhook`.
    pub spool_dir: Option<PathBuf>,
    /// Per-request timeout, default for every section.
    pub timeout: Duration,
    /// Retry schedule, default for every section; after it a delivery is dead-lettered.
    pub retry: Vec<Duration>,
    /// Default date format and time zone for every section.
    pub format: FormatContext,
    /// `trace_calls = yes`: log every channel event the module sees and every call event it
    /// makes, to see how a call flow was understood.
    pub trace_calls: bool,
    /// `batch_window`: how long call events may wait to go out together. The correlation
    /// thread sleeps this long when Asterisk has nothing for it, so it bounds the delay of
    /// every event and sets how often the module wakes: fewer wake-ups cost Asterisk less
    /// CPU at low call rates (README: Performance).
    pub batch_window: Duration,
}

/// `batch_window`'s bounds: below 10 ms the wake-ups cost more than they save; above 1 s a
/// CRM sees calls late.
pub const BATCH_WINDOW_MIN: Duration = Duration::from_millis(10);
pub const BATCH_WINDOW_MAX: Duration = Duration::from_millis(1000);

impl Default for General {
    fn default() -> Self {
        General {
            internal_contexts: Vec::new(),
            recording_url: None,
            repeat_window_days: 90,
            spool_dir: None,
            timeout: Duration::from_millis(5000),
            retry: [5, 30, 120, 600, 3600, 21600]
                .map(Duration::from_secs)
                .to_vec(),
            format: FormatContext::default(),
            trace_calls: false,
            batch_window: Duration::from_millis(80),
        }
    }
}

impl General {
    /// The date format and time zone sections start from.
    pub fn format_context(&self) -> FormatContext {
        self.format.clone()
    }

    /// Applies one `[general]` key.
    pub fn apply(&mut self, key: &str, value: &str) -> Result<(), KeyError> {
        let v = value.trim();
        match key {
            "internal_contexts" => self.internal_contexts = values::list(v),
            "recording_url" => {
                self.recording_url = Some(Template::parse(v).map_err(|e| e.to_string())?)
            }
            "repeat_window" => {
                self.repeat_window_days =
                    u32::try_from(values::number(v)?).map_err(|_| "too large".to_string())?
            }
            "spool_dir" => {
                if !v.starts_with('/') {
                    return Err(format!("must be an absolute path: {v}").into());
                }
                self.spool_dir = Some(PathBuf::from(v))
            }
            "timeout" => self.timeout = values::duration(v, Duration::from_millis(1))?,
            "retry" => self.retry = values::durations(v)?,
            "date_format" => {
                self.format.date_format = DateFormat::parse(v).map_err(|e| e.to_string())?
            }
            "trace_calls" => self.trace_calls = values::boolean(v)?,
            "batch_window" => {
                let d = values::duration(v, Duration::from_millis(1))?;
                if !(BATCH_WINDOW_MIN..=BATCH_WINDOW_MAX).contains(&d) {
                    return Err(format!("must be between 10ms and 1s, not `{v}`").into());
                }
                self.batch_window = d
            }
            "timezone" => {
                self.format.timezone = v
                    .parse()
                    .map_err(|_| format!("unknown time zone `{v}` (e.g. Europe/Moscow, UTC)"))?
            }
            _ => return Err(KeyError::Unknown),
        }
        Ok(())
    }
}
