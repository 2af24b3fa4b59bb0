//! The benchmark's JetStream helper (asterisk/bench.sh, mode `nats`):
//!
//!     nats_stream create nats://127.0.0.1:4222   the stream PBX on pbx.> (file storage)
//!     nats_stream count  nats://127.0.0.1:4222   how many messages it holds

use std::time::Duration;

use async_nats::jetstream;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(cmd), Some(url)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: nats_stream create|count nats://host:port");
        std::process::exit(2);
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let out = rt.block_on(async {
        let client = async_nats::connect(url.as_str())
            .await
            .map_err(|e| e.to_string())?;
        let js = jetstream::new(client);
        match cmd.as_str() {
            "create" => js
                .get_or_create_stream(jetstream::stream::Config {
                    name: "PBX".into(),
                    subjects: vec!["pbx.>".into()],
                    storage: jetstream::stream::StorageType::File,
                    duplicate_window: Duration::from_secs(120),
                    ..Default::default()
                })
                .await
                .map(|_| "created".to_string())
                .map_err(|e| e.to_string()),
            "count" => {
                let mut s = js.get_stream("PBX").await.map_err(|e| e.to_string())?;
                let info = s.info().await.map_err(|e| e.to_string())?;
                Ok(info.state.messages.to_string())
            }
            other => Err(format!("unknown command {other}")),
        }
    });
    match out {
        Ok(text) => println!("{text}"),
        Err(e) => {
            eprintln!("nats_stream: {e}");
            std::process::exit(1);
        }
    }
}
