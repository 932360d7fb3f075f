//! End-to-end tests of the example binaries, driven through the command-line
//! contract of the SPEC: scripted stdin, stdout read line by line with a
//! timeout, exit statuses, the `listening on` line with the real port.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

/// Where cargo put the compiled examples: beside this test's `deps/`.
fn example_path(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let path = dir.join("examples").join(name);
    assert!(
        path.exists(),
        "{} is not built (cargo test builds examples)",
        path.display()
    );
    path
}

/// A running example: stdin to write, stdout as lines, stderr collected.
struct Program {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Receiver<String>,
    stderr: Arc<Mutex<String>>,
    /// Says when stderr has reached its end (the program has exited).
    stderr_done: Receiver<()>,
    /// While held, nobody reads stderr (a pipe that fills).
    stderr_held: Option<mpsc::Sender<()>>,
}

impl Program {
    fn start(name: &str, args: &[&str]) -> Program {
        Program::spawn(name, Command::new(example_path(name)).args(args))
    }

    /// Starts `name` with at most `fds` file descriptors (`ulimit -n`).
    fn start_with_fd_limit(name: &str, fds: u32, args: &[&str]) -> Program {
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(format!("ulimit -n {fds} && exec \"$0\" \"$@\""))
            .arg(example_path(name))
            .args(args);
        Program::spawn(name, &mut command)
    }

    fn spawn(name: &str, command: &mut Command) -> Program {
        let mut p = Program::spawn_holding_stderr(name, command);
        p.read_stderr();
        p
    }

