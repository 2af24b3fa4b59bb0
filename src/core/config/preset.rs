//! Provider presets: `preset = roistat | mango | xvb | calltracking | callkeeper` fills in a
//! section so the endpoint receives what the provider's own document (in `shared/reference/`)
//! describes: names, nesting, JSON types, nulls, status words, date formats. Keys written in
//! the section override (a `param` of the same name) or extend the preset.
//!
//! Fields a PBX cannot know (visit ids, UTM tags, client ids, geo) come from call data or a
//! channel variable of the same name in UPPER CASE (`Set(WEBHOOK(UTM_SOURCE)=google)`), and
//! are `null` (JSON) or empty (query/form) when absent.

use chrono_tz::Tz;
use serde_json::json;

use super::request_spec::RequestSpec;
use super::SectionKind;
use crate::core::model::call::{Direction, EventKind};
use crate::core::model::request::Method;
use crate::core::model::value::Value;
use crate::core::render::payload::{ForcedType, Format, Param};
use crate::core::render::template::{DateFormat, FormatContext, Template};

/// A provider whose format a section can speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    Roistat,
    Mango,
    Xvb,
    CallTracking,
    CallKeeper,
}

const START: &[EventKind] = &[EventKind::Start];
const ANSWER: &[EventKind] = &[EventKind::Answer];
const END: &[EventKind] = &[EventKind::End];

/// A param as presets build it: `name`, a template, the events it is sent at.
struct P {
    p: Param,
    events: Option<Vec<EventKind>>,
}

fn p(name: &str, template: &str) -> P {
    P {
        p: Param::parse(&format!("{name} => {template}")).expect("preset params are valid"),
        events: None,
    }
}

impl P {
    fn at(mut self, events: &[EventKind]) -> P {
        self.events = Some(events.to_vec());
        self
    }
    fn ty(mut self, t: ForcedType) -> P {
        self.p.forced = Some(t);
        self
    }
    fn table(mut self, pairs: &[(&str, Value)]) -> P {
        self.p.table = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        self
    }
    fn default(mut self, d: serde_json::Value) -> P {
        self.p.default = Some(d);
        self
    }
    fn dates(mut self, f: DateFormat, tz: Option<Tz>) -> P {
        self.p.format = Some(FormatContext {
            date_format: f,
            timezone: tz.unwrap_or(Tz::UTC),
        });
        self
    }
}

fn s(v: &str) -> Value {
    Value::Str(v.to_string())
}

