//! The heartbeat judges clients, never the server's own stalls: a client
//! that answers pings stays connected however late the server gets to them.

mod common;

use std::time::Duration;

use common::*;
use futures_util::StreamExt;
use serde_json::json;
use tokio::time::sleep;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

/// Reads (and so answers pings: tungstenite queues the pong and writes it
/// on the next read) until `stop`; the client back if the server kept it,
/// or how it was cut.
async fn keep_reading(mut c: Client, stop: CancellationToken) -> Result<Client, String> {
    loop {
        tokio::select! {
            () = stop.cancelled() => return Ok(c),
            frame = c.ws.next() => match frame {
                Some(Ok(Message::Close(frame))) => return Err(format!("closed: {frame:?}")),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(format!("cut: {e}")),
                None => return Err("cut: end of stream".to_owned()),
            },
        }
    }
}

fn heartbeat_timeouts(metrics: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("attractio_heartbeat_timeouts_total "))
        .expect("the counter is exported")
        .parse()
        .unwrap()
}

#[tokio::test]
async fn a_stalled_server_cuts_nobody_who_answers_pings() {
    const CLIENTS: usize = 100;
    let s = Server::start(&["--ping-interval", "1s"]);
    let stop = CancellationToken::new();
    let mut readers = Vec::new();
    for i in 0..CLIENTS {
        let mut c = s.client().await;
        if c.join(&format!("stall-{}", i % 10)).await["action"] == "newRoom" {
            // A board, so that later joiners are not sent to ask for one.
            c.send(json!({"action":"stateUpdate","data":board(1)}))
                .await;
        }
        readers.push(tokio::spawn(keep_reading(c, stop.clone())));
    }
    // Never reads, so never answers: the heartbeat still cuts it.
    let _mute = s.client().await;

    // A ping or two answered, then the server is stopped for five ping
    // periods, as a paused VM or a throttled container would be.
    sleep(Duration::from_millis(1_500)).await;
    s.signal(libc::SIGSTOP);
    sleep(Duration::from_secs(5)).await;
    s.signal(libc::SIGCONT);

    sleep(Duration::from_secs(3)).await;
    stop.cancel();
    // Three ping periods after the stall, everybody is still there.
    let mut cut = Vec::new();
    let mut kept = Vec::new();
    for reader in readers {
        match reader.await.unwrap() {
            Ok(c) => kept.push(c),
            Err(how) => cut.push(how),
        }
    }
    assert_eq!(cut, Vec::<String>::new(), "{} of {CLIENTS} cut", cut.len());
    for c in &mut kept {
        c.send(json!({"action":"echo","data":"still here"})).await;
        assert_eq!(c.expect("echo").await["data"], "still here");
    }
    assert_eq!(
        heartbeat_timeouts(&s.get("/metrics").await),
        1,
        "only the mute client"
    );
}
