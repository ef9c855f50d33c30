//! The magnetic-poetry board in a real browser: headless Chromium windows
//! on the real server serving the real built app. Each test is one thing a
//! person at the fridge can see, named as such, and leaves screenshots in
//! artifacts/.

use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use e2e::{
    eventually, eventually_within, one_at_a_time, Browser, Device, TestServer, Window, WordView,
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
    let mut scene = Scene::start("landing", &[]).await?;
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
