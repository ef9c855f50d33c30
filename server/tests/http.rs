//! The HTTP surface as an attacker or a careless user meets it: no request
//! reads a file outside the static folder, assets keep their types, and
//! every page carries the security headers.

mod common;

use std::path::Path;

use common::Server;

/// A static folder with the app's kinds of files, inside a parent that holds
/// a secret: anything that escapes the folder by one level finds it.
struct Site {
    tmp: tempfile::TempDir,
}

const APP_PAGE: &str = "<!doctype html><title>APP-PAGE</title>";
const SECRET: &str = "TOP-SECRET-OUTSIDE-THE-STATIC-FOLDER";

impl Site {
    fn new() -> Site {
        let tmp = tempfile::tempdir().unwrap();
        let outer = tmp.path().join("outer");
        let web = outer.join("web");
        std::fs::create_dir_all(web.join("lib")).unwrap();
        std::fs::write(outer.join("secret.txt"), SECRET).unwrap();
        std::fs::write(web.join("index.html"), APP_PAGE).unwrap();
        std::fs::write(web.join("web-client.js"), "export default 1;").unwrap();
        std::fs::write(web.join("web-client_bg.wasm"), b"\0asm\x01\0\0\0").unwrap();
        std::fs::write(web.join("style.css"), "body{}").unwrap();
        std::fs::write(web.join("lib").join("x.js"), "1").unwrap();
        Site { tmp }
    }

    fn web(&self) -> std::path::PathBuf {
        self.tmp.path().join("outer").join("web")
    }
}

/// Status line, headers (lower-cased names) and body of a raw GET.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Sends `path` byte for byte as the request target (no client-side
/// normalising, as an attacker's tool would).
async fn get(server: &Server, path: &str) -> Answer {
    let raw = server.get(path).await;
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line for {path:?}: {raw:?}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Answer {
        status,
        headers,
        body: body.to_owned(),
    }
}

fn hostile_paths() -> Vec<String> {
    let mut paths: Vec<String> = [
        // The three found by hand.
        "/%2Fetc%2Fpasswd",
        "/%2Fproc%2Fself%2Fenviron",
        "/lib%2F..%2F..%2Fsecret.txt",
        // `..` and its encodings in every position.
        "/../secret.txt",
        "/..%2Fsecret.txt",
        "/%2e%2e/secret.txt",
        "/%2E%2E%2Fsecret.txt",
        "/.%2e/secret.txt",
        "/%2e./secret.txt",
        "/lib/../../secret.txt",
        "/lib/%2e%2e/%2e%2e/secret.txt",
        "/web-client.js/../../secret.txt",
        "/lib/..%2f..%2fsecret.txt",
        "/..",
        "/%2e%2e",
        "/lib/..",
        // Double encoding.
        "/%252e%252e%252fsecret.txt",
        "/%252e%252e/secret.txt",
        "/%25252e%25252e%25252fsecret.txt",
        // Backslashes, raw and encoded.
        "/..%5csecret.txt",
        "/%5c..%5csecret.txt",
        "/lib%5c..%5c..%5csecret.txt",
        // Absolute paths.
        "//etc/passwd",
        "/%2f%2fetc%2fpasswd",
        "/etc/passwd",
        "/proc/self/environ",
        // NUL.
        "/%00",
        "/secret.txt%00",
        "/index.html%00.js",
        "/..%00/secret.txt",
        // Overlong UTF-8 for `.` and `/`.
        "/%c0%ae%c0%ae/secret.txt",
        "/%c0%ae%c0%ae%c0%afsecret.txt",
        "/..%c0%afsecret.txt",
        "/%e0%80%ae%e0%80%ae/secret.txt",
        "/%c1%9c..%c1%9csecret.txt",
        // Rooms that are not rooms.
        "/fridge/../../secret.txt",
        "/fridge%2f..%2f..%2fsecret.txt",
    ]
    .iter()
    .map(|p| p.to_string())
    .collect();
    // Very long paths: one huge component, many components, many `..`.
    paths.push(format!("/{}", "a".repeat(5000)));
    paths.push(format!("/{}", "a/".repeat(3000)));
    paths.push(format!("/{}secret.txt", "%2e%2e%2f".repeat(400)));
    paths.push(format!("/{}etc/passwd", "../".repeat(400)));
    paths
}

