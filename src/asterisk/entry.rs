//! The `extern "C"` functions declared in `include/res_webhook.h`. Each one runs inside
//! [`guard`], copies what it is given into owned Rust values, and returns quickly.
//!
//! They are only ever called by the C shim, which keeps the pointer contract written in the
//! header (valid, NUL-terminated, alive for the call); each dereference says so in a SAFETY
//! comment. Hence the crate-level exemption from `not_unsafe_ptr_arg_deref` here.
#![allow(clippy::not_unsafe_ptr_arg_deref)]

use std::borrow::Cow;
use std::ffi::{CStr, CString};
use std::sync::{Arc, Mutex};

use libc::{c_char, c_int};
use once_cell::sync::OnceCell;

use super::ami;
use super::feed;
use super::ffi;
use super::guard::{guard, guard_hook, HOOK_PANICS};
use super::host_log;
use crate::core::cli;
use crate::core::click_to_call::ClickToCall;
use crate::core::config::raw::{RawConfig, RawEntry, RawSection};
use crate::core::delivery::stats::{Notice, Notifier};
use crate::core::lookup::LookupService;
use crate::core::runtime::engine::{Engine, EngineSettings};
use crate::core::runtime::hook::Hook;

/// The running engine; `None` before load and after unload. The lock is held only to clone
/// or take the `Arc`, never while the engine works (a CLI command, a reload).
static ENGINE: Mutex<Option<Arc<Engine>>> = Mutex::new(None);
/// The call path's hand-off, reachable without taking any lock.
static HOOK: OnceCell<Hook> = OnceCell::new();
/// The services channel and HTTP threads use (`WEBHOOK_LOOKUP`, click-to-call), reachable
/// without taking any lock: a channel thread never waits for the CLI or a reload.
static SERVICES: OnceCell<Services> = OnceCell::new();

struct Services {
    lookups: Arc<LookupService>,
    click_to_call: Arc<ClickToCall>,
}

/// Between a successful load and the unload (or exit): the services answer only then.
static RUNNING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn services() -> Option<&'static Services> {
    RUNNING
        .load(std::sync::atomic::Ordering::SeqCst)
        .then(|| SERVICES.get())
        .flatten()
}
/// Host services handed over at load.
static HOST: OnceCell<HostServices> = OnceCell::new();
/// Configuration being fed by the shim between `rw_config_begin` and `rw_config_end`.
static PENDING_CONFIG: Mutex<Option<RawConfig>> = Mutex::new(None);

struct HostServices {
    cli_print: unsafe extern "C" fn(fd: i32, text: *const c_char),
    originate: unsafe extern "C" fn(
        context: *const c_char,
        from: *const c_char,
        to: *const c_char,
        caller_id: *const c_char,
        timeout_ms: i32,
        call_id: *const c_char,
    ) -> i32,
}

/// Copies a borrowed C string; NULL and invalid UTF-8 are tolerated (lossy), never trusted.
///
/// # Safety
/// `p` is NULL or points to a NUL-terminated string that stays valid during this call.
pub(super) unsafe fn owned(p: *const c_char) -> String {
    // SAFETY: as the caller promises.
    unsafe { owned_as(p) }
}

/// [`owned`] into any string type made from a `Cow<str>` (a `CompactString` keeps a short one
/// inline, with no heap allocation).
///
/// # Safety
/// `p` is NULL or points to a NUL-terminated string that stays valid during this call.
pub(super) unsafe fn owned_as<T: for<'a> From<Cow<'a, str>> + Default>(p: *const c_char) -> T {
    if p.is_null() {
        return T::default();
    }
    // SAFETY: non-NULL, NUL-terminated and valid, as the caller promises.
    T::from(unsafe { CStr::from_ptr(p) }.to_string_lossy())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The call path's hand-off, once loaded.
pub(super) fn hook() -> Option<&'static Hook> {
    HOOK.get()
}

/// The running engine, shared; the lock is released before the caller uses it.
fn engine() -> Option<Arc<Engine>> {
    lock(&ENGINE).clone()
}

