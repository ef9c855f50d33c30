//! attractio's browser app: a multiplayer magnetic-poetry fridge in Yew.
//!
//! The pure parts build on any target and are unit-tested on the host:
//! [`room_state`] (the reducer a room page runs on, fed by protocol
//! frames), [`word_lists`], [`layout`], [`keys`], [`names`], [`backoff`], [`outbox`],
//! [`route`] and [`text`]. The parts that touch the browser (`app`, `pages`,
//! `components`, and the socket hook in `socket`) only build for
//! `wasm32`; [`start`] mounts the app.

pub mod backoff;
pub mod keys;
pub mod layout;
pub mod names;
pub mod outbox;
pub mod room_state;
pub mod route;
pub mod text;
pub mod word_lists;

#[cfg(target_arch = "wasm32")]
mod app;
#[cfg(target_arch = "wasm32")]
mod components;
#[cfg(target_arch = "wasm32")]
mod pages;
#[cfg(target_arch = "wasm32")]
mod socket;
#[cfg(target_arch = "wasm32")]
mod web;

/// Mounts the app on the page's `<body>`.
#[cfg(target_arch = "wasm32")]
pub fn start() {
    yew::Renderer::<app::App>::new().render();
}
