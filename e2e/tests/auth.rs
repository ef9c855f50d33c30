//! A private board in a real browser: the app's backend hands out an
//! invite link, `/<room>#token=…`; the page sends the token in `newClient`
//! and joins the room, under the name the token gives. The same page
//! without a token is refused (`forbidden`) and sees nothing of the room.

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use e2e::{eventually, one_at_a_time, Browser, TestServer};
use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::json;

const SECRET: &str = "the-backend-and-the-board-share-this";
const WORDS: &str = "secret garden";
const TEXTS: &[&str] = &["secret", "garden"];

fn invite(sub: &str, name: &str, room: &str) -> String {
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    let claims = json!({"sub": sub, "name": name, "exp": exp, "rooms": [room]});
    encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

#[tokio::test]
async fn the_board_opened_with_a_token_joins_a_private_room_the_same_page_without_one_cannot(
) -> Result<()> {
    let _serial = one_at_a_time().await;
    let mut server = TestServer::start("auth_invite", &["--auth-secret", SECRET]).await?;
    let mut browser = Browser::start("auth_invite")?;

    let link = format!("/studio-7#token={}", invite("ada-1", "Ada", "studio-7"));
    let invited = browser.open("invited", &server.url(&link)).await?;
    invited.wait_for_connection("connected").await?;
    invited.submit_words(WORDS).await?;
    invited.wait_for_texts(TEXTS).await?;
    ensure!(
        invited.my_name().await? == "Ada",
        "the token's name is not shown"
    );

    let uninvited = browser.open("uninvited", &server.url("/studio-7")).await?;
    // Long enough for a join to have shown the board many times over.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let seen = uninvited.words().await?;
    ensure!(seen.is_empty(), "a page without a token sees {seen:?}");
    ensure!(
        !uninvited.words_dialog_shown().await?,
        "a page without a token was offered the room"
    );
    eventually("the invited page lists itself alone", || async {
        let listed = invited.presence().await?;
        ensure!(listed.len() == 1, "listed: {listed:?}");
        Ok(())
    })
    .await?;

    invited.screenshot("auth_invite").await?;
    invited.close().await?;
    uninvited.close().await?;
    server.stop().await.context("auth_invite")
}
