//! A real `nats-server` for the tests and the benches: started on a port
//! the system picks (or a given one, to restart it), ready when it says
//! so, killed on drop. Self-contained, so that the benches include it too.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// A running `nats-server` on 127.0.0.1.
pub struct NatsServer {
    child: Child,
    pub port: u16,
    _conf: Option<ConfFile>,
}

/// A configuration file in the temporary directory, removed on drop.
struct ConfFile(std::path::PathBuf);

impl Drop for ConfFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The server's program, on the `PATH` or where Debian's package puts
/// it; `None` if it does not run here.
pub fn program() -> Option<&'static str> {
    static PROGRAM: std::sync::OnceLock<Option<&'static str>> = std::sync::OnceLock::new();
    *PROGRAM.get_or_init(|| {
        ["nats-server", "/usr/sbin/nats-server"]
            .into_iter()
            .find(|p| {
                Command::new(p)
                    .arg("--version")
                    .output()
                    .is_ok_and(|o| o.status.success())
            })
    })
}

impl NatsServer {
    /// A server on a free port.
    pub fn start() -> NatsServer {
        NatsServer::start_with(None, "")
    }

    /// A server on `port` (a free one if `None`), with extra configuration
    /// lines (`max_payload: 4096`, `authorization { … }`).
    pub fn start_with(port: Option<u16>, conf: &str) -> NatsServer {
        let mut cmd = Command::new(program().unwrap_or("nats-server"));
        cmd.args(["-a", "127.0.0.1", "-p"]);
        cmd.arg(port.map_or("-1".to_string(), |p| p.to_string()));
        if std::env::var_os("CONVERSE_NATS_LOG").is_some() {
            cmd.arg("-DV");
        }
        let conf_file = (!conf.is_empty()).then(|| {
            use std::sync::atomic::{AtomicU64, Ordering};
            static NEXT: AtomicU64 = AtomicU64::new(0);
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let path =
                std::env::temp_dir().join(format!("converse-nats-{}-{n}.conf", std::process::id()));
            std::fs::write(&path, conf).unwrap();
            cmd.arg("-c").arg(&path);
            ConfFile(path)
        });
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // A port just freed by a killed server may take a moment.
        for _ in 0..50 {
            let mut child = cmd.spawn().expect("nats-server starts");
            let stderr = child.stderr.take().unwrap();
            let (tx, rx) = mpsc::channel();
            std::thread::spawn(move || {
                let mut port = None;
                let mut log = std::env::var("CONVERSE_NATS_LOG").ok().and_then(|p| {
                    std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(p)
                        .ok()
                });
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    if let Some(log) = &mut log {
                        use std::io::Write;
                        let _ = writeln!(log, "{line}");
                    }
                    if let Some(rest) = line.split("Listening for client connections on ").nth(1) {
                        port = rest
                            .rsplit(':')
                            .next()
                            .and_then(|p| p.trim().parse::<u16>().ok());
                    }
                    if line.contains("Server is ready") {
                        let _ = tx.send(port);
                    }
                }
            });
            match rx.recv_timeout(Duration::from_secs(10)) {
                Ok(Some(port)) => {
                    return NatsServer {
                        child,
                        port,
                        _conf: conf_file,
                    }
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
        panic!("nats-server did not start");
    }

    /// `nats://127.0.0.1:PORT/SUBJECT`.
    pub fn url(&self, subject: &str) -> String {
        format!("nats://127.0.0.1:{}/{subject}", self.port)
    }

    /// Stops the server at once (as a crash would).
    pub fn kill(mut self) -> u16 {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.port
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
