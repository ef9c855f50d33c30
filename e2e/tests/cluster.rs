//! Two nodes of a cluster (one Redis between them) in a real browser: each
//! page is loaded through a proxy standing in for a load balancer, so the
//! pages sit on different nodes, and when one node dies its page's proxy
//! sends it to the other node, as a balancer would (README, "Running
//! several servers"; issue 14).

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use e2e::{
    eventually, eventually_within, one_at_a_time, Browser, CutProxy, Redis, TestServer, Window,
    WordView,
};

const WORDS: &str = "moon river golden whisper slowly";
const TEXTS: &[&str] = &["moon", "river", "golden", "whisper", "slowly"];
const ROOM: &str = "/cluster-fridge";

/// Drag the word `id` in `from` and wait until `to` shows it where `from`
/// dropped it; the board as `from` then shows it.
async fn drag_seen_by(from: &Window, to: &Window, id: &str, dx: f64, dy: f64) -> Result<()> {
    let before = from.word(id).await?;
    from.drag(id, dx, dy).await?;
    let after = eventually("the dragging page shows the word moved", || async {
        let now = from.word(id).await?;
        ensure!(
            (now.x - before.x).abs() >= 20.0 && (now.y - before.y).abs() >= 20.0,
            "from {before:?} to {now:?}"
        );
        Ok(now)
    })
    .await?;
    let what = format!(
        "{} shows the word where {} dropped it",
        to.label, from.label
    );
    eventually(&what, || async {
        let seen = to.word(id).await?;
        ensure!(
            seen.same_place(&after) && !seen.held,
            "{} has {after:?}, {} has {seen:?}",
            from.label,
            to.label
        );
        Ok(())
    })
    .await
}

async fn wait_for_chat(window: &Window, line: &str) -> Result<()> {
    let what = format!("{} shows the chat line {line:?}", window.label);
    eventually(&what, || async {
        let lines = window.chat_lines().await?;
        ensure!(lines.iter().any(|l| l.contains(line)), "{lines:?}");
        Ok(())
    })
    .await
}

/// Wait until `window`'s presence list shows exactly these names.
async fn wait_for_presence(window: &Window, names: &[&str]) -> Result<()> {
    let what = format!("{} lists {names:?} in presence", window.label);
    eventually(&what, || async {
        let listed = window.presence().await?;
        let all = names
            .iter()
            .all(|name| listed.iter().any(|line| line.contains(name)));
        ensure!(all && listed.len() == names.len(), "{listed:?}");
        Ok(())
    })
    .await
}

#[tokio::test]
async fn pages_on_two_nodes_share_the_room_and_one_resumes_on_the_other_node_when_its_node_dies(
) -> Result<()> {
    let _serial = one_at_a_time().await;
    let redis = Redis::start("cluster").await?;
    let redis_url = redis.url();
    let flags = ["--redis-url", redis_url.as_str()];
    let mut node1 = TestServer::start_at("cluster-node1", "127.0.0.2", &flags).await?;
    let mut node2 = TestServer::start_at("cluster-node2", "127.0.0.3", &flags).await?;
    // The balancer: page a's proxy goes to node 1, page b's to node 2.
    let to_a = CutProxy::start_to(node1.addr()).await?;
    let to_b = CutProxy::start_to(node2.addr()).await?;
    let mut browser = Browser::start("cluster")?;

    let a = browser.open("a", &to_a.url(ROOM)).await?;
    a.wait_for_connection("connected").await?;
    a.submit_words(WORDS).await?;
    let board = a.wait_for_texts(TEXTS).await?;
    let b = browser.open("b", &to_b.url(ROOM)).await?;
    b.wait_for_connection("connected").await?;
    b.wait_for_texts(TEXTS).await?;

    let (name_a, name_b) = (a.my_name().await?, b.my_name().await?);
    ensure!(name_a != name_b, "both pages are {name_a}");
    for window in [&a, &b] {
        wait_for_presence(window, &[&name_a, &name_b]).await?;
    }
    drag_seen_by(&a, &b, &board[0].id, 120.0, 90.0).await?;
    let line = "said on node 2";
    b.say(line).await?;
    wait_for_chat(&a, line).await?;
    let before: Vec<WordView> = a.words().await?;
    b.wait_for_board(&before).await?;
    a.screenshot("cluster-before").await?;

    // Node 1 dies just after page a wrote a line it never got: the page
    // cannot know, and sends it again once resumed (its `opId` after the
    // `lastOp` of its `resumed`).
    to_a.withhold_uploads();
    let unsure = "written as node 1 died";
    a.say(unsure).await?;
    // Node 1 dies; the balancer sends page a to node 2 from now on.
    node1.kill().await?;
    a.wait_for_connection("reconnecting").await?;
    // Node 1's lease runs out, so b sees a as away: its seat is held.
    eventually("b shows a as away once node 1's lease is gone", || async {
        let away = b.texts("#presence li.away").await?;
        ensure!(away.iter().any(|l| l.contains(&name_a)), "away: {away:?}");
        Ok(())
    })
    .await?;
    to_a.switch_to(node2.addr());
    eventually_within(
        Duration::from_secs(45),
        "a reconnects by itself on node 2",
        || async { a.wait_for_connection("connected").await },
    )
    .await?;

    // It resumed as itself: its seat was held for it, not given anew.
    let sockets = to_a.websockets()?;
    let resumed = sockets
        .iter()
        .flat_map(|ws| ws.messages.iter())
        .find(|m| m["action"] == "resumed")
        .with_context(|| {
            let actions: Vec<Vec<String>> = sockets.iter().map(|ws| ws.actions()).collect();
            format!("no `resumed` on node 2; the page's sockets got {actions:?}")
        })?;
    ensure!(
        resumed["data"]["recovered"] == true,
        "not recovered: {resumed}"
    );
    ensure!(
        resumed["data"]["name"] == name_a.as_str(),
        "resumed as someone else ({resumed}); the page was {name_a}"
    );
    ensure!(
        a.my_name().await? == name_a,
        "the page changed its name after resuming"
    );

    // Board and chat intact, both pages together again on node 2.
    a.wait_for_board(&before).await?;
    wait_for_chat(&a, line).await?;
    // The line node 1 never got reached b, once.
    wait_for_chat(&b, unsure).await?;
    let resent = sockets
        .iter()
        .flat_map(|ws| ws.messages.iter())
        .find(|m| m["action"] == "resumed")
        .and_then(|m| m["data"]["lastOp"].as_u64());
    for window in [&a, &b] {
        let lines = window.chat_lines().await?;
        let times = lines.iter().filter(|l| l.contains(unsure)).count();
        ensure!(
            times == 1,
            "{} shows {unsure:?} {times} times (lastOp {resent:?}): {lines:?}",
            window.label
        );
    }
    for window in [&a, &b] {
        wait_for_presence(window, &[&name_a, &name_b]).await?;
        let what = format!("{} shows nobody away", window.label);
        eventually(&what, || async {
            let away = window.texts("#presence li.away").await?;
            ensure!(away.is_empty(), "away: {away:?}");
            Ok(())
        })
        .await?;
    }
    drag_seen_by(&a, &b, &board[1].id, 80.0, 60.0).await?;
    let line = "said after the move";
    a.say(line).await?;
    wait_for_chat(&b, line).await?;
    a.screenshot("cluster-after").await?;

    a.close().await?;
    b.close().await?;
    node2.stop().await.context("node 2 stops cleanly")
}
