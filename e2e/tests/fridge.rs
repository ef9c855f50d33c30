//! The magnetic-poetry board in a real browser: headless Chromium windows
//! on the real server serving the real built app. Each test is one thing a
//! person at the fridge can see, named as such, and leaves screenshots in
//! artifacts/.

use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use e2e::{
    eventually, eventually_within, one_at_a_time, Browser, CutProxy, Device, Peer, TestServer,
    Window, WordView,
};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

const WORDS: &str = "moon river golden whisper slowly";
const TEXTS: &[&str] = &["moon", "river", "golden", "whisper", "slowly"];
const HTML_LOOKING: &str = "<img src=x onerror=alert(1)>";

/// A server, a browser, and the serial lock, for one test.
struct Scene {
    test: &'static str,
    server: TestServer,
    browser: Browser,
    /// Released last, after the server and the browser are gone.
    _serial: tokio::sync::MutexGuard<'static, ()>,
}

impl Scene {
    async fn start(test: &'static str, server_flags: &[&str]) -> Result<Scene> {
        let serial = one_at_a_time().await;
        let server = TestServer::start(test, server_flags).await?;
        let browser = Browser::start(test)?;
        Ok(Scene {
            test,
            server,
            browser,
            _serial: serial,
        })
    }

    /// A new window on `path`.
    async fn open(&mut self, label: &str, path: &str) -> Result<Window> {
        let url = self.server.url(path);
        self.browser.open(label, &url).await
    }

    /// A window in `room` that is connected.
    async fn join(&mut self, label: &str, room: &str) -> Result<Window> {
        let window = self.open(label, &format!("/{room}")).await?;
        window.wait_for_connection("connected").await?;
        Ok(window)
    }

    /// Two windows in a fresh room: the first fills it with [`WORDS`], the
    /// second joins and sees them.
    async fn two_windows_with_a_board(&mut self, room: &str) -> Result<(Window, Window)> {
        let a = self.join("a", room).await?;
        a.submit_words(WORDS).await?;
        a.wait_for_texts(TEXTS).await?;
        let b = self.join("b", room).await?;
        b.wait_for_texts(TEXTS).await?;
        Ok((a, b))
    }

    /// Close the windows and check the server still stops cleanly.
    async fn finish(mut self, windows: Vec<Window>) -> Result<()> {
        for window in windows {
            window.close().await?;
        }
        self.server.stop().await.context(self.test)
    }
}

/// A word's position moved by at least `min` px in each direction the drag went.
fn moved(before: &WordView, after: &WordView, min: f64) -> bool {
    (after.x - before.x) >= min && (after.y - before.y) >= min
}

#[tokio::test]
async fn a_new_room_asks_for_words_and_shows_the_submitted_ones() -> Result<()> {
    let mut scene = Scene::start("new_room_words", &[]).await?;
    let a = scene.join("a", "fresh-fridge").await?;
    a.submit_words(WORDS).await?;
    let words = a.wait_for_texts(TEXTS).await?;
    eventually("the words dialog closes", || async {
        ensure!(!a.words_dialog_shown().await?, "still shown");
        Ok(())
    })
    .await?;
    let mut ids: Vec<&str> = words.iter().map(|w| w.id.as_str()).collect();
    ids.sort();
    ids.dedup();
    ensure!(
        ids.len() == TEXTS.len(),
        "every word needs its own data-id: {words:?}"
    );
    a.screenshot("fridge").await?;
    scene.finish(vec![a]).await
}

#[tokio::test]
async fn both_names_are_in_both_presence_lists() -> Result<()> {
    let mut scene = Scene::start("presence", &[]).await?;
    let (a, b) = scene.two_windows_with_a_board("presence").await?;
    let names = [a.my_name().await?, b.my_name().await?];
    ensure!(
        names[0] != names[1],
        "two people got the same name {names:?}"
    );
    for window in [&a, &b] {
        let what = format!("{} lists both {names:?}", window.label);
        eventually(&what, || async {
            let listed = window.presence().await?;
            let all = names
                .iter()
                .all(|name| listed.iter().any(|line| line.contains(name.as_str())));
            ensure!(all && listed.len() == 2, "{listed:?}");
            Ok(())
        })
        .await?;
    }
    b.screenshot("presence").await?;
    scene.finish(vec![a, b]).await
}

#[tokio::test]
async fn a_chat_line_appears_in_both_windows() -> Result<()> {
    let mut scene = Scene::start("chat", &[]).await?;
    let (a, b) = scene.two_windows_with_a_board("chat").await?;
    let line = "the fridge hums at night";
    a.say(line).await?;
    for window in [&a, &b] {
        let what = format!("{} shows the chat line", window.label);
        eventually(&what, || async {
            let lines = window.chat_lines().await?;
            ensure!(lines.iter().any(|l| l.contains(line)), "{lines:?}");
            Ok(())
        })
        .await?;
    }
    b.screenshot("chat").await?;
    scene.finish(vec![a, b]).await
}