/// Tracking fields: `name` in the payload, `${NAME}` (upper case) from call data.
fn tracking(names: &[&str]) -> Vec<P> {
    names
        .iter()
        .map(|n| p(n, &format!("${{{}}}", n.to_ascii_uppercase())))
        .collect()
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

    /// Fills the request and type-specific settings before the section's own keys apply.
    pub fn apply(self, spec: &mut RequestSpec, target: &mut SectionKind) {
        match target {
            SectionKind::Webhook(w) => {
                let (method, format, events, dirs, params) = self.webhook();
                spec.method = method;
                spec.format = Some(format);
                w.events = events;
                if let Some(d) = dirs {
                    w.directions = d;
                }
                for x in params {
                    spec.set_param(x.p, x.events);
                }
                if self == Preset::Roistat || self == Preset::CallKeeper {
                    spec.ctx.date_format = DateFormat::strftime("%Y-%m-%d %H:%M:%S");
                }
            }
            SectionKind::Lookup(_) => {
                if self == Preset::Xvb {
                    spec.method = Method::Post;
                    spec.format = Some(Format::Form);
                    for x in [
                        p("access_code", ""),
                        p("cmd", "contact"),
                        p("phone", "${number}"),
                    ] {
                        spec.set_param(x.p, None);
                    }
                }
            }
            SectionKind::Originate(o) => {
                if self == Preset::Xvb {
                    o.xvb = true;
                }
            }
        }
    }

    /// Keys only a preset understands (`access_code` for XVB); `None` when not one of them.
    pub fn apply_key(
        self,
        key: &str,
        value: &str,
        spec: &mut RequestSpec,
    ) -> Option<Result<(), String>> {
        match (self, key) {
            (Preset::Xvb, "access_code") => {
                let v = value.trim();
                let mut x = p("access_code", "").p;
                x.template = Template::literal(v);
                spec.set_param(x, None);
                Some(Ok(()))
            }
            _ => None,
        }
    }

    /// What depends on the section's own keys, once all are read: XVB's `X-XVB-AC` header
    /// carries whatever the `access_code` parameter carries — set by the `access_code` key or
    /// by `param = access_code => …` (a literal or a template).
    pub fn finish(self, spec: &mut RequestSpec) {
        if self != Preset::Xvb {
            return;
        }
        let code = spec
            .params()
            .iter()
            .rev()
            .find(|p| p.param.flat_name() == "access_code")
            .map(|p| p.param.template.clone());
        spec.headers.retain(|(n, _)| n != "X-XVB-AC");
        if let Some(t) = code {
            if t != Template::literal("") && Template::parse("").is_ok_and(|e| e != t) {
                spec.headers.push(("X-XVB-AC".into(), t));
            }
        }
    }

    #[allow(clippy::type_complexity)]
    fn webhook(
        self,
    ) -> (
        Method,
        Format,
        Vec<EventKind>,
        Option<Vec<Direction>>,
        Vec<P>,
    ) {
        use ForcedType::*;
        match self {
            // Roistat call tracking: JSON; "в момент звонка" at start, "после звонка" at end.
            Preset::Roistat => {
                let mut v = vec![
                    p("id", "${call_id}").ty(Str),
                    p("caller", "${caller}"),
                    p("callee", "${called}"),
                    p("visit_id", "${VISIT_ID}").ty(Str),
                    p("marker", "${MARKER}"),
                    p("order_id", "${ORDER_ID}").ty(Int),
                    p("date", "${time_start}"),
                    p("google_client_id", "${GOOGLE_CLIENT_ID}"),
                    p("custom_fields", "${CUSTOM_FIELDS}").default(json!([])),
                ];
                v.extend(tracking(&[
                    "landing_page",
                    "domain",
                    "city",
                    "country",
                    "ip",
                    "first_visit",
                    "referrer",
                    "utm_source",
                    "utm_medium",
                    "utm_campaign",
                    "utm_term",
                    "utm_content",
                    "roistat_param_1",
                    "roistat_param_2",
                    "roistat_param_3",
                    "roistat_param_4",
                    "roistat_param_5",
                    "metrika_client_id",
                    "source_level_1",
                    "source_level_2",
                ]));
                v.extend([
                    p("status", "${status}").at(END),
                    p("file_id", "${FILE_ID}").at(END),
                    p("duration", "${duration}").ty(Int).at(END),
                    p("link", "${recording_url}").default(json!("")).at(END),
                ]);
                (
                    Method::Post,
                    Format::Json,
                    vec![EventKind::Start, EventKind::End],
                    Some(vec![Direction::In]),
                    v,
                )
            }
            // MANGO OFFICE call tracking: GET with the parameters in the query string.
            Preset::Mango => {
                let iso = DateFormat::strftime("%d-%m-%YT%H:%MZ");
                let mut v = vec![
                    p("callId", "${call_id}"),
                    p("dateStart", "${time_start}").dates(iso.clone(), None),
                    p("dateEnd", "${time_end}").dates(iso, None).at(END),
                    p("callType", "${CALL_TYPE}").default(json!("2")),
                    p("callStatus", "${status}").at(END).table(&[
                        ("ANSWER", s("1100")),
                        ("NOANSWER", s("2100")),
                        ("BUSY", s("2200")),
                        ("CANCEL", s("2300")),
                        ("CONGESTION", s("2400")),
                        ("CHANUNAVAIL", s("2500")),
                    ]),
                    p("number", "${called}"),
                    p("callerNumber", "${caller}"),
                    p("duration", "${duration}").at(END),
                    p("waitDuration", "${wait_duration}").at(END),
                    p("isNew", "${is_new}"),
                    p("isQuality", "${IS_QUALITY}"),
                    p("isDuplicate", "${is_duplicate}"),
                ];
                for (name, var) in [
                    ("uid", "UID"),
                    ("gaCid", "GA_CID"),
                    ("yaCid", "YA_CID"),
                    ("rsCid", "RS_CID"),
                    ("utmSource", "UTM_SOURCE"),
                    ("utmMedium", "UTM_MEDIUM"),
                    ("utmCampaign", "UTM_CAMPAIGN"),
                    ("utmContent", "UTM_CONTENT"),
                    ("utmTerm", "UTM_TERM"),
                    ("countryCode", "COUNTRY_CODE"),
                    ("regionCode", "REGION_CODE"),
                    ("city", "CITY"),
                    ("device", "DEVICE"),
                    ("ip", "IP"),
                    ("URLl", "URL"),
                    ("firstUrl", "FIRST_URL"),
                    ("customParam", "CUSTOM_PARAM"),
                ] {
                    v.push(p(name, &format!("${{{var}}}")));
                }
                (
                    Method::Get,
                    Format::Query,
                    vec![EventKind::Start, EventKind::End],
                    Some(vec![Direction::In]),
                    v,
                )
            }
            // XVB PBX ↔ CRM: form posts with cmd=event and event INCOMING / ANSWERED / COMPLETED.
            Preset::Xvb => {
                let v = vec![
                    p("access_code", ""),
                    p("cmd", "event"),
                    p("callid", "${call_id}").at(&[EventKind::Start, EventKind::Answer]),
                    p("type", "${direction}").at(&[EventKind::Start, EventKind::Answer]),
                    p("event", "INCOMING").at(START),
                    p("event", "ANSWERED").at(ANSWER),
                    p("ext", "${ext}").at(&[EventKind::Start, EventKind::Answer]),
                    p("phone", "${client_number}").at(&[EventKind::Start, EventKind::Answer]),
                    p("line_number", "${called}").at(START),
                    // COMPLETED, in the document's order.
                    p("status", "${status}").at(END).table(&[
                        ("ANSWER", s("Success")),
                        ("NOANSWER", s("NoAnswer")),
                        ("BUSY", s("Busy")),
                        ("CANCEL", s("Cancel")),
                        ("CONGESTION", s("Failed")),
                        ("CHANUNAVAIL", s("Failed")),
                    ]),
                    p("duration", "${duration}").at(END),
                    p("event", "COMPLETED").at(END),
                    p("phone", "${client_number}").at(END),
                    p("record_link", "${recording_url}").at(END),
                    p("callid", "${call_id}").at(END),
                    p("ext", "${ext}").at(END),
                ];
                let all = EventKind::ALL.to_vec();
                (Method::Post, Format::Form, all, None, v)
            }
            // CallTracking's parameter set (GET by default; format = form/json also work).
            Preset::CallTracking => {
                let mut v = vec![
                    p("client_number", "${client_number}"),
                    p("calltracking_number", "${called}"),
                    p("manager_number", "${ext}"),
                    p("time_start", "${time_start}"),
                    p("duration", "${duration}").at(END),
                    p("call_status", "${status}").at(END),
                    p("call_type", "${direction}")
                        .table(&[("in", s("incoming")), ("out", s("outgoing"))]),
                    p("record_url", "${recording_url}").at(END),
                ];
                v.extend(tracking(&[
                    "ip",
                    "device",
                    "host",
                    "city",
                    "region",
                    "country",
                    "source_type",
                    "utm_source",
                    "dtmf_pressed",
                    "company_name",
                    "office_name",
                    "user_id",
                    "ga_clid",
                    "utm_medium",
                    "utm_campaign",
                    "utm_term",
                    "utm_content",
                ]));
                (
                    Method::Get,
                    Format::Query,
                    vec![EventKind::Start, EventKind::End],
                    None,
                    v,
                )
            }
            // CallKeeper's parameter set: JSON, "Call is processing" at start, "Call is over" at end.
            Preset::CallKeeper => {
                let mut v = vec![
                    p("id", "${call_id}"),
                    p("phone1", "${ext}"),
                    p("phone2", "${client_number}"),
                    p("date", "${time_start}"),
                    p("date_timestamp", "${time_start}").dates(DateFormat::Unix, None),
                    p("duration_sec", "${duration}").ty(Int).default(json!(0)),
                    p("duration_min", "${duration_min}")
                        .ty(Str)
                        .default(json!("0")),
                    p("hook_event", "${event}").table(&[
                        ("start", s("Call is processing")),
                        ("answer", s("Call is processing")),
                        ("end", s("Call is over")),
                    ]),
                    p("record_url", "${recording_url}").default(json!("")),
                    p("roistat_visit", "${ROISTAT_VISIT}"),
                    p("tags", "${TAGS}").default(json!(" ")),
                    p("ga_clientid", "${GA_CLIENTID}"),
                    p("ya_clientid", "${YA_CLIENTID}"),
                ];
                v.extend(tracking(&[
                    "visit_info",
                    "status_code",
                    "status_reason",
                    "status2_code",
                    "status2_reason",
                    "ip",
                    "country",
                    "city",
                    "region",
                    "district",
                    "site",
                    "widget_hash",
                    "widget_name",
                    "event_source",
                    "order_date",
                    "ga_clid",
                    "uip",
                ]));
                (
                    Method::Post,
                    Format::Json,
                    vec![EventKind::Start, EventKind::End],
                    None,
                    v,
                )
            }
        }
    }
}

