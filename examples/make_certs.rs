//! Certificates for trying TLS: a CA of your own, a server certificate for
//! `localhost`, `127.0.0.1` and `::1`, and a client certificate for mutual
//! TLS, all signed by that CA, written as PEM files.
//!
//! ```text
//! cargo run --example make_certs -- --out certs
//! # certs/ca.pem certs/server.pem certs/server.key certs/client.pem certs/client.key
//! ```
//!
//! Then a mutual-TLS chat (the server requires a client certificate signed
//! by the CA; the client verifies the server against the same CA):
//!
//! ```text
//! cargo run --example chat_server -- --transport tls --addr 127.0.0.1:8443 \
//!     --tls-cert certs/server.pem --tls-key certs/server.key --tls-ca certs/ca.pem
//! cargo run --example chat_client -- --transport tls --addr 127.0.0.1:8443 \
//!     --tls-cert certs/client.pem --tls-key certs/client.key --tls-ca certs/ca.pem
//! ```
//!
//! These are for trying things out: the CA's key is thrown away, and the
//! keys are written unencrypted.

mod common;

use std::path::{Path, PathBuf};

use clap::Parser;
use common::certs::Kit;
use common::{main_with, say, At, Failed};

/// Writes a CA, a server certificate and a client certificate (PEM); the
/// private keys readable by their owner only.
#[derive(Parser)]
struct Args {
    /// The directory to write them to (created if missing).
    #[arg(long, value_name = "DIR", default_value = "certs")]
    out: PathBuf,
    /// The name in the client certificate (what a server sees as the
    /// verified peer).
    #[arg(long, default_value = "client")]
    client_name: String,
}

/// Writes `pem` to `dir/name`, readable by its owner only if `private`
/// (0600; certificates 0644). A file already there is truncated and given
/// those permissions before anything is written to it.
fn write(dir: &Path, name: &str, pem: &str, private: bool) -> Result<(), Failed> {
    use std::io::Write;
    let path = dir.join(name);
    let place = path.display().to_string();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    let mode = if private { 0o600 } else { 0o644 };
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut file = options.open(&path).at(&place)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(mode))
            .at(&place)?;
    }
    file.write_all(pem.as_bytes()).at(&place)?;
    say(place);
    Ok(())
}

fn run(args: &Args) -> Result<(), Failed> {
    let dir = &args.out;
    std::fs::create_dir_all(dir).at(&dir.display().to_string())?;
    let kit = Kit::new(&args.client_name);
    write(dir, "ca.pem", &kit.ca.cert_pem(), false)?;
    write(dir, "server.pem", &kit.server.cert_pem, false)?;
    write(dir, "server.key", &kit.server.key_pem, true)?;
    write(dir, "client.pem", &kit.client.cert_pem, false)?;
    write(dir, "client.key", &kit.client.key_pem, true)?;
    Ok(())
}

fn main() {
    let args = Args::parse();
    main_with(|| run(&args));
}