#[tokio::test]
async fn a_word_held_in_one_window_is_outlined_in_the_other() -> Result<()> {
    let mut scene = Scene::start("held", &[]).await?;
    let (a, b) = scene.two_windows_with_a_board("held").await?;
    let holder = a.my_name().await?;
    let word = a.words().await?.remove(0);

    a.grab_and_move(&word.id, 60.0, 40.0).await?;
    let held = eventually("b outlines the word a holds", || async {
        let seen = b.word(&word.id).await?;
        ensure!(seen.held, "not held: {seen:?}");
        Ok(seen)
    })
    .await?;
    ensure!(
        held.holder.as_deref() == Some(holder.as_str()),
        "the outline should name {holder}, got {:?}",
        held.holder
    );
    ensure!(
        !a.word(&word.id).await?.held,
        "the holder's own window must not outline it as held by another"
    );
    b.screenshot("outlined").await?;

    a.release().await?;
    eventually("b drops the outline once a lets go", || async {
        let seen = b.word(&word.id).await?;
        ensure!(!seen.held, "still held: {seen:?}");
        Ok(())
    })
    .await?;
    scene.finish(vec![a, b]).await
}

#[tokio::test]
async fn a_word_dragged_in_one_window_lands_at_the_same_place_in_the_other() -> Result<()> {
    let mut scene = Scene::start("drag", &[]).await?;
    let (a, b) = scene.two_windows_with_a_board("drag").await?;
    let before = a.words().await?.remove(0);

    a.drag(&before.id, 120.0, 90.0).await?;
    let after = eventually("a shows the word where it was dropped", || async {
        let now = a.word(&before.id).await?;
        ensure!(moved(&before, &now, 40.0), "from {before:?} to {now:?}");
        Ok(now)
    })
    .await?;
    eventually("b shows the word at the same place as a", || async {
        let seen = b.word(&before.id).await?;
        ensure!(
            seen.same_place(&after) && !seen.held,
            "a has {after:?}, b has {seen:?}"
        );
        Ok(())
    })
    .await?;
    b.screenshot("dragged").await?;
    scene.finish(vec![a, b]).await
}

#[tokio::test]
async fn the_app_loads_connects_and_drags_under_its_content_security_policy() -> Result<()> {
    let mut scene = Scene::start("csp", &[]).await?;
    let (a, b) = scene.two_windows_with_a_board("csp").await?;
    let (policy, inline_scripts) = a.content_security_policy().await?;
    ensure!(
        policy.contains("script-src 'self' 'wasm-unsafe-eval'")
            && policy.contains("connect-src 'self'")
            && policy.contains("object-src 'none'"),
        "the page was served with {policy:?}"
    );
    ensure!(inline_scripts == 0, "{inline_scripts} inline scripts");
    // The browser enforced that policy while the app loaded its wasm and
    // opened its socket (both windows show the board); now a drag.
    let before = a.words().await?.remove(0);
    a.drag(&before.id, 80.0, 60.0).await?;
    let after = eventually("a shows the dropped word", || async {
        let now = a.word(&before.id).await?;
        ensure!(moved(&before, &now, 30.0), "from {before:?} to {now:?}");
        Ok(now)
    })
    .await?;
    eventually("b sees the drop", || async {
        let seen = b.word(&before.id).await?;
        ensure!(seen.same_place(&after), "a has {after:?}, b has {seen:?}");
        Ok(())
    })
    .await?;
    b.say("under the policy").await?;
    eventually("a reads b's chat line", || async {
        let lines = a.chat_lines().await?;
        ensure!(
            lines.iter().any(|l| l.contains("under the policy")),
            "{lines:?}"
        );
        Ok(())
    })
    .await?;
    scene.finish(vec![a, b]).await
}

#[tokio::test]
async fn a_reloaded_window_shows_the_board_as_it_was_left() -> Result<()> {
    let mut scene = Scene::start("reload", &[]).await?;
    let (a, b) = scene.two_windows_with_a_board("reload").await?;
    let first = a.words().await?.remove(0);
    a.drag(&first.id, 100.0, 70.0).await?;
    let board = eventually("the drop reaches b", || async {
        let board = a.words().await?;
        let moved_in_a = board
            .iter()
            .find(|w| w.id == first.id)
            .context("word gone")?;
        ensure!(
            moved(&first, moved_in_a, 30.0),
            "not moved yet: {moved_in_a:?}"
        );
        ensure!(
            b.word(&first.id).await?.same_place(moved_in_a),
            "b not there yet"
        );
        Ok(board)
    })
    .await?;

    b.reload().await?;
    b.wait_for_connection("connected").await?;
    b.wait_for_board(&board).await?;
    ensure!(
        !b.words_dialog_shown().await?,
        "a room with a board must not ask for words"
    );
    b.screenshot("reloaded").await?;
    scene.finish(vec![a, b]).await
}

