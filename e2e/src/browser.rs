//! Headless Chromium through chromedriver. A [`Browser`] is one
//! chromedriver process (in a process group of its own, so the Chromium
//! processes it starts die with it); each [`Window`] is a separate WebDriver
//! session with a fresh profile, i.e. a separate person at the fridge.
//! `Window` speaks in the terms of the app's DOM contract: words, presence,
//! chat, connection status, the words dialog.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use fantoccini::actions::{
    InputSource, KeyAction, KeyActions, MouseActions, PointerAction, TouchActions,
    MOUSE_BUTTON_LEFT,
};
use fantoccini::key::Key;
use fantoccini::{Client, ClientBuilder, Locator};
use serde::Deserialize;
use serde_json::json;

use crate::paths::{self, ScratchDir};
use crate::wait::eventually;

/// The flags that make Chromium work headless, as root, in a container.
const CHROMIUM_ARGS: &[&str] = &[
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,960",
];

/// What kind of screen a window has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Device {
    /// 1280×960, mouse.
    Desktop,
    /// A phone-sized touch screen (Chromium's mobile emulation).
    Phone,
}

/// One chromedriver; windows are sessions on it.
pub struct Browser {
    driver: Child,
    port: u16,
    /// The test's name, prefixing its screenshots.
    test: String,
    /// One fresh Chromium profile per window, removed at the end.
    profiles: Vec<ScratchDir>,
}

