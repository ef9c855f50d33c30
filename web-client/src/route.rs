//! Which page a path shows, and which links from the network are safe to
//! put in an `href`.

use protocol::RoomName;

/// A page of the app, decided by the location's path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// `/`: what this is, a new-room button, the active rooms.
    Landing,
    /// `/{room}`: the fridge of that room.
    Room(RoomName),
    /// A path whose last segment is not a valid room name.
    NotARoom(String),
}

impl Route {
    /// The room is the last non-empty path segment, lower-cased, so
    /// `/rooms/Fridge/` and `/fridge` are the same room.
    pub fn from_path(path: &str) -> Route {
        let last = path.split('/').rfind(|s| !s.is_empty());
        match last {
            None => Route::Landing,
            Some("index.html") => Route::Landing,
            Some(seg) => match RoomName::new(&seg.to_ascii_lowercase()) {
                Ok(room) => Route::Room(room),
                Err(_) => Route::NotARoom(seg.to_owned()),
            },
        }
    }
}

/// The app's token in a page's fragment (`#token=…`, also among other
/// `&`-separated fields): an invite link from the app's backend. A fragment
/// never goes to the server in a request line; the token goes in
/// `newClient`.
pub fn token_in_fragment(hash: &str) -> Option<String> {
    hash.trim_start_matches('#')
        .split('&')
        .find_map(|field| field.strip_prefix("token="))
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
}

/// The path of a room's page.
pub fn room_href(room: &RoomName) -> String {
    format!("/{room}")
}

/// A room link the server suggested (e.g. in `roomFull`), as a same-origin
/// path, or `None` when it is not a plain room path.
pub fn suggested_href(link: &str) -> Option<String> {
    let name = link.strip_prefix('/').unwrap_or(link);
    RoomName::new(name).ok().map(|r| room_href(&r))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_comes_from_the_fragment_alone_or_among_other_fields() {
        assert_eq!(token_in_fragment("#token=a.b.c").as_deref(), Some("a.b.c"));
        assert_eq!(
            token_in_fragment("#x=1&token=a.b.c").as_deref(),
            Some("a.b.c")
        );
        assert_eq!(token_in_fragment("#token="), None);
        assert_eq!(token_in_fragment(""), None);
        assert_eq!(token_in_fragment("#tokens=a"), None);
    }

    #[test]
    fn the_room_is_the_last_segment_lower_cased() {
        assert_eq!(Route::from_path("/"), Route::Landing);
        assert_eq!(Route::from_path(""), Route::Landing);
        assert_eq!(
            Route::from_path("/Fridge"),
            Route::Room(RoomName::new("fridge").unwrap())
        );
        assert_eq!(
            Route::from_path("/a/b/kitchen-1/"),
            Route::Room(RoomName::new("kitchen-1").unwrap())
        );
        assert!(matches!(Route::from_path("/a%20b"), Route::NotARoom(_)));
    }

    #[test]
    fn only_plain_room_paths_become_links() {
        assert_eq!(suggested_href("/room-a"), Some("/room-a".into()));
        assert_eq!(suggested_href("room-b"), Some("/room-b".into()));
        assert_eq!(suggested_href("javascript:alert(1)"), None);
        assert_eq!(suggested_href("//evil.example/x"), None);
    }
}