#[tokio::test]
async fn html_looking_text_from_the_network_shows_literally() -> Result<()> {
    let mut scene = Scene::start("literal_text", &[]).await?;
    let (a, b) = scene.two_windows_with_a_board("literal").await?;

    // Another person, writing raw frames: a word and a chat line that look like HTML.
    let (mut socket, _) =
        tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{}/ws", scene.server.port))
            .await
            .context("raw WebSocket client cannot connect")?;
    socket
        .send(Message::text(
            json!({"action":"newClient","room":"literal"}).to_string(),
        ))
        .await?;
    wait_for_frame(&mut socket, "hydrate").await?;
    let word = json!({"id":"html-word","text":HTML_LOOKING,"x":40,"y":40,"z":99});
    let frames = [
        json!({"action":"newWord","room":"literal","data":word}),
        json!({"action":"talkToRoom","room":"literal","data":HTML_LOOKING}),
    ];
    for frame in frames {
        socket.send(Message::text(frame.to_string())).await?;
    }

    for window in [&a, &b] {
        let what = format!("{} shows the HTML-looking word as text", window.label);
        eventually(&what, || async {
            let shown = window.word("html-word").await?;
            ensure!(shown.text == HTML_LOOKING, "text is {:?}", shown.text);
            Ok(())
        })
        .await?;
        let what = format!("{} shows the HTML-looking chat line as text", window.label);
        eventually(&what, || async {
            let lines = window.chat_lines().await?;
            ensure!(lines.iter().any(|l| l.contains(HTML_LOOKING)), "{lines:?}");
            Ok(())
        })
        .await?;
        let images = window.count("#fridge img, #chat-log img").await?;
        ensure!(
            images == 0,
            "{}: text from the network became {images} <img> element(s)",
            window.label
        );
        ensure!(
            !window.alert_open().await,
            "{}: a script from the network ran",
            window.label
        );
    }
    a.screenshot("literal").await?;
    socket.close(None).await.ok();
    scene.finish(vec![a, b]).await
}

/// Read frames until one with this action arrives.
async fn wait_for_frame<S>(socket: &mut S, action: &str) -> Result<Value>
where
    S: StreamExt<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    let read = async {
        while let Some(message) = socket.next().await {
            if let Message::Text(text) = message? {
                let frame: Value = serde_json::from_str(&text)?;
                if frame["action"] == action {
                    return Ok(frame);
                }
            }
        }
        bail!("the socket closed before a {action} frame")
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .with_context(|| format!("no {action} frame within 10s"))?
}

#[tokio::test]
async fn pages_show_reconnecting_while_the_server_is_down_then_come_back_with_the_board(
) -> Result<()> {
    let mut scene = Scene::start("reconnect", &[]).await?;
    let (a, b) = scene.two_windows_with_a_board("reconnect").await?;
    let first = a.words().await?.remove(0);
    a.drag(&first.id, 80.0, 60.0).await?;
    let board = eventually("the drop reaches b", || async {
        let board = a.words().await?;
        let in_a = board
            .iter()
            .find(|w| w.id == first.id)
            .context("word gone")?;
        ensure!(moved(&first, in_a, 20.0), "not moved yet: {in_a:?}");
        ensure!(b.word(&first.id).await?.same_place(in_a), "b not there yet");
        Ok(board)
    })
    .await?;

    scene.server.stop().await?;
    a.wait_for_connection("reconnecting").await?;
    b.wait_for_connection("reconnecting").await?;
    a.screenshot("reconnecting").await?;

    scene.server.start_again().await?;
    for window in [&a, &b] {
        let what = format!("{} reconnects by itself", window.label);
        eventually_within(Duration::from_secs(60), &what, || async {
            window.wait_for_connection("connected").await
        })
        .await?;
        window.wait_for_board(&board).await?;
    }
    b.screenshot("reconnected").await?;
    scene.finish(vec![a, b]).await
}

#[tokio::test]
async fn a_full_room_offers_three_suggested_rooms() -> Result<()> {
    let mut scene = Scene::start("room_full", &["--max-room-size", "1"]).await?;
    let a = scene.join("a", "snug").await?;
    let b = scene.open("b", "/snug").await?;
    let links = eventually("b shows three suggested rooms", || async {
        let links = b.attrs("#room-full a", "href").await?;
        ensure!(links.len() == 3, "{links:?}");
        Ok(links)
    })
    .await?;
    for link in &links {
        let path = link.rsplit_once("//").map_or(link.as_str(), |(_, rest)| {
            rest.find('/').map_or("", |i| &rest[i..])
        });
        let room = path.strip_prefix('/').unwrap_or_default();
        ensure!(
            !room.is_empty()
                && room != "snug"
                && room
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
            "a suggestion should be another room's path, got {link:?}"
        );
    }
    b.screenshot("suggestions").await?;

    // Following a suggestion leads into that (empty) room.
    b.click("#room-full a").await?;
    b.wait_for_connection("connected").await?;
    eventually("b is asked for words in the suggested room", || async {
        ensure!(
            b.words_dialog_shown().await?,
            "no words dialog at {}",
            b.path().await?
        );
        Ok(())
    })
    .await?;
    ensure!(b.path().await? != "/snug", "b is still at /snug");
    scene.finish(vec![a, b]).await
}

