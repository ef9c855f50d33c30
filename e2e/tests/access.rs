//! The board for everyone: the whole fridge on a phone, words moved with
//! the keyboard alone, what a screen reader is told, and axe-core's WCAG
//! 2.1 A/AA rules over every kind of page. Headless Chromium windows on the
//! real server serving the real built app, as in fridge.rs; screenshots go
//! to artifacts/.

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use e2e::{eventually, one_at_a_time, Browser, Device, TestServer, Window, WordView};
use fantoccini::key::Key;

const WORDS: &str = "moon river golden whisper slowly";
const TEXTS: &[&str] = &["moon", "river", "golden", "whisper", "slowly"];
/// How many words the "Classic" box tips out.
const CLASSIC_WORDS: usize = 74;

/// A server, a browser, and the serial lock, for one test.
struct Scene {
    test: &'static str,
    server: TestServer,
    browser: Browser,
    _serial: tokio::sync::MutexGuard<'static, ()>,
}

impl Scene {
    async fn start(test: &'static str) -> Result<Scene> {
        let serial = one_at_a_time().await;
        let server = TestServer::start(test, &[]).await?;
        let browser = Browser::start(test)?;
        Ok(Scene {
            test,
            server,
            browser,
            _serial: serial,
        })
    }

    async fn open(&mut self, device: Device, label: &str, path: &str) -> Result<Window> {
        let url = self.server.url(path);
        self.browser.open_as(device, label, &url).await
    }

    async fn join(&mut self, device: Device, label: &str, room: &str) -> Result<Window> {
        let window = self.open(device, label, &format!("/{room}")).await?;
        window.wait_for_connection("connected").await?;
        Ok(window)
    }

    /// Two desktop windows in a fresh room with [`WORDS`] on its fridge.
    async fn two_at_a_board(&mut self, room: &str) -> Result<(Window, Window)> {
        let a = self.join(Device::Desktop, "a", room).await?;
        a.submit_words(WORDS).await?;
        a.wait_for_texts(TEXTS).await?;
        let b = self.join(Device::Desktop, "b", room).await?;
        b.wait_for_texts(TEXTS).await?;
        Ok((a, b))
    }

    async fn finish(mut self, windows: Vec<Window>) -> Result<()> {
        for window in windows {
            window.close().await?;
        }
        self.server.stop().await.context(self.test)
    }
}

/// Tip out the "Classic" box on a new room's fridge and wait for all of it.
async fn tip_out_the_classic_box(window: &Window) -> Result<()> {
    eventually("the words dialog offers the Classic box", || async {
        let clicked: bool = window
            .script(
                "const b = Array.from(document.querySelectorAll('#words-dialog .word-list'))
                     .find(b => b.textContent === 'Classic');
                 if (b) b.click();
                 return !!b;",
            )
            .await?;
        ensure!(clicked, "no Classic button");
        Ok(())
    })
    .await?;
    eventually("the Classic words fill the box", || async {
        let filled: bool = window
            .script("return document.querySelector('#words-input').value.length > 0;")
            .await?;
        ensure!(filled, "still empty");
        Ok(())
    })
    .await?;
    window.click("#words-submit").await?;
    wait_for_word_count(window, CLASSIC_WORDS).await
}

async fn wait_for_word_count(window: &Window, n: usize) -> Result<()> {
    let what = format!("{} shows {n} words", window.label);
    eventually(&what, || async {
        let seen = window.count("#fridge .word").await?;
        ensure!(seen == n, "{seen} words");
        Ok(())
    })
    .await
}

/// No WCAG 2.1 A/AA violation on the page as it is now.
async fn passes_axe(window: &Window, page: &str) -> Result<()> {
    let violations = window.wcag_violations().await?;
    ensure!(
        violations.is_empty(),
        "{page}: {} WCAG 2.1 A/AA violations:\n{}",
        violations.len(),
        violations.join("\n")
    );
    Ok(())
}

/// The words (text and box) not wholly inside both the viewport and the
/// fridge door.
async fn words_out_of_view(window: &Window) -> Result<Vec<String>> {
    window
        .script(
            "const vw = window.innerWidth, vh = window.innerHeight;
             const f = document.querySelector('#fridge').getBoundingClientRect();
             const out = r => r.left < -0.5 || r.top < -0.5 || r.right > vw + 0.5
                 || r.bottom > vh + 0.5 || r.left < f.left - 0.5 || r.right > f.right + 0.5
                 || r.top < f.top - 0.5 || r.bottom > f.bottom + 0.5;
             return Array.from(document.querySelectorAll('#fridge .word'))
                 .filter(e => out(e.getBoundingClientRect()))
                 .map(e => e.textContent + ' ' + JSON.stringify(e.getBoundingClientRect()));",
        )
        .await
}