#[cfg(test)]
mod golden {
    //! Golden tests built from the providers' own examples (shared/reference/).
    use std::collections::BTreeMap;

    use chrono::{DateTime, Utc};

    use crate::core::config::raw::RawConfig;
    use crate::core::config::Config;
    use crate::core::model::call::{CallEvent, CallRecord, Direction, EventKind};
    use crate::core::model::request::HttpRequest;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    /// Roistat's example call: id 313, 79990009911 → 78005552233, 20 s talk.
    fn call(kind: EventKind) -> CallEvent {
        let mut data = BTreeMap::new();
        for (k, v) in [
            ("VISIT_ID", "123456"),
            ("MARKER", "vk_new"),
            ("ORDER_ID", "123456789"),
            ("GOOGLE_CLIENT_ID", "111111111.1111111111"),
            ("LANDING_PAGE", "test.com/new"),
            ("DOMAIN", "test.com"),
            ("CITY", "Москва"),
            ("COUNTRY", "Россия"),
            ("IP", "100.100.1.1"),
            ("FIRST_VISIT", "1001"),
            ("REFERRER", "vk.com"),
            ("SOURCE_LEVEL_1", "vk"),
            ("SOURCE_LEVEL_2", "new"),
        ] {
            data.insert(k.to_string(), v.to_string());
        }
        let mut c = CallRecord {
            call_id: "313".into(),
            direction: Direction::In,
            caller: "79990009911".into(),
            called: "78005552233".into(),
            time_start: t("2019-02-19T00:00:00Z"),
            is_new: Some(true),
            is_duplicate: Some(false),
            context: "from-external".into(),
            exten: "78005552233".into(),
            channel: "PJSIP/trunk-00000001".into(),
            uniqueid: "313".into(),
            data,
            ..Default::default()
        };
        if kind != EventKind::Start {
            c.time_answer = Some(t("2019-02-19T00:00:05Z"));
            c.ext = "100".into();
        }
        if kind == EventKind::End {
            c.time_end = Some(t("2019-02-19T00:00:25Z"));
            c.status = Some("ANSWER".into());
        }
        CallEvent { kind, call: c }
    }