#[tokio::test]
async fn the_landing_page_creates_a_room_and_lists_the_active_ones() -> Result<()> {
    // Rooms are listed only when the operator says so.
    let mut scene = Scene::start("landing", &["--list-rooms"]).await?;
    let a = scene.open("a", "/").await?;
    eventually("the landing page has its new-room button", || async {
        ensure!(a.count("#new-room").await? == 1, "no #new-room");
        Ok(())
    })
    .await?;
    a.screenshot("landing").await?;
    a.click("#new-room").await?;
    let room = eventually("the new-room button leads to a room", || async {
        let path = a.path().await?;
        let room = path.trim_start_matches('/').to_string();
        ensure!(!room.is_empty(), "still at {path}");
        Ok(room)
    })
    .await?;
    a.wait_for_connection("connected").await?;
    a.submit_words(WORDS).await?;
    a.wait_for_texts(TEXTS).await?;

    let b = scene.open("b", "/").await?;
    let what = format!("the landing page lists {room}");
    eventually(&what, || async {
        let links = b.attrs("#active-rooms li a", "href").await?;
        ensure!(
            links.iter().any(|l| l.ends_with(&format!("/{room}"))),
            "{links:?}"
        );
        Ok(())
    })
    .await?;
    scene.finish(vec![a, b]).await
}

#[tokio::test]
async fn unless_the_server_lists_rooms_the_landing_page_shows_totals_and_no_room_name() -> Result<()>
{
    let mut scene = Scene::start("landing-totals", &[]).await?;
    let a = scene.join("a", "private-7f3a9c2e1b").await?;
    let b = scene.open("b", "/").await?;
    eventually(
        "the landing page counts one person on one fridge",
        || async {
            let totals = b.texts("#room-totals").await?;
            ensure!(totals == ["1 person on 1 fridge right now."], "{totals:?}");
            Ok(())
        },
    )
    .await?;
    ensure!(b.count("#active-rooms li").await? == 0, "rooms are listed");
    let shown = b.texts("body").await?.join(" ");
    ensure!(!shown.contains("private-7f3a9c2e1b"), "{shown}");
    scene.finish(vec![a, b]).await
}

#[tokio::test]
async fn on_a_phone_a_word_dragged_with_a_finger_lands_at_the_same_place_at_the_desk() -> Result<()>
{
    let mut scene = Scene::start("phone", &[]).await?;
    let desk = scene.join("desk", "pocket").await?;
    desk.submit_words(WORDS).await?;
    desk.wait_for_texts(TEXTS).await?;
    let url = scene.server.url("/pocket");
    let phone = scene.browser.open_as(Device::Phone, "phone", &url).await?;
    phone.wait_for_connection("connected").await?;
    phone.wait_for_texts(TEXTS).await?;
    let (page, screen) = phone.widths().await?;
    ensure!(
        page <= screen + 1.0,
        "the page is {page}px wide on a {screen}px screen"
    );
    phone.screenshot("phone").await?;

    let before = phone.words().await?.remove(0);
    phone.touch_drag(&before.id, 60.0, 80.0).await?;
    let after = eventually(
        "the phone shows the word where the finger lifted",
        || async {
            let now = phone.word(&before.id).await?;
            ensure!(moved(&before, &now, 20.0), "from {before:?} to {now:?}");
            Ok(now)
        },
    )
    .await?;
    eventually("the desk shows the word at the same place", || async {
        let seen = desk.word(&before.id).await?;
        ensure!(
            seen.same_place(&after),
            "phone has {after:?}, desk has {seen:?}"
        );
        Ok(())
    })
    .await?;
    phone.screenshot("phone-dragged").await?;
    scene.finish(vec![desk, phone]).await
}

/// Wait until `window`'s chat shows each of `lines` exactly once, in this
/// order (other lines may come between).
async fn wait_for_chat_once_in_order(window: &Window, lines: &[&str]) -> Result<Vec<String>> {
    let what = format!("{} shows {lines:?} once each, in order", window.label);
    eventually(&what, || async {
        let log = window.chat_lines().await?;
        chat_once_in_order(&log, lines)?;
        Ok(log)
    })
    .await
}

fn chat_once_in_order(log: &[String], lines: &[&str]) -> Result<()> {
    let mut previous: Option<usize> = None;
    for line in lines {
        let at: Vec<usize> = (0..log.len()).filter(|&i| log[i].contains(line)).collect();
        ensure!(
            at.len() == 1,
            "{line:?} shows {} times in {log:?}",
            at.len()
        );
        ensure!(
            previous.is_none_or(|p| at[0] > p),
            "{line:?} is out of order in {log:?}"
        );
        previous = Some(at[0]);
    }
    Ok(())
}

