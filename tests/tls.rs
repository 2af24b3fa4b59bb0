//! TLS is verified by default: a delivery to a local HTTPS server with a self-signed CA fails
//! until that CA is configured for the section (`tls_ca`), and then succeeds.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use res_webhook::core::http::client;
use res_webhook::core::model::attempt::Attempt;
use res_webhook::core::model::request::{HttpRequest, Method};

/// A one-thread HTTPS server answering 200 to everything, with a certificate for 127.0.0.1
/// signed by a fresh CA. Returns (port, CA PEM).
fn https_server() -> (u16, String) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "res_webhook test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let params =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .unwrap();
    let cert = params.signed_by(&key, &ca, &ca_key).unwrap();

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .unwrap();
    let config = Arc::new(config);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for tcp in listener.incoming().flatten() {
            let config = config.clone();
            std::thread::spawn(move || {
                let _ = tcp.set_read_timeout(Some(Duration::from_secs(5)));
                let conn = rustls::ServerConnection::new(config).unwrap();
                let mut tls = rustls::StreamOwned::new(conn, tcp);
                let mut buf = [0u8; 4096];
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf) {
                        Ok(0) | Err(_) => return, // the client refused our certificate
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = tls.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                );
                let _ = tls.flush();
            });
        }
    });
    (port, ca.pem())
}

#[test]
fn self_signed_endpoint_fails_until_its_ca_is_configured() {
    let (port, ca_pem) = https_server();
    let req = HttpRequest {
        method: Method::Post,
        url: format!("https://127.0.0.1:{port}/hook"),
        headers: vec![("Content-Type".into(), "application/json".into())],
        body: b"{}".to_vec(),
    };
    let default_client = client::Client::new(Duration::from_secs(5), None, 1).unwrap();
    match client::send(&default_client, &req, &[]).attempt {
        Attempt::Error(e) => assert!(
            e.to_lowercase().contains("certificate") || e.contains("UnknownIssuer"),
            "{e}"
        ),
        other => panic!("an unknown CA must not be trusted: {other:?}"),
    }

    let dir = std::env::temp_dir().join(format!("rw-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, ca_pem).unwrap();
    let trusting = client::Client::new(Duration::from_secs(5), Some(&ca_file), 1).unwrap();
    match client::send(&trusting, &req, &[]).attempt {
        Attempt::Status { code, .. } => assert_eq!(code, 200),
        other => panic!("with tls_ca the endpoint is trusted: {other:?}"),
    }
    assert!(
        client::Client::new(Duration::from_secs(5), Some(&dir.join("missing.pem")), 1).is_err()
    );
    std::fs::remove_dir_all(dir).unwrap();
}
