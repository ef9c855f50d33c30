//! The chat app (`clients/chat`, built on the TypeScript client) in a real
//! browser, served by the real server at `/chat/<room>`: what two people
//! chatting see when one of them loses the network for a while.

use anyhow::{ensure, Context, Result};
use e2e::{eventually, one_at_a_time, Browser, CutProxy, Device, Peer, TestServer, Window};
use serde_json::json;

/// The lines people wrote (not the server's welcome and goodbye), in the order shown.
async fn written(window: &Window) -> Result<Vec<String>> {
    window.texts("#chat-log li:not(.system) .text").await
}

/// Waits until `window` shows exactly `lines` as written lines, in that order.
async fn shows_exactly(window: &Window, lines: &[String]) -> Result<()> {
    let what = format!(
        "{} shows {} lines once each, in order",
        window.label,
        lines.len()
    );
    eventually(&what, || async {
        let got = written(window).await?;
        ensure!(got == lines, "shows {got:?}");
        Ok(())
    })
    .await
}

/// The name `window` lists itself under in "Here".
async fn who_am_i(window: &Window) -> Result<String> {
    let what = format!("{} lists itself", window.label);
    eventually(&what, || async {
        let people = window.texts("#people li").await?;
        people
            .into_iter()
            .find(|p| p.contains("(you)"))
            .with_context(|| "no \"(you)\" in #people".to_string())
    })
    .await
}

#[tokio::test]
async fn a_page_cut_off_the_network_comes_back_with_every_line_once_and_in_order() -> Result<()> {
    let _serial = one_at_a_time().await;
    let mut server = TestServer::start("chat-resume", &[]).await?;
    let mut browser = Browser::start("chat-resume")?;
    let proxy = CutProxy::start(server.port).await?;
    let room = "/chat/e2e-chat";

    // `a` goes through the proxy, so its socket can be cut without a close frame.
    let a = browser.open("a", &proxy.url(room)).await?;
    a.wait_for_connection("connected").await?;
    let b = browser.open("b", &server.url(room)).await?;
    b.wait_for_connection("connected").await?;
    let mut lines = vec!["hello from b".to_string()];
    b.say(&lines[0]).await?;
    shows_exactly(&a, &lines).await?;

    proxy.cut();
    a.wait_for_connection("reconnecting").await?;
    // b keeps writing while a is away; a writes too (queued until it is back).
    for i in 1..=6 {
        let line = format!("while a is away {i}");
        b.say(&line).await?;
        lines.push(line);
    }
    a.say("a wrote this offline").await?;
    shows_exactly(&b, &lines).await?;

    proxy.restore();
    a.wait_for_connection("connected").await?;
    // a's own line was shown when written, before the ones it missed.
    let mut a_sees = vec![lines[0].clone(), "a wrote this offline".to_string()];
    a_sees.extend(lines[1..].iter().cloned());
    shows_exactly(&a, &a_sees).await?;
    lines.push("a wrote this offline".into());
    shows_exactly(&b, &lines).await?;

    // A reload resumes the same member and keeps every line, once.
    let me_before = who_am_i(&a).await?;
    a.reload().await?;
    a.wait_for_connection("connected").await?;
    shows_exactly(&a, &a_sees).await?;
    b.say("after the reload").await?;
    a_sees.push("after the reload".into());
    shows_exactly(&a, &a_sees).await?;
    let me_after = who_am_i(&a).await?;
    ensure!(
        me_after == me_before,
        "a came back as someone else: {me_after:?}, was {me_before:?}"
    );
    let here = a.count("#people li").await?;
    ensure!(here == 2, "{here} people listed after the reload");

    let phone = browser
        .open_as(Device::Phone, "phone", &server.url(room))
        .await?;
    phone.wait_for_connection("connected").await?;
    b.say("welcome, phone").await?;
    phone.say("thanks! typing with my thumbs").await?;
    a_sees.extend([
        "welcome, phone".into(),
        "thanks! typing with my thumbs".into(),
    ]);
    shows_exactly(&a, &a_sees).await?;
    shows_exactly(
        &phone,
        &[
            "welcome, phone".into(),
            "thanks! typing with my thumbs".into(),
        ],
    )
    .await?;
    let (page, window) = phone.widths().await?;
    ensure!(
        page <= window,
        "the phone page is {page}px wide in a {window}px window"
    );
    a.screenshot("desktop").await?;
    phone.screenshot("phone").await?;

    for window in [a, b, phone] {
        window.close().await?;
    }
    server.stop().await.context("the server stops cleanly")
}

#[tokio::test]
async fn who_is_typing_shows_and_fades_and_is_never_numbered() -> Result<()> {
    let _serial = one_at_a_time().await;
    let mut server = TestServer::start("chat-typing", &[]).await?;
    let mut browser = Browser::start("chat-typing")?;
    let page = browser
        .open("page", &server.url("/chat/e2e-typing"))
        .await?;
    page.wait_for_connection("connected").await?;
    let mut peer = Peer::join(server.port, "e2e-typing").await?;

    peer.send(json!({"action":"typing","volatile":true,"data":null}))
        .await?;
    let typing = format!("{} is typing…", peer.name);
    eventually("the page shows the peer typing", || async {
        let shown = page.texts("#typing").await?;
        ensure!(shown == [typing.clone()], "shows {shown:?}");
        Ok(())
    })
    .await?;
    eventually("the indicator fades", || async {
        let shown = page.texts("#typing").await?;
        ensure!(shown == [String::new()], "shows {shown:?}");
        Ok(())
    })
    .await?;

    // Typing on the page sends `typing` as a volatile frame: relayed without a seq.
    page.say("hi peer").await?;
    let relayed = peer
        .wait_for("the page's typing", |f| f["action"] == "typing")
        .await?;
    ensure!(
        relayed["volatile"] == true && relayed.get("seq").is_none(),
        "{relayed}"
    );
    peer.wait_for("the page's line", |f| {
        f["action"] == "talkToRoom" && f["data"]["text"] == "hi peer"
    })
    .await?;

    peer.close().await?;
    page.close().await?;
    server.stop().await.context("the server stops cleanly")
}
