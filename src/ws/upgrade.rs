//! The HTTP side of WebSocket (RFC 6455 section 4), pure: where a request
//! or response head ends, what a server answers to every request (the
//! upgrade, its page, or a refusal with a status for each case), and what
//! a client asks and checks.
//!
//! | request | answer |
//! |---|---|
//! | `GET` with `Upgrade: websocket`, version 13, a key | `101 Switching Protocols` |
//! | an upgrade of another version | `426 Upgrade Required` (`Sec-WebSocket-Version: 13`) |
//! | an upgrade without its key or `Connection: upgrade`, or not a `GET` | `400 Bad Request` |
//! | `GET` or `HEAD` of `/` or `/index.html`, with a page | `200 OK` (its body for `GET`) |
//! | `GET` or `HEAD` of another path, with a page | `404 Not Found` |
//! | `GET` or `HEAD` without a page | `426 Upgrade Required` |
//! | any other method | `405 Method Not Allowed` (`Allow: GET, HEAD`) |
//! | not HTTP, or a head over 16 KiB | `400 Bad Request` |

use bytes::Bytes;

use super::WsError;
use crate::codec::Parse;

/// The largest HTTP head of an upgrade request or response.
pub(crate) const MAX_HEAD: usize = 16 * 1024;

/// The most headers a head may have.
const MAX_HEADERS: usize = 64;

/// Where the head at the front of `buf` ends (through its blank line);
/// `Err` once more than [`MAX_HEAD`] bytes came without one. `scanned`
/// says how much of `buf` was searched before (and is updated), so that a
/// head trickled a byte at a time is searched once, not once per byte.
pub(crate) fn cut_head(buf: &[u8], scanned: &mut usize) -> Result<Parse, WsError> {
    // The end may start in the last 3 bytes searched before.
    let from = (*scanned).min(buf.len()).saturating_sub(3);
    match buf[from..].windows(4).position(|w| w == b"\r\n\r\n") {
        Some(i) if from + i + 4 <= MAX_HEAD => {
            *scanned = 0;
            let end = from + i + 4;
            Ok(Parse::Frame {
                start: 0,
                end,
                consumed: end,
            })
        }
        Some(_) => Err(too_long()),
        None if buf.len() >= MAX_HEAD => Err(too_long()),
        None => {
            *scanned = buf.len();
            Ok(Parse::Incomplete { needed: 1 })
        }
    }
}

fn too_long() -> WsError {
    WsError::BadHandshake("an HTTP head over 16 KiB".into())
}

/// What a WebSocket listener answers to a plain HTTP `GET` (a browser
/// opening the address): a page, or `426 Upgrade Required` without one.
///
/// ```
/// use converse::ws::Page;
///
/// let page = Page::html("<!doctype html><title>chat</title>");
/// # let _ = page;
/// ```
#[derive(Clone, Debug)]
pub struct Page {
    content_type: String,
    body: Bytes,
}

impl Page {
    /// A page of `content_type` (`text/html; charset=utf-8` …).
    pub fn new(content_type: impl Into<String>, body: impl Into<Bytes>) -> Page {
        Page {
            content_type: content_type.into(),
            body: body.into(),
        }
    }

    /// An HTML page (UTF-8).
    pub fn html(body: impl Into<Bytes>) -> Page {
        Page::new("text/html; charset=utf-8", body)
    }
}

/// What a server does with a request head.
#[derive(Debug)]
pub(crate) enum Answer {
    /// Upgrade: send this `101` response, then frames.
    Upgrade(Vec<u8>),
    /// The page: send this, then close. Not an error.
    Page(Vec<u8>),
    /// Refused: send this, then close; why, for the caller.
    Refuse(Vec<u8>, WsError),
}

/// A response with no body.
fn status(line: &str, extra: &str) -> Vec<u8> {
    format!("HTTP/1.1 {line}\r\n{extra}Connection: close\r\nContent-Length: 0\r\n\r\n").into_bytes()
}

/// The header `name` of a request or response, if it is there once, as
/// text.
fn header<'a>(headers: &'a [httparse::Header<'a>], name: &str) -> Option<&'a str> {
    let mut found = headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case(name))
        .map(|h| std::str::from_utf8(h.value).ok());
    match (found.next(), found.next()) {
        (Some(value), None) => value.map(str::trim),
        _ => None,
    }
}