    /// Starts `name` with nobody reading its stderr until `read_stderr`.
    fn spawn_holding_stderr(name: &str, command: &mut Command) -> Program {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, stdout) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err = child.stderr.take().unwrap();
        let sink = Arc::clone(&stderr);
        let (done_tx, stderr_done) = mpsc::channel();
        let (held, go) = mpsc::channel::<()>();
        std::thread::spawn(move || {
            // Until the hold is let go (its sender dropped).
            let _ = go.recv();
            let mut buf = [0u8; 1024];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
            let _ = done_tx.send(());
        });
        Program {
            name: name.to_owned(),
            stdin: child.stdin.take(),
            child,
            stdout,
            stderr,
            stderr_done,
            stderr_held: Some(held),
        }
    }

    /// Lets stderr be read (and collected) from now on.
    fn read_stderr(&mut self) {
        self.stderr_held = None;
    }

    /// The next line of stdout.
    fn line(&self) -> String {
        match self.stdout.recv_timeout(T) {
            Ok(line) => line,
            Err(e) => panic!(
                "{}: no line on stdout ({e}); stderr: {}",
                self.name,
                self.stderr()
            ),
        }
    }

    /// Asserts that no line comes on stdout within `quiet`.
    fn no_line_within(&self, quiet: Duration) {
        if let Ok(line) = self.stdout.recv_timeout(quiet) {
            panic!("{}: unexpected line {line:?}", self.name);
        }
    }

    /// Reads the `listening on …` line and returns the address after it.
    fn listening(&self, scheme: &str) -> String {
        let line = self.line();
        let url = line
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("{}: first line {line:?}", self.name));
        let hostport = url
            .strip_prefix(&format!("{scheme}://"))
            .unwrap_or_else(|| panic!("{}: {url}", self.name));
        assert!(!hostport.ends_with(":0"), "the real port, not 0: {line}");
        hostport.to_owned()
    }

    fn write(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    fn close_stdin(&mut self) {
        self.stdin = None;
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits for the exit, and for everything it wrote to stderr; bounded.
    fn wait(&mut self) -> ExitStatus {
        let until = Instant::now() + T;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                let _ = self.stderr_done.recv_timeout(T);
                return status;
            }
            assert!(
                Instant::now() < until,
                "{} did not exit; stderr: {}",
                self.name,
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn expect_success(&mut self) {
        let status = self.wait();
        assert!(
            status.success(),
            "{} exited with {status}; stderr: {}",
            self.name,
            self.stderr()
        );
    }

    /// Waits until stderr contains `text`, bounded.
    fn wait_stderr(&self, text: &str) {
        let until = Instant::now() + T;
        while !self.stderr().contains(text) {
            assert!(
                Instant::now() < until,
                "{}: stderr never said {text:?}: {}",
                self.name,
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Program {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const TRANSPORTS: [&str; 2] = ["tcp", "udp"];

#[test]
fn every_example_has_help() {
    for name in [
        "hello_server",
        "hello_client",
        "chat_server",
        "chat_client",
        "chat_room",
        "chat_room_client",
        "demo",
        "echo",
        "sticky",
        "make_certs",
    ] {
        let out = Command::new(example_path(name))
            .arg("--help")
            .output()
            .unwrap();
        assert!(out.status.success(), "{name} --help");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("Usage:"), "{name}: {text}");
        if !["demo", "echo", "sticky", "make_certs"].contains(&name) {
            for option in [
                "--addr",
                "--transport",
                "--framing",
                "--tls-cert",
                "--tls-key",
                "--tls-ca",
            ] {
                assert!(text.contains(option), "{name}: {option}: {text}");
            }
        }
    }
}

#[test]
fn hello_over_tcp_and_udp() {
    for transport in TRANSPORTS {
        let mut server = Program::start(
            "hello_server",
            &["--addr", "127.0.0.1:0", "--transport", transport],
        );
        let addr = server.listening(transport);
        let mut client =
            Program::start("hello_client", &["--addr", &addr, "--transport", transport]);
        assert_eq!(client.line(), "hi");
        client.expect_success();
        assert_eq!(server.line(), "hello!");
        server.expect_success();
    }
}

#[test]
fn hello_with_a_message_of_our_own_and_over_ipv6() {
    let mut server = Program::start("hello_server", &["--addr", "127.0.0.1:0"]);
    let addr = server.listening("tcp");
    let mut client = Program::start(
        "hello_client",
        &["--addr", &addr, "--message", "你好, two words"],
    );
    assert_eq!(client.line(), "hi");
    client.expect_success();
    assert_eq!(server.line(), "你好, two words");
    server.expect_success();

    if !have_ipv6() {
        return;
    }
    for transport in TRANSPORTS {
        let mut server = Program::start(
            "hello_server",
            &["--addr", "[::1]:0", "--transport", transport],
        );
        let addr = server.listening(transport);
        assert!(addr.starts_with("[::1]:"), "{addr}");
        let mut client =
            Program::start("hello_client", &["--addr", &addr, "--transport", transport]);
        assert_eq!(client.line(), "hi");
        client.expect_success();
        server.expect_success();
    }
}

/// A port on which nothing listens (it was free a moment ago).
fn dead_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn a_refused_connection_names_the_address_and_fails() {
    let addr = format!("127.0.0.1:{}", dead_port());
    for name in ["hello_client", "chat_client"] {
        let mut client = Program::start(name, &["--addr", &addr]);
        client.close_stdin();
        let status = client.wait();
        assert!(!status.success(), "{name} exited 0");
        let stderr = client.stderr();
        assert_eq!(
            stderr.trim_end().lines().count(),
            1,
            "{name}: one line: {stderr}"
        );
        assert!(
            stderr.contains(&addr),
            "{name}: the address is named: {stderr}"
        );
    }
}

#[test]
fn a_server_that_cannot_bind_names_the_address_and_fails() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let mut server = Program::start("hello_server", &["--addr", &addr]);
    assert!(!server.wait().success());
    let stderr = server.stderr();
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(stderr.contains(&addr), "{stderr}");
}

#[test]
fn chat_ends_with_bye_from_the_client() {
    for transport in TRANSPORTS {
        let mut server = Program::start(
            "chat_server",
            &["--addr", "127.0.0.1:0", "--once", "--transport", transport],
        );
        let addr = server.listening(transport);
        let mut client =
            Program::start("chat_client", &["--addr", &addr, "--transport", transport]);
        client.write("how are you?");
        assert_eq!(server.line(), "how are you?");
        server.write("fine, 谢谢");
        assert_eq!(client.line(), "fine, 谢谢");
        client.write("bye");
        assert_eq!(server.line(), "bye");
        client.expect_success();
        server.expect_success();
    }
}

#[test]
fn chat_ends_with_bye_from_the_server() {
    for transport in TRANSPORTS {
        let mut server = Program::start(
            "chat_server",
            &["--addr", "127.0.0.1:0", "--once", "--transport", transport],
        );
        let addr = server.listening(transport);
        let mut client =
            Program::start("chat_client", &["--addr", &addr, "--transport", transport]);
        client.write("hello");
        assert_eq!(server.line(), "hello");
        server.write("bye");
        assert_eq!(client.line(), "bye");
        client.expect_success();
        server.expect_success();
    }
}

#[test]
fn the_end_of_stdin_counts_as_bye_on_both_sides() {
    // The client's stdin ends: it says bye.
    let mut server = Program::start("chat_server", &["--addr", "127.0.0.1:0", "--once"]);
    let addr = server.listening("tcp");
    let mut client = Program::start("chat_client", &["--addr", &addr]);
    client.close_stdin();
    assert_eq!(server.line(), "bye");
    client.expect_success();
    server.expect_success();

    // The server's stdin ends in a conversation: it says bye and exits
    // (no --once needed).
    let mut server = Program::start("chat_server", &["--addr", "127.0.0.1:0"]);
    let addr = server.listening("tcp");
    let mut client = Program::start("chat_client", &["--addr", &addr]);
    client.write("anyone?");
    assert_eq!(server.line(), "anyone?");
    server.close_stdin();
    assert_eq!(client.line(), "bye");
    client.expect_success();
    server.expect_success();

    // The server's stdin ends while it waits for a client: it exits.
    let mut server = Program::start("chat_server", &["--addr", "127.0.0.1:0"]);
    server.listening("tcp");
    server.close_stdin();
    server.expect_success();
}

#[test]
fn lines_typed_before_a_client_comes_are_said_to_it_even_after_stdin_ends() {
    let mut server = Program::start("chat_server", &["--addr", "127.0.0.1:0", "--once"]);
    let addr = server.listening("tcp");
    server.write("welcome");
    server.close_stdin();
    let mut client = Program::start("chat_client", &["--addr", &addr]);
    client.write("hello");
    assert_eq!(server.line(), "hello");
    assert_eq!(client.line(), "welcome");
    client.close_stdin();
    assert_eq!(server.line(), "bye");
    client.expect_success();
    server.expect_success();
}

#[test]
fn three_clients_with_backlog_1_are_served_one_after_another_in_order() {
    let mut server = Program::start("chat_server", &["--addr", "127.0.0.1:0", "--backlog", "1"]);
    let addr = server.listening("tcp");
    let config = config();
    // Connected one after another: that is the order of arrival.
    let clients: Vec<_> = (1..=3)
        .map(|i| {
            let mut c = converse::connect_with(&format!("tcp://{addr}"), &config).unwrap();
            c.send_text(&format!("I am client {i}")).unwrap();
            c
        })
        .collect();
    for (i, mut c) in clients.into_iter().enumerate() {
        assert_eq!(server.line(), format!("I am client {}", i + 1));
        server.write(&format!("hello, client {}", i + 1));
        assert_eq!(
            c.recv_text().unwrap().unwrap(),
            format!("hello, client {}", i + 1)
        );
        c.send_text("bye").unwrap();
        assert_eq!(server.line(), "bye");
        c.close().unwrap();
    }
    server.no_line_within(Duration::from_millis(100));
}

#[test]
fn once_serves_only_the_first_conversation() {
    let mut server = Program::start("chat_server", &["--addr", "127.0.0.1:0", "--once"]);
    let addr = server.listening("tcp");
    let mut first = Program::start("chat_client", &["--addr", &addr]);
    first.write("first");
    assert_eq!(server.line(), "first");
    server.write("bye");
    assert_eq!(first.line(), "bye");
    first.expect_success();
    server.expect_success();
    let refused = converse::connect_with(&format!("tcp://{addr}"), &config());
    assert!(
        matches!(refused, Err(converse::Error::ConnectionRefused { .. })),
        "{refused:?}"
    );
}

#[test]
fn a_vanished_client_does_not_stop_the_chat_server() {
    let mut server = Program::start("chat_server", &["--addr", "127.0.0.1:0"]);
    let addr = server.listening("tcp");
    let sock: std::net::SocketAddr = addr.parse().unwrap();

    // A client killed mid-conversation.
    let mut killed = Program::start("chat_client", &["--addr", &addr]);
    killed.write("hello, then I die");
    assert_eq!(server.line(), "hello, then I die");
    killed.child.kill().unwrap();
    killed.wait();
    server.write("are you there?");
    server.wait_stderr("without saying bye");

    // Half a frame, then gone.
    let mut half = raw_client(sock);
    write_all(&mut half, &[0, 0, 0, 10, b'h', b'a']);
    drop(half);
    server.wait_stderr("in the middle of a message");

    // A header that declares 4 GiB.
    let mut huge = raw_client(sock);
    write_all(&mut huge, &[0xff, 0xff, 0xff, 0xff]);
    server.wait_stderr("larger than the limit");
    drop(huge);

    // A reset.
    let reset = raw_client(sock);
    socket2::SockRef::from(&reset)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    (&reset).write_all(&[0, 0]).unwrap();
    drop(reset);

    // The next client is served.
    let mut next = Program::start("chat_client", &["--addr", &addr]);
    next.write("am I served?");
    assert_eq!(server.line(), "am I served?");
    server.write("yes");
    assert_eq!(next.line(), "yes");
    next.write("bye");
    assert_eq!(server.line(), "bye");
    next.expect_success();
    let diagnostics = server.stderr();
    for line in diagnostics.lines() {
        assert!(!line.is_empty());
    }
}

#[test]
fn chat_room_relays_joins_and_leaves_over_tcp_and_udp() {
    for transport in TRANSPORTS {
        let room = Program::start(
            "chat_room",
            &["--addr", "127.0.0.1:0", "--transport", transport],
        );
        let addr = room.listening(transport);
        let join = |name: &str| {
            let p = Program::start(
                "chat_room_client",
                &["--addr", &addr, "--transport", transport, "--name", name],
            );
            assert_eq!(room.line(), format!("* {name} joined"), "{transport}");
            p
        };
        let mut alice = join("alice");
        let bob = join("bob");
        assert_eq!(alice.line(), "* bob joined");
        let mut carol = join("carol");
        assert_eq!(alice.line(), "* carol joined");
        assert_eq!(bob.line(), "* carol joined");

        alice.write("hi all, 大家好");
        assert_eq!(room.line(), "alice: hi all, 大家好");
        assert_eq!(bob.line(), "alice: hi all, 大家好");
        assert_eq!(carol.line(), "alice: hi all, 大家好");

        carol.write("bye");
        assert_eq!(room.line(), "* carol left");
        assert_eq!(alice.line(), "* carol left");
        assert_eq!(bob.line(), "* carol left");
        carol.expect_success();

        // The end of stdin is `bye`, too.
        alice.close_stdin();
        assert_eq!(room.line(), "* alice left");
        assert_eq!(bob.line(), "* alice left", "{transport}: not her own words");
        alice.expect_success();
        drop(bob);
    }
}

#[test]
fn the_demo_prints_both_transcripts_and_exits_0() {
    let out = Command::new(example_path("demo"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("== TCP transcript (tcp://127.0.0.1:"),
        "{text}"
    );
    assert!(
        text.contains("== UDP transcript (udp://127.0.0.1:"),
        "{text}"
    );
    assert!(
        text.contains("== TLS transcript (tls://127.0.0.1:"),
        "{text}"
    );
    assert!(text.contains("== WS transcript (ws://127.0.0.1:"), "{text}");
    assert!(
        text.contains("== WSS transcript (wss://127.0.0.1:"),
        "{text}"
    );
    assert!(
        text.contains("== QUIC transcript (quic://127.0.0.1:"),
        "{text}"
    );
    assert_eq!(text.matches("(server verified: ").count(), 3, "{text}");
    assert_eq!(text.matches("server > hi").count(), 6, "{text}");
    assert_eq!(
        text.matches("server > you said \"two\"").count(),
        6,
        "{text}"
    );
    assert_eq!(
        text.matches("received 100000 bytes in one message").count(),
        5,
        "TCP, TLS, WS, WSS and QUIC: {text}"
    );
    assert!(
        text.contains("received 100000 bytes in one message"),
        "{text}"
    );
    assert!(
        text.contains("larger than the limit of 65507 bytes"),
        "{text}"
    );
}

#[test]
fn the_tutorials_own_python_client_talks_to_hello_server_with_raw_framing() {
    if !have_python() {
        return;
    }
    let mut server = Program::start(
        "hello_server",
        &["--addr", "127.0.0.1:0", "--framing", "raw"],
    );
    let addr = server.listening("tcp");
    let port = addr.rsplit(':').next().unwrap();
    // tcp_client.py from the tutorial, with only the port changed.
    let script = format!(
        "import socket\nsk = socket.socket()\nsk.connect(('127.0.0.1',{port}))\nsk.send(b'hello!')\nret = sk.recv(1024)\nprint(ret)\nsk.close()\n"
    );
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "b'hi'\n");
    assert_eq!(server.line(), "hello!");
    server.expect_success();
}

#[test]
fn a_line_based_client_chats_with_chat_server_framing_lines() {
    let mut server = Program::start(
        "chat_server",
        &["--addr", "127.0.0.1:0", "--once", "--framing", "lines"],
    );
    let addr = server.listening("tcp");
    // What `nc 127.0.0.1 PORT` would do: write lines, read lines.
    let stream = std::net::TcpStream::connect(&addr).unwrap();
    stream.set_read_timeout(Some(T)).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    (&stream).write_all(b"hello from nc\r\n").unwrap();
    assert_eq!(server.line(), "hello from nc");
    server.write("hi, nc");
    let mut reply = String::new();
    reader.read_line(&mut reply).unwrap();
    assert_eq!(reply, "hi, nc\n");
    (&stream).write_all(b"bye\n").unwrap();
    stream.shutdown(std::net::Shutdown::Write).unwrap(); // as nc does at the end of input
    assert_eq!(server.line(), "bye");
    server.expect_success();
}

#[test]
fn sticky_shows_merged_raw_reads_and_separate_framed_messages() {
    let out = Command::new(example_path("sticky")).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("3 send(s) arrived as 1 receive(s): \"helloworld!\""),
        "{text}"
    );
    assert!(
        text.contains("3 send(s) arrived as 3 receive(s): \"hello\", \"world\", \"!\""),
        "{text}"
    );
}

#[test]
fn every_framing_name_works_and_a_wrong_one_is_refused_clearly() {
    for framing in [
        "length16le",
        "length8be",
        "length64le",
        "length32be",
        "varint",
        "lines",
    ] {
        let mut server = Program::start(
            "hello_server",
            &["--addr", "127.0.0.1:0", "--framing", framing],
        );
        let addr = server.listening("tcp");
        let mut client = Program::start(
            "hello_client",
            &["--addr", &addr, "--framing", framing, "--message", framing],
        );
        assert_eq!(server.line(), framing);
        assert_eq!(client.line(), "hi", "{framing}");
        client.expect_success();
        server.expect_success();
    }
    let out = Command::new(example_path("hello_server"))
        .args(["--framing", "length24be"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("length24be") && err.contains("length16le"),
        "{err}"
    );
}

#[test]
fn an_addr_with_a_scheme_is_understood_or_refused_in_one_line() {
    // The scheme says the transport.
    let mut server = Program::start("hello_server", &["--addr", "udp://127.0.0.1:0"]);
    let addr = server.listening("udp");
    let mut client = Program::start("hello_client", &["--addr", &format!("udp://{addr}")]);
    assert_eq!(client.line(), "hi");
    client.expect_success();
    server.expect_success();
    // Refused: a scheme this program does not speak, or one --transport
    // contradicts. One line on stderr, naming the address; exit 1.
    for (args, says) in [
        (&["--addr", "ftp://127.0.0.1:1"][..], "unknown scheme"),
        (
            &["--addr", "udp://127.0.0.1:1", "--transport", "tcp"][..],
            "--addr says udp but --transport says tcp",
        ),
    ] {
        let out = Command::new(example_path("hello_client"))
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(args[1]) && err.contains(says), "{err}");
    }
}

#[test]
fn an_empty_line_is_not_sent_so_raw_framing_does_not_hang() {
    let mut server = Program::start(
        "chat_server",
        &["--addr", "127.0.0.1:0", "--once", "--framing", "raw"],
    );
    let addr = server.listening("tcp");
    let mut client = Program::start("chat_client", &["--addr", &addr, "--framing", "raw"]);
    client.write(""); // nothing to say: not sent, and no reply awaited
    client.write("after the empty line");
    assert_eq!(server.line(), "after the empty line");
    server.write("heard you");
    assert_eq!(client.line(), "heard you");
    client.write("bye");
    client.expect_success();
    assert_eq!(server.line(), "bye");
    server.expect_success();
}

/// Over UDP, a chat client whose user thinks for longer than the server's
/// idle timeout is still in the conversation, and a reply that comes later
/// than that is printed.
#[test]
fn a_udp_chat_survives_a_user_who_thinks_and_a_reply_that_comes_late() {
    let mut server = Program::start(
        "chat_server",
        &[
            "--addr",
            "127.0.0.1:0",
            "--transport",
            "udp",
            "--once",
            "--idle-timeout",
            "0.4",
        ],
    );
    let addr = server.listening("udp");
    let mut client = Program::start(
        "chat_client",
        &["--addr", &addr, "--transport", "udp", "--keepalive", "0.1"],
    );
    client.write("first");
    assert_eq!(server.line(), "first");
    server.write("reply");
    assert_eq!(client.line(), "reply");
    // The user thinks for three idle timeouts.
    std::thread::sleep(Duration::from_millis(1200));
    client.write("after thinking");
    assert_eq!(server.line(), "after thinking");
    // The server's person takes three idle timeouts to answer.
    client.no_line_within(Duration::from_millis(1200));
    server.write("a late reply");
    assert_eq!(client.line(), "a late reply");
    client.write("bye");
    client.expect_success();
    assert_eq!(server.line(), "bye");
    server.expect_success();
    assert!(!server.stderr().contains("left"), "{}", server.stderr());
}

/// Over UDP a quiet room stays a room: members silent for longer than the
/// idle timeout are still members, and their next lines are lines, not new
/// names; a member whose client is gone leaves after the idle timeout.
#[test]
fn a_quiet_udp_room_stays_a_room() {
    let room = Program::start(
        "chat_room",
        &[
            "--addr",
            "127.0.0.1:0",
            "--transport",
            "udp",
            "--idle-timeout",
            "0.4",
        ],
    );
    let addr = room.listening("udp");
    let join = |name: &str| {
        let p = Program::start(
            "chat_room_client",
            &[
                "--addr",
                &addr,
                "--transport",
                "udp",
                "--name",
                name,
                "--keepalive",
                "0.1",
            ],
        );
        assert_eq!(room.line(), format!("* {name} joined"));
        p
    };
    let mut alice = join("alice");
    let bob = join("bob");
    assert_eq!(alice.line(), "* bob joined");
    room.no_line_within(Duration::from_millis(1500));
    alice.write("still here");
    assert_eq!(room.line(), "alice: still here");
    assert_eq!(bob.line(), "alice: still here");
    // Bob's client is killed: no bye, no keepalives. He leaves after the
    // idle timeout.
    drop(bob);
    assert_eq!(room.line(), "* bob left");
    assert_eq!(alice.line(), "* bob left");
    alice.close_stdin();
    assert_eq!(room.line(), "* alice left");
    alice.expect_success();
}

/// A server out of file descriptors (`EMFILE`) says so on stderr, pauses,
/// and serves the next client once one is free again.
#[test]
fn a_server_out_of_file_descriptors_recovers() {
    let room = Program::start_with_fd_limit("chat_room", 12, &["--addr", "127.0.0.1:0"]);
    let addr = room.listening("tcp");
    let mut members = Vec::new();
    let mut joined = 0;
    // Join until the room runs out of descriptors: each client either
    // joins (the room announces it) or finds the room unable to accept it
    // (the room says it is retrying), and then waits in the backlog.
    'joining: for i in 0..16 {
        let name = format!("m{i}");
        let p = Program::start("chat_room_client", &["--addr", &addr, "--name", &name]);
        members.push(p);
        let until = Instant::now() + T;
        loop {
            if let Ok(line) = room.stdout.recv_timeout(Duration::from_millis(20)) {
                assert_eq!(line, format!("* {name} joined"));
                joined += 1;
                break;
            }
            if room.stderr().contains("retrying") {
                break 'joining;
            }
            assert!(Instant::now() < until, "{name} neither joined nor waits");
        }
    }
    room.wait_stderr("retrying");
    assert!(
        room.stderr().to_lowercase().contains("too many open files")
            || room.stderr().contains("EMFILE")
            || room.stderr().contains("open files"),
        "{}",
        room.stderr()
    );
    assert!(
        joined >= 1 && joined < members.len(),
        "{joined} of {}",
        members.len()
    );
    // One member leaves: its descriptor is free, and the waiting client
    // gets in.
    let mut first = members.remove(0);
    first.write("bye");
    first.expect_success();
    assert_eq!(room.line(), "* m0 left");
    let waiting = format!("* m{} joined", members.len());
    assert_eq!(room.line(), waiting);
}

/// One room served on TCP, UDP and a Unix socket at once: members on each
/// hear each other.
#[test]
fn one_room_over_tcp_udp_and_unix() {
    let path = SocketPath::new("room");
    let room = Program::start(
        "chat_room",
        &[
            "--listen",
            "tcp://127.0.0.1:0",
            "--listen",
            "udp://127.0.0.1:0",
            "--listen",
            &path.url("unix"),
        ],
    );
    let tcp = format!("tcp://{}", room.listening("tcp"));
    let udp = format!("udp://{}", room.listening("udp"));
    assert_eq!(room.line(), format!("listening on {}", path.url("unix")));
    let join = |url: &str, name: &str| {
        let p = Program::start("chat_room_client", &["--addr", url, "--name", name]);
        assert_eq!(room.line(), format!("* {name} joined"), "{}", p.stderr());
        p
    };
    let mut alice = join(&tcp, "alice");
    let bob = join(&udp, "bob");
    assert_eq!(alice.line(), "* bob joined");
    let carol = join(&path.url("unix"), "carol");
    assert_eq!(alice.line(), "* carol joined");
    assert_eq!(bob.line(), "* carol joined");
    alice.write("hello, all three transports");
    for p in [&room, &bob, &carol] {
        assert_eq!(p.line(), "alice: hello, all three transports");
    }
    alice.write("bye");
    assert_eq!(room.line(), "* alice left");
    assert_eq!(bob.line(), "* alice left");
    assert_eq!(carol.line(), "* alice left");
    alice.expect_success();
}

/// Without `--name`, a member is named as its login user.
#[test]
fn chat_room_client_is_named_as_the_login_user_without_name() {
    let room = Program::start("chat_room", &["--addr", "127.0.0.1:0"]);
    let addr = room.listening("tcp");
    let mut alice = Program::start("chat_room_client", &["--addr", &addr, "--name", "alice"]);
    assert_eq!(room.line(), "* alice joined");
    let mut command = Command::new(example_path("chat_room_client"));
    command
        .args(["--addr", &addr])
        .env("USER", "明威")
        .env_remove("LOGNAME")
        .env_remove("USERNAME");
    let mut user = Program::spawn("chat_room_client", &mut command);
    assert_eq!(room.line(), "* 明威 joined");
    assert_eq!(alice.line(), "* 明威 joined");
    user.write("你好");
    assert_eq!(alice.line(), "明威: 你好");
    user.close_stdin();
    user.expect_success();
    alice.close_stdin();
    alice.expect_success();

    // No name at all: a one-line error that says what to do.
    let mut command = Command::new(example_path("chat_room_client"));
    command
        .args(["--addr", &addr])
        .env_remove("USER")
        .env_remove("LOGNAME")
        .env_remove("USERNAME");
    let mut nameless = Program::spawn("chat_room_client", &mut command);
    let status = nameless.wait();
    assert!(!status.success());
    assert!(
        nameless.stderr().contains("--name"),
        "{}",
        nameless.stderr()
    );
}

/// Alice and bob in `room` (TCP), and a member with a tiny receive window
/// that never reads; each join heard by the room and the members.
fn alice_bob_and_a_stuck_member(room: &Program) -> (Program, Program, std::net::TcpStream) {
    let addr = room.listening("tcp");
    let alice = Program::start("chat_room_client", &["--addr", &addr, "--name", "alice"]);
    assert_eq!(room.line(), "* alice joined");
    let bob = Program::start("chat_room_client", &["--addr", &addr, "--name", "bob"]);
    assert_eq!(room.line(), "* bob joined");
    assert_eq!(alice.line(), "* bob joined");
    let stuck = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    stuck.set_recv_buffer_size(4096).unwrap();
    let target: std::net::SocketAddr = addr.parse().unwrap();
    stuck.connect(&target.into()).unwrap();
    let mut stuck: std::net::TcpStream = stuck.into();
    write_all(&mut stuck, &frame(b"stuck"));
    assert_eq!(room.line(), "* stuck joined");
    assert_eq!(alice.line(), "* stuck joined");
    assert_eq!(bob.line(), "* stuck joined");
    (alice, bob, stuck)
}

/// A member that stops reading is disconnected once its backlog passes
/// --max-backlog, announced as having left, with a line on stderr; the
/// others hear every line.
#[test]
fn a_member_that_stops_reading_is_dropped_and_never_slows_the_others() {
    let room = Program::start(
        "chat_room",
        // Alice is a script here, not a person: no flood limit.
        &[
            "--addr",
            "127.0.0.1:0",
            "--max-backlog",
            "65536",
            "--flood-limit",
            "0",
        ],
    );
    let (mut alice, bob, stuck) = alice_bob_and_a_stuck_member(&room);
    let long = "x".repeat(8000);
    let started = Instant::now();
    // Bob hears every line, in order (read in step: his client prints to a
    // pipe this test reads, and he must not become slow himself), and the
    // stuck member leaves.
    let mut left = false;
    for i in 0..400 {
        alice.write(&format!("{i} {long}"));
        let mut line = bob.line();
        if line == "* stuck left" {
            left = true;
            line = bob.line();
        }
        assert_eq!(line, format!("alice: {i} {long}"));
    }
    if !left {
        assert_eq!(bob.line(), "* stuck left");
    }
    room.wait_stderr("slow consumer");
    assert!(started.elapsed() < T, "{:?}", started.elapsed());
    drop(stuck);
}

/// Flood control: a member that sends faster than its limit is slowed
/// down (its readers hear a burst, then the rate), and told of the lines
/// dropped before its pause took hold; without it, bob would hear all
/// 2,000 at once.
#[test]
fn a_flooder_is_held_to_its_rate_and_told_what_was_dropped() {
    let room = Program::start(
        "chat_room",
        &[
            "--addr",
            "127.0.0.1:0",
            "--flood-limit",
            "5",
            "--flood-burst",
            "20",
        ],
    );
    let addr = room.listening("tcp");
    let mut bob = converse::connect_with(&format!("tcp://{addr}"), &config()).unwrap();
    bob.send("bob").unwrap();
    assert_eq!(room.line(), "* bob joined");
    let mut mallory = converse::connect_with(&format!("tcp://{addr}"), &config()).unwrap();
    mallory.send("mallory").unwrap();
    assert_eq!(
        bob.recv_text().unwrap().as_deref(),
        Some("* mallory joined")
    );
    for i in 0..2000 {
        mallory.feed(format!("flood {i}")).unwrap();
    }
    mallory.flush().unwrap();
    // For two seconds, bob counts what he hears of it.
    bob.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let until = Instant::now() + Duration::from_secs(2);
    let mut heard = 0;
    while Instant::now() < until {
        match bob.recv_text() {
            Ok(Some(line)) if line.starts_with("mallory: flood ") => heard += 1,
            Ok(Some(line)) => panic!("{line}"),
            Err(converse::Error::Timeout) => {}
            other => panic!("{other:?}"),
        }
    }
    // The burst, a burst's worth of debt, and five a second: far from 2,000.
    assert!(heard >= 20, "{heard} heard");
    assert!(heard <= 40 + 5 * 3, "{heard} heard");
    // Once let go, mallory hears how many of its lines were dropped.
    mallory.set_read_timeout(Some(T)).unwrap();
    let told = mallory.recv_text().unwrap().unwrap();
    assert!(
        told.starts_with("* ") && told.contains("of your lines were dropped: more than 5 a second"),
        "{told}"
    );
    room.wait_stderr("lines dropped: over the flood limit");
}

/// Under the hard limit, a member that reads nothing while over
/// `--max-backlog` is disconnected after `--stall`: stuck, not slow.
#[test]
fn a_member_stuck_below_the_hard_limit_goes_after_the_stall_time() {
    let room = Program::start(
        "chat_room",
        &[
            "--addr",
            "127.0.0.1:0",
            "--max-backlog",
            "65536",
            "--stall",
            "1",
            "--flood-limit",
            "0",
        ],
    );
    let (mut alice, bob, stuck) = alice_bob_and_a_stuck_member(&room);
    // Lines at a pace that passes the soft limit (64 KiB, once the
    // kernel's buffers are full) long before the hard one (256 KiB): the
    // stall, not the hard limit, ends it.
    let long = "x".repeat(2000);
    let mut left = false;
    for i in 0..400 {
        alice.write(&format!("{i} {long}"));
        let mut line = bob.line();
        if line == "* stuck left" {
            left = true;
            line = bob.line();
        }
        assert_eq!(line, format!("alice: {i} {long}"));
        if left {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(left, "the stuck member was never dropped");
    room.wait_stderr("none read for 1s");
    drop(stuck);
}

/// Joins over UDP that come together are announced together: every one
/// is told (one by one, or summed up in one line), none is lost.
#[test]
fn udp_joins_that_come_together_are_announced_together() {
    let room = Program::start(
        "chat_room",
        &[
            "--listen",
            "tcp://127.0.0.1:0",
            "--listen",
            "udp://127.0.0.1:0",
        ],
    );
    let tcp = room.listening("tcp");
    let udp: std::net::SocketAddr = room.listening("udp").parse().unwrap();
    let bob = Program::start("chat_room_client", &["--addr", &tcp, "--name", "bob"]);
    assert_eq!(room.line(), "* bob joined");
    // Twenty sources, twice each (loopback UDP may drop a datagram): a
    // second datagram from a member is a line, never a second join.
    let sockets: Vec<_> = (0..20)
        .map(|_| std::net::UdpSocket::bind("127.0.0.1:0").unwrap())
        .collect();
    for (i, s) in sockets.iter().enumerate() {
        s.send_to(format!("u{i}").as_bytes(), udp).unwrap();
    }
    let mut joined = std::collections::HashSet::new();
    let mut more = 0;
    let until = Instant::now() + T;
    while joined.len() + more < 20 {
        assert!(Instant::now() < until, "{} joins told", joined.len() + more);
        let line = bob.line();
        if let Some(rest) = line
            .strip_prefix("* ")
            .and_then(|l| l.strip_suffix(" joined"))
        {
            match rest.split_once(" and ") {
                Some((names, n)) => {
                    let n = n.strip_suffix(" more").unwrap();
                    more += n.parse::<usize>().unwrap();
                    joined.extend(names.split(", ").map(str::to_owned));
                }
                None => {
                    joined.insert(rest.to_owned());
                }
            }
        }
    }
    assert_eq!(joined.len() + more, 20);
    assert!(joined.iter().all(|n| n.starts_with('u')), "{joined:?}");
}

/// Joins over UDP are capped per second: past the cap, a source is told
/// to try again, and is not a member.
#[test]
fn udp_joins_past_the_cap_are_refused() {
    let (room, udp) = room_with_udp_joins("2");
    let started = Instant::now();
    let sockets = udp_sources(30);
    for (i, s) in sockets.iter().enumerate() {
        s.send_to(format!("u{i}").as_bytes(), udp).unwrap();
    }
    // A refused source is told so; a member hears the others' joins.
    let mut refused = 0;
    for s in &sockets {
        let mut buf = [0u8; 512];
        while let Ok(n) = s.recv(&mut buf) {
            if String::from_utf8_lossy(&buf[..n]).contains("refused: too many joining over UDP") {
                refused += 1;
                break;
            }
        }
    }
    let joined = room_lines_until_quiet(&room)
        .iter()
        .filter(|l| l.ends_with(" joined"))
        .count();
    // A burst of four, then two a second.
    let allowed = 4 + 2 * (started.elapsed().as_secs() as usize + 1);
    assert!(refused >= 1, "none refused");
    assert!(joined <= allowed, "{joined} joined");
    assert!(joined + refused <= 30);
}

/// A source turned away by the cap gets a cookie, and joins at once with
/// it (`NAME<TAB>COOKIE`): it proved it receives what is sent to its
/// address, which a forged source address cannot.
#[test]
fn a_udp_source_turned_away_joins_with_its_cookie() {
    let (room, udp) = room_with_udp_joins("1");
    let sockets = udp_sources(10);
    for (i, s) in sockets.iter().enumerate() {
        s.send_to(format!("u{i}").as_bytes(), udp).unwrap();
    }
    // The first source refused, and its cookie.
    let (i, cookie) = sockets
        .iter()
        .enumerate()
        .find_map(|(i, s)| {
            let mut buf = [0u8; 512];
            while let Ok(n) = s.recv(&mut buf) {
                let line = String::from_utf8_lossy(&buf[..n]).into_owned();
                if let Some((_, cookie)) = line.rsplit_once("with the cookie ") {
                    return Some((i, cookie.to_owned()));
                }
            }
            None
        })
        .expect("a source refused by the cap");
    assert_eq!(cookie.len(), 16, "{cookie}");
    // Back with it: in (sent again if a datagram is lost on the way).
    let joined = format!("* u{i} joined");
    let until = Instant::now() + T;
    'joining: loop {
        assert!(Instant::now() < until, "never joined");
        sockets[i]
            .send_to(format!("u{i}\t{cookie}").as_bytes(), udp)
            .unwrap();
        while let Ok(line) = room.stdout.recv_timeout(Duration::from_millis(500)) {
            if line == joined {
                break 'joining;
            }
        }
    }
}

/// chat_room_client turned away by the UDP cap comes back with its
/// cookie by itself: every client joins.
#[test]
fn chat_room_clients_past_the_udp_cap_join_with_their_cookies() {
    let room = Program::start(
        "chat_room",
        &["--listen", "udp://127.0.0.1:0", "--udp-joins", "0.1"],
    );
    let udp = format!("udp://{}", room.listening("udp"));
    // A burst below one join: every client is turned away first.
    let clients: Vec<_> = ["c0", "c1", "c2"]
        .into_iter()
        .map(|name| Program::start("chat_room_client", &["--addr", &udp, "--name", name]))
        .collect();
    let mut joined = std::collections::HashSet::new();
    while joined.len() < 3 {
        let line = room.line();
        for name in ["c0", "c1", "c2"] {
            if line.contains(name) && line.ends_with(" joined") {
                joined.insert(name);
            }
        }
    }
    room.wait_stderr("too many joining over UDP");
    drop(clients);
}

/// A room on TCP and UDP with `--udp-joins JOINS`: it, and its UDP
/// address.
fn room_with_udp_joins(joins: &str) -> (Program, std::net::SocketAddr) {
    let room = Program::start(
        "chat_room",
        &[
            "--listen",
            "tcp://127.0.0.1:0",
            "--listen",
            "udp://127.0.0.1:0",
            "--udp-joins",
            joins,
        ],
    );
    let _tcp = room.listening("tcp");
    let udp = room.listening("udp").parse().unwrap();
    (room, udp)
}

/// `n` UDP sockets on loopback, each a source of its own, reading with a
/// short timeout.
fn udp_sources(n: usize) -> Vec<std::net::UdpSocket> {
    (0..n)
        .map(|_| {
            let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            s.set_read_timeout(Some(Duration::from_millis(300)))
                .unwrap();
            s
        })
        .collect()
}

/// The lines the room prints until it is quiet for half a second.
fn room_lines_until_quiet(room: &Program) -> Vec<String> {
    let mut lines = Vec::new();
    while let Ok(line) = room.stdout.recv_timeout(Duration::from_millis(500)) {
        lines.push(line);
    }
    lines
}

/// Certificates written by `make_certs` into a fresh directory.
struct Certs {
    dir: PathBuf,
}

impl Certs {
    fn make() -> Certs {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("converse-make-certs-{}-{n}", std::process::id()));
        let mut p = Program::start("make_certs", &["--out", dir.to_str().unwrap()]);
        for name in [
            "ca.pem",
            "server.pem",
            "server.key",
            "client.pem",
            "client.key",
        ] {
            assert!(p.line().ends_with(name));
        }
        p.expect_success();
        #[cfg(unix)]
        for (name, mode) in [
            ("ca.pem", 0o644),
            ("server.pem", 0o644),
            ("server.key", 0o600),
            ("client.pem", 0o644),
            ("client.key", 0o600),
        ] {
            use std::os::unix::fs::PermissionsExt;
            let meta = std::fs::metadata(dir.join(name)).unwrap();
            assert_eq!(meta.permissions().mode() & 0o777, mode, "{name}");
        }
        Certs { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).to_str().unwrap().to_owned()
    }

    /// `--tls-cert server.pem --tls-key server.key`, and `--tls-ca` for
    /// mutual TLS.
    fn server_args(&self, mutual: bool) -> Vec<String> {
        let mut v = vec![
            "--tls-cert".to_owned(),
            self.path("server.pem"),
            "--tls-key".to_owned(),
            self.path("server.key"),
        ];
        if mutual {
            v.extend(["--tls-ca".to_owned(), self.path("ca.pem")]);
        }
        v
    }

    /// `--tls-ca ca.pem`, and the client certificate if `with_cert`.
    fn client_args(&self, with_cert: bool) -> Vec<String> {
        let mut v = vec!["--tls-ca".to_owned(), self.path("ca.pem")];
        if with_cert {
            v.extend([
                "--tls-cert".to_owned(),
                self.path("client.pem"),
                "--tls-key".to_owned(),
                self.path("client.key"),
            ]);
        }
        v
    }
}

impl Drop for Certs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn args<'a>(fixed: &[&'a str], more: &'a [String]) -> Vec<&'a str> {
    fixed
        .iter()
        .copied()
        .chain(more.iter().map(String::as_str))
        .collect()
}

#[test]
fn hello_over_tls_with_certificates_from_make_certs() {
    let certs = Certs::make();
    let server_args = certs.server_args(false);
    let mut server = Program::start(
        "hello_server",
        &args(
            &["--addr", "127.0.0.1:0", "--transport", "tls"],
            &server_args,
        ),
    );
    let addr = server.listening("tls");
    // The client verifies the server's certificate for 127.0.0.1 against
    // the CA; and for localhost, which the certificate names too.
    let client_args = certs.client_args(false);
    let mut client = Program::start(
        "hello_client",
        &args(&["--addr", &format!("tls://{addr}")], &client_args),
    );
    assert_eq!(client.line(), "hi");
    client.expect_success();
    assert_eq!(server.line(), "hello!");
    server.expect_success();

    // Without --tls-ca the client trusts only the public roots: refused,
    // in one line that names the address and the reason.
    let server = Program::start(
        "hello_server",
        &args(
            &["--addr", "127.0.0.1:0", "--transport", "tls"],
            &server_args,
        ),
    );
    let addr = server.listening("tls");
    let mut client = Program::start("hello_client", &["--addr", &addr, "--transport", "tls"]);
    assert!(!client.wait().success());
    let stderr = client.stderr();
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains(&addr) && stderr.contains("unknown issuer"),
        "{stderr}"
    );
    drop(server);

    // A TLS server without a certificate says what it needs.
    let mut server = Program::start(
        "hello_server",
        &["--addr", "127.0.0.1:0", "--transport", "tls"],
    );
    assert!(!server.wait().success());
    assert!(
        server.stderr().contains("--tls-cert"),
        "{}",
        server.stderr()
    );
}

/// The hello and chat programs over QUIC, with the same certificate
/// options as TLS; a chat client with a certificate under mutual TLS.
#[test]
fn hello_and_a_mutual_tls_chat_over_quic() {
    let certs = Certs::make();
    let mut server = Program::start(
        "hello_server",
        &args(
            &["--addr", "127.0.0.1:0", "--transport", "quic"],
            &certs.server_args(false),
        ),
    );
    let addr = server.listening("quic");
    let client_args = certs.client_args(false);
    let mut client = Program::start(
        "hello_client",
        &args(&["--addr", &format!("quic://{addr}")], &client_args),
    );
    assert_eq!(client.line(), "hi");
    client.expect_success();
    assert_eq!(server.line(), "hello!");
    server.expect_success();

    let mut server = Program::start(
        "chat_server",
        &args(
            &["--addr", "127.0.0.1:0", "--once", "--transport", "quic"],
            &certs.server_args(true),
        ),
    );
    let addr = server.listening("quic");
    let mut client = Program::start(
        "chat_client",
        &args(
            &["--addr", &addr, "--transport", "quic"],
            &certs.client_args(true),
        ),
    );
    client.write("hello over QUIC");
    assert_eq!(server.line(), "hello over QUIC");
    server.write("好");
    assert_eq!(client.line(), "好");
    client.write("bye");
    assert_eq!(server.line(), "bye");
    client.expect_success();
    server.expect_success();
}

#[test]
fn a_mutual_tls_chat_and_a_client_without_a_certificate() {
    let certs = Certs::make();
    let server_args = certs.server_args(true);
    let mut server = Program::start(
        "chat_server",
        &args(
            &["--addr", "127.0.0.1:0", "--transport", "tls"],
            &server_args,
        ),
    );
    let addr = server.listening("tls");

    // No client certificate: refused on both sides, with the reason.
    let no_cert = certs.client_args(false);
    let mut stranger = Program::start(
        "chat_client",
        &args(&["--addr", &addr, "--transport", "tls"], &no_cert),
    );
    stranger.write("let me in");
    assert!(!stranger.wait().success());
    assert!(
        stranger.stderr().contains("requires a client certificate"),
        "{}",
        stranger.stderr()
    );
    server.wait_stderr("no client certificate");

    // With one: the chat goes on as over TCP.
    let with_cert = certs.client_args(true);
    let mut client = Program::start(
        "chat_client",
        &args(&["--addr", &addr, "--transport", "tls"], &with_cert),
    );
    client.write("hello over mutual TLS");
    assert_eq!(server.line(), "hello over mutual TLS");
    server.write("verified");
    assert_eq!(client.line(), "verified");
    client.write("bye");
    assert_eq!(server.line(), "bye");
    client.expect_success();
}

#[test]
fn one_room_over_tcp_udp_tls_and_quic() {
    let certs = Certs::make();
    let server_args = certs.server_args(true);
    let room = Program::start(
        "chat_room",
        &args(
            &[
                "--listen",
                "tcp://127.0.0.1:0",
                "--listen",
                "udp://127.0.0.1:0",
                "--listen",
                "tls://127.0.0.1:0",
                "--listen",
                "quic://127.0.0.1:0",
            ],
            &server_args,
        ),
    );
    let tcp = format!("tcp://{}", room.listening("tcp"));
    let udp = format!("udp://{}", room.listening("udp"));
    let tls = format!("tls://{}", room.listening("tls"));
    let quic = format!("quic://{}", room.listening("quic"));
    let with_cert = certs.client_args(true);
    let join = |url: &str, name: &str| {
        let extra: &[String] = if url.starts_with("tls") || url.starts_with("quic") {
            &with_cert
        } else {
            &[]
        };
        let p = Program::start(
            "chat_room_client",
            &args(&["--addr", url, "--name", name], extra),
        );
        assert_eq!(room.line(), format!("* {name} joined"), "{}", p.stderr());
        p
    };
    let mut alice = join(&tls, "alice");
    let bob = join(&tcp, "bob");
    assert_eq!(alice.line(), "* bob joined");
    let carol = join(&udp, "carol");
    assert_eq!(alice.line(), "* carol joined");
    assert_eq!(bob.line(), "* carol joined");
    let mut dave = join(&quic, "dave");
    for p in [&alice, &bob, &carol] {
        assert_eq!(p.line(), "* dave joined");
    }
    alice.write("hello from TLS");
    for p in [&room, &bob, &carol, &dave] {
        assert_eq!(p.line(), "alice: hello from TLS");
    }
    dave.write("and from QUIC");
    for p in [&room, &alice, &bob, &carol] {
        assert_eq!(p.line(), "dave: and from QUIC");
    }
    dave.write("bye");
    for p in [&room, &alice, &bob, &carol] {
        assert_eq!(p.line(), "* dave left");
    }
    dave.expect_success();
    // Plaintext on the TLS port: one line on stderr, nobody joins.
    let mut plain = std::net::TcpStream::connect(tls.trim_start_matches("tls://")).unwrap();
    plain.write_all(b"\x00\x00\x00\x05mallo").unwrap();
    room.wait_stderr("not TLS");
    alice.write("bye");
    assert_eq!(room.line(), "* alice left");
    assert_eq!(bob.line(), "* alice left");
    alice.expect_success();
}

/// `true` if headless Chromium, its driver and Python's Selenium are here
/// (otherwise skips, or fails under `CONVERSE_REQUIRE_ALL=1`).
fn have_browser() -> bool {
    if !have_python() {
        return false;
    }
    let selenium = Command::new("python3")
        .args(["-c", "import selenium"])
        .output()
        .is_ok_and(|o| o.status.success());
    let chromium = ["/usr/bin/chromium", "/usr/bin/chromedriver"]
        .iter()
        .all(|p| std::path::Path::new(p).exists());
    if !(selenium && chromium) {
        skip("headless Chromium (chromium, chromium-driver) and Python's selenium are needed");
        return false;
    }
    true
}

/// The browser's side: opens the room's page, joins as "browser", waits to
/// see the terminal member's line, says something back, saves a screenshot.
const BROWSER: &str = r#"
import sys, tempfile
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

url, screenshot = sys.argv[1], sys.argv[2]
options = webdriver.ChromeOptions()
options.binary_location = "/usr/bin/chromium"
for flag in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--disable-quic", "--no-first-run", "--window-size=900,600",
             "--user-data-dir=" + tempfile.mkdtemp()]:
    options.add_argument(flag)