#[no_mangle]
pub extern "C" fn rw_load(
    host: *const ffi::rw_host,
    spool_default: *const c_char,
    system_name: *const c_char,
) -> i32 {
    guard("rw_load", -1, || {
        // SAFETY: the shim passes a pointer to a static struct that lives as long as the module.
        let Some(host) = (unsafe { host.as_ref() }) else {
            return -1;
        };
        host_log::install(host);
        // SAFETY: spool_default is a NUL-terminated string valid for this call (header contract).
        let spool_default = unsafe { owned(spool_default) };
        if let (Some(cli_print), Some(originate)) = (host.cli_print, host.originate) {
            let _ = HOST.set(HostServices {
                cli_print,
                originate,
            });
        }
        let on_failure = host.ami_event.map(|send| -> Notifier {
            Arc::new(move |n: &Notice| {
                let (name, fields) = ami::notice_event(n);
                let (Ok(name), Ok(fields)) = (CString::new(name), CString::new(fields)) else {
                    return;
                };
                // SAFETY: the shim's ami_event copies both strings before returning; it is
                // a plain function that lives as long as the module.
                unsafe { send(name.as_ptr(), fields.as_ptr()) };
            })
        });
        let mut settings =
            EngineSettings::new(std::path::PathBuf::from(spool_default).join("webhook"));
        settings.on_failure = on_failure;
        settings.feed = feed::install(host);
        // SAFETY: system_name is a NUL-terminated string (or NULL) valid for this call.
        settings.node = node_name(&unsafe { owned(system_name) });
        match Engine::start(settings) {
            Ok(engine) => {
                let _ = HOOK.set(engine.hook());
                let _ = SERVICES.set(Services {
                    lookups: engine.lookups(),
                    click_to_call: engine.click_to_call(),
                });
                *lock(&ENGINE) = Some(Arc::new(engine));
                RUNNING.store(true, std::sync::atomic::Ordering::SeqCst);
                0
            }
            Err(e) => {
                log::error!("res_webhook not loaded: {e}");
                -1
            }
        }
    })
}

/// Unload and exit alike: the call path and the services stop taking work (what was queued is
/// still read), and the engine is handed over to be stopped.
fn stop_taking_events() -> Option<Arc<Engine>> {
    feed::close();
    if let Some(hook) = HOOK.get() {
        hook.close();
    }
    RUNNING.store(false, std::sync::atomic::Ordering::SeqCst);
    lock(&ENGINE).take()
}

#[no_mangle]
pub extern "C" fn rw_unload() {
    guard("rw_unload", (), || {
        if let Some(engine) = stop_taking_events() {
            engine.shutdown();
            log::info!("res_webhook stopped: every thread joined, undelivered webhooks spooled");
        }
    })
}

#[no_mangle]
pub extern "C" fn rw_at_exit() {
    guard("rw_at_exit", (), || {
        // `core stop now` and SIGTERM unload no module: do here what unload would, so nothing
        // only in memory is lost — the hook closes, the caller history is written durably,
        // the workers stop (what is queued goes to the spool) and are joined.
        if let Some(engine) = stop_taking_events() {
            engine.at_exit();
            engine.shutdown();
            log::info!("res_webhook stopped at exit: undelivered webhooks spooled");
        }
    })
}

#[no_mangle]
pub extern "C" fn rw_config_begin(file: *const c_char) {
    guard("rw_config_begin", (), || {
        // SAFETY: file is a NUL-terminated string valid for this call (header contract).
        let file = unsafe { owned(file) };
        *lock(&PENDING_CONFIG) = Some(RawConfig {
            file,
            missing: false,
            sections: Vec::new(),
        });
    })
}

#[no_mangle]
pub extern "C" fn rw_config_section(name: *const c_char) {
    guard("rw_config_section", (), || {
        // SAFETY: name is a NUL-terminated string valid for this call (header contract).
        let name = unsafe { owned(name) };
        if let Some(cfg) = lock(&PENDING_CONFIG).as_mut() {
            cfg.sections.push(RawSection {
                name,
                entries: Vec::new(),
            });
        }
    })
}

#[no_mangle]
pub extern "C" fn rw_config_entry(
    key: *const c_char,
    value: *const c_char,
    file: *const c_char,
    line: i32,
) {
    guard("rw_config_entry", (), || {
        // SAFETY: the three are NUL-terminated strings valid for this call (header contract).
        let entry = unsafe {
            RawEntry {
                key: owned(key),
                value: owned(value),
                file: owned(file),
                line: line.max(0) as u32,
            }
        };
        if let Some(section) = lock(&PENDING_CONFIG)
            .as_mut()
            .and_then(|c| c.sections.last_mut())
        {
            section.entries.push(entry);
        }
    })
}