/// `true` when the comma-separated header `name` holds `token`.
fn has_token(headers: &[httparse::Header<'_>], name: &str, token: &str) -> bool {
    headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case(name))
        .filter_map(|h| std::str::from_utf8(h.value).ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// A server's answer to the request head `head` (as [`cut_head`] cut it),
/// with `page` for plain `GET`s.
pub(crate) fn answer(head: &[u8], page: Option<&Page>) -> Answer {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let bad =
        |why: String| Answer::Refuse(status("400 Bad Request", ""), WsError::BadHandshake(why));
    match request.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return bad("a cut HTTP request".into()),
        Err(e) => return bad(format!("not an HTTP request ({e})")),
    }
    let method = request.method.unwrap_or("");
    let path = request.path.unwrap_or("/");
    let path = path.split(['?', '#']).next().unwrap_or(path);
    let headers = request.headers;
    if has_token(headers, "Upgrade", "websocket") {
        if method != "GET" {
            return bad(format!("a WebSocket upgrade with {method}, not GET"));
        }
        if header(headers, "Sec-WebSocket-Version") != Some("13") {
            return Answer::Refuse(
                status("426 Upgrade Required", "Sec-WebSocket-Version: 13\r\n"),
                WsError::BadHandshake("a WebSocket version other than 13".into()),
            );
        }
        if !has_token(headers, "Connection", "upgrade") {
            return bad("an upgrade without Connection: upgrade".into());
        }
        let Some(key) = header(headers, "Sec-WebSocket-Key").filter(|k| !k.is_empty()) else {
            return bad("an upgrade without Sec-WebSocket-Key".into());
        };
        let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
        return Answer::Upgrade(
            format!(
                "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
                 Sec-WebSocket-Accept: {accept}\r\n\r\n"
            )
            .into_bytes(),
        );
    }
    let refused = WsError::NotWebSocket;
    match (method, page) {
        ("GET" | "HEAD", Some(page)) if path == "/" || path == "/index.html" => {
            let mut response = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: {}\r\nContent-Length: {}\r\n\
                 Cache-Control: no-cache\r\nConnection: close\r\n\r\n",
                page.content_type,
                page.body.len()
            )
            .into_bytes();
            if method == "GET" {
                response.extend_from_slice(&page.body);
            }
            Answer::Page(response)
        }
        ("GET" | "HEAD", Some(_)) => Answer::Refuse(status("404 Not Found", ""), refused),
        ("GET" | "HEAD", None) => Answer::Refuse(
            status("426 Upgrade Required", "Upgrade: websocket\r\n"),
            refused,
        ),
        _ => Answer::Refuse(
            status("405 Method Not Allowed", "Allow: GET, HEAD\r\n"),
            refused,
        ),
    }
}

/// A client's upgrade: the request it sends, and the key the answer must
/// derive.
#[derive(Debug)]
pub(crate) struct ClientUpgrade {
    key: String,
}

impl ClientUpgrade {
    /// The request for `path` on `host` (`HOST[:PORT]` as the URL gave
    /// it), with a fresh key.
    pub(crate) fn new(host: &str, path: &str) -> (ClientUpgrade, Vec<u8>) {
        let key = tungstenite::handshake::client::generate_key();
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        .into_bytes();
        (ClientUpgrade { key }, request)
    }

