//! Live two-way CRM integration: `WEBHOOK_LOOKUP` from a real call's dialplan against a local
//! CRM that is friendly, hanging, trickling, huge, invalid or hostile; and click-to-call over
//! Asterisk's HTTP server connecting two SIPp user agents.

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{events_of, Json, Receiver, Sandbox};

/// A CRM whose answer depends on the phone number asked about.
struct Crm {
    port: u16,
    asked: Arc<Mutex<HashMap<String, usize>>>,
}

fn answer(mut s: TcpStream, phone: &str) {
    let ok = |body: &str| {
        format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len())
    };
    let text = match phone {
        "79990000001" => ok(r#"{"contact_name":"Иван Петров","responsible":"100"}"#),
        "79990000003" => ok(r#"{"contact_name":"Evil","responsible":"100&PJSIP/666"}"#),
        "79990000004" => ok(r#"{"contact_name":"Evil","responsible":"100,,,U(evil)"}"#),
        "79990000006" => ok("{contact_name: Вася, responsible"),
        "79990000008" => ok("{ contact_name: 'Вася/Рога и копыта', responsible: '100' }"),
        "79990000002" => {
            std::thread::sleep(Duration::from_secs(5)); // accepts, never answers in time
            return;
        }
        "79990000005" => {
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{{\"contact_name\":\"",
                10 << 20
            );
            let _ = s.write_all(head.as_bytes());
            let chunk = vec![b'x'; 64 * 1024];
            for _ in 0..160 {
                if s.write_all(&chunk).is_err() {
                    return;
                }
            }
            return;
        }
        "79990000007" => {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{");
            for _ in 0..5 {
                std::thread::sleep(Duration::from_secs(1)); // one byte a second
                if s.write_all(b" ").is_err() {
                    return;
                }
            }
            return;
        }
        _ => "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_string(),
    };
    let _ = s.write_all(text.as_bytes());
}

impl Crm {
    fn start() -> Crm {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let asked = Arc::new(Mutex::new(HashMap::new()));
        let a = asked.clone();
        std::thread::spawn(move || {
            for s in l.incoming().flatten() {
                let a = a.clone();
                std::thread::spawn(move || {
                    let mut s = s;
                    let mut buf = vec![0u8; 4096];
                    let mut got = Vec::new();
                    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                    while let Ok(n) = s.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        got.extend_from_slice(&buf[..n]);
                        let text = String::from_utf8_lossy(&got);
                        if let Some((_, body)) = text.split_once("\r\n\r\n") {
                            if body.contains("phone=")
                                && (body.ends_with(|c: char| c.is_ascii_digit()))
                            {
                                break;
                            }
                        }
                    }
                    let text = String::from_utf8_lossy(&got).to_string();
                    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
                    let pairs: Vec<(String, String)> = form_urlencoded::parse(body.as_bytes())
                        .into_owned()
                        .collect();
                    let phone = pairs
                        .iter()
                        .find(|(k, _)| k == "phone")
                        .map(|(_, v)| v.clone())
                        .unwrap_or_default();
                    *a.lock().unwrap().entry(phone.clone()).or_insert(0) += 1;
                    answer(s, &phone);
                });
            }
        });
        Crm { port, asked }
    }

    fn asked(&self, phone: &str) -> usize {
        self.asked.lock().unwrap().get(phone).copied().unwrap_or(0)
    }
}

fn conf(crm_port: u16) -> String {
    format!(
        "
[general]
internal_contexts = from-internal

[calls]
type = webhook
url = @RECEIVER@/calls
param = call_id => ${{call_id}}
param = event => ${{event}}
param = direction => ${{direction}}
param = caller => ${{caller}}
param = caller_name => ${{caller_name}}
param = called => ${{called}}
param = ext => ${{ext}}
param = status => ${{status}}
param = T0 => ${{T0}}
param = T1 => ${{T1}}
param = LOOKUP_STATUS => ${{LOOKUP_STATUS}}
param = ROUTE => ${{ROUTE}}

[crm]
type = lookup
url = http://127.0.0.1:{crm_port}/crm-api
format = form
param = cmd => contact
param = phone => ${{number}}
timeout = 1000
cache = 300

[click]
type = originate
preset = xvb
path = crm-api
token = s3cret-token-123
context = from-internal
rate_limit = 8
"
    )
}

/// Places a call into the lookup DID and returns its end event.
fn lookup_call(pbx: &Sandbox, rx: &Receiver, caller: &str) -> Json {
    assert!(pbx.call(caller, "74951234580", 1500));
    let got = rx.wait_for(&format!("end of {caller}"), Duration::from_secs(15), |g| {
        g.iter()
            .any(|r| r.json()["caller"] == caller && r.json()["event"] == "end")
    });
    got.iter()
        .map(|r| r.json())
        .find(|j| j["caller"] == caller && j["event"] == "end")
        .unwrap()
}

/// Keeps measured lookup times for the record (target/live/lookup-timing.txt).
fn record_timing(line: &str) {
    use std::io::Write as _;
    let path = common::repo().join("target/live/lookup-timing.txt");
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = writeln!(f, "{line}");
    }
}

fn lookup_secs(end: &Json) -> f64 {
    let t = |k: &str| end[k].as_str().unwrap().parse::<f64>().unwrap();
    t("T1") - t("T0")
}

#[test]
fn lookup_routes_known_callers_and_survives_a_hostile_crm() {
    let crm = Crm::start();
    let rx = Receiver::start();
    let Some(pbx) = Sandbox::start("lookup", &conf(crm.port), &rx.url()) else {
        return;
    };
    let help = pbx.cli("core show function WEBHOOK_LOOKUP");
    assert!(
        help.contains("WEBHOOK_LOOKUP(section,number[,field])") && help.contains("NOTFOUND"),
        "{help}"
    );
    assert!(pbx
        .cli("core show function WEBHOOK")
        .contains("Set(WEBHOOK(NAME)=value)"));

    // Known caller: name shown (Cyrillic), routed to the responsible agent; two reads, one request.
    let end = lookup_call(&pbx, &rx, "79990000001");
    record_timing(&format!(
        "lookup cache miss, local CRM: dialplan waited {:.3} s",
        lookup_secs(&end)
    ));
    assert_eq!(end["LOOKUP_STATUS"], "FOUND");
    assert_eq!(end["caller_name"], "Иван Петров");
    assert_eq!(end["ROUTE"], "PJSIP/100");
    assert_eq!(end["ext"], "100");
    assert_eq!(end["status"], "ANSWER");
    assert_eq!(
        crm.asked("79990000001"),
        1,
        "the cache served the second read"
    );

    // The lenient form from the XVB document.
    let end = lookup_call(&pbx, &rx, "79990000008");
    assert_eq!(end["caller_name"], "Вася Рога и копыта");
    assert_eq!(end["ROUTE"], "PJSIP/100");

    // Unknown number → NOTFOUND → fallback.
    let end = lookup_call(&pbx, &rx, "79990000099");
    assert_eq!(end["LOOKUP_STATUS"], "NOTFOUND");
    assert_eq!(end["ROUTE"], "fallback");

    // A CRM that hangs or trickles: TIMEOUT within timeout + 10 %, then the fallback route.
    for phone in ["79990000002", "79990000007"] {
        let end = lookup_call(&pbx, &rx, phone);
        assert_eq!(end["LOOKUP_STATUS"], "TIMEOUT", "{phone}");
        assert_eq!(end["ROUTE"], "fallback", "{phone}");
        let took = lookup_secs(&end);
        record_timing(&format!(
            "lookup {phone} ({}): dialplan waited {took:.3} s, timeout 1.000 s",
            end["LOOKUP_STATUS"]
        ));
        assert!(
            took <= 1.1,
            "{phone}: the dialplan waited {took:.3} s (timeout 1 s)"
        );
        assert_eq!(end["ext"], "100");
    }

    // 10 MB answer and invalid JSON: ERROR, fast, fallback.
    for phone in ["79990000005", "79990000006"] {
        let end = lookup_call(&pbx, &rx, phone);
        assert_eq!(end["LOOKUP_STATUS"], "ERROR", "{phone}");
        assert_eq!(end["ROUTE"], "fallback", "{phone}");
        assert!(lookup_secs(&end) <= 1.1, "{phone}");
    }

    // Hostile `responsible` values never reach the dialplan as syntax: the Dial target is one
    // harmless (non-existent) endpoint name, the call goes nowhere else.
    for (phone, route) in [
        ("79990000003", "PJSIP/100 PJSIP 666"),
        ("79990000004", "PJSIP/100 U evil"),
    ] {
        let end = lookup_call(&pbx, &rx, phone);
        assert_eq!(end["LOOKUP_STATUS"], "FOUND");
        assert_eq!(end["ROUTE"], route);
        assert_eq!(end["status"], "CHANUNAVAIL", "{phone}");
        assert_eq!(end["ext"], Json::Null, "{phone}: nobody answered");
    }
    let log = pbx.log();
    assert!(
        !log.contains("Executing [666@") && !log.contains("U(evil)"),
        "the hostile value became dialplan"
    );
}

fn http(port: u16, query: &str) -> (u16, Json) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut resp = agent
        .get(format!("http://127.0.0.1:{port}/webhook/crm-api?{query}"))
        .call()
        .unwrap();
    let status = resp.status().as_u16();
    let body = resp.body_mut().read_to_string().unwrap_or_default();
    (status, serde_json::from_str(&body).unwrap_or(Json::Null))
}

#[test]
fn click_to_call_connects_the_agent_then_the_client_and_refuses_the_rest() {
    let crm = Crm::start();
    let rx = Receiver::start();
    let Some(pbx) = Sandbox::start("click2call", &conf(crm.port), &rx.url()) else {
        return;
    };
    let port = pbx.ports.http;

    let (status, body) = http(
        port,
        "cmd=makeCall&token=s3cret-token-123&from=100&to=84951112233",
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ok");
    let call_id = body["call_id"].as_str().unwrap().to_string();
    // 100 (a SIPp UA) rings 1 s and answers; then the PBX dials the client (103, another UA),
    // who answers after 1 s; the client leg hangs up after 3 s.
    let got = rx.wait_for("the click-to-call's end", Duration::from_secs(20), |g| {
        g.iter()
            .any(|r| r.json()["call_id"] == call_id.as_str() && r.json()["event"] == "end")
    });
    let evs = events_of(&got, &call_id);
    let kinds: Vec<&str> = evs.iter().map(|e| e["event"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["start", "answer", "end"]);
    for e in &evs {
        assert_eq!(e["direction"], "out");
        assert_eq!(e["ext"], "100");
        assert_eq!(e["called"], "84951112233");
    }
    assert_eq!(evs[2]["status"], "ANSWER");

    // A bad token: 401, logged with the source, and no call.
    let before = rx.received().len();
    let (status, _) = http(port, "cmd=makeCall&token=wrong&from=100&to=84951112233");
    assert_eq!(status, 401);
    // A destination outside allowed_to: 403. Missing parameters and a wrong cmd: 400.
    assert_eq!(
        http(
            port,
            "cmd=makeCall&token=s3cret-token-123&from=100&to=900;evil"
        )
        .0,
        403
    );
    assert_eq!(
        http(port, "cmd=makeCall&token=s3cret-token-123&from=100").0,
        400
    );
    assert_eq!(
        http(
            port,
            "cmd=hack&token=s3cret-token-123&from=100&to=84951112233"
        )
        .0,
        400
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        rx.received().len(),
        before,
        "refused requests placed no call"
    );
    assert!(pbx.log().contains("bad token; refused") && pbx.log().contains("127.0.0.1"));

    // A burst past the rate limit (8/min, 5 used): 429.
    let codes: Vec<u16> = (0..4)
        .map(|_| http(port, "cmd=makeCall&token=wrong&from=100&to=1").0)
        .collect();
    assert_eq!(codes, [401, 401, 401, 429]);
    // Unknown paths are 404.
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    assert_eq!(
        agent
            .get(format!("http://127.0.0.1:{port}/webhook/nope"))
            .call()
            .unwrap()
            .status()
            .as_u16(),
        404
    );
}
