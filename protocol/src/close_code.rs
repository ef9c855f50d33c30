//! Close codes of attractio's own, sent in the WebSocket close frame. RFC
//! 6455 §7.4.2 leaves 4000–4999 to applications; the standard codes the
//! server also uses (1000, 1001, 1008, …) keep their RFC meaning.

/// The session was taken over by a newer connection that presented its
/// resume token (another tab, or the same device on another network). The
/// client should not reconnect on its own: it would take the session back,
/// and the two would take it from each other in turn.
pub const REPLACED: u16 = 4000;

/// The token the connection joined with expired, the client was told
/// (`error token_expired`) and sent no `refreshToken` within the grace
/// (the server's `--auth-grace`). It may reconnect with a new token (and
/// its resume token, to take its seat back).
pub const TOKEN_EXPIRED: u16 = 4001;

/// The app's backend disconnected this member (`POST
/// /api/rooms/{room}/disconnect`): its seat is given up, so a resume token
/// takes nothing back. The client should not reconnect on its own; the
/// backend may also refuse its rejoin for a while (`banSeconds`).
pub const KICKED: u16 = 4002;

/// The app's backend closed the room (`DELETE /api/rooms/{room}`): every
/// member is let go and the room's stored state is gone. Joining the same
/// name again starts a new, empty room.
pub const ROOM_CLOSED: u16 = 4003;

/// Sent by a client that is going away meaning to come back with its
/// resume token (a page being reloaded): the server keeps the seat as for a
/// dropped connection, where any other close frame is a leave. Browsers
/// close a page's sockets with 1001 on every navigation, a reload as well
/// as a tab closed, so the page says which it is. Codes from 4010 are
/// the ones a client sends; those below, the server's.
pub const RESUMING: u16 = 4010;