    fn render(conf: &str, name: &str, ev: &CallEvent) -> Option<HttpRequest> {
        let (c, errors) = Config::from_raw(&RawConfig::parse_text("webhook.conf", conf));
        assert!(errors.is_empty(), "{errors:?}");
        let w = c.webhook(name).unwrap();
        w.wants(ev.kind, ev.call.direction)
            .then(|| w.render(ev).unwrap())
    }

    fn json(r: &HttpRequest) -> serde_json::Value {
        serde_json::from_slice(&r.body).unwrap()
    }

    const TRACKING_NULLS: &str = r#""utm_source": null, "utm_medium": null, "utm_campaign": null, "utm_term": null, "utm_content": null, "roistat_param_1": null, "roistat_param_2": null, "roistat_param_3": null, "roistat_param_4": null, "roistat_param_5": null, "metrika_client_id": null"#;

    #[test]
    fn roistat_matches_both_documented_objects() {
        let conf = "[r]\ntype = webhook\npreset = roistat\nurl = https://cloud.roistat.com/hook\n";
        let start = render(conf, "r", &call(EventKind::Start)).unwrap();
        assert_eq!(start.method.as_str(), "POST");
        assert_eq!(
            start.headers,
            [("Content-Type".to_string(), "application/json".to_string())]
        );
        let head = r#""id": "313", "caller": "79990009911", "callee": "78005552233", "visit_id": "123456", "marker": "vk_new", "order_id": 123456789, "date": "2019-02-19 00:00:00", "google_client_id": "111111111.1111111111", "custom_fields": [], "landing_page": "test.com/new", "domain": "test.com", "city": "Москва", "country": "Россия", "ip": "100.100.1.1", "first_visit": "1001", "referrer": "vk.com", "#;
        let expect_start: serde_json::Value = serde_json::from_str(&format!(
            "{{{head}{TRACKING_NULLS}, \"source_level_1\": \"vk\", \"source_level_2\": \"new\"}}"
        ))
        .unwrap();
        assert_eq!(json(&start), expect_start);
        // Same keys in the same order as the document.
        assert_eq!(
            json(&start).as_object().unwrap().keys().collect::<Vec<_>>(),
            expect_start.as_object().unwrap().keys().collect::<Vec<_>>()
        );
        assert!(
            render(conf, "r", &call(EventKind::Answer)).is_none(),
            "Roistat has no answer webhook"
        );
        let end = render(conf, "r", &call(EventKind::End)).unwrap();
        let expect_end: serde_json::Value = serde_json::from_str(&format!(
            "{{{head}{TRACKING_NULLS}, \"source_level_1\": \"vk\", \"source_level_2\": \"new\", \"status\": \"ANSWER\", \"file_id\": null, \"duration\": 20, \"link\": \"\"}}"
        ))
        .unwrap();
        assert_eq!(json(&end), expect_end);
    }