    /// Checks the server's response head.
    pub(crate) fn check(&self, head: &[u8]) -> Result<(), WsError> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut response = httparse::Response::new(&mut headers);
        let bad = |why: &str| WsError::BadHandshake(why.into());
        match response.parse(head) {
            Ok(httparse::Status::Complete(_)) => {}
            Ok(httparse::Status::Partial) => return Err(bad("a cut HTTP response")),
            Err(_) => return Err(bad("not an HTTP response")),
        }
        let code = response.code.unwrap_or(0);
        if code != 101 {
            return Err(WsError::Refused(code));
        }
        let headers = response.headers;
        if !has_token(headers, "Upgrade", "websocket")
            || !has_token(headers, "Connection", "upgrade")
        {
            return Err(bad("the response does not upgrade to websocket"));
        }
        let accept = tungstenite::handshake::derive_accept_key(self.key.as_bytes());
        if header(headers, "Sec-WebSocket-Accept") != Some(accept.as_str()) {
            return Err(bad("a wrong Sec-WebSocket-Accept"));
        }
        if header(headers, "Sec-WebSocket-Extensions").is_some() {
            return Err(bad("an extension the client did not ask for"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(answer: &Answer) -> &str {
        let bytes = match answer {
            Answer::Upgrade(b) | Answer::Page(b) | Answer::Refuse(b, _) => b,
        };
        std::str::from_utf8(bytes).unwrap()
    }

    fn request(method: &str, path: &str, extra: &str) -> Vec<u8> {
        format!("{method} {path} HTTP/1.1\r\nHost: x\r\n{extra}\r\n").into_bytes()
    }

    const UPGRADE: &str = "Upgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n\
                           Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n";

    #[test]
    fn an_upgrade_is_answered_with_the_accept_key_of_the_rfc() {
        let a = answer(&request("GET", "/chat", UPGRADE), None);
        assert!(matches!(a, Answer::Upgrade(_)));
        // RFC 6455 section 1.3's own example.
        assert!(text(&a).contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
        assert!(text(&a).starts_with("HTTP/1.1 101 "));
    }

    #[test]
    fn every_method_and_path_gets_an_answer() {
        let page = Page::html("<p>hi</p>");
        let cases: &[(&str, &str, bool, &str, bool)] = &[
            ("GET", "/", true, "200 OK", true),
            ("GET", "/index.html?x=1", true, "200 OK", true),
            ("HEAD", "/", true, "200 OK", false),
            ("GET", "/favicon.ico", true, "404 Not Found", false),
            ("HEAD", "/nothing", true, "404 Not Found", false),
            ("GET", "/", false, "426 Upgrade Required", false),
            ("HEAD", "/", false, "426 Upgrade Required", false),
            ("POST", "/", true, "405 Method Not Allowed", false),
            ("PUT", "/", false, "405 Method Not Allowed", false),
            ("DELETE", "/x", true, "405 Method Not Allowed", false),
            ("OPTIONS", "*", true, "405 Method Not Allowed", false),
        ];
        for &(method, path, with_page, status, body) in cases {
            let a = answer(&request(method, path, ""), with_page.then_some(&page));
            let t = text(&a);
            assert!(
                t.starts_with(&format!("HTTP/1.1 {status}\r\n")),
                "{method} {path}: {t}"
            );
            assert_eq!(t.ends_with("<p>hi</p>"), body, "{method} {path}: {t}");
            match (&a, status) {
                (Answer::Page(_), "200 OK") => assert!(t.contains("Content-Length: 9\r\n")),
                (Answer::Refuse(_, WsError::NotWebSocket), _) => {}
                other => panic!("{method} {path}: {other:?}"),
            }
        }
    }

    #[test]
    fn broken_upgrades_and_garbage_get_400_or_426() {
        for (head, status) in [
            (request("POST", "/", UPGRADE), "400"),
            (
                request("GET", "/", &UPGRADE.replace("Version: 13", "Version: 8")),
                "426",
            ),
            (
                request(
                    "GET",
                    "/",
                    &UPGRADE.replace("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", ""),
                ),
                "400",
            ),
            (
                request("GET", "/", &UPGRADE.replace("keep-alive, Upgrade", "close")),
                "400",
            ),
            (b"\x16\x03\x01\x02\x00garbage\r\n\r\n".to_vec(), "400"),
        ] {
            let a = answer(&head, None);
            assert!(
                matches!(a, Answer::Refuse(_, WsError::BadHandshake(_))),
                "{a:?}"
            );
            assert!(
                text(&a).starts_with(&format!("HTTP/1.1 {status} ")),
                "{}",
                text(&a)
            );
        }
    }

    #[test]
    fn heads_are_cut_at_their_blank_line_and_bounded() {
        let head = request("GET", "/", "");
        // Trickled a byte at a time, searched as it comes.
        let mut scanned = 0;
        for cut in 0..head.len() {
            assert_eq!(
                cut_head(&head[..cut], &mut scanned),
                Ok(Parse::Incomplete { needed: 1 })
            );
            assert_eq!(scanned, cut);
        }
        let mut more = head.clone();
        more.extend_from_slice(b"\x81\x00");
        assert_eq!(
            cut_head(&more, &mut scanned),
            Ok(Parse::Frame {
                start: 0,
                end: head.len(),
                consumed: head.len()
            })
        );
        assert_eq!(scanned, 0);
        assert!(cut_head(&vec![b'a'; MAX_HEAD], &mut 0).is_err());
    }

    #[test]
    fn a_client_checks_the_answer() {
        let (client, req) = ClientUpgrade::new("example.com:80", "/chat");
        let req = String::from_utf8(req).unwrap();
        assert!(req.starts_with("GET /chat HTTP/1.1\r\nHost: example.com:80\r\n"));
        let key = req
            .lines()
            .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
            .unwrap();
        let server = answer(req.as_bytes(), None);
        let Answer::Upgrade(response) = server else {
            panic!("{server:?}")
        };
        client.check(&response).unwrap();
        let other = ClientUpgrade::new("x", "/").0;
        assert!(other.check(&response).is_err(), "a key of another request");
        assert_eq!(
            client.check(b"HTTP/1.1 404 Not Found\r\n\r\n"),
            Err(WsError::Refused(404))
        );
        assert!(!key.is_empty());
    }
}