/// How much smaller than its 900 px the fridge is drawn.
async fn fridge_scale(window: &Window) -> Result<f64> {
    window
        .script("return document.querySelector('#fridge').getBoundingClientRect().width / 900;")
        .await
}

/// What the live region says now.
async fn announced(window: &Window) -> Result<String> {
    Ok(window.texts("#announcer").await?.join(" "))
}

async fn wait_for_announcement(window: &Window, part: &str) -> Result<()> {
    let what = format!("{} announces {part:?}", window.label);
    eventually(&what, || async {
        let said = announced(window).await?;
        ensure!(said.contains(part), "it says {said:?}");
        Ok(())
    })
    .await
}

/// Press Tab until a word has the focus; its id.
async fn tab_to_a_word(window: &Window) -> Result<String> {
    for _ in 0..40 {
        if let Some(id) = window.focused_word().await? {
            return Ok(id);
        }
        window.press(&[Key::Tab]).await?;
    }
    anyhow::bail!("40 presses of Tab never reached a word")
}

#[tokio::test]
async fn the_landing_page_meets_wcag_2_1_aa() -> Result<()> {
    let mut scene = Scene::start("axe_landing").await?;
    let a = scene.open(Device::Desktop, "a", "/").await?;
    eventually("the landing page has loaded its room list", || async {
        ensure!(a.count("#new-room").await? == 1, "no #new-room");
        ensure!(
            a.texts(".rooms p").await?.iter().all(|t| t != "Looking…"),
            "still looking"
        );
        Ok(())
    })
    .await?;
    passes_axe(&a, "the landing page").await?;
    scene.finish(vec![a]).await
}

#[tokio::test]
async fn an_empty_room_meets_wcag_2_1_aa_with_and_without_its_words_dialog() -> Result<()> {
    let mut scene = Scene::start("axe_empty").await?;
    let a = scene.join(Device::Desktop, "a", "bare").await?;
    eventually("the words dialog opens", || async {
        ensure!(a.words_dialog_shown().await?, "no dialog");
        Ok(())
    })
    .await?;
    passes_axe(&a, "a new room's words dialog").await?;
    a.click(".dialog-close").await?;
    eventually("the empty fridge offers a box of words", || async {
        ensure!(a.count(".fridge-overlay .button").await? == 1, "no button");
        Ok(())
    })
    .await?;
    passes_axe(&a, "an empty room").await?;
    a.screenshot("empty").await?;
    scene.finish(vec![a]).await
}

#[tokio::test]
async fn a_full_room_meets_wcag_2_1_aa_while_someone_holds_a_word() -> Result<()> {
    let mut scene = Scene::start("axe_full").await?;
    let a = scene.join(Device::Desktop, "a", "busy").await?;
    tip_out_the_classic_box(&a).await?;
    let b = scene.join(Device::Desktop, "b", "busy").await?;
    wait_for_word_count(&b, CLASSIC_WORDS).await?;
    b.say("every word is here").await?;
    let word = b.words().await?.remove(10);
    b.grab_and_move(&word.id, 30.0, 30.0).await?;
    eventually("a sees the word b holds", || async {
        ensure!(a.word(&word.id).await?.held, "not held");
        Ok(())
    })
    .await?;
    passes_axe(&a, "a full room").await?;
    a.screenshot("full").await?;
    b.release().await?;
    scene.finish(vec![a, b]).await
}