driver = webdriver.Chrome(service=Service(executable_path="/usr/bin/chromedriver"), options=options)
try:
    driver.set_page_load_timeout(20)
    driver.get(url)
    wait = WebDriverWait(driver, 20)
    log = lambda: driver.find_element(By.ID, "log").text
    box = driver.find_element(By.ID, "line")
    box.send_keys("browser", Keys.ENTER)
    wait.until(lambda d: "you joined as browser" in log())
    print("joined", flush=True)
    wait.until(lambda d: "terminal: hello, browser" in log())
    print("heard", flush=True)
    box.send_keys("hello from a real browser", Keys.ENTER)
    wait.until(lambda d: "browser: hello from a real browser" in log())
    driver.save_screenshot(screenshot)
    print("said", flush=True)
    wait.until(lambda d: "* terminal left" in log())
    driver.save_screenshot(screenshot)
    print("done", flush=True)
finally:
    driver.quit()
"#;

/// A person in a real browser and a terminal client over TCP in one room:
/// the page is served by the room, joins over a WebSocket, hears the TCP
/// member and is heard by it. A screenshot is kept under
/// `target/browser/`.
#[test]
fn a_browser_and_a_terminal_client_chat_in_one_room() {
    if !have_browser() {
        return;
    }
    let room = Program::start(
        "chat_room",
        &[
            "--listen",
            "tcp://127.0.0.1:0",
            "--listen",
            "ws://127.0.0.1:0",
        ],
    );
    let tcp = format!("tcp://{}", room.listening("tcp"));
    let ws = room.listening("ws");
    let mut terminal = Program::start("chat_room_client", &["--addr", &tcp, "--name", "terminal"]);
    assert_eq!(room.line(), "* terminal joined");

    let dir = example_path("chat_room")
        .parent()
        .and_then(|p| p.parent())
        .and_then(|p| p.parent())
        .expect("the target directory")
        .join("browser");
    std::fs::create_dir_all(&dir).unwrap();
    let shot = dir.join("chat_room.png");
    let _ = std::fs::remove_file(&shot);
    let mut browser = Program::spawn(
        "browser",
        Command::new("python3").args([
            "-c",
            BROWSER,
            &format!("http://{ws}/"),
            shot.to_str().unwrap(),
        ]),
    );
    let wait_line = |p: &Program, want: &str| {
        let until = Instant::now() + 4 * T;
        loop {
            assert!(
                Instant::now() < until,
                "{}: never {want:?}; stderr: {}",
                p.name,
                p.stderr()
            );
            if let Ok(line) = p.stdout.recv_timeout(Duration::from_millis(200)) {
                if line == want {
                    return;
                }
            }
        }
    };
    wait_line(&browser, "joined");
    assert_eq!(terminal.line(), "* browser joined");
    terminal.write("hello, browser");
    wait_line(&browser, "heard");
    wait_line(&browser, "said");
    assert_eq!(terminal.line(), "browser: hello from a real browser");
    terminal.write("bye");
    wait_line(&browser, "done");
    terminal.expect_success();
    let status = browser.wait();
    assert!(status.success(), "the browser script: {}", browser.stderr());
    let png = std::fs::read(&shot).expect("a screenshot");
    assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
    println!("screenshot: {}", shot.display());
}

