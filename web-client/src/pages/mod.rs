//! The app's pages: the landing page and a room's fridge.

mod landing;
mod room;

pub use landing::{Landing, NotARoom};
pub use room::RoomPage;