    #[test]
    fn mango_sends_a_get_with_the_documented_parameters() {
        let conf = "[m]\ntype = webhook\npreset = mango\nurl = https://example.com/mango?k=1\n";
        let mut ev = call(EventKind::End);
        ev.call.data.insert("UTM_SOURCE".into(), "yandex".into());
        ev.call.data.insert("GA_CID".into(), "GA1.2.3".into());
        let r = render(conf, "m", &ev).unwrap();
        assert_eq!(r.method.as_str(), "GET");
        assert!(r.body.is_empty());
        let (base, q) = r.url.split_once('?').unwrap();
        assert_eq!(base, "https://example.com/mango");
        let pairs: Vec<(String, String)> =
            form_urlencoded::parse(q.as_bytes()).into_owned().collect();
        let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("k"), Some("1"), "the URL's own query is kept");
        assert_eq!(get("callId"), Some("313"));
        assert_eq!(get("dateStart"), Some("19-02-2019T00:00Z"));
        assert_eq!(get("dateEnd"), Some("19-02-2019T00:00Z"));
        assert_eq!(get("callStatus"), Some("1100"));
        assert_eq!(get("number"), Some("78005552233"));
        assert_eq!(get("callerNumber"), Some("79990009911"));
        assert_eq!(get("duration"), Some("20"));
        assert_eq!(get("waitDuration"), Some("5"));
        assert_eq!(get("isNew"), Some("true"));
        assert_eq!(get("isDuplicate"), Some("false"));
        assert_eq!(get("utmSource"), Some("yandex"));
        assert_eq!(get("gaCid"), Some("GA1.2.3"));
        assert_eq!(get("utmMedium"), Some(""));
        for k in [
            "callType",
            "isQuality",
            "uid",
            "yaCid",
            "rsCid",
            "utmCampaign",
            "utmContent",
            "utmTerm",
            "countryCode",
            "regionCode",
            "city",
            "device",
            "ip",
            "URLl",
            "firstUrl",
            "customParam",
        ] {
            assert!(get(k).is_some(), "{k} missing");
        }
        let mut busy = call(EventKind::End);
        busy.call.status = Some("BUSY".into());
        let r = render(conf, "m", &busy).unwrap();
        assert!(
            !r.url.contains("callStatus=11"),
            "only answered calls are 11xx: {}",
            r.url
        );
    }

    #[test]
    fn xvb_header_follows_the_access_code_param() {
        for (how, conf) in [
            ("key", "access_code = 555"),
            ("param", "param = access_code => 555"),
            ("template", "param = access_code => ${ACCESS_CODE}"),
        ] {
            let conf = format!(
                "[x]\ntype = webhook\npreset = xvb\nurl = http://localhost/crm-api\n{conf}\n"
            );
            let mut ev = call(EventKind::Start);
            ev.call.vars.insert("ACCESS_CODE".into(), "555".into());
            let r = render(&conf, "x", &ev).unwrap();
            let body = String::from_utf8(r.body).unwrap();
            assert!(body.starts_with("access_code=555&"), "{how}: {body}");
            assert!(
                r.headers.contains(&("X-XVB-AC".into(), "555".into())),
                "{how}: {:?}",
                r.headers
            );
        }
        // No access code at all: no empty header.
        let conf = "[x]\ntype = webhook\npreset = xvb\nurl = http://localhost/crm-api\n";
        let r = render(conf, "x", &call(EventKind::Start)).unwrap();
        assert!(
            !r.headers.iter().any(|(n, _)| n == "X-XVB-AC"),
            "{:?}",
            r.headers
        );
    }

    #[test]
    fn xvb_sends_the_documented_forms_and_header() {
        let conf = "[x]\ntype = webhook\npreset = xvb\nurl = http://localhost/crm-api\naccess_code = 10019\n";
        let mut ev = call(EventKind::Start);
        ev.call.call_id = "DVzqd2I5zmRev0_vLvXV6vw".into();
        ev.call.caller = "79201119613".into();
        let r = render(conf, "x", &ev).unwrap();
        assert_eq!(
            String::from_utf8(r.body.clone()).unwrap(),
            "access_code=10019&cmd=event&callid=DVzqd2I5zmRev0_vLvXV6vw&type=in&event=INCOMING&ext=&phone=79201119613&line_number=78005552233"
        );
        assert!(r.headers.contains(&(
            "Content-Type".into(),
            "application/x-www-form-urlencoded".into()
        )));
        assert!(r.headers.contains(&("X-XVB-AC".into(), "10019".into())));
        ev.kind = EventKind::Answer;
        ev.call.ext = "100".into();
        let r = render(conf, "x", &ev).unwrap();
        assert_eq!(
            String::from_utf8(r.body).unwrap(),
            "access_code=10019&cmd=event&callid=DVzqd2I5zmRev0_vLvXV6vw&type=in&event=ANSWERED&ext=100&phone=79201119613"
        );
        let mut end = call(EventKind::End);
        end.call.call_id = "DVzqd2I5zmRev0_vLvXV6vw".into();
        end.call.caller = "79201119613".into();
        end.call.time_answer = Some(t("2019-02-19T00:00:09Z"));
        end.call.recording_url =
            "https://vvpbx18-dev/ui/msg_download/120/10019/f92Hl6GAuDE7R10EM0LYYw.g722".into();
        let r = render(conf, "x", &end).unwrap();
        assert_eq!(
            String::from_utf8(r.body).unwrap(),
            "access_code=10019&cmd=event&status=Success&duration=16&event=COMPLETED&phone=79201119613&record_link=https%3A%2F%2Fvvpbx18-dev%2Fui%2Fmsg_download%2F120%2F10019%2Ff92Hl6GAuDE7R10EM0LYYw.g722&callid=DVzqd2I5zmRev0_vLvXV6vw&ext=100"
        );
    }

    #[test]
    fn xvb_lookup_and_makecall() {
        let conf = "[c]\ntype = lookup\npreset = xvb\nurl = http://localhost/crm-api\naccess_code = 10019\n[o]\ntype = originate\npreset = xvb\npath = crm-api\ntoken = 0123456789\ncontext = from-internal\n";
        let (c, errors) = Config::from_raw(&RawConfig::parse_text("webhook.conf", conf));
        assert!(errors.is_empty(), "{errors:?}");
        let r = c.lookup("c").unwrap().render("79201119613").unwrap();
        assert_eq!(
            String::from_utf8(r.body).unwrap(),
            "access_code=10019&cmd=contact&phone=79201119613"
        );
        assert!(c.originate_at("crm-api").unwrap().1.xvb);
    }

    #[test]
    fn calltracking_and_callkeeper_parameter_sets() {
        let ct = "[ct]\ntype = webhook\npreset = calltracking\nurl = https://x/ct\n";
        let r = render(ct, "ct", &call(EventKind::End)).unwrap();
        let q = r.url.split_once('?').unwrap().1.to_string();
        for expect in [
            "client_number=79990009911",
            "calltracking_number=78005552233",
            "manager_number=100",
            "time_start=2019-02-19+00%3A00%3A00",
            "duration=20",
            "call_status=ANSWER",
            "call_type=incoming",
            "record_url=",
            "utm_source=",
            "city=%D0%9C%D0%BE%D1%81%D0%BA%D0%B2%D0%B0",
        ] {
            assert!(q.contains(expect), "{expect} not in {q}");
        }
        let ck = "[ck]\ntype = webhook\npreset = callkeeper\nurl = https://x/ck\n";
        let start = json(&render(ck, "ck", &call(EventKind::Start)).unwrap());
        assert_eq!(start["hook_event"], "Call is processing");
        assert_eq!(start["date"], "2019-02-19 00:00:00");
        assert_eq!(start["date_timestamp"], 1550534400);
        assert_eq!(start["duration_sec"], 0);
        assert_eq!(start["duration_min"], "0");
        let end = json(&render(ck, "ck", &call(EventKind::End)).unwrap());
        assert_eq!(end["hook_event"], "Call is over");
        assert_eq!(end["id"], "313");
        assert_eq!(end["phone1"], "100");
        assert_eq!(end["phone2"], "79990009911");
        assert_eq!(end["duration_sec"], 20);
        assert_eq!(end["duration_min"], "0");
        assert_eq!(end["record_url"], "");
        assert_eq!(end["roistat_visit"], serde_json::Value::Null);
    }

    #[test]
    fn section_keys_override_and_extend_a_preset() {
        let conf = "[r]\ntype = webhook\npreset = roistat\nurl = https://x/\nparam = caller => +${caller}\nparam = extra => ${ext}\nevents = end\n";
        assert!(render(conf, "r", &call(EventKind::Start)).is_none());
        let end = json(&render(conf, "r", &call(EventKind::End)).unwrap());
        assert_eq!(end["caller"], "+79990009911");
        assert_eq!(end["extra"], "100");
        assert_eq!(end["id"], "313");
    }
}
