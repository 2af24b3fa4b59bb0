//! Live: one real answered call through the sandboxed Asterisk, heard by ten sections at once —
//! every format and every provider preset — and what each endpoint received, asserted.

mod common;

use std::time::Duration;

use common::{Received, Receiver, Sandbox};

const CONF: &str = r#"
[general]
internal_contexts = from-internal
timezone = Europe/Moscow

[f-query]
type = webhook
url = @RECEIVER@/query?src=pbx&name=${caller_name}
method = GET
events = end
param = id => ${call_id}
param = visit.utm_source => ${UTM_SOURCE}
param = tags[] => a
param = tags[] => b

[f-form]
type = webhook
url = @RECEIVER@/form
format = form
events = end
param = id => ${call_id}
param = status => ${status}
param = note => ${CRM_NOTE}
header = X-Call: ${call_id}

[f-json]
type = webhook
url = @RECEIVER@/json
method = PUT
format = json
events = end
param = id => ${call_id}
param = duration => ${duration}
param = order_id => 313|int
param = visit.utm_source => ${UTM_SOURCE}
param = tags[] => ${CRM_NOTE}
param = missing => ${NO_SUCH_THING}
param = sign => ${sha256(${call_id}:s3cret)}
param = when => ${time_end}
date_format = iso8601

[f-jsonrpc]
type = webhook
url = @RECEIVER@/rpc
format = jsonrpc
jsonrpc_method = call.finished
events = end
param = id => ${call_id}
param = status => ${status}

[f-raw]
type = webhook
url = @RECEIVER@/raw
format = raw
content_type = text/csv
events = end
body = ${call_id}\;${caller}\;${status}\;${duration}

[p-roistat]
type = webhook
preset = roistat
url = @RECEIVER@/roistat

[p-mango]
type = webhook
preset = mango
url = @RECEIVER@/mango

[p-xvb]
type = webhook
preset = xvb
url = @RECEIVER@/xvb
access_code = 10019

[p-calltracking]
type = webhook
preset = calltracking
url = @RECEIVER@/calltracking

[p-callkeeper]
type = webhook
preset = callkeeper
url = @RECEIVER@/callkeeper
"#;

fn path(r: &Received) -> &str {
    r.url.split('?').next().unwrap()
}

fn pairs(text: &str) -> Vec<(String, String)> {
    Received::pairs(text)
}

fn get<'a>(p: &'a [(String, String)], k: &str) -> Option<&'a str> {
    p.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
}

