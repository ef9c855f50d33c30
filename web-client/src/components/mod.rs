//! The pieces of a room page: the fridge and its magnets, the side panel
//! (presence, chat), the status line, and the dialogs.

mod add_word;
mod announcer;
mod chat;
mod fridge;
mod magnet;
mod notice;
mod presence;
mod room_full;
mod status;
mod word_keys;
mod words_dialog;

pub use add_word::AddWord;
pub use announcer::Announcer;
pub use chat::Chat;
pub use fridge::Fridge;
pub use notice::Notice;
pub use presence::Presence;
pub use room_full::RoomFull;
pub use status::ConnectionStatus;
pub use words_dialog::WordsDialog;
