//! The few browser facts the app needs, behind small functions: where the
//! page is, the socket's URL, the clock, randomness, navigation.

use std::cell::RefCell;

use protocol::{Board, RoomName, WordId};

use crate::layout::WordIds;
use crate::names::Rng;

pub fn window() -> web_sys::Window {
    web_sys::window().expect("the app runs in a browser window")
}

/// The page's path, e.g. `/fridge`.
pub fn path() -> String {
    window().location().pathname().unwrap_or_default()
}

/// The app's token from the page's fragment (`/<room>#token=…`), if any.
pub fn token() -> Option<String> {
    crate::route::token_in_fragment(&window().location().hash().unwrap_or_default())
}

/// The socket on the page's own origin: `ws://host/ws`, or `wss://` when
/// the page came over https.
pub fn socket_url() -> String {
    let location = window().location();
    let scheme = match location.protocol().as_deref() {
        Ok("https:") => "wss",
        _ => "ws",
    };
    let host = location.host().unwrap_or_else(|_| "localhost".into());
    format!("{scheme}://{host}/ws")
}

/// Milliseconds on a monotonic clock.
pub fn now_ms() -> f64 {
    window()
        .performance()
        .map(|p| p.now())
        .unwrap_or_else(js_sys::Date::now)
}

/// A float in [0, 1) from the browser.
pub fn random() -> f64 {
    js_sys::Math::random()
}

thread_local! {
    /// One random source and id generator per page load.
    static IDS: RefCell<(Rng, Option<WordIds>)> = RefCell::new((Rng::from_unit(random()), None));
}

/// Runs `f` with the page's random source.
pub fn with_rng<T>(f: impl FnOnce(&mut Rng) -> T) -> T {
    IDS.with(|cell| f(&mut cell.borrow_mut().0))
}

/// Runs `f` with the page's random source and word-id generator.
pub fn with_ids<T>(f: impl FnOnce(&mut Rng, &mut WordIds) -> T) -> T {
    IDS.with(|cell| {
        let mut cell = cell.borrow_mut();
        let (rng, ids) = &mut *cell;
        let ids = ids.get_or_insert_with(|| WordIds::new(rng));
        f(rng, ids)
    })
}

/// A word id not on `board`.
pub fn fresh_word_id(board: &Board) -> WordId {
    with_ids(|_, ids| ids.fresh(board))
}

/// Goes to a room's page (a full load: the room page opens its socket).
pub fn go_to_room(room: &RoomName) {
    let _ = window().location().set_href(&crate::route::room_href(room));
}
