//! Applying `webhook.conf`: parse (or re-parse, keeping a section that became invalid at its
//! previous version), open the spool and caller history on first load, tell the hook which
//! channel variables templates read, and hand each section's delivery policy to the
//! dispatcher. Runs on the caller's thread (module load, reload), one load at a time.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::engine::Engine;
use crate::core::calls::caller_history::CallerHistory;
use crate::core::calls::correlator::{DIALSTATUS_VARIABLE, RECORDING_VARIABLE};
use crate::core::config::raw::RawConfig;
use crate::core::config::{Config, SectionKind};
use crate::core::delivery::{Dispatcher, EndpointPolicy};

impl Engine {
    /// Loads (first call) or reloads the configuration. Bad sections are logged and skipped;
    /// on reload a section that became invalid keeps its previous version. What is queued stays.
    pub fn apply_config(&self, raw: RawConfig) {
        let _one_at_a_time = self.applying.lock().unwrap_or_else(|p| p.into_inner());
        let rt = &self.runtime;
        let previous = rt.config();
        let first = rt.generation.load(Ordering::SeqCst) == 0;
        if raw.missing {
            log::warn!(
                "{} not found: no webhooks are sent until it exists and the module is reloaded",
                raw.file
            );
        }
        let (config, errors) = if first {
            Config::from_raw(&raw)
        } else {
            Config::reload(&previous, &raw)
        };
        for e in &errors {
            log::error!("{e}");
        }

        let spool_dir = config
            .general
            .spool_dir
            .clone()
            .unwrap_or_else(|| rt.spool_default.clone());
        if rt.dispatcher.get().is_none() {
            let d = Dispatcher::open(&spool_dir);
            if let Some(n) = &self.on_failure {
                d.set_notifier(n.clone());
            }
            let _ = rt.dispatcher.set(d);
            match CallerHistory::open(&spool_dir.join("history.redb")) {
                Ok(h) => {
                    let _ = rt.history.set(h);
                }
                Err(e) => log::error!(
                    "caller history {}: {e}; is_new/is_duplicate are empty",
                    spool_dir.display()
                ),
            }
        } else if previous.general.spool_dir != config.general.spool_dir {
            log::warn!("spool_dir changes take effect after an Asterisk restart");
        }

        let mut wanted = config.referenced_variables();
        wanted.insert(RECORDING_VARIABLE.to_string());
        wanted.insert(DIALSTATUS_VARIABLE.to_string());
        *self
            .shared
            .wanted_vars
            .write()
            .unwrap_or_else(|p| p.into_inner()) = Arc::new(wanted);

        if let Some(d) = rt.dispatcher.get() {
            d.configure(endpoint_policies(&config));
        }
        let webhooks = config
            .sections
            .iter()
            .filter(|s| matches!(s.kind, SectionKind::Webhook(_)))
            .count();
        self.shared.webhooks.store(webhooks > 0, Ordering::SeqCst);
        log::info!(
            "{}: {} section(s) loaded ({} webhook), {} error(s)",
            raw.file,
            config.sections.len(),
            webhooks,
            errors.len()
        );
        self.lookups.configure(&config);
        *rt.config.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(config);
        rt.generation.fetch_add(1, Ordering::SeqCst);
    }
}

fn endpoint_policies(config: &Config) -> Vec<EndpointPolicy> {
    config
        .sections
        .iter()
        .filter_map(|s| match &s.kind {
            SectionKind::Webhook(w) => Some(EndpointPolicy {
                name: s.name.clone(),
                timeout: w.timeout,
                retry: w.retry.clone(),
                secret: w.secret.clone(),
                tls_ca: w.tls_ca.clone(),
                concurrency: w.concurrency,
                pipeline: w.pipeline,
                rate_limit: w.rate_limit,
                nats: w.nats.clone(),
            }),
            _ => None,
        })
        .collect()
}