#[tokio::test]
async fn no_hostile_path_reads_a_file_outside_the_static_folder() {
    let site = Site::new();
    let server = Server::start_serving(&site.web(), &[]);
    let mut failures = Vec::new();
    for path in hostile_paths() {
        let answer = get(&server, &path).await;
        let leaked = answer.body.contains(SECRET)
            || answer.body.contains("root:")
            || answer.body.contains("PATH=");
        let refused = matches!(answer.status, 400 | 404 | 414);
        let app_page = answer.status == 200 && answer.body == APP_PAGE;
        if leaked || !(refused || app_page) {
            failures.push(format!(
                "{}: {} {:?}",
                &path[..path.len().min(80)],
                answer.status,
                &answer.body[..answer.body.len().min(80)]
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "answered with more than 404/the app page:\n{}",
        failures.join("\n")
    );
    // Still alive and still serving after all of it.
    assert_eq!(get(&server, "/healthz").await.status, 200);
}

#[tokio::test]
async fn the_apps_own_assets_are_served_with_their_content_types() {
    let site = Site::new();
    let server = Server::start_serving(&site.web(), &[]);
    for (path, mime) in [
        ("/web-client.js", "text/javascript"),
        ("/web-client_bg.wasm", "application/wasm"),
        ("/style.css", "text/css"),
        ("/index.html", "text/html"),
        ("/lib/x.js", "text/javascript"),
    ] {
        let answer = get(&server, path).await;
        assert_eq!(answer.status, 200, "{path}");
        let content_type = answer.header("content-type").unwrap_or_default();
        assert!(content_type.starts_with(mime), "{path}: {content_type}");
    }
    let missing = get(&server, "/nothing-here.js").await;
    assert_eq!(missing.status, 404);
}

#[tokio::test]
async fn a_room_path_answers_the_app_page_and_a_non_room_path_404() {
    let site = Site::new();
    let server = Server::start_serving(&site.web(), &[]);
    for room in [
        "/fridge",
        "/Fridge-2",
        "/a",
        &format!("/{}", "r".repeat(64)),
    ] {
        let answer = get(&server, room).await;
        assert_eq!(
            (answer.status, answer.body.as_str()),
            (200, APP_PAGE),
            "{room}"
        );
    }
    for not_room in [
        "/fridge/x",
        "/fri%20dge",
        "/fridge%20",
        &format!("/{}", "r".repeat(65)),
    ] {
        assert_eq!(get(&server, not_room).await.status, 404, "{not_room}");
    }
}

#[tokio::test]
async fn a_chat_path_answers_the_chat_page_and_its_assets_are_files() {
    let site = Site::new();
    let chat = site.web().join("chat");
    std::fs::create_dir_all(chat.join("assets")).unwrap();
    std::fs::write(chat.join("index.html"), "CHAT-PAGE").unwrap();
    std::fs::write(chat.join("assets/chat.js"), "export {}").unwrap();
    let server = Server::start_serving(&site.web(), &[]);
    for room in ["/chat/lobby", "/chat/Team-2"] {
        let answer = get(&server, room).await;
        assert_eq!(
            (answer.status, answer.body.as_str()),
            (200, "CHAT-PAGE"),
            "{room}"
        );
    }
    let script = get(&server, "/chat/assets/chat.js").await;
    assert_eq!((script.status, script.body.as_str()), (200, "export {}"));
    for not_room in [
        "/chat/lob%20by",
        "/chat/..%2Fsecret.txt",
        "/chat/",
        "/chat/chat.js",
    ] {
        let answer = get(&server, not_room).await;
        assert_eq!(answer.status, 404, "{not_room}");
        assert!(!answer.body.contains(SECRET), "{not_room}");
    }
}

#[tokio::test]
async fn a_symlink_inside_the_static_folder_is_followed_as_documented() {
    // README and http::router: the folder is the operator's; a link they
    // put there is theirs to make. No request can create one.
    let site = Site::new();
    std::os::unix::fs::symlink(
        site.tmp.path().join("outer").join("secret.txt"),
        site.web().join("linked.txt"),
    )
    .unwrap();
    let server = Server::start_serving(&site.web(), &[]);
    let answer = get(&server, "/linked.txt").await;
    assert_eq!((answer.status, answer.body.as_str()), (200, SECRET));
    // A link is never a way around `..`.
    assert_eq!(get(&server, "/linked.txt/../secret.txt").await.status, 404);
}

#[tokio::test]
async fn pages_carry_the_security_headers() {
    let site = Site::new();
    let server = Server::start_serving(&site.web(), &[]);
    for path in [
        "/",
        "/fridge",
        "/web-client.js",
        "/api/rooms",
        "/nothing.js",
    ] {
        let answer = get(&server, path).await;
        let csp = answer.header("content-security-policy").unwrap_or_default();
        assert!(
            csp.contains("script-src 'self' 'wasm-unsafe-eval'"),
            "{path}: {csp}"
        );
        assert!(csp.contains("connect-src 'self'"), "{path}: {csp}");
        assert!(
            !csp.contains("unsafe-inline'; connect")
                && !csp.contains("script-src 'self' 'unsafe-inline'")
        );
        assert_eq!(
            answer.header("x-content-type-options"),
            Some("nosniff"),
            "{path}"
        );
        assert_eq!(
            answer.header("referrer-policy"),
            Some("same-origin"),
            "{path}"
        );
    }
}

#[tokio::test]
async fn without_a_built_app_the_page_says_how_to_build_it() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start_serving(&tmp.path().join("missing"), &[]);
    let answer = get(&server, "/fridge").await;
    assert_eq!(answer.status, 200);
    assert!(answer.body.contains("cargo xtask"), "{}", answer.body);
    assert!(!Path::new(&tmp.path().join("missing")).exists());
}
