//! attractio's wire protocol, shared by the server, the browser app and the
//! load generator.
//!
//! Frames are JSON text objects tagged by `action`, compatible with the
//! original Node.js tutorial's clients: [`ClientFrame::decode`] accepts the
//! frames they write (extra fields are ignored, unknown actions become
//! [`ClientMessage::Custom`]) and [`ServerFrame`] is what every server frame
//! looks like. Board types and the pure rules that change a board live in
//! [`board`]. This crate does no I/O and builds for `wasm32-unknown-unknown`.

pub mod api;
pub mod board;
mod client;
pub mod close_code;
mod error;
mod ids;
pub mod limits;
mod presence;
pub mod schema;
mod server;

pub use board::{Board, BoardError, Word, WordUpdate};
pub use client::{ClientFrame, ClientMessage, CustomMessage, DecodeError, ResumeRequest};
pub use error::{ErrorBody, ErrorCode};
pub use ids::{ClientId, InvalidName, Member, Role, RoomName, WordId};
pub use presence::PresenceDiff;
pub use server::{Hello, PresenceEntry, Resumed, ServerFrame, ServerMessage};
