//! A real `nats-server` for the tests (`nats_server.rs`, which the benches
//! share), and the rule for a machine without one.

#[path = "nats_server.rs"]
mod server;

#[allow(unused_imports)] // not every test binary starts a server
pub use server::NatsServer;

/// `true` if `nats-server` runs here (otherwise skips, or fails under
/// `CONVERSE_REQUIRE_ALL=1`).
pub fn have_nats_server() -> bool {
    let ok = server::program().is_some();
    if !ok {
        super::skip("nats-server is not installed");
    }
    ok
}