#[tokio::test]
async fn on_a_phone_every_word_of_the_classic_box_is_in_view_on_arrival() -> Result<()> {
    let mut scene = Scene::start("phone_whole").await?;
    let desk = scene.join(Device::Desktop, "desk", "pocket").await?;
    tip_out_the_classic_box(&desk).await?;
    let phone = scene.join(Device::Phone, "phone", "pocket").await?;
    wait_for_word_count(&phone, CLASSIC_WORDS).await?;
    let (page, screen) = phone.widths().await?;
    ensure!(screen <= 400.0, "not a phone-sized screen: {screen}px");
    ensure!(
        page <= screen + 1.0,
        "the page is {page}px wide on a {screen}px screen"
    );
    // Let the words' short glide into place finish.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let out = words_out_of_view(&phone).await?;
    ensure!(out.is_empty(), "words not in view: {out:?}");
    let rows: Vec<f64> = phone
        .script(
            "return ['#add-word-input', '#add-word', '#add-many'].map(s =>
                 document.querySelector(s).getBoundingClientRect().bottom);",
        )
        .await?;
    ensure!(
        rows.iter().all(|b| (b - rows[0]).abs() < 2.0),
        "the add-a-word controls are not on one row: {rows:?}"
    );
    passes_axe(&phone, "the phone layout").await?;
    phone.screenshot("phone").await?;

    // Zoomed in, the door is drawn bigger and scrolls inside its own box.
    phone.click("#zoom").await?;
    eventually("the phone draws the door bigger", || async {
        let scale = fridge_scale(&phone).await?;
        ensure!(scale >= 0.74, "drawn at {scale}");
        Ok(())
    })
    .await?;
    let (page, screen) = phone.widths().await?;
    ensure!(
        page <= screen + 1.0,
        "zoomed in, the page is {page}px wide on a {screen}px screen"
    );
    phone.screenshot("zoomed").await?;
    let out = words_out_of_view(&desk).await?;
    ensure!(out.is_empty(), "words not in view at the desk: {out:?}");
    desk.screenshot("desk").await?;
    scene.finish(vec![desk, phone]).await
}

