//! The root component: picks the page from the location's path.

use yew::prelude::*;

use crate::pages::{Landing, NotARoom, RoomPage};
use crate::route::Route;
use crate::web;

#[component]
pub fn App() -> Html {
    match Route::from_path(&web::path()) {
        Route::Landing => html! { <Landing /> },
        Route::Room(room) => html! { <RoomPage {room} /> },
        Route::NotARoom(segment) => html! { <NotARoom {segment} /> },
    }
}
