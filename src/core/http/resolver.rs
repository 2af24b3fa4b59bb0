//! Name resolution without a thread per request.
//!
//! ureq's default resolver spawns a thread for every request that has a timeout, to bound a
//! slow DNS lookup — even when the URL holds an IP address and the connection is pooled. That
//! thread creation was a third of each delivery's CPU. This resolver answers IP literals at
//! once and keeps a name's addresses for [`NAME_TTL`], asking the default resolver (with its
//! timeout) only when the cached answer is missing or old.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ureq::config::Config;
use ureq::http::Uri;
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::NextTimeout;

/// How long a host name's addresses are reused before they are looked up again.
pub const NAME_TTL: Duration = Duration::from_secs(60);

/// IP literals resolved in place; names cached for [`NAME_TTL`].
#[derive(Debug, Default)]
pub struct CachingResolver {
    inner: DefaultResolver,
    names: Mutex<HashMap<String, (Instant, ResolvedSocketAddrs)>>,
}

impl CachingResolver {
    fn literal(&self, uri: &Uri) -> Option<ResolvedSocketAddrs> {
        let authority = uri.authority()?;
        let host = authority.host();
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let ip: IpAddr = host.parse().ok()?;
        let port = authority.port_u16().or(match uri.scheme_str() {
            Some("https") => Some(443),
            Some("http") => Some(80),
            _ => None,
        })?;
        let mut addrs = self.empty();
        addrs.push(SocketAddr::new(ip, port));
        Some(addrs)
    }
}

impl Resolver for CachingResolver {
    fn resolve(
        &self,
        uri: &Uri,
        config: &Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        if let Some(addrs) = self.literal(uri) {
            return Ok(addrs);
        }
        let key = uri
            .authority()
            .map(|a| format!("{}|{}", uri.scheme_str().unwrap_or(""), a))
            .unwrap_or_default();
        if let Some((at, addrs)) = self.names.lock().ok().and_then(|m| m.get(&key).cloned()) {
            if at.elapsed() < NAME_TTL {
                return Ok(addrs);
            }
        }
        let addrs = self.inner.resolve(uri, config, timeout)?;
        if let Ok(mut m) = self.names.lock() {
            m.insert(key, (Instant::now(), addrs.clone()));
        }
        Ok(addrs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(r: &CachingResolver, url: &str) -> Vec<SocketAddr> {
        let uri: Uri = url.parse().unwrap();
        let config = ureq::Agent::config_builder().build();
        let timeout = NextTimeout {
            after: ureq::unversioned::transport::time::Duration::from_secs(1),
            reason: ureq::Timeout::Resolve,
            per_read: None,
            per_write: None,
        };
        r.resolve(&uri, &config, timeout).unwrap().to_vec()
    }

    #[test]
    fn ip_literals_and_default_ports() {
        let r = CachingResolver::default();
        assert_eq!(
            resolve(&r, "http://127.0.0.1:8080/x"),
            vec!["127.0.0.1:8080".parse().unwrap()]
        );
        assert_eq!(
            resolve(&r, "https://10.1.2.3/x"),
            vec!["10.1.2.3:443".parse().unwrap()]
        );
        assert_eq!(
            resolve(&r, "http://[::1]/x"),
            vec!["[::1]:80".parse().unwrap()]
        );
        assert!(
            r.names.lock().unwrap().is_empty(),
            "literals are not cached"
        );
    }

    #[test]
    fn names_are_looked_up_once_then_cached() {
        let r = CachingResolver::default();
        let first = resolve(&r, "http://localhost:9/x");
        assert!(first.iter().all(|a| a.port() == 9 && a.ip().is_loopback()));
        assert_eq!(r.names.lock().unwrap().len(), 1);
        assert_eq!(resolve(&r, "http://localhost:9/y"), first);
    }
}