#[tokio::test]
async fn on_a_phone_a_word_dragged_by_touch_lands_under_the_finger_for_the_desk() -> Result<()> {
    let mut scene = Scene::start("phone_touch").await?;
    let desk = scene.join(Device::Desktop, "desk", "thumbs").await?;
    tip_out_the_classic_box(&desk).await?;
    let phone = scene.join(Device::Phone, "phone", "thumbs").await?;
    wait_for_word_count(&phone, CLASSIC_WORDS).await?;
    let scale = fridge_scale(&phone).await?;
    ensure!(scale < 0.5, "a 390px phone fits the door at {scale}");
    // A word in the upper left, so the drag is not stopped by an edge.
    let before = phone
        .words()
        .await?
        .into_iter()
        .find(|w| w.x < 400.0 && w.y < 300.0)
        .context("no word in the upper left")?;
    let finger = (60.0, 48.0);
    phone.touch_drag(&before.id, finger.0, finger.1).await?;
    let want = (before.x + finger.0 / scale, before.y + finger.1 / scale);
    let after = eventually(
        "the phone shows the word under the lifted finger",
        || async {
            let now = phone.word(&before.id).await?;
            ensure!(
                (now.x - want.0).abs() <= 3.0 && (now.y - want.1).abs() <= 3.0 && !now.held,
                "from {before:?} to {now:?}, wanted {want:?}"
            );
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
    phone.screenshot("dragged").await?;
    scene.finish(vec![desk, phone]).await
}

#[tokio::test]
async fn on_a_phone_a_swipe_from_the_edge_stays_on_the_page() -> Result<()> {
    let mut scene = Scene::start("phone_swipe").await?;
    let desk = scene.join(Device::Desktop, "desk", "edges").await?;
    tip_out_the_classic_box(&desk).await?;
    // Arrive from the landing page, so there is a page to go back to.
    let phone = scene.open(Device::Phone, "phone", "/").await?;
    phone.goto(&scene.server.url("/edges")).await?;
    phone.wait_for_connection("connected").await?;
    wait_for_word_count(&phone, CLASSIC_WORDS).await?;
    let (top, bottom): (f64, f64) = phone
        .script(
            "const r = document.querySelector('#fridge').getBoundingClientRect();
             return [r.top, r.bottom];",
        )
        .await?;
    let y = (top + bottom) / 2.0;
    // Rightwards from the left edge (back), leftwards from the right (forward).
    phone.swipe((1.0, y), (380.0, y)).await?;
    phone.swipe((389.0, y + 10.0), (10.0, y + 10.0)).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    ensure!(
        phone.path().await? == "/edges",
        "the swipe left the room for {}",
        phone.path().await?
    );
    phone.wait_for_connection("connected").await?;
    let scroll_x: f64 = phone.script("return window.scrollX;").await?;
    ensure!(
        scroll_x == 0.0,
        "the page scrolled sideways by {scroll_x}px"
    );
    // Headless Chromium does not itself go back on an overscroll, as a
    // phone's does: check that the page tells it not to.
    let (overscroll, touch): (String, String) = phone
        .script(
            "return [getComputedStyle(document.documentElement).overscrollBehaviorX,
                     getComputedStyle(document.querySelector('#fridge')).touchAction];",
        )
        .await?;
    ensure!(
        overscroll == "none" && touch == "pan-y",
        "a sideways swipe may still navigate: overscroll-behavior-x {overscroll}, \
         the door's touch-action {touch}"
    );
    scene.finish(vec![desk, phone]).await
}

#[tokio::test]
async fn a_word_moved_with_the_keyboard_alone_lands_at_the_same_place_for_the_other_page(
) -> Result<()> {
    let mut scene = Scene::start("keyboard").await?;
    let (a, b) = scene.two_at_a_board("keys").await?;
    let holder = a.my_name().await?;
    let id = tab_to_a_word(&a).await?;
    let before = a.word(&id).await?;
    a.press(&[Key::Enter]).await?;
    eventually("b sees the word picked up by a", || async {
        let seen = b.word(&id).await?;
        ensure!(
            seen.held && seen.holder.as_deref() == Some(holder.as_str()),
            "{seen:?}"
        );
        Ok(())
    })
    .await?;
    wait_for_announcement(&a, "Picked up").await?;
    for _ in 0..3 {
        a.press(&[Key::Right]).await?;
    }
    a.press(&[Key::Shift, Key::Down]).await?;
    eventually("b sees the word move before it is dropped", || async {
        let seen = b.word(&id).await?;
        ensure!(seen.y > before.y + 40.0, "{seen:?}");
        Ok(())
    })
    .await?;
    a.press(&[Key::Enter]).await?;
    let want = (before.x + 18.0, before.y + 48.0);
    let after = eventually(
        "a shows the word three steps right, one big step down",
        || async {
            let now = a.word(&id).await?;
            ensure!(
                (now.x, now.y) == want && !now.held,
                "from {before:?} to {now:?}, wanted {want:?}"
            );
            Ok(now)
        },
    )
    .await?;
    eventually("b shows the word at the same place, let go", || async {
        let seen = b.word(&id).await?;
        ensure!(
            seen.same_place(&after) && !seen.held,
            "a has {after:?}, b has {seen:?}"
        );
        Ok(())
    })
    .await?;
    ensure!(
        a.focused_word().await?.as_deref() == Some(id.as_str()),
        "the moved word lost the focus"
    );
    wait_for_announcement(&a, &format!("Dropped “{}”", before.text)).await?;
    wait_for_announcement(&b, &format!("{holder} moved “{}”", before.text)).await?;
    scene.finish(vec![a, b]).await
}

#[tokio::test]
async fn escape_puts_a_word_back_and_delete_removes_it_only_once_confirmed() -> Result<()> {
    let mut scene = Scene::start("keyboard_undo").await?;
    let (a, b) = scene.two_at_a_board("second-thoughts").await?;
    let id = tab_to_a_word(&a).await?;
    let before = a.word(&id).await?;
    // An arrow on a word not picked up picks it up.
    a.press(&[Key::Shift, Key::Right]).await?;
    eventually("b sees the word held and moved", || async {
        let seen = b.word(&id).await?;
        ensure!(seen.held && seen.x > before.x + 40.0, "{seen:?}");
        Ok(())
    })
    .await?;
    a.press(&[Key::Escape]).await?;
    for window in [&a, &b] {
        let what = format!("{} shows the word back where it was", window.label);
        eventually(&what, || async {
            let seen = window.word(&id).await?;
            ensure!(seen.same_place(&before) && !seen.held, "{seen:?}");
            Ok(())
        })
        .await?;
    }

    a.press(&[Key::Delete]).await?;
    let question = a.answer_confirm(false).await?;
    ensure!(question.contains(&before.text), "asked {question:?}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    b.wait_for_texts(TEXTS).await?;
    a.press(&[Key::Delete]).await?;
    a.answer_confirm(true).await?;
    let rest: Vec<&str> = TEXTS
        .iter()
        .copied()
        .filter(|t| *t != before.text)
        .collect();
    b.wait_for_texts(&rest).await?;
    a.wait_for_texts(&rest).await?;
    ensure!(
        a.focused_word().await?.is_some(),
        "the focus should go on to another word"
    );
    scene.finish(vec![a, b]).await
}

#[tokio::test]
async fn a_screen_reader_hears_the_words_their_holders_and_the_room_news() -> Result<()> {
    let mut scene = Scene::start("screen_reader").await?;
    let (a, b) = scene.two_at_a_board("voices").await?;
    let holder = a.my_name().await?;
    ensure!(
        b.attrs("#fridge", "role").await? == ["region"]
            && b.attrs("#fridge", "aria-label").await? == ["Fridge door, 5 words"],
        "the board is not a labelled region"
    );
    ensure!(
        b.count("[role=log] #chat-log").await? == 1,
        "the chat is not a log"
    );
    ensure!(
        b.count("[aria-live], [role=status], [role=alert], [role=log]")
            .await?
            == 2,
        "one live region for news, and the chat log"
    );
    let mut labels = b.attrs("#fridge .word", "aria-label").await?;
    labels.sort();
    let mut texts: Vec<String> = TEXTS.iter().map(|t| t.to_string()).collect();
    texts.sort();
    ensure!(labels == texts, "words are labelled {labels:?}");

    let word = a.words().await?.remove(0);
    a.grab_and_move(&word.id, 40.0, 40.0).await?;
    let want = format!("{}, held by {holder}", word.text);
    eventually("b's word says who holds it", || async {
        let label = b
            .attrs(
                &format!("#fridge .word[data-id=\"{}\"]", word.id),
                "aria-label",
            )
            .await?;
        ensure!(label == [want.as_str()], "{label:?}");
        Ok(())
    })
    .await?;
    a.release().await?;
    wait_for_announcement(&b, &format!("{holder} moved “{}”", word.text)).await?;
    a.add_word("dusk").await?;
    wait_for_announcement(&b, &format!("{holder} added “dusk”")).await?;
    a.close().await?;
    wait_for_announcement(&b, &format!("{holder} left")).await?;
    scene.finish(vec![b]).await
}

#[tokio::test]
async fn a_held_word_at_the_top_right_corner_and_its_holder_stay_on_the_door() -> Result<()> {
    let mut scene = Scene::start("corner").await?;
    let (a, b) = scene.two_at_a_board("corner").await?;
    // The longest word, pushed past the top right corner and held there.
    let word = a
        .words()
        .await?
        .into_iter()
        .max_by_key(|w: &WordView| w.text.len())
        .context("no words")?;
    // The pointer to the window's top right corner: past the door's.
    let (dx, dy): (f64, f64) = a
        .script(&format!(
            "const r = document.querySelector('#fridge .word[data-id=\"{}\"]')
                 .getBoundingClientRect();
             return [window.innerWidth - 20 - (r.left + r.right) / 2, 20 - (r.top + r.bottom) / 2];",
            word.id
        ))
        .await?;
    a.grab_and_move(&word.id, dx, dy).await?;
    eventually("b shows the word held in the corner", || async {
        let seen = b.word(&word.id).await?;
        ensure!(seen.held && seen.y < 1.0, "{seen:?}");
        Ok(())
    })
    .await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (word_right, label_top, label_right, door_right, door_top): (f64, f64, f64, f64, f64) = b
        .script(&format!(
            "const e = document.querySelector('#fridge .word[data-id=\"{}\"]');
             const r = e.getBoundingClientRect();
             const label = getComputedStyle(e, '::after');
             const f = document.querySelector('#fridge').getBoundingClientRect();
             return [r.right, r.top + parseFloat(label.top), r.right - parseFloat(label.right),
                     f.right, f.top];",
            word.id
        ))
        .await?;
    b.screenshot("corner").await?;
    ensure!(
        word_right <= door_right + 0.5,
        "the word ends at {word_right}, the door at {door_right}"
    );
    ensure!(
        label_right <= door_right + 0.5,
        "the holder's name ends at {label_right}, the door at {door_right}"
    );
    ensure!(
        label_top >= door_top,
        "the holder's name starts at {label_top}, above the door at {door_top}"
    );
    a.release().await?;
    scene.finish(vec![a, b]).await
}

#[tokio::test]
async fn on_a_phone_the_new_fridge_dialog_keeps_its_buttons_on_one_row() -> Result<()> {
    let mut scene = Scene::start("phone_dialog").await?;
    let phone = scene.join(Device::Phone, "phone", "small-hands").await?;
    eventually("the words dialog opens", || async {
        ensure!(phone.words_dialog_shown().await?, "no dialog");
        Ok(())
    })
    .await?;
    let rows: Vec<f64> = phone
        .script(
            "return ['.dialog-close', '#words-submit']
                 .map(s => document.querySelector(s).getBoundingClientRect().top);",
        )
        .await?;
    phone.screenshot("dialog").await?;
    ensure!(
        (rows[0] - rows[1]).abs() < 1.0,
        "the dialog's buttons are on different rows: {rows:?}"
    );
    passes_axe(&phone, "the words dialog on a phone").await?;
    scene.finish(vec![phone]).await
}