/// What the server told the page on its socket(s) since the proxy was
/// restored: it must have resumed as `id`/`name` with `recovered:true`,
/// been sent no board (no `hydrate`, no `newRoom`: not a fresh join), and,
/// before `resumed`, been replayed exactly the chat lines `missed`, in order,
/// in frames numbered upwards in the room's epoch. Returns the replayed
/// frames and the `resumed` frame.
async fn resumed_with_replay(
    proxy: &CutProxy,
    id: &Value,
    name: &str,
    missed: &[&str],
) -> Result<(Vec<Value>, Value)> {
    let sockets = eventually("the proxy saw the page's socket resume", || async {
        let sockets = proxy.websockets()?;
        let resumed = sockets
            .iter()
            .filter(|ws| ws.actions().iter().any(|a| a == "resumed"))
            .count();
        ensure!(
            resumed == 1,
            "{resumed} socket(s) with `resumed`: {sockets:?}"
        );
        Ok(sockets)
    })
    .await?;
    for ws in &sockets {
        ensure!(
            !ws.extensions() && !ws.rsv_bits,
            "the server negotiated an extension, so the frames could not be read: {}",
            ws.head
        );
        ensure!(!ws.masked, "the server masked a frame");
        let actions = ws.actions();
        ensure!(
            !actions.iter().any(|a| a == "hydrate" || a == "newRoom"),
            "the page was sent a fresh board, i.e. joined afresh: {actions:?}"
        );
    }
    let ws = sockets
        .iter()
        .find(|ws| ws.actions().iter().any(|a| a == "resumed"))
        .expect("found above");
    let at = ws
        .messages
        .iter()
        .position(|m| m["action"] == "resumed")
        .expect("found above");
    let resumed = ws.messages[at].clone();
    ensure!(
        resumed["data"]["recovered"] == true,
        "not recovered: {resumed}"
    );
    ensure!(
        resumed["data"]["id"] == *id && resumed["data"]["name"] == name,
        "resumed as someone else ({resumed}); the page was {name} ({id})"
    );
    ensure!(
        ws.messages[0]["action"] == "hello",
        "a socket starts with hello: {:?}",
        ws.actions()
    );
    // Between them, the room's frames (the `echo` the page times the
    // round trip with is the connection's, not the room's).
    let replayed: Vec<Value> = ws.messages[1..at]
        .iter()
        .filter(|f| f["action"] != "echo")
        .cloned()
        .collect();
    let mut last_seq = 0;
    for frame in &replayed {
        let seq = frame["seq"]
            .as_u64()
            .with_context(|| format!("a replayed frame without seq: {frame}"))?;
        ensure!(seq > last_seq, "replayed out of order: {replayed:?}");
        ensure!(
            frame["epoch"] == resumed["epoch"],
            "replayed from another epoch: {frame} vs {resumed}"
        );
        last_seq = seq;
    }
    let chat: Vec<&str> = replayed
        .iter()
        .filter(|f| f["action"] == "talkToRoom")
        .filter_map(|f| f["data"].as_str())
        .collect();
    ensure!(
        chat == missed,
        "replayed chat {chat:?}, expected exactly {missed:?}"
    );
    Ok((replayed, resumed))
}

/// The frames a peer got with this action and `from` the member `name`.
/// A presence list that shows `name` as away (dropped, seat held).
fn lists_as_away(list: &[Value], name: &str) -> bool {
    list.iter().any(|m| m["name"] == name && m["away"] == true)
}

/// A page with a fresh board in `room`, loaded through a proxy that can cut
/// its socket.
async fn page_behind_proxy(
    scene: &mut Scene,
    room: &str,
) -> Result<(CutProxy, Window, Vec<WordView>)> {
    let proxy = CutProxy::start(scene.server.port).await?;
    let a = scene
        .browser
        .open("a", &proxy.url(&format!("/{room}")))
        .await?;
    a.wait_for_connection("connected").await?;
    a.submit_words(WORDS).await?;
    let board = a.wait_for_texts(TEXTS).await?;
    Ok((proxy, a, board))
}

fn from_member(peer: &Peer, action: &str, name: &str) -> Vec<Value> {
    peer.matching(|f| f["action"] == action && f["from"]["name"] == name)
}