#[test]
fn every_format_and_every_preset_on_one_real_call() {
    let rx = Receiver::start();
    let Some(pbx) = Sandbox::start("payloads", CONF, &rx.url()) else {
        return;
    };
    // The IVR answers, sets WEBHOOK(UTM_SOURCE)=google and CRM_NOTE, then 100 answers.
    assert!(pbx.call("79161239999", "74951234572", 2000));
    // 5 formats × end + roistat 2 + mango 2 + xvb 3 + calltracking 2 + callkeeper 2 = 16.
    rx.wait_for("16 webhooks", Duration::from_secs(20), |g| g.len() >= 16);
    std::thread::sleep(Duration::from_millis(300));
    let got = rx.received();
    assert_eq!(
        got.len(),
        16,
        "{:#?}",
        got.iter().map(|r| &r.url).collect::<Vec<_>>()
    );
    let by = |p: &str| -> Vec<&Received> { got.iter().filter(|r| path(r) == p).collect() };

    let q = by("/query");
    assert_eq!(q.len(), 1);
    assert_eq!(q[0].method, "GET");
    assert!(q[0].body.is_empty());
    let qp = q[0].query();
    let call_id = get(&qp, "id").unwrap().to_string();
    assert_eq!(get(&qp, "src"), Some("pbx"));
    assert_eq!(
        get(&qp, "name"),
        Some("79161239999"),
        "caller name (templated URL, encoded)"
    );
    assert_eq!(get(&qp, "visit[utm_source]"), Some("google"));
    assert_eq!(qp.iter().filter(|(n, _)| n == "tags[]").count(), 2);

    let f = by("/form");
    assert_eq!(f[0].method, "POST");
    assert_eq!(
        f[0].header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(f[0].header("x-call"), Some(call_id.as_str()));
    let fp = pairs(&f[0].body);
    assert_eq!(get(&fp, "status"), Some("ANSWER"));
    assert_eq!(get(&fp, "note"), Some("vip client"));

    let j = by("/json");
    assert_eq!(j[0].method, "PUT");
    assert_eq!(j[0].header("content-type"), Some("application/json"));
    let jb = j[0].json();
    assert_eq!(jb["id"], call_id.as_str());
    assert!(jb["duration"].is_i64());
    assert_eq!(jb["order_id"], 313);
    assert_eq!(jb["visit"]["utm_source"], "google");
    assert_eq!(jb["tags"][0], "vip client");
    assert!(jb["missing"].is_null());
    let sign = {
        use sha2::Digest;
        let d = sha2::Sha256::digest(format!("{call_id}:s3cret").as_bytes());
        d.iter().map(|b| format!("{b:02x}")).collect::<String>()
    };
    assert_eq!(jb["sign"], sign.as_str());
    assert!(
        jb["when"].as_str().unwrap().ends_with("+03:00"),
        "iso8601 in Europe/Moscow: {}",
        jb["when"]
    );

    let rpc = by("/rpc")[0].json();
    assert_eq!(rpc["jsonrpc"], "2.0");
    assert_eq!(rpc["method"], "call.finished");
    assert_eq!(rpc["params"]["status"], "ANSWER");
    assert_eq!(rpc["id"], format!("{call_id}-end").as_str());

    let raw = by("/raw");
    assert_eq!(raw[0].header("content-type"), Some("text/csv"));
    assert!(
        raw[0]
            .body
            .starts_with(&format!("{call_id};79161239999;ANSWER;")),
        "{}",
        raw[0].body
    );

    let roistat = by("/roistat");
    assert_eq!(roistat.len(), 2);
    let (rs, re) = (roistat[0].json(), roistat[1].json());
    assert_eq!(rs["id"], call_id.as_str());
    assert_eq!(rs["caller"], "79161239999");
    assert_eq!(rs["callee"], "74951234572");
    assert!(
        rs["utm_source"].is_null(),
        "set by the dialplan only after start"
    );
    assert_eq!(re["utm_source"], "google");
    assert!(rs["visit_id"].is_null() && rs["utm_medium"].is_null());
    assert_eq!(rs["custom_fields"], serde_json::json!([]));
    assert!(rs.get("status").is_none(), "status only after the call");
    assert_eq!(re["status"], "ANSWER");
    assert!(re["duration"].is_i64());
    assert_eq!(re["link"], "");

    let mango = by("/mango");
    assert_eq!(mango.len(), 2);
    assert!(mango.iter().all(|r| r.method == "GET"));
    let me = mango[1].query();
    assert_eq!(get(&me, "callId"), Some(call_id.as_str()));
    assert_eq!(get(&me, "callStatus"), Some("1100"));
    assert_eq!(get(&me, "callerNumber"), Some("79161239999"));
    assert_eq!(get(&me, "utmSource"), Some("google"));
    assert!(get(&me, "dateStart").unwrap().ends_with('Z'));

    let xvb = by("/xvb");
    assert_eq!(xvb.len(), 3);
    let events: Vec<String> = xvb
        .iter()
        .map(|r| get(&pairs(&r.body), "event").unwrap().to_string())
        .collect();
    assert_eq!(events, ["INCOMING", "ANSWERED", "COMPLETED"]);
    assert!(xvb.iter().all(|r| r.header("x-xvb-ac") == Some("10019")));
    let answered = pairs(&xvb[1].body);
    assert_eq!(get(&answered, "ext"), Some("100"));
    assert_eq!(get(&pairs(&xvb[2].body), "status"), Some("Success"));

    let ct = by("/calltracking");
    assert_eq!(ct.len(), 2);
    let cte = ct[1].query();
    assert_eq!(get(&cte, "client_number"), Some("79161239999"));
    assert_eq!(get(&cte, "calltracking_number"), Some("74951234572"));
    assert_eq!(get(&cte, "manager_number"), Some("100"));
    assert_eq!(get(&cte, "call_status"), Some("ANSWER"));

    let ck = by("/callkeeper");
    assert_eq!(ck.len(), 2);
    assert_eq!(ck[0].json()["hook_event"], "Call is processing");
    let cke = ck[1].json();
    assert_eq!(cke["hook_event"], "Call is over");
    assert_eq!(cke["phone1"], "100");
    assert_eq!(cke["phone2"], "79161239999");
    assert!(cke["date_timestamp"].is_i64());
}