#[test]
fn hello_and_chat_over_websocket() {
    let mut server = Program::start(
        "hello_server",
        &["--addr", "127.0.0.1:0", "--transport", "ws"],
    );
    let addr = server.listening("ws");
    let mut client = Program::start("hello_client", &["--addr", &format!("ws://{addr}")]);
    assert_eq!(client.line(), "hi");
    client.expect_success();
    assert_eq!(server.line(), "hello!");
    server.expect_success();

    let mut server = Program::start(
        "chat_server",
        &["--addr", "127.0.0.1:0", "--once", "--transport", "ws"],
    );
    let addr = server.listening("ws");
    let mut client = Program::start("chat_client", &["--addr", &addr, "--transport", "ws"]);
    client.write("over a websocket");
    assert_eq!(server.line(), "over a websocket");
    server.write("bye");
    assert_eq!(client.line(), "bye");
    client.expect_success();
    server.expect_success();
}

/// Waits until `p`'s stderr says `text` `n` times, bounded.
fn wait_stderr_count(p: &Program, text: &str, n: usize) {
    let until = Instant::now() + T;
    while p.stderr().matches(text).count() < n {
        assert!(
            Instant::now() < until,
            "{}: stderr never said {text:?} {n} times: {}",
            p.name,
            p.stderr()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Two rooms (members over TCP on one, over UDP on the other) relaying
/// through one nats-server are one room; names stay apart (`alice@A`,
/// `alice@B`), every line reaches every member in order; the NATS server
/// killed mid-chat leaves each room going on alone, and the relay comes
/// back when the server does, without announcing anyone twice.
/// The relay's own connection is not a member: the name deadline never
/// closes it.
#[test]
fn the_relay_outlives_the_name_deadline() {
    if !common::nats::have_nats_server() {
        return;
    }
    let nats = common::nats::NatsServer::start();
    let relay = nats.url("chat.deadline");
    let args = |label: &'static str| {
        [
            "--listen",
            "tcp://127.0.0.1:0",
            "--relay",
            &relay,
            "--relay-label",
            label,
            "--name-timeout",
            "1",
        ]
        .map(str::to_owned)
    };
    let a_args = args("A");
    let b_args = args("B");
    let a = Program::start(
        "chat_room",
        &a_args.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let b = Program::start(
        "chat_room",
        &b_args.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let tcp = format!("tcp://{}", a.listening("tcp"));
    let _ = b.listening("tcp");
    a.wait_stderr("relay: connected");
    b.wait_stderr("relay: connected");
    // Past the name deadline, twice over.
    std::thread::sleep(Duration::from_millis(2500));
    let mut alice = Program::start("chat_room_client", &["--addr", &tcp, "--name", "alice"]);
    assert_eq!(a.line(), "* alice joined");
    assert_eq!(b.line(), "* alice@A joined");
    alice.write("still relayed");
    assert_eq!(b.line(), "alice@A: still relayed");
    assert!(!a.stderr().contains("no name"), "{}", a.stderr());
    assert!(!a.stderr().contains("relay down"), "{}", a.stderr());
}

#[test]
fn two_rooms_relaying_through_nats_are_one_room_and_outlive_the_nats_server() {
    if !common::nats::have_nats_server() {
        return;
    }
    let nats = common::nats::NatsServer::start();
    let relay = nats.url("chat.rooms");
    let a = Program::start(
        "chat_room",
        &[
            "--listen",
            "tcp://127.0.0.1:0",
            "--relay",
            &relay,
            "--relay-label",
            "A",
        ],
    );
    let b = Program::start(
        "chat_room",
        &[
            "--listen",
            "udp://127.0.0.1:0",
            "--relay",
            &relay,
            "--relay-label",
            "B",
        ],
    );
    let tcp = format!("tcp://{}", a.listening("tcp"));
    let udp = format!("udp://{}", b.listening("udp"));
    a.wait_stderr("relay: connected");
    b.wait_stderr("relay: connected");

    let mut alice = Program::start("chat_room_client", &["--addr", &tcp, "--name", "alice"]);
    assert_eq!(a.line(), "* alice joined");
    assert_eq!(b.line(), "* alice@A joined");
    let mut bob = Program::start("chat_room_client", &["--addr", &udp, "--name", "bob"]);
    assert_eq!(b.line(), "* bob joined");
    assert_eq!(a.line(), "* bob@B joined");
    assert_eq!(alice.line(), "* bob@B joined");
    // A name is unique across the relay: a second alice (any case) on the
    // other server is refused.
    let mut impostor = Program::start("chat_room_client", &["--addr", &udp, "--name", "Alice"]);
    assert!(!impostor.wait().success());
    assert!(
        impostor.stderr().contains("the name is taken"),
        "{}",
        impostor.stderr()
    );
    let mut carol = Program::start("chat_room_client", &["--addr", &udp, "--name", "carol"]);
    assert_eq!(b.line(), "* carol joined");
    assert_eq!(bob.line(), "* carol joined");
    assert_eq!(a.line(), "* carol@B joined");
    assert_eq!(alice.line(), "* carol@B joined");

    // Every line reaches every member on every server, in order.
    for i in 0..5 {
        alice.write(&format!("hello {i}"));
    }
    for i in 0..5 {
        assert_eq!(a.line(), format!("alice: hello {i}"));
        assert_eq!(b.line(), format!("alice@A: hello {i}"));
        assert_eq!(bob.line(), format!("alice@A: hello {i}"));
        assert_eq!(carol.line(), format!("alice@A: hello {i}"));
    }
    bob.write("hi from B");
    assert_eq!(b.line(), "bob: hi from B");
    assert_eq!(a.line(), "bob@B: hi from B");
    assert_eq!(alice.line(), "bob@B: hi from B");
    assert_eq!(carol.line(), "bob: hi from B");

    // The NATS server goes: each room says so and goes on alone.
    let port = nats.kill();
    a.wait_stderr("relay down");
    b.wait_stderr("relay down");
    alice.write("only here");
    assert_eq!(a.line(), "alice: only here");
    bob.write("only there");
    assert_eq!(b.line(), "bob: only there");
    assert_eq!(carol.line(), "bob: only there");
    // Carol leaves meanwhile.
    carol.write("bye");
    assert_eq!(b.line(), "* carol left");
    assert_eq!(bob.line(), "* carol left");
    carol.expect_success();

    // It comes back: so does the relay; room A catches up with what it
    // missed, and nobody is announced twice.
    let _nats = common::nats::NatsServer::start_with(Some(port), "");
    wait_stderr_count(&a, "relay: connected", 2);
    wait_stderr_count(&b, "relay: connected", 2);
    assert_eq!(a.line(), "* carol@B left");
    assert_eq!(alice.line(), "* carol@B left");
    alice.write("back");
    assert_eq!(a.line(), "alice: back");
    assert_eq!(b.line(), "alice@A: back");
    assert_eq!(bob.line(), "alice@A: back");

    bob.write("bye");
    assert_eq!(b.line(), "* bob left");
    assert_eq!(a.line(), "* bob@B left");
    assert_eq!(alice.line(), "* bob@B left");
    bob.expect_success();
    alice.close_stdin();
    alice.expect_success();
}

/// A room whose server stops for good (the process killed, the NATS
/// server still up) falls silent: after three heartbeats the other rooms
/// let its members leave.
#[test]
fn members_of_a_room_whose_server_died_leave_the_other_rooms() {
    if !common::nats::have_nats_server() {
        return;
    }
    let nats = common::nats::NatsServer::start();
    let relay = nats.url("chat.rooms");
    let start = |label: &str| {
        Program::start(
            "chat_room",
            &[
                "--listen",
                "tcp://127.0.0.1:0",
                "--relay",
                &relay,
                "--relay-label",
                label,
                "--relay-heartbeat",
                "1",
            ],
        )
    };
    let a = start("A");
    let c = start("C");
    let tcp_a = format!("tcp://{}", a.listening("tcp"));
    let tcp_c = format!("tcp://{}", c.listening("tcp"));
    a.wait_stderr("relay: connected");
    c.wait_stderr("relay: connected");
    let mut alice = Program::start("chat_room_client", &["--addr", &tcp_a, "--name", "alice"]);
    assert_eq!(a.line(), "* alice joined");
    assert_eq!(c.line(), "* alice@A joined");
    let carol = Program::start("chat_room_client", &["--addr", &tcp_c, "--name", "carol"]);
    assert_eq!(c.line(), "* carol joined");
    assert_eq!(a.line(), "* carol@C joined");
    assert_eq!(alice.line(), "* carol@C joined");

    // Room C's server goes, and says nothing.
    drop(c);
    drop(carol);
    assert_eq!(a.line(), "* carol@C left");
    assert_eq!(alice.line(), "* carol@C left");
    a.wait_stderr("the room at C has not been heard");
    alice.close_stdin();
    alice.expect_success();
}

#[allow(dead_code)]
#[path = "../examples/common/room.rs"]
mod room;

/// Flood control, on a fake clock: a burst at once, then the rate; a
/// member in debt waits exactly as long as its debt takes to repay; past
/// a burst's worth of debt, nothing more is taken.
#[test]
fn a_flood_limit_lets_a_burst_through_then_the_rate() {
    use room::flood::{cost, Bucket, Limit, Take};
    let limit = Limit::new(10.0, 20.0).unwrap();
    assert_eq!(Limit::new(0.0, 20.0), None);
    assert_eq!(Limit::new(10.0, f64::INFINITY), None);
    let t0 = Instant::now();
    let mut b = Bucket::full(&limit, t0);
    for _ in 0..20 {
        assert_eq!(b.take(1.0, &limit, t0), Take::Within);
    }
    // The 21st goes into debt: a tenth of a second to repay.
    assert_eq!(
        b.take(1.0, &limit, t0),
        Take::Over(Duration::from_millis(100))
    );
    // Debt deepens to one burst, and no further.
    for _ in 0..19 {
        assert!(matches!(b.take(1.0, &limit, t0), Take::Over(_)));
    }
    assert_eq!(b.take(1.0, &limit, t0), Take::Refused);
    // Two seconds repay twenty: at zero, the next is debt again.
    let t2 = t0 + Duration::from_secs(2);
    assert_eq!(
        b.take(1.0, &limit, t2),
        Take::Over(Duration::from_millis(100))
    );
    // A long silence refills to the burst, no more.
    let later = t2 + Duration::from_secs(3600);
    for _ in 0..19 {
        assert_eq!(b.take(1.0, &limit, later), Take::Within);
    }
    // Larger lines cost more: one, and one per KiB.
    assert_eq!(cost(0), 1.0);
    assert_eq!(cost(1023), 1.0);
    assert_eq!(cost(64 * 1024), 65.0);
}

/// A cookie is good for its source, in its period and the next, and for
/// no other source.
#[test]
fn a_cookie_proves_one_source_for_a_while() {
    use room::cookie::{Jar, PERIOD};
    let t0 = Instant::now();
    let jar = Jar::new(t0);
    let (a, b): (std::net::SocketAddr, std::net::SocketAddr) = (
        "127.0.0.1:1000".parse().unwrap(),
        "127.0.0.1:1001".parse().unwrap(),
    );
    let cookie = jar.make(a, t0);
    assert!(jar.check(&cookie, a, t0));
    assert!(!jar.check(&cookie, b, t0), "another source");
    assert!(jar.check(&cookie, a, t0 + PERIOD), "the next period");
    assert!(!jar.check(&cookie, a, t0 + PERIOD * 2), "expired");
    assert!(!jar.check("0000000000000000", a, t0));
    // Another room's jar (another key) does not take it.
    assert!(!Jar::new(t0).check(&cookie, a, t0));
}

/// A member behind on its reading is stuck only after the stall time
/// with nothing written to it; any progress starts the wait again.
#[test]
fn a_member_is_stuck_only_without_progress_for_the_stall_time() {
    use room::flood::Behind;
    let stall = Duration::from_secs(5);
    let t0 = Instant::now();
    let mut b = Behind::new(1000, t0);
    assert!(!b.stuck(1000, t0 + Duration::from_secs(4), stall));
    // Progress at 4 s: the five seconds count from then.
    assert!(!b.stuck(1500, t0 + Duration::from_secs(4), stall));
    assert!(!b.stuck(1500, t0 + Duration::from_secs(8), stall));
    assert!(b.stuck(1500, t0 + Duration::from_secs(9), stall));
}

#[test]
fn names_and_visible_text() {
    use room::names::{refusal, same, shown, visible};
    for ok in [
        "alice",
        "明威",
        "bob smith",
        "o'brien",
        "x".repeat(32).as_str(),
    ] {
        assert_eq!(refusal(ok), None, "{ok}");
    }
    for bad in [
        "",
        " alice",
        "alice ",
        "a\nb",
        "a\u{1b}[2J",
        "a\u{7f}",
        "a\u{85}",
        "a\u{200b}b",
        "a\u{202e}b",
        "\u{feff}a",
        "bob@A",
        "bob: hi",
        "* bob",
        "x".repeat(33).as_str(),
    ] {
        assert!(refusal(bad).is_some(), "{bad:?}");
    }
    assert!(same("Alice", "aLICE") && !same("alice", "alice2"));
    assert!(matches!(
        visible("你好, bob"),
        std::borrow::Cow::Borrowed(_)
    ));
    assert_eq!(
        visible("a\tb\n\u{1b}[0m\u{202e}"),
        "a\\u{9}b\\u{a}\\u{1b}[0m\\u{202e}"
    );
    assert_eq!(shown(&"y".repeat(50)), format!("{}…", "y".repeat(40)));
    assert_eq!(shown("a\nb"), "a\\u{a}b");
}

/// A name that could pass for another member's or forge the room's lines
/// is refused with its reason, on one line, and the member is closed;
/// nobody else hears of it.
#[test]
fn names_that_could_lie_are_refused_with_the_reason() {
    let room = Program::start("chat_room", &["--addr", "127.0.0.1:0"]);
    let addr = room.listening("tcp");
    let url = format!("tcp://{addr}");
    let alice = Program::start("chat_room_client", &["--addr", &addr, "--name", "alice"]);
    assert_eq!(room.line(), "* alice joined");
    let long = "x".repeat(4000);
    for (name, why) in [
        ("alice", "the name is taken"),
        ("ALICE", "the name is taken"),
        ("bob\n* alice left", "control or invisible"),
        ("\u{1b}[2Jbob", "control or invisible"),
        ("bo\u{200b}b", "control or invisible"),
        (long.as_str(), "at most 32 characters"),
        ("bob@A", "'@'"),
        ("bob: hi", "':'"),
        ("* bob", "'*'"),
        (" bob", "start or end with a space"),
    ] {
        let mut c = converse::connect_with(&url, &config()).unwrap();
        c.set_read_timeout(Some(T)).unwrap();
        c.send_text(name).unwrap();
        let line = c.recv_text().unwrap().expect("the refusal");
        assert!(
            line.starts_with("* ") && line.contains(" refused: ") && line.contains(why),
            "{name:?}: {line}"
        );
        assert!(
            !line.chars().any(|c| c.is_control()) && line.chars().count() < 200,
            "{line:?}"
        );
        assert_eq!(c.recv_text().unwrap(), None, "{name:?}: closed after it");
    }
    room.wait_stderr("refused: the name is taken");
    // Nobody heard of them: the next lines are bob's.
    let mut bob = Program::start("chat_room_client", &["--addr", &addr, "--name", "bob"]);
    assert_eq!(room.line(), "* bob joined");
    assert_eq!(alice.line(), "* bob joined");
    // The client told its name is taken says so, and exits 1.
    let mut alice2 = Program::start("chat_room_client", &["--addr", &addr, "--name", "Alice"]);
    assert!(!alice2.wait().success());
    assert!(
        alice2
            .stderr()
            .contains("the room refused the name: the name is taken"),
        "{}",
        alice2.stderr()
    );
    bob.write("still only one alice?");
    assert_eq!(alice.line(), "bob: still only one alice?");
    for mut member in [alice, bob] {
        member.close_stdin();
        member.expect_success();
    }
}

/// A line cannot forge others: line ends, terminal escapes and direction
/// overrides reach every member, and the server's own output, as visible
/// escapes on the one line of the one message.
#[test]
fn a_line_is_one_line_with_hidden_characters_shown() {
    let room = Program::start("chat_room", &["--addr", "127.0.0.1:0"]);
    let addr = room.listening("tcp");
    let mut alice = Program::start("chat_room_client", &["--addr", &addr, "--name", "alice"]);
    assert_eq!(room.line(), "* alice joined");
    let mut mallory = converse::connect_with(&format!("tcp://{addr}"), &config()).unwrap();
    mallory.send_text("mallory").unwrap();
    assert_eq!(room.line(), "* mallory joined");
    assert_eq!(alice.line(), "* mallory joined");
    mallory
        .send_text("hi\n* alice left\r\u{1b}[2J\u{202e}olleh")
        .unwrap();
    let shown = "mallory: hi\\u{a}* alice left\\u{d}\\u{1b}[2J\\u{202e}olleh";
    assert_eq!(room.line(), shown);
    assert_eq!(alice.line(), shown);
    mallory.close().unwrap();
    assert_eq!(alice.line(), "* mallory left");
    alice.close_stdin();
    alice.expect_success();
}

/// `chat_room_client` shows what a hostile room sends as it was sent: one
/// message, one line, nothing the terminal would obey.
#[test]
fn chat_room_client_shows_a_hostile_rooms_escapes_instead_of_obeying_them() {
    let listener = converse::listen_with("tcp://127.0.0.1:0", &config()).unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let fake = spawn(move || {
        let mut c = listener.accept().unwrap();
        c.set_read_timeout(Some(T)).unwrap();
        assert_eq!(c.recv_text().unwrap().as_deref(), Some("alice"));
        c.send_text("\u{1b}[31mred\n* bob left\u{7}").unwrap();
        // The client's bye, then its end.
        while c.recv().unwrap().is_some() {}
        c.close().unwrap();
    });
    let mut alice = Program::start("chat_room_client", &["--addr", &addr, "--name", "alice"]);
    assert_eq!(alice.line(), "\\u{1b}[31mred\\u{a}* bob left\\u{7}");
    alice.close_stdin();
    alice.expect_success();
    fake.join();
}

/// At most --max-unnamed connections wait without a name: past it the
/// oldest go, and a newcomer that names itself gets in.
#[test]
fn past_the_cap_the_oldest_nameless_connections_go() {
    let room = Program::start(
        "chat_room",
        &["--addr", "127.0.0.1:0", "--max-unnamed", "3"],
    );
    let addr = room.listening("tcp");
    let silent: Vec<_> = (0..5)
        .map(|_| {
            let s = std::net::TcpStream::connect(&addr).unwrap();
            s.set_read_timeout(Some(T)).unwrap();
            s
        })
        .collect();
    // The first two are ended (a reset or an end: nothing is said to them).
    for mut s in silent.into_iter().take(2) {
        let mut buf = [0u8; 16];
        match s.read(&mut buf) {
            Ok(0) => {}
            Err(e)
                if !matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            other => panic!("{other:?}"),
        }
    }
    wait_stderr_count(&room, "too many connections without a name", 2);
    let mut alice = Program::start("chat_room_client", &["--addr", &addr, "--name", "alice"]);
    assert_eq!(room.line(), "* alice joined");
    alice.close_stdin();
    alice.expect_success();
}

/// A connection that never says its name is closed after --name-timeout;
/// the members go on.
#[test]
fn a_connection_that_never_names_itself_is_closed() {
    let room = Program::start(
        "chat_room",
        &["--addr", "127.0.0.1:0", "--name-timeout", "0.3"],
    );
    let addr = room.listening("tcp");
    let mut alice = Program::start("chat_room_client", &["--addr", &addr, "--name", "alice"]);
    assert_eq!(room.line(), "* alice joined");
    let mut silent = std::net::TcpStream::connect(&addr).unwrap();
    silent.set_read_timeout(Some(T)).unwrap();
    assert_eq!(
        read_to_end(&mut silent).unwrap(),
        Vec::<u8>::new(),
        "closed, told nothing"
    );
    room.wait_stderr("closed: no name within 300ms");
    alice.write("still here");
    assert_eq!(room.line(), "alice: still here");
    alice.close_stdin();
    alice.expect_success();
}

/// A stderr that nobody reads never stops the room: its diagnostics wait
/// in a queue bounded in bytes (and are dropped, counted, past it) while
/// the members chat.
#[test]
fn a_stderr_nobody_reads_never_stops_the_room() {
    let mut command = Command::new(example_path("chat_room"));
    command.args(["--addr", "127.0.0.1:0"]);
    let mut room = Program::spawn_holding_stderr("chat_room", &mut command);
    let addr = room.listening("tcp");
    let url = format!("tcp://{addr}");
    // Each refused name is a diagnostic of about a hundred bytes: far more
    // than a pipe holds (64 KiB).
    let started = Instant::now();
    for i in 0..1500 {
        let mut c = converse::connect_with(&url, &config()).unwrap();
        c.set_read_timeout(Some(T)).unwrap();
        c.send_text(&format!("refused@{i}")).unwrap();
        let line = c.recv_text().unwrap().expect("the refusal");
        assert!(line.contains("refused"), "{line}");
        assert!(started.elapsed() < 6 * T, "{i} refusals took too long");
    }
    let mut alice = Program::start("chat_room_client", &["--addr", &addr, "--name", "alice"]);
    assert_eq!(room.line(), "* alice joined");
    let bob = Program::start("chat_room_client", &["--addr", &addr, "--name", "bob"]);
    assert_eq!(room.line(), "* bob joined");
    assert_eq!(alice.line(), "* bob joined");
    alice.write("hello");
    assert_eq!(bob.line(), "alice: hello");
    // What stderr said, once read: the refusals (some perhaps dropped and
    // counted, never lost silently).
    room.read_stderr();
    room.wait_stderr("refused@1499");
    alice.close_stdin();
    alice.expect_success();
}

/// WebSocket to the letter, through the room: a text frame that is not
/// UTF-8 is closed with 1007, a frame over the limit with 1009 (before
/// anything is allocated), and a bad upgrade is answered 400.
#[test]
fn the_rooms_websocket_listener_answers_to_the_letter() {
    let room = Program::start("chat_room", &["--listen", "ws://127.0.0.1:0"]);
    let addr: std::net::SocketAddr = room.listening("ws").parse().unwrap();
    let mut huge = vec![0x81, 0x80 | 127];
    huge.extend_from_slice(&(1u64 << 62).to_be_bytes());
    huge.extend_from_slice(&[1, 2, 3, 4]);
    for (what, name, bad, code) in [
        (
            "text that is not UTF-8",
            "bob",
            common::ws::client_frame(0x81, &[b'a', 0xff]),
            1007u16,
        ),
        ("a 2^62-byte frame header", "carol", huge, 1009),
    ] {
        let mut s = common::ws::raw_upgraded(addr);
        s.write_all(&common::ws::client_frame(0x81, name.as_bytes()))
            .unwrap();
        assert_eq!(room.line(), format!("* {name} joined"), "{what}");
        s.write_all(&bad).unwrap();
        let got = read_to_end(&mut s).unwrap_or_default();
        let mut close = vec![0x88, 0x02];
        close.extend_from_slice(&code.to_be_bytes());
        assert!(
            got.windows(4).any(|w| w == close.as_slice()),
            "{what}: expected a close frame {close:02x?} in {got:02x?}"
        );
        assert_eq!(room.line(), format!("* {name} left"), "{what}");
    }
    // An upgrade without its key.
    let mut s = raw_client(addr);
    s.write_all(
        b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Version: 13\r\n\r\n",
    )
    .unwrap();
    let head = common::ws::read_head(&mut s);
    assert!(head.starts_with("HTTP/1.1 400"), "{head}");
}