impl Browser {
    /// Start chromedriver on a free port and wait until it accepts connections.
    pub fn start(test: &str) -> Result<Browser> {
        let driver_bin = paths::program("CHROMEDRIVER", "chromedriver")?;
        // Fail here, not inside the first session, when the browser itself is missing.
        paths::program("CHROMIUM", "chromium")?;
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let log =
            std::fs::File::create(paths::artifacts()?.join(format!("{test}-chromedriver.log")))?;
        let driver = {
            use std::os::unix::process::CommandExt;
            Command::new(&driver_bin)
                .arg(format!("--port={port}"))
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .process_group(0)
                .spawn()
                .with_context(|| format!("cannot start {}", driver_bin.display()))?
        };
        let browser = Browser {
            driver,
            port,
            test: test.to_string(),
            profiles: Vec::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                bail!("chromedriver did not listen on port {port} within 20s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(browser)
    }

    /// A new desktop window (its own session and profile) showing `url`.
    pub async fn open(&mut self, label: &str, url: &str) -> Result<Window> {
        self.open_as(Device::Desktop, label, url).await
    }

    /// A new window showing `url`, as `device` would.
    pub async fn open_as(&mut self, device: Device, label: &str, url: &str) -> Result<Window> {
        let profile = ScratchDir::new(&format!("{}-{label}-profile", self.test))?;
        let mut args: Vec<String> = CHROMIUM_ARGS.iter().map(|a| a.to_string()).collect();
        args.push(format!("--user-data-dir={}", profile.path().display()));
        let mut options = json!({ "args": args });
        if device == Device::Phone {
            // A 390×844 touch screen at 3× density, like a current mid-size phone.
            options["mobileEmulation"] = json!({
                "deviceMetrics": { "width": 390, "height": 844, "pixelRatio": 3.0, "mobile": true, "touch": true },
                "userAgent": "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Mobile Safari/537.36"
            });
        }
        if let Ok(chromium) = paths::program("CHROMIUM", "chromium") {
            options["binary"] = json!(chromium);
        }
        let mut caps = serde_json::Map::new();
        caps.insert("browserName".into(), json!("chrome"));
        caps.insert("goog:chromeOptions".into(), options);
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{}", self.port))
            .await
            .with_context(|| format!("chromedriver could not open a Chromium window ({label})"))?;
        self.profiles.push(profile);
        let window = Window {
            client,
            label: label.to_string(),
            test: self.test.clone(),
        };
        window.goto(url).await?;
        Ok(window)
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The whole group: chromedriver and every Chromium it started.
        let group = format!("-{}", self.driver.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.driver.wait();
    }
}

/// A word as one window shows it.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct WordView {
    pub id: String,
    pub text: String,
    /// `left` in px, relative to #fridge.
    pub x: f64,
    /// `top` in px, relative to #fridge.
    pub y: f64,
    /// Outlined as held by someone else.
    pub held: bool,
    pub holder: Option<String>,
}

impl WordView {
    /// Same word at the same place (sub-pixel differences aside).
    pub fn same_place(&self, other: &WordView) -> bool {
        self.id == other.id && (self.x - other.x).abs() < 0.5 && (self.y - other.y).abs() < 0.5
    }
}

/// One person's browser window on the app.
pub struct Window {
    client: Client,
    pub label: String,
    test: String,
}

impl Window {
    pub async fn goto(&self, url: &str) -> Result<()> {
        self.client
            .goto(url)
            .await
            .with_context(|| format!("{}: cannot load {url}", self.label))
    }

    pub async fn reload(&self) -> Result<()> {
        self.client.refresh().await.context("reload failed")
    }

    /// The path of the page shown now.
    pub async fn path(&self) -> Result<String> {
        Ok(self.client.current_url().await?.path().to_string())
    }

    /// Run a script and decode its return value.
    pub async fn script<T: for<'de> Deserialize<'de>>(&self, js: &str) -> Result<T> {
        let value = self.client.execute(js, vec![]).await?;
        serde_json::from_value(value).context("unexpected script result")
    }

    /// The `Content-Security-Policy` the page's URL is served with (as a
    /// fetch from the page sees it), and how many inline scripts the page
    /// has.
    pub async fn content_security_policy(&self) -> Result<(String, i64)> {
        let value = self
            .client
            .execute_async(
                "const done = arguments[arguments.length - 1];
                 const inline = document.querySelectorAll('script:not([src])').length;
                 fetch(location.href)
                   .then(r => done([r.headers.get('content-security-policy') || '', inline]))
                   .catch(e => done(['fetch failed: ' + e, inline]));",
                vec![],
            )
            .await?;
        serde_json::from_value(value).context("unexpected script result")
    }

    /// The classes of #connection-status, e.g. "status connected".
    pub async fn connection(&self) -> Result<String> {
        self.script(
            "const s = document.querySelector('#connection-status');
             return s ? s.className + ' / ' + s.textContent : 'no #connection-status';",
        )
        .await
    }

    /// Wait until #connection-status has class `state` ("connected" or "reconnecting").
    pub async fn wait_for_connection(&self, state: &str) -> Result<()> {
        let js = format!(
            "const s = document.querySelector('#connection-status');
             return !!s && s.classList.contains('{state}') && s.textContent.includes('{state}');"
        );
        let what = format!("{} shows \"{state}\"", self.label);
        eventually(&what, || async {
            if self.script::<bool>(&js).await? {
                Ok(())
            } else {
                Err(anyhow!("status is {}", self.connection().await?))
            }
        })
        .await
    }

    /// Every word on the fridge, in document order.
    pub async fn words(&self) -> Result<Vec<WordView>> {
        self.script(
            "return Array.from(document.querySelectorAll('#fridge .word')).map(e => ({
                 id: e.dataset.id, text: e.textContent,
                 x: parseFloat(e.style.left), y: parseFloat(e.style.top),
                 held: e.classList.contains('held'), holder: e.dataset.holder || null }));",
        )
        .await
    }

    pub async fn word(&self, id: &str) -> Result<WordView> {
        self.words()
            .await?
            .into_iter()
            .find(|w| w.id == id)
            .ok_or_else(|| anyhow!("{}: no word {id} on the fridge", self.label))
    }

    /// Wait until the fridge shows exactly these texts (any order).
    pub async fn wait_for_texts(&self, texts: &[&str]) -> Result<Vec<WordView>> {
        let mut want: Vec<String> = texts.iter().map(|t| t.to_string()).collect();
        want.sort();
        let what = format!("{} shows the words {want:?}", self.label);
        eventually(&what, || async {
            let words = self.words().await?;
            let mut seen: Vec<String> = words.iter().map(|w| w.text.clone()).collect();
            seen.sort();
            if seen == want {
                Ok(words)
            } else {
                Err(anyhow!("{seen:?}"))
            }
        })
        .await
    }

    /// Wait until this window's board equals `board`: same words, same places.
    pub async fn wait_for_board(&self, board: &[WordView]) -> Result<()> {
        let what = format!("{} shows the same board", self.label);
        eventually(&what, || async {
            let words = self.words().await?;
            let same = words.len() == board.len()
                && board.iter().all(|want| {
                    words
                        .iter()
                        .any(|w| w.same_place(want) && w.text == want.text)
                });
            if same {
                Ok(())
            } else {
                Err(anyhow!("{words:?}, wanted {board:?}"))
            }
        })
        .await
    }

    /// Answer the new-room dialog with `words` (whitespace-separated).
    pub async fn submit_words(&self, words: &str) -> Result<()> {
        let what = format!("{} shows the words dialog", self.label);
        let input = eventually(&what, || async {
            let dialog = self.client.find(Locator::Css("#words-dialog")).await?;
            if !dialog.is_displayed().await? {
                bail!("#words-dialog is hidden");
            }
            Ok(self
                .client
                .find(Locator::Css("#words-dialog textarea#words-input"))
                .await?)
        })
        .await?;
        input.send_keys(words).await?;
        self.client
            .find(Locator::Css("#words-submit"))
            .await?
            .click()
            .await?;
        Ok(())
    }

    /// Whether the words dialog is shown now.
    pub async fn words_dialog_shown(&self) -> Result<bool> {
        match self.client.find(Locator::Css("#words-dialog")).await {
            Ok(dialog) => Ok(dialog.is_displayed().await?),
            Err(_) => Ok(false),
        }
    }

    /// Add one word through the add-word field.
    pub async fn add_word(&self, text: &str) -> Result<()> {
        let input = self.client.find(Locator::Css("#add-word-input")).await?;
        input.send_keys(text).await?;
        self.client
            .find(Locator::Css("#add-word"))
            .await?
            .click()
            .await?;
        Ok(())
    }

    /// This window's own name, from its entry in the presence list.
    pub async fn my_name(&self) -> Result<String> {
        let what = format!("{} lists itself in #presence", self.label);
        eventually(&what, || async {
            let me = self.client.find(Locator::Css("#presence li.me")).await?;
            let name = me.text().await?.trim().to_string();
            if name.is_empty() {
                bail!("#presence li.me is empty");
            }
            Ok(name)
        })
        .await
    }

    pub async fn presence(&self) -> Result<Vec<String>> {
        self.texts("#presence li").await
    }

    pub async fn chat_lines(&self) -> Result<Vec<String>> {
        self.texts("#chat-log li").await
    }

    /// The text of every element matching `css`.
    pub async fn texts(&self, css: &str) -> Result<Vec<String>> {
        let js = format!(
            "return Array.from(document.querySelectorAll({})).map(e => e.textContent);",
            json!(css)
        );
        self.script(&js).await
    }

    /// How many elements match `css`.
    pub async fn count(&self, css: &str) -> Result<usize> {
        let js = format!("return document.querySelectorAll({}).length;", json!(css));
        self.script(&js).await
    }

    /// An attribute of every element matching `css`.
    pub async fn attrs(&self, css: &str, attr: &str) -> Result<Vec<String>> {
        let js = format!(
            "return Array.from(document.querySelectorAll({})).map(e => e.getAttribute({}) || '');",
            json!(css),
            json!(attr)
        );
        self.script(&js).await
    }

    /// Type a chat line and send it.
    pub async fn say(&self, line: &str) -> Result<()> {
        let input = self.client.find(Locator::Css("#chat-input")).await?;
        input.send_keys(line).await?;
        self.client
            .find(Locator::Css("#chat-send"))
            .await?
            .click()
            .await?;
        Ok(())
    }

    pub async fn click(&self, css: &str) -> Result<()> {
        let element = self
            .client
            .find(Locator::Css(css))
            .await
            .with_context(|| format!("{}: no {css}", self.label))?;
        element.click().await?;
        Ok(())
    }

    /// Press the mouse on word `id` and move it by (dx, dy) in small steps, without letting go.
    pub async fn grab_and_move(&self, id: &str, dx: f64, dy: f64) -> Result<()> {
        let word = self.find_word(id).await?;
        let steps = 6;
        let mut mouse = MouseActions::new("mouse".into())
            .then(PointerAction::MoveToElement {
                element: word,
                duration: None,
                x: 0.0,
                y: 0.0,
            })
            .then(PointerAction::Down {
                button: MOUSE_BUTTON_LEFT,
            });
        for _ in 0..steps {
            mouse = mouse.then(PointerAction::MoveBy {
                duration: Some(Duration::from_millis(60)),
                x: dx / steps as f64,
                y: dy / steps as f64,
            });
        }
        self.client.perform_actions(mouse).await?;
        Ok(())
    }

    /// Let go of the mouse button.
    pub async fn release(&self) -> Result<()> {
        let mouse = MouseActions::new("mouse".into()).then(PointerAction::Up {
            button: MOUSE_BUTTON_LEFT,
        });
        self.client.perform_actions(mouse).await?;
        Ok(())
    }

    /// Drag word `id` by (dx, dy) and drop it.
    pub async fn drag(&self, id: &str, dx: f64, dy: f64) -> Result<()> {
        self.grab_and_move(id, dx, dy).await?;
        self.release().await
    }

    /// Drag word `id` by (dx, dy) with a finger and lift it.
    pub async fn touch_drag(&self, id: &str, dx: f64, dy: f64) -> Result<()> {
        let word = self.find_word(id).await?;
        let steps = 6;
        let mut finger = TouchActions::new("finger".into())
            .then(PointerAction::MoveToElement {
                element: word,
                duration: None,
                x: 0.0,
                y: 0.0,
            })
            .then(PointerAction::Down {
                button: MOUSE_BUTTON_LEFT,
            });
        for _ in 0..steps {
            finger = finger.then(PointerAction::MoveBy {
                duration: Some(Duration::from_millis(60)),
                x: dx / steps as f64,
                y: dy / steps as f64,
            });
        }
        finger = finger.then(PointerAction::Up {
            button: MOUSE_BUTTON_LEFT,
        });
        self.client.perform_actions(finger).await?;
        Ok(())
    }

    async fn find_word(&self, id: &str) -> Result<fantoccini::elements::Element> {
        let css = format!("#fridge .word[data-id={}]", json!(id));
        self.client
            .find(Locator::Css(&css))
            .await
            .with_context(|| format!("{}: no word {id} on the fridge", self.label))
    }

    /// The page's layout width and the window's: the page must not be wider.
    pub async fn widths(&self) -> Result<(f64, f64)> {
        self.script("return [document.documentElement.scrollWidth, window.innerWidth];")
            .await
    }

    /// Whether a JavaScript alert is open (it must never be: nothing from the network runs).
    pub async fn alert_open(&self) -> bool {
        self.client.get_alert_text().await.is_ok()
    }

    /// Save a screenshot of the window as artifacts/<test>-<name>.png.
    pub async fn screenshot(&self, name: &str) -> Result<PathBuf> {
        let png = self.client.screenshot().await?;
        let path = paths::artifacts()?.join(format!("{}-{name}.png", self.test));
        std::fs::write(&path, png)?;
        Ok(path)
    }

    /// Press `keys` together (e.g. Shift and an arrow) and let go, as
    /// the keyboard would: the key events go to the focused element.
    pub async fn press(&self, keys: &[Key]) -> Result<()> {
        let mut actions = KeyActions::new("keyboard".into());
        for key in keys {
            actions = actions.then(KeyAction::Down {
                value: char::from(*key),
            });
        }
        for key in keys.iter().rev() {
            actions = actions.then(KeyAction::Up {
                value: char::from(*key),
            });
        }
        self.client.perform_actions(actions).await?;
        Ok(())
    }

    /// The `data-id` of the focused word, if a word has the focus.
    pub async fn focused_word(&self) -> Result<Option<String>> {
        self.script(
            "const a = document.activeElement;
             return a && a.classList.contains('word') ? a.dataset.id : null;",
        )
        .await
    }

    /// Answer the page's confirmation dialog: yes or no.
    pub async fn answer_confirm(&self, yes: bool) -> Result<String> {
        let what = format!("{} asks for confirmation", self.label);
        let text = eventually(&what, || async { Ok(self.client.get_alert_text().await?) }).await?;
        if yes {
            self.client.accept_alert().await?;
        } else {
            self.client.dismiss_alert().await?;
        }
        Ok(text)
    }

    /// Swipe a finger from one viewport point to another, in small steps.
    pub async fn swipe(&self, from: (f64, f64), to: (f64, f64)) -> Result<()> {
        let steps = 8;
        let mut finger = TouchActions::new("swipe".into())
            .then(PointerAction::MoveTo {
                duration: None,
                x: from.0,
                y: from.1,
            })
            .then(PointerAction::Down {
                button: MOUSE_BUTTON_LEFT,
            });
        for i in 1..=steps {
            let t = i as f64 / steps as f64;
            finger = finger.then(PointerAction::MoveTo {
                duration: Some(Duration::from_millis(30)),
                x: from.0 + (to.0 - from.0) * t,
                y: from.1 + (to.1 - from.1) * t,
            });
        }
        finger = finger.then(PointerAction::Up {
            button: MOUSE_BUTTON_LEFT,
        });
        self.client.perform_actions(finger).await?;
        Ok(())
    }

    /// Check the page with axe-core against WCAG 2.1 A and AA; the
    /// violations, one line each (rule, impact, the first elements).
    pub async fn wcag_violations(&self) -> Result<Vec<String>> {
        let axe = std::fs::read_to_string(paths::axe_script()?)?;
        self.client.execute(&axe, vec![]).await?;
        let value = self
            .client
            .execute_async(
                "const done = arguments[arguments.length - 1];
                 axe.run(document, { runOnly: { type: 'tag',
                     values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] } })
                   .then(r => done(r.violations.map(v => v.id + ' (' + v.impact + '): ' + v.help
                       + ' at ' + v.nodes.slice(0, 3).map(n => n.target.join(' ')).join(', '))))
                   .catch(e => done(['axe failed: ' + e]));",
                vec![],
            )
            .await?;
        serde_json::from_value(value).context("unexpected axe result")
    }

    /// End the session; Chromium for this window exits.
    pub async fn close(self) -> Result<()> {
        self.client.close().await?;
        Ok(())
    }
}