#[no_mangle]
pub extern "C" fn rw_config_end(missing: i32) {
    guard("rw_config_end", (), || {
        let Some(mut cfg) = lock(&PENDING_CONFIG).take() else {
            return;
        };
        cfg.missing = missing != 0;
        // No lock held while the configuration is applied (it may open the spool and join
        // workers): channel threads and the CLI go on meanwhile.
        if let Some(engine) = engine() {
            engine.apply_config(cfg);
        }
    })
}

#[no_mangle]
pub extern "C" fn rw_wants_events() -> c_int {
    guard("rw_wants_events", 0, || {
        HOOK.get().map_or(0, |h| c_int::from(h.wants_events()))
    })
}

#[no_mangle]
pub extern "C" fn rw_wanted_variables(buf: *mut c_char, len: usize) -> c_int {
    guard("rw_wanted_variables", -1, || {
        let names = HOOK.get().map(Hook::wanted_variables).unwrap_or_default();
        let list = names
            .iter()
            .filter(|n| !n.is_empty() && !n.contains(['\n', '\0']))
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join("\n");
        if list.len() < len {
            // SAFETY: the shim passes a writable buffer of `len` bytes.
            unsafe { write_c(buf, len, &list) };
        }
        c_int::try_from(list.len()).unwrap_or(-1)
    })
}

#[no_mangle]
pub extern "C" fn rw_record_hook_ns(ns: u64) {
    guard_hook((), || {
        if let Some(hook) = HOOK.get() {
            hook.record_cost_ns(ns);
        }
    })
}

#[no_mangle]
pub extern "C" fn rw_cli(fd: i32, argc: i32, argv: *const *const c_char) -> i32 {
    guard("rw_cli", -1, || {
        let args: Vec<String> = (0..argc.max(0) as usize)
            // SAFETY: the shim passes argc valid, NUL-terminated string pointers.
            .map(|i| unsafe { owned(*argv.add(i)) })
            .collect();
        // The engine is cloned out of its lock: a command that waits (`webhook test` on a
        // hanging endpoint) holds nothing a channel thread or a reload needs.
        let reply = match engine() {
            Some(engine) => cli::commands::run(&engine, &args),
            None => Ok("res_webhook is not running\n".to_string()),
        };
        let reply = reply.map(|mut text| {
            let panics = HOOK_PANICS.load(std::sync::atomic::Ordering::Relaxed);
            if panics > 0 && args.first().is_some_and(|a| a == "show") {
                text.push_str(&format!(
                    "Internal errors contained in the call-path hook: {panics}\n"
                ));
            }
            text
        });
        match reply {
            Ok(text) => {
                if let Some(host) = HOST.get() {
                    let text = std::ffi::CString::new(text.replace('\0', "")).unwrap_or_default();
                    // SAFETY: cli_print copies the text to the CLI connection before returning.
                    unsafe { (host.cli_print)(fd, text.as_ptr()) };
                }
                0
            }
            Err(_) => -1,
        }
    })
}