#[tokio::test]
async fn a_page_cut_off_the_network_resumes_as_itself_and_catches_up_on_board_and_chat(
) -> Result<()> {
    let mut scene = Scene::start("resume", &[]).await?;
    let port = scene.server.port;
    let (proxy, a, board) = page_behind_proxy(&mut scene, "resume").await?;
    let name = a.my_name().await?;

    // Two more members, straight to the server: one acts, one watches.
    let mut other = Peer::join(port, "resume").await?;
    let witness = Peer::join(port, "resume").await?;
    other.say("before the cut").await?;
    wait_for_chat_once_in_order(&a, &["before the cut"]).await?;
    let page_id = witness
        .wait_for_presence("the witness sees the page in presence", |list| {
            list.len() == 3
        })
        .await?
        .iter()
        .find(|m| m["name"] == name.as_str())
        .map(|m| m["id"].clone())
        .context("the page is not in the witness's presence list")?;

    // Cut: the server sees a drop (the page is away), not a leave.
    proxy.cut();
    a.wait_for_connection("reconnecting").await?;
    witness
        .wait_for_presence("the server shows the page as away", |list| {
            lists_as_away(list, &name)
        })
        .await?;

    // While cut, the page itself chats, adds a word and drags one (queued).
    let (slid, deleted, dragged) = (&board[0], &board[1], &board[2]);
    a.say("said while cut").await?;
    a.add_word("harbor").await?;
    a.drag(&dragged.id, 60.0, 50.0).await?;
    let dragged_to = eventually("a shows its own drag while cut", || async {
        let now = a.word(&dragged.id).await?;
        ensure!(moved(dragged, &now, 20.0), "from {dragged:?} to {now:?}");
        Ok(now)
    })
    .await?;

    // ... and the other member changes the board and chats, interleaved.
    let missed = [
        "missed 1: the kettle",
        "missed 2: the cat",
        "missed 3: rain",
    ];
    other
        .send(json!({"action":"moveEnd","elementID":slid.id,"finalX":333,"finalY":222}))
        .await?;
    other.say(missed[0]).await?;
    other
        .send(
            json!({"action":"newWord","data":{"id":"tide-1","text":"tide","x":420,"y":180,"z":0}}),
        )
        .await?;
    other.say(missed[1]).await?;
    other
        .send(json!({"action":"delete","elementID":deleted.id}))
        .await?;
    other.say(missed[2]).await?;
    witness
        .wait_for("the witness got the last missed line", |f| {
            f["action"] == "talkToRoom" && f["data"] == missed[2]
        })
        .await?;
    eventually("the page tried to reconnect while cut", || async {
        ensure!(proxy.refused() > 0, "no attempt yet");
        Ok(())
    })
    .await?;
    let log = a.chat_lines().await?;
    ensure!(
        !log.iter().any(|l| l.contains("missed")),
        "the page got chat while cut, so it was not cut: {log:?}"
    );
    a.screenshot("cut").await?;

    proxy.restore();
    eventually_within(
        Duration::from_secs(45),
        "a reconnects by itself",
        || async { a.wait_for_connection("connected").await },
    )
    .await?;
    let (replayed, _) = resumed_with_replay(&proxy, &page_id, &name, &missed).await?;
    let replayed_actions: Vec<&str> = replayed
        .iter()
        .filter_map(|f| f["action"].as_str())
        .collect();
    for action in ["moveEnd", "newWord", "delete"] {
        ensure!(
            replayed_actions.contains(&action),
            "no {action} replayed: {replayed_actions:?}"
        );
    }

    // The page shows what it missed, and is still itself.
    let mut lines = vec!["before the cut", "said while cut"];
    lines.extend(missed);
    wait_for_chat_once_in_order(&a, &lines).await?;
    let mut texts: Vec<&str> = TEXTS
        .iter()
        .copied()
        .filter(|t| *t != deleted.text)
        .collect();
    texts.extend(["tide", "harbor"]);
    a.wait_for_texts(&texts).await?;
    let here = |x: f64, y: f64, w: &WordView| (w.x - x).abs() < 0.5 && (w.y - y).abs() < 0.5;
    eventually(
        "a shows the moved, new and dragged words in place",
        || async {
            let (m, t, d) = (
                a.word(&slid.id).await?,
                a.word("tide-1").await?,
                a.word(&dragged.id).await?,
            );
            ensure!(here(333.0, 222.0, &m), "moved word at {m:?}");
            ensure!(here(420.0, 180.0, &t) && t.text == "tide", "new word {t:?}");
            ensure!(
                d.same_place(&dragged_to),
                "own drag {d:?}, was {dragged_to:?}"
            );
            Ok(())
        },
    )
    .await?;
    ensure!(a.my_name().await? == name, "the page changed identity");

    // What the page queued while cut went out once, after the resume.
    a.say("after the resume").await?;
    witness
        .wait_for("the witness hears the page after the resume", |f| {
            f["action"] == "talkToRoom" && f["data"] == "after the resume"
        })
        .await?;
    for (action, what, count) in [
        (
            "talkToRoom",
            "said while cut",
            from_member(&witness, "talkToRoom", &name)
                .iter()
                .filter(|f| f["data"] == "said while cut")
                .count(),
        ),
        (
            "newWord",
            "harbor",
            from_member(&witness, "newWord", &name)
                .iter()
                .filter(|f| f["data"]["text"] == "harbor")
                .count(),
        ),
        (
            "moveEnd",
            dragged.id.as_str(),
            from_member(&witness, "moveEnd", &name)
                .iter()
                .filter(|f| f["elementID"] == dragged.id.as_str())
                .count(),
        ),
    ] {
        ensure!(
            count == 1,
            "the room got the page's queued {action} {what} {count} times"
        );
    }
    ensure!(
        witness
            .matching(|f| f["action"] == "talkToRoom"
                && f["data"]
                    .as_str()
                    .is_some_and(|d| d.contains(name.as_str()) && f["from"].is_null()))
            .is_empty(),
        "the server said welcome or goodbye to the page: it left and came back instead of resuming"
    );

    // Once settled (a line from the other member came through after all
    // that), nothing is doubled, and the page's board is the server's.
    other.say("settled").await?;
    lines.extend(["after the resume", "settled"]);
    wait_for_chat_once_in_order(&a, &lines).await?;
    let (want, looker) = server_board(port, "resume").await?;
    a.wait_for_board(&want).await?;
    a.screenshot("resumed").await?;
    // That member left at once (a close frame): the page hears it live.
    let goodbye = format!("Goodbye, client {looker}!");
    lines.push(&goodbye);
    wait_for_chat_once_in_order(&a, &lines).await?;

    // A second cut: the page resumes again (with the token `resumed` gave
    // it) and is replayed only what came after what it has already seen.
    proxy.cut();
    a.wait_for_connection("reconnecting").await?;
    witness
        .wait_for_presence("the server shows the page as away again", |list| {
            lists_as_away(list, &name)
        })
        .await?;
    other
        .send(json!({"action":"moveEnd","elementID":"tide-1","finalX":150,"finalY":300}))
        .await?;
    other.say("missed 4: after the second cut").await?;
    witness
        .wait_for("the witness got the fourth missed line", |f| {
            f["action"] == "talkToRoom" && f["data"] == "missed 4: after the second cut"
        })
        .await?;
    proxy.restore();
    eventually_within(Duration::from_secs(45), "a reconnects again", || async {
        a.wait_for_connection("connected").await
    })
    .await?;
    resumed_with_replay(&proxy, &page_id, &name, &["missed 4: after the second cut"]).await?;
    other.say("calm once more").await?;
    lines.extend(["missed 4: after the second cut", "calm once more"]);
    wait_for_chat_once_in_order(&a, &lines).await?;
    eventually("a shows tide moved during the second cut", || async {
        let t = a.word("tide-1").await?;
        ensure!(here(150.0, 300.0, &t), "tide at {t:?}");
        Ok(())
    })
    .await?;
    ensure!(
        a.my_name().await? == name,
        "the page changed identity on the second resume"
    );

    // A third cut, and a connection that is lost between the new socket's
    // `hello` (a fresh identity) and the answer to the page's resume: the
    // next attempt must still resume the page's own session.
    proxy.cut();
    a.wait_for_connection("reconnecting").await?;
    proxy.stall();
    eventually("a stalled socket got its hello", || async {
        let sockets = proxy.websockets()?;
        ensure!(
            sockets
                .iter()
                .any(|ws| ws.actions().first().is_some_and(|a| a == "hello")),
            "{sockets:?}"
        );
        Ok(())
    })
    .await?;
    proxy.cut();
    other.say("missed 5: after a half-open socket").await?;
    witness
        .wait_for("the witness got the fifth missed line", |f| {
            f["action"] == "talkToRoom" && f["data"] == "missed 5: after a half-open socket"
        })
        .await?;
    proxy.restore();
    eventually_within(
        Duration::from_secs(45),
        "a reconnects a third time",
        || async { a.wait_for_connection("connected").await },
    )
    .await?;
    resumed_with_replay(
        &proxy,
        &page_id,
        &name,
        &["missed 5: after a half-open socket"],
    )
    .await?;
    lines.push("missed 5: after a half-open socket");
    wait_for_chat_once_in_order(&a, &lines).await?;
    ensure!(
        a.my_name().await? == name,
        "the page changed identity after a half-open socket"
    );

    other.close().await?;
    witness.close().await?;
    scene.finish(vec![a]).await
}

