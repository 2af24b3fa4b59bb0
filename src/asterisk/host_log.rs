//! Forwards the `log` facade to Asterisk's logger. Formatting happens in Rust; the host only ever
//! receives a finished string (the shim prints it with a fixed `"%s"`).

use std::ffi::CString;

use log::{Level, LevelFilter, Log, Metadata, Record};

use super::ffi;

struct HostLogger {
    log: unsafe extern "C" fn(
        level: i32,
        file: *const libc::c_char,
        line: i32,
        func: *const libc::c_char,
        msg: *const libc::c_char,
    ),
}

fn c_string(s: &str) -> CString {
    CString::new(s.replace('\0', "\\0")).unwrap_or_default()
}

impl Log for HostLogger {
    fn enabled(&self, _: &Metadata) -> bool {
        true
    }

    fn log(&self, record: &Record) {
        let level = match record.level() {
            Level::Error => ffi::rw_log_level_RW_LOG_ERROR,
            Level::Warn => ffi::rw_log_level_RW_LOG_WARNING,
            Level::Info => ffi::rw_log_level_RW_LOG_NOTICE,
            Level::Debug | Level::Trace => ffi::rw_log_level_RW_LOG_DEBUG,
        };
        let msg = c_string(&record.args().to_string());
        let file = c_string(record.file().unwrap_or("res_webhook"));
        let func = c_string(record.module_path().unwrap_or("res_webhook"));
        // SAFETY: the shim's log function copies the strings before returning; all are valid
        // NUL-terminated C strings that outlive the call.
        unsafe {
            (self.log)(
                level as i32,
                file.as_ptr(),
                record.line().unwrap_or(0) as i32,
                func.as_ptr(),
                msg.as_ptr(),
            )
        };
    }

    fn flush(&self) {}
}

/// Installs the logger once per process; later calls (after a failed load) are no-ops.
///
/// The level stops at `Info`: below it only dependencies speak (ureq formats every request and
/// response with its headers at `Debug`), and a filtered level costs one atomic load in the
/// `log!` macros instead of formatting and an `ast_log` call per HTTP request (profiled: a fifth of a
/// delivery worker's CPU, plus Asterisk's logger thread queueing each message).
pub fn install(host: &ffi::rw_host) {
    let Some(log) = host.log else { return };
    let logger = Box::leak(Box::new(HostLogger { log }));
    if log::set_logger(logger).is_ok() {
        log::set_max_level(LevelFilter::Info);
    }
}
