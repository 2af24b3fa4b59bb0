//! `type = originate`: click-to-call, served on Asterisk's HTTP server at `/webhook/<path>`.

use std::time::Duration;

use regex::Regex;

use super::values;
use super::KeyError;

/// A click-to-call endpoint.
#[derive(Debug, Clone)]
pub struct Originate {
    /// Served at `/webhook/<path>`.
    pub path: String,
    pub token: String,
    /// Where `from` is rung and `to` dialed.
    pub context: String,
    /// Destinations a CRM may make the PBX dial (the whole value must match).
    pub allowed_to: WholeMatch,
    /// Extensions that may be rung first (`from`; the whole value must match).
    pub allowed_from: WholeMatch,
    /// Requests per minute per endpoint.
    pub rate_limit: u32,
    /// How long `from` rings before the attempt is given up.
    pub ring_timeout: Duration,
    /// Caller ID shown on `from`'s phone; default `to`.
    pub caller_id: Option<String>,
    /// Accept XVB's `cmd=makeCall` parameter set.
    pub xvb: bool,
}

impl PartialEq for Originate {
    fn eq(&self, o: &Self) -> bool {
        self.path == o.path
            && self.token == o.token
            && self.context == o.context
            && self.allowed_to.as_str() == o.allowed_to.as_str()
            && self.allowed_from.as_str() == o.allowed_from.as_str()
            && self.rate_limit == o.rate_limit
            && self.ring_timeout == o.ring_timeout
            && self.caller_id == o.caller_id
            && self.xvb == o.xvb
    }
}

/// A regular expression that must match a whole value: `[0-9]{3,16}` accepts `1234` and
/// refuses `1234;evil` (a bare regex search would find `1234` in it). Written with or without
/// `^…$`, it means the same.
#[derive(Debug, Clone)]
pub struct WholeMatch {
    /// As written, for `webhook show section` and for comparing configurations.
    pattern: String,
    re: Regex,
}

impl WholeMatch {
    pub fn new(pattern: &str) -> Result<WholeMatch, String> {
        // Checked as written first, so an error quotes the administrator's own pattern.
        Regex::new(pattern).map_err(|e| format!("bad regular expression: {e}"))?;
        let re = Regex::new(&format!("^(?:{pattern})$"))
            .map_err(|e| format!("bad regular expression: {e}"))?;
        Ok(WholeMatch {
            pattern: pattern.to_string(),
            re,
        })
    }

    pub fn is_match(&self, value: &str) -> bool {
        self.re.is_match(value)
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.pattern
    }
}

fn anchored(re: &str) -> Result<WholeMatch, String> {
    WholeMatch::new(re)
}

impl Default for Originate {
    fn default() -> Self {
        Originate {
            path: String::new(),
            token: String::new(),
            context: String::new(),
            allowed_to: anchored(r"^\+?[0-9]{3,16}$").expect("valid"),
            allowed_from: anchored(r"^[0-9A-Za-z_-]{1,32}$").expect("valid"),
            rate_limit: 60,
            ring_timeout: Duration::from_secs(30),
            caller_id: None,
            xvb: false,
        }
    }
}

impl Originate {
    /// Applies one key; [`KeyError::Unknown`] for keys this type does not have.
    pub fn apply(&mut self, key: &str, value: &str) -> Result<(), KeyError> {
        let v = value.trim();
        match key {
            "path" => {
                let p = v.trim_matches('/');
                if p.is_empty()
                    || !p
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_./".contains(&b))
                    || p.contains("..")
                {
                    return Err(format!("bad path `{v}` (letters, digits, - _ . /)").into());
                }
                self.path = p.to_string();
            }
            "token" if v.len() < 8 => return Err("token must be at least 8 characters".into()),
            "token" => self.token = v.to_string(),
            "context" => self.context = v.to_string(),
            "allowed_to" => self.allowed_to = anchored(v)?,
            "allowed_from" => self.allowed_from = anchored(v)?,
            "rate_limit" => {
                let n = values::number(v.trim_end_matches("/min").trim())?;
                self.rate_limit = u32::try_from(n)
                    .map_err(|_| "too large".to_string())?
                    .max(1);
            }
            "ring_timeout" | "timeout" => {
                self.ring_timeout = values::duration(v, Duration::from_secs(1))?
            }
            "caller_id" => self.caller_id = Some(v.to_string()),
            _ => return Err(KeyError::Unknown),
        }
        Ok(())
    }

    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.path.is_empty() {
            return Err(("path", "missing".into()));
        }
        if self.token.is_empty() {
            return Err((
                "token",
                "missing (click-to-call is never open without a token)".into(),
            ));
        }
        if self.context.is_empty() {
            return Err(("context", "missing".into()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_lists_match_the_whole_value_with_or_without_anchors() {
        let mut o = Originate::default();
        o.apply("allowed_to", "[0-9]{3,16}").unwrap();
        o.apply("allowed_from", "10[0-9]").unwrap();
        assert!(o.allowed_to.is_match("84951112233"));
        for evil in ["84951112233;evil", "x84951112233", "849511&PJSIP/666", "12"] {
            assert!(!o.allowed_to.is_match(evil), "{evil} passed allowed_to");
        }
        assert!(o.allowed_from.is_match("101"));
        assert!(!o.allowed_from.is_match("3101") && !o.allowed_from.is_match("1010"));
        // Alternatives are anchored as a whole, not only the first and the last.
        o.apply("allowed_to", "7495[0-9]{7}|8800[0-9]{7}").unwrap();
        assert!(o.allowed_to.is_match("88001234567"));
        assert!(!o.allowed_to.is_match("74951234567-and-more"));
        assert!(!o.allowed_to.is_match("call-88001234567"));
        // Anchors written by hand still work, and the pattern reads as written.
        o.apply("allowed_to", r"^\+?[0-9]{3,16}$").unwrap();
        assert!(o.allowed_to.is_match("+79161234567"));
        assert_eq!(o.allowed_to.as_str(), r"^\+?[0-9]{3,16}$");
    }
}