/// A room's board as the server has it: what a fresh member is given
/// (`hydrate`). The member leaves at once; its name is returned too.
async fn server_board(port: u16, room: &str) -> Result<(Vec<WordView>, String)> {
    let peer = Peer::join(port, room).await?;
    let hydrate = peer
        .wait_for("a fresh member's board", |f| f["action"] == "hydrate")
        .await?;
    let name = peer.name.clone();
    peer.close().await?;
    let board = hydrate["data"]
        .as_array()
        .context("hydrate without a board")?
        .iter()
        .map(|w| WordView {
            id: w["id"].as_str().unwrap_or_default().to_string(),
            text: w["text"].as_str().unwrap_or_default().to_string(),
            x: w["x"].as_f64().unwrap_or(f64::NAN),
            y: w["y"].as_f64().unwrap_or(f64::NAN),
            held: false,
            holder: None,
        })
        .collect();
    Ok((board, name))
}

#[tokio::test]
async fn a_page_cut_off_across_a_server_crash_is_told_so_and_shows_the_board_the_server_kept(
) -> Result<()> {
    let mut scene = Scene::start("crash_resume", &[]).await?;
    let port = scene.server.port;
    let (proxy, a, board) = page_behind_proxy(&mut scene, "crash").await?;
    let mut other = Peer::join(port, "crash").await?;
    // The board is on disk before anything else happens.
    eventually("the server saved the new board", || async {
        ensure!(scene.server.metric("store_saves_total").await? >= 1);
        Ok(())
    })
    .await?;

    proxy.cut();
    a.wait_for_connection("reconnecting").await?;
    // While the page is cut: the other member moves a word, and the
    // server writes that to disk; the page adds a word of its own (queued).
    let slid = &board[0];
    other
        .send(json!({"action":"moveEnd","elementID":slid.id,"finalX":300,"finalY":260}))
        .await?;
    other.say("gone with the crash").await?;
    let before_crash = other
        .wait_for("the other member's frames carry the epoch", |f| {
            f["epoch"].is_u64()
        })
        .await?["epoch"]
        .clone();
    eventually("the server saved the move", || async {
        ensure!(scene.server.metric("store_saves_total").await? >= 2);
        Ok(())
    })
    .await?;
    a.add_word("harbor").await?;

    scene.server.kill().await?;
    scene.server.start_again().await?;
    let witness = Peer::join(port, "crash").await?;
    proxy.restore();
    eventually_within(
        Duration::from_secs(45),
        "a reconnects by itself",
        || async { a.wait_for_connection("connected").await },
    )
    .await?;

    // It was told the truth: not recovered, and a fresh board in a new epoch.
    let ws = eventually("the proxy saw the page's socket get a board", || async {
        let sockets = proxy.websockets()?;
        sockets
            .into_iter()
            .find(|ws| ws.actions().iter().any(|a| a == "hydrate"))
            .context("no socket with hydrate yet")
    })
    .await?;
    let actions = ws.actions();
    let resumed = ws
        .messages
        .iter()
        .find(|m| m["action"] == "resumed")
        .with_context(|| format!("no resumed: {actions:?}"))?;
    let hydrate = ws
        .messages
        .iter()
        .find(|m| m["action"] == "hydrate")
        .expect("found above");
    ensure!(
        resumed["data"]["recovered"] == false,
        "a resume across a crash claimed recovery: {resumed}"
    );
    ensure!(
        hydrate["epoch"].is_u64() && hydrate["epoch"] != before_crash,
        "the room kept its epoch {before_crash} across kill -9: {hydrate}"
    );
    ensure!(
        !ws.messages
            .iter()
            .any(|m| m["data"] == "gone with the crash"),
        "a frame from the lost history was replayed: {actions:?}"
    );

    // The page's own queued word went out on top of the fresh board ...
    witness
        .wait_for("the room gets the page's queued word", |f| {
            f["action"] == "newWord" && f["data"]["text"] == "harbor"
        })
        .await?;
    // ... and the page shows exactly the server's board: the move it never
    // saw live (saved before the crash) and its own word.
    let (kept, _) = server_board(port, "crash").await?;
    let moved_on_server = kept
        .iter()
        .find(|w| w.id == slid.id)
        .context("the moved word is gone")?;
    ensure!(
        (moved_on_server.x - 300.0).abs() < 0.5 && (moved_on_server.y - 260.0).abs() < 0.5,
        "the saved move was lost: {moved_on_server:?}"
    );
    ensure!(kept.iter().any(|w| w.text == "harbor"), "{kept:?}");
    a.wait_for_board(&kept).await?;
    a.my_name().await?;
    a.screenshot("after-crash").await?;

    other.close().await?;
    witness.close().await?;
    scene.finish(vec![a]).await
}