/// asterisk.conf's `systemname`, else the host name.
fn node_name(system_name: &str) -> String {
    if !system_name.trim().is_empty() {
        return system_name.trim().to_string();
    }
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into our buffer.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr() as *mut c_char, buf.len()) };
    if rc != 0 {
        return String::new();
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// Hands text to the shim, which frees it with [`rw_free_text`].
fn text_for_c(text: String) -> *mut c_char {
    CString::new(text.replace('\0', ""))
        .map(CString::into_raw)
        .unwrap_or(std::ptr::null_mut())
}

#[no_mangle]
pub extern "C" fn rw_free_text(text: *mut c_char) {
    guard("rw_free_text", (), || {
        if !text.is_null() {
            // SAFETY: `text` came from `text_for_c` (CString::into_raw) and is freed once.
            drop(unsafe { CString::from_raw(text) });
        }
    })
}

#[no_mangle]
pub extern "C" fn rw_ami_status() -> *mut c_char {
    guard("rw_ami_status", std::ptr::null_mut(), || {
        // Cloned out of the lock: counting the spool is disk I/O.
        let rows = match engine() {
            Some(engine) => engine.status_rows(),
            None => return std::ptr::null_mut(),
        };
        text_for_c(ami::status_blocks(&rows))
    })
}

#[no_mangle]
pub extern "C" fn rw_metrics() -> *mut c_char {
    guard("rw_metrics", std::ptr::null_mut(), || {
        let text = match engine() {
            Some(engine) => cli::metrics::text(&engine),
            None => return std::ptr::null_mut(),
        };
        text_for_c(text)
    })
}

/// Copies `s` into a C buffer of `len` bytes, truncating on a UTF-8 boundary, NUL-terminated.
///
/// # Safety
/// `buf` is NULL or points to `len` writable bytes, valid during this call.
unsafe fn write_c(buf: *mut c_char, len: usize, s: &str) {
    if buf.is_null() || len == 0 {
        return;
    }
    let mut n = s.len().min(len - 1);
    while !s.is_char_boundary(n) {
        n -= 1;
    }
    // SAFETY: `buf` holds `len` writable bytes (the caller's promise); n + 1 <= len are written.
    unsafe {
        std::ptr::copy_nonoverlapping(s.as_ptr(), buf as *mut u8, n);
        *buf.add(n) = 0;
    }
}

#[no_mangle]
pub extern "C" fn rw_lookup(
    section: *const c_char,
    number: *const c_char,
    field: *const c_char,
    buf: *mut c_char,
    len: usize,
    status: *mut c_char,
    status_len: usize,
) {
    guard("rw_lookup", (), || {
        // SAFETY (every block below): the shim passes NUL-terminated strings and writable
        // buffers of `len` and `status_len` bytes, all valid for this call.
        unsafe {
            write_c(buf, len, "");
            write_c(status, status_len, "ERROR");
        }
        let (section, number, field) = unsafe { (owned(section), owned(number), owned(field)) };
        // No lock: the service is reachable directly, so a CLI command or a reload never
        // holds up the dialplan.
        let Some(services) = services() else {
            return;
        };
        let (value, st) = services.lookups.lookup(&section, &number, &field);
        unsafe {
            write_c(buf, len, &value);
            write_c(status, status_len, st.as_str());
        }
    })
}

#[no_mangle]
pub extern "C" fn rw_http(
    path: *const c_char,
    method: *const c_char,
    remote: *const c_char,
    n: i32,
    names: *const *const c_char,
    values: *const *const c_char,
    body: *mut c_char,
    body_len: usize,
) -> i32 {
    guard("rw_http", 500, || {
        // SAFETY (every block below): the shim passes n valid name and value pointers,
        // NUL-terminated strings and a writable body buffer of `body_len` bytes.
        let params: Vec<(String, String)> = (0..n.max(0) as usize)
            .map(|i| unsafe { (owned(*names.add(i)), owned(*values.add(i))) })
            .collect();
        let Some(services) = services() else {
            unsafe {
                write_c(
                    body,
                    body_len,
                    r#"{"status":"error","error":"not running"}"#,
                )
            };
            return 503;
        };
        let request = unsafe {
            crate::core::click_to_call::HttpCall {
                path: owned(path),
                method: owned(method),
                remote: owned(remote),
                params,
            }
        };
        let reply = services
            .click_to_call
            .handle(&request, &|order| originate(order));
        unsafe { write_c(body, body_len, &reply.body) };
        i32::from(reply.status)
    })
}

/// Asks Asterisk to place a click-to-call call; `Err` when it refused.
fn originate(
    order: &crate::core::click_to_call::Order,
) -> Result<(), crate::core::click_to_call::PlaceError> {
    use crate::core::click_to_call::PlaceError;
    let Some(host) = HOST.get() else {
        return Err(PlaceError::NoHost);
    };
    let c = |s: &str| std::ffi::CString::new(s.replace('\0', "")).unwrap_or_default();
    let (context, from, to, cid, id) = (
        c(&order.context),
        c(&order.from),
        c(&order.to),
        c(&order.caller_id),
        c(&order.call_id),
    );
    // SAFETY: originate copies its string arguments before returning; all outlive the call.
    let rc = unsafe {
        (host.originate)(
            context.as_ptr(),
            from.as_ptr(),
            to.as_ptr(),
            cid.as_ptr(),
            order.ring_timeout.as_millis().min(i32::MAX as u128) as i32,
            id.as_ptr(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(PlaceError::Refused(rc))
    }
}
