//! How the server ends a connection it refuses or lets go, specified through
//! real sockets against the real binary: the client is told why, with a
//! close frame it really receives, and the server does not hold on to it.

mod common;

use common::*;
use tokio::io::AsyncWriteExt;

/// RFC 6455 §8.1: text that is not UTF-8 fails the connection as soon as
/// it is seen, not once the message ends (conformance suite, section 6.4).
#[tokio::test]
async fn invalid_utf8_in_a_first_fragment_is_refused_before_the_message_ends() {
    let s = Server::start(&[]);
    let mut tcp = raw_socket(&s).await;
    // A fragment that can never be the start of text; the final fragment
    // never comes.
    tcp.write_all(&masked(0x01, b"fine so far \xff"))
        .await
        .unwrap();
    let closed = tokio::time::timeout(WAIT, read_close(&mut tcp)).await;
    let (code, reason) = closed.expect("no close frame while the message was unfinished");
    assert_eq!(code, 1007, "{reason}");
}

/// A client that sends a message far over the cap still has most of it in
/// flight when the server refuses it from its header. A socket closed with
/// unread data answers with a reset: the client's write fails, and a client
/// library reports a broken connection (1006) instead of the close frame.
/// So the server reads the rest away after its close frame (conformance
/// suite, section 9).
#[tokio::test]
async fn every_client_writing_an_oversized_message_at_once_receives_close_1009() {
    let s = Server::start(&[]);
    let frame = masked(0x81, &vec![b'x'; 1 << 20]);
    let mut sockets = Vec::new();
    for _ in 0..100 {
        let tcp = raw_socket(&s).await;
        // Far less than the message, so most of it is still in flight when
        // the server refuses it, as on a real network.
        socket2::SockRef::from(&tcp)
            .set_send_buffer_size(16 * 1024)
            .unwrap();
        sockets.push(tcp);
    }
    let clients: Vec<_> = sockets
        .into_iter()
        .map(|mut tcp| {
            let frame = frame.clone();
            tokio::spawn(async move {
                // As a client library does: the whole message, then read.
                if let Err(e) = tcp.write_all(&frame).await {
                    return Err(format!("writing: {e}"));
                }
                match tokio::time::timeout(WAIT, try_read_close(&mut tcp)).await {
                    Ok(Ok((code, _))) => Ok(code),
                    Ok(Err(e)) => Err(format!("reading: {e}")),
                    Err(_) => Err("no close frame in time".to_owned()),
                }
            })
        })
        .collect();
    let mut missed = Vec::new();
    for client in clients {
        match client.await.unwrap() {
            Ok(1009) => {}
            other => missed.push(other),
        }
    }
    assert!(
        missed.is_empty(),
        "{} of 100 did not receive close 1009: {:?}",
        missed.len(),
        &missed[..missed.len().min(3)]
    );
}