/// Whether `window`'s status says its session went to another tab.
async fn shows_replaced(window: &Window) -> Result<bool> {
    Ok(window.connection().await?.contains("replaced"))
}

#[tokio::test]
async fn a_page_whose_session_was_taken_elsewhere_waits_until_asked_to_take_it_back() -> Result<()>
{
    let mut scene = Scene::start("taken_over", &[]).await?;
    let port = scene.server.port;
    let (proxy, a, _) = page_behind_proxy(&mut scene, "taken-over").await?;
    let name = a.my_name().await?;
    // Another tab with the page's token (here a raw client) takes the
    // session: the page's socket is closed with 4000.
    let token = proxy
        .websockets()?
        .iter()
        .flat_map(|ws| ws.messages.iter())
        .find(|m| m["action"] == "hello")
        .and_then(|m| m["data"]["resumeToken"].as_str().map(str::to_owned))
        .context("no hello on the page's socket")?;
    let tab = Peer::resume(port, "taken-over", &token).await?;
    let resumed = tab
        .wait_for("resumed", |f| f["action"] == "resumed")
        .await?;
    ensure!(resumed["data"]["name"] == name.as_str(), "{resumed}");
    eventually("the page says the session went elsewhere", || async {
        ensure!(shows_replaced(&a).await?, "{}", a.connection().await?);
        Ok(())
    })
    .await?;
    // It does not reconnect on its own (it would take the session back,
    // and the other tab would take it again, in turn): several backoff
    // periods later, still one connection, and the tab still has it.
    let sockets = proxy.recorded().len();
    tokio::time::sleep(Duration::from_secs(6)).await;
    ensure!(shows_replaced(&a).await?, "{}", a.connection().await?);
    ensure!(
        proxy.recorded().len() == sockets,
        "the page opened {} more connection(s) by itself",
        proxy.recorded().len() - sockets
    );
    ensure!(!tab.is_closed(), "the other tab lost the session");
    // Asked, it takes the session back, as itself; the tab is closed.
    a.click("#take-back").await?;
    a.wait_for_connection("connected").await?;
    ensure!(a.my_name().await? == name, "the page came back as another");
    eventually("the other tab's socket is closed", || async {
        ensure!(tab.is_closed(), "still open");
        Ok(())
    })
    .await?;
    scene.finish(vec![a]).await
}
