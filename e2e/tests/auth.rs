//! A private board in a real browser: the app's backend hands out an
//! invite link, `/<room>#token=…`; the page sends the token in `newClient`
//! and joins the room, under the name the token gives. The same page
//! without a token is refused (`forbidden`), sees nothing of the room, and
//! is told (on the page and through its live region) that it is private.

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use e2e::{eventually, eventually_within, one_at_a_time, Browser, TestServer};
use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::json;

const SECRET: &str = "the-backend-and-the-board-share-this";
const WORDS: &str = "secret garden";
const TEXTS: &[&str] = &["secret", "garden"];

fn invite(sub: &str, name: &str, room: &str) -> String {
    invite_for(sub, name, room, Duration::from_secs(3600))
}

/// An invite whose token expires `valid` from now.
fn invite_for(sub: &str, name: &str, room: &str, valid: Duration) -> String {
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + valid.as_secs();
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
    // It is told why, on the page and to a screen reader, and does not
    // try again (it would be refused again).
    let notice = uninvited.texts("#notice").await?;
    ensure!(
        notice.iter().any(|t| t.contains("This room is private")),
        "the refused page shows {notice:?}"
    );
    let status = uninvited.connection().await?;
    ensure!(
        status.contains("refused") && status.contains("private room"),
        "the refused page's status is {status}"
    );
    eventually("the refused page announces why", || async {
        let spoken = uninvited.texts("#announcer").await?;
        ensure!(
            spoken.iter().any(|t| t.contains("This room is private")),
            "#announcer says {spoken:?}"
        );
        Ok(())
    })
    .await?;
    uninvited.screenshot("auth_refused").await?;
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

#[tokio::test]
async fn a_board_whose_link_expires_says_so_and_does_not_reconnect() -> Result<()> {
    let _serial = one_at_a_time().await;
    let flags = [
        "--auth-secret",
        SECRET,
        "--auth-leeway",
        "0s",
        "--auth-grace",
        "1s",
    ];
    let mut server = TestServer::start("auth_expiry", &flags).await?;
    let mut browser = Browser::start("auth_expiry")?;

    // Long enough for a slow machine to open the page and join first.
    let valid = Duration::from_secs(15);
    let link = format!(
        "/studio-8#token={}",
        invite_for("bo-2", "Bo", "studio-8", valid)
    );
    let page = browser.open("expiring", &server.url(&link)).await?;
    page.wait_for_connection("connected").await?;

    // Told `token_expired`, then closed with 4001 after the grace: the
    // page says why, on the page and to a screen reader.
    eventually_within(valid * 3, "the page says its link expired", || async {
        let status = page.connection().await?;
        ensure!(
            status.contains("refused") && status.contains("link expired"),
            "status: {status}"
        );
        Ok(())
    })
    .await?;
    let notice = page.texts("#notice").await?;
    ensure!(
        notice
            .iter()
            .any(|t| t.contains("access token has expired")),
        "the page shows {notice:?}"
    );
    eventually("the page announces why", || async {
        let spoken = page.texts("#announcer").await?;
        ensure!(
            spoken
                .iter()
                .any(|t| t.contains("access token has expired")),
            "#announcer says {spoken:?}"
        );
        Ok(())
    })
    .await?;
    // A reconnect would offer the expired token again and be refused as
    // not valid: the page stays where the expiry left it.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let status = page.connection().await?;
    ensure!(status.contains("link expired"), "then: {status}");

    page.close().await?;
    server.stop().await.context("auth_expiry")
}
