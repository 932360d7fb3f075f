//! Interleaved ratios: every speed goal of the README, checked in one
//! process in alternating rounds.
//!
//! On a shared machine the drift between two measurements taken a minute
//! apart is often larger than the difference being measured, and criterion
//! measures each implementation of a group once, one after the other. Here
//! each goal's two implementations (converse and the peer it is compared
//! with) are measured in turn, round after round (A B, B A, A B …, so that
//! neither is always first), each time a short criterion measurement of
//! exactly that benchmark, with the same code as `cargo bench` runs. Each
//! round gives one ratio, the peer's median time ÷ converse's (above 1:
//! converse is faster); the table gives the median of those ratios and
//! their spread, and says whether the goal holds.
//!
//! ```text
//! cargo bench --bench ratios                  # every goal, 5 rounds (about 15 minutes on 2 cores)
//! cargo bench --bench ratios -- tcp_stream    # the goals whose IDs contain tcp_stream
//! cargo bench --bench ratios -- tls_,ws_      # … tls_ or ws_
//! RATIOS_ROUNDS=9 cargo bench --bench ratios  # more rounds, a steadier median
//! cargo bench --bench ratios -- --quiet       # criterion's lines kept short
//! ```
//!
//! The table is printed at the end and written to
//! `target/criterion-ratios/ratios.md`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use criterion::{BenchmarkFilter, Criterion};

#[allow(dead_code, unused_imports)]
#[path = "tcp.rs"]
mod tcp;

#[allow(dead_code, unused_imports)]
#[path = "udp.rs"]
mod udp;

#[cfg(feature = "tls")]
#[allow(dead_code, unused_imports)]
#[path = "tls.rs"]
mod tls;

#[cfg(feature = "ws")]
#[allow(dead_code, unused_imports)]
#[path = "ws.rs"]
mod ws;

#[cfg(feature = "nats")]
#[allow(dead_code, unused_imports)]
#[path = "nats.rs"]
mod nats;

#[cfg(feature = "quic")]
#[allow(dead_code, unused_imports)]
#[path = "quic.rs"]
mod quic;

/// One goal: converse's benchmark, the peer's, and the least ratio that
/// meets it.
struct Goal {
    /// The criterion group function that holds both benchmarks.
    group: fn(&mut Criterion),
    /// converse's benchmark ID (`GROUP/IMPL/SIZE`).
    ours: &'static str,
    /// The peer's benchmark ID.
    peer: &'static str,
    /// The goal: peer time ÷ converse time at least this.
    at_least: f64,
}

/// The README's goals: as fast as the raw library underneath (raw
/// `std::net`, rustls, tungstenite), on the switchboard as fast as
/// tokio-util, async-nats, and on tokio (current-thread and multi-thread
/// runtimes) as fast as the crate a tokio user would otherwise pick
/// (tokio-util, tokio-rustls, tokio-tungstenite, async-nats, quinn); and
/// blocking QUIC as fast as quinn on a multi-thread runtime. The blocking
/// NATS client is compared with async-nats on a multi-thread runtime too.
fn goals() -> Vec<Goal> {
    let goal = |group: fn(&mut Criterion), ours, peer| Goal {
        group,
        ours,
        peer,
        at_least: 1.0,
    };
    #[allow(unused_mut)]
    let mut goals = vec![
        goal(
            tcp::tcp_stream_batched,
            "tcp_stream_batched/converse/64",
            "tcp_stream_batched/raw/64",
        ),
        goal(
            tcp::tcp_stream,
            "tcp_stream/converse/64",
            "tcp_stream/raw/64",
        ),
        goal(
            tcp::tcp_stream,
            "tcp_stream/converse/65536",
            "tcp_stream/raw/65536",
        ),
        goal(
            tcp::tcp_pingpong,
            "tcp_pingpong/converse/64",
            "tcp_pingpong/raw/64",
        ),
        goal(
            tcp::tcp_pingpong,
            "tcp_pingpong/converse-switchboard/64",
            "tcp_pingpong/tokio-util/64",
        ),
        goal(
            tcp::tcp_pingpong,
            "tcp_pingpong/converse-switchboard/4096",
            "tcp_pingpong/tokio-util/4096",
        ),
        goal(
            tcp::tcp_stream,
            "tcp_stream/converse-switchboard/64",
            "tcp_stream/tokio-util/64",
        ),
        goal(
            tcp::tcp_stream,
            "tcp_stream/converse-switchboard/65536",
            "tcp_stream/tokio-util/65536",
        ),
        goal(
            tcp::tcp_stream_batched,
            "tcp_stream_batched/converse-switchboard/64",
            "tcp_stream_batched/tokio-util/64",
        ),
        // The async driver against what a tokio user would otherwise pick.
        goal(
            tcp::tcp_pingpong,
            "tcp_pingpong/converse-tokio/64",
            "tcp_pingpong/tokio-util/64",
        ),
        goal(
            tcp::tcp_stream,
            "tcp_stream/converse-tokio/64",
            "tcp_stream/tokio-util/64",
        ),
        goal(
            tcp::tcp_stream,
            "tcp_stream/converse-tokio/65536",
            "tcp_stream/tokio-util/65536",
        ),
        // The same on a multi-thread runtime.
        goal(
            tcp::tcp_pingpong,
            "tcp_pingpong/converse-tokio-mt/64",
            "tcp_pingpong/tokio-util-mt/64",
        ),
        goal(
            tcp::tcp_stream,
            "tcp_stream/converse-tokio-mt/64",
            "tcp_stream/tokio-util-mt/64",
        ),
        goal(
            tcp::tcp_stream,
            "tcp_stream/converse-tokio-mt/65536",
            "tcp_stream/tokio-util-mt/65536",
        ),
        goal(
            udp::udp_stream,
            "udp_stream/converse/64",
            "udp_stream/raw/64",
        ),
        goal(
            udp::udp_pingpong,
            "udp_pingpong/converse/64",
            "udp_pingpong/raw/64",
        ),
    ];
    #[cfg(feature = "tls")]
    goals.extend([
        goal(
            tls::tls_pingpong,
            "tls_pingpong/converse/64",
            "tls_pingpong/rustls/64",
        ),
        goal(
            tls::tls_pingpong,
            "tls_pingpong/converse/4096",
            "tls_pingpong/rustls/4096",
        ),
        goal(
            tls::tls_stream,
            "tls_stream/converse/65536",
            "tls_stream/rustls/65536",
        ),
        goal(
            tls::tls_stream_batched,
            "tls_stream_batched/converse/64",
            "tls_stream_batched/rustls/64",
        ),
        goal(
            tls::tls_pingpong,
            "tls_pingpong/converse-tokio/64",
            "tls_pingpong/tokio-rustls/64",
        ),
        goal(
            tls::tls_stream,
            "tls_stream/converse-tokio/65536",
            "tls_stream/tokio-rustls/65536",
        ),
        goal(
            tls::tls_pingpong,
            "tls_pingpong/converse-tokio-mt/64",
            "tls_pingpong/tokio-rustls-mt/64",
        ),
        goal(
            tls::tls_stream,
            "tls_stream/converse-tokio-mt/65536",
            "tls_stream/tokio-rustls-mt/65536",
        ),
    ]);
    #[cfg(feature = "ws")]
    goals.extend([
        goal(
            ws::ws_pingpong,
            "ws_pingpong/converse/64",
            "ws_pingpong/tungstenite/64",
        ),
        goal(
            ws::ws_stream,
            "ws_stream/converse/64",
            "ws_stream/tungstenite/64",
        ),
        goal(
            ws::ws_stream,
            "ws_stream/converse/65536",
            "ws_stream/tungstenite/65536",
        ),
        goal(
            ws::ws_stream_batched,
            "ws_stream_batched/converse/64",
            "ws_stream_batched/tungstenite/64",
        ),
        goal(
            ws::ws_pingpong,
            "ws_pingpong/converse-tokio/64",
            "ws_pingpong/tokio-tungstenite/64",
        ),
        goal(
            ws::ws_stream,
            "ws_stream/converse-tokio/64",
            "ws_stream/tokio-tungstenite/64",
        ),
        goal(
            ws::ws_stream,
            "ws_stream/converse-tokio/65536",
            "ws_stream/tokio-tungstenite/65536",
        ),
        goal(
            ws::ws_pingpong,
            "ws_pingpong/converse-tokio-mt/64",
            "ws_pingpong/tokio-tungstenite-mt/64",
        ),
        goal(
            ws::ws_stream,
            "ws_stream/converse-tokio-mt/64",
            "ws_stream/tokio-tungstenite-mt/64",
        ),
        goal(
            ws::ws_stream,
            "ws_stream/converse-tokio-mt/65536",
            "ws_stream/tokio-tungstenite-mt/65536",
        ),
    ]);
    #[cfg(feature = "nats")]
    goals.extend([
        goal(
            nats::pubsub,
            "nats_pubsub/converse/64",
            "nats_pubsub/async-nats-mt/64",
        ),
        goal(
            nats::pubsub,
            "nats_pubsub/converse-tokio/64",
            "nats_pubsub/async-nats/64",
        ),
        goal(
            nats::pubsub,
            "nats_pubsub/converse-tokio-mt/64",
            "nats_pubsub/async-nats-mt/64",
        ),
    ]);
    #[cfg(feature = "quic")]
    goals.extend([
        goal(
            quic::quic_pingpong,
            "quic_pingpong/converse/64",
            "quic_pingpong/quinn-mt/64",
        ),
        goal(
            quic::quic_stream,
            "quic_stream/converse/64",
            "quic_stream/quinn-mt/64",
        ),
        goal(
            quic::quic_stream,
            "quic_stream/converse/65536",
            "quic_stream/quinn-mt/65536",
        ),
        goal(
            quic::quic_pingpong,
            "quic_pingpong/converse-tokio/64",
            "quic_pingpong/quinn/64",
        ),
        goal(
            quic::quic_stream,
            "quic_stream/converse-tokio/64",
            "quic_stream/quinn/64",
        ),
        goal(
            quic::quic_stream,
            "quic_stream/converse-tokio/65536",
            "quic_stream/quinn/65536",
        ),
        goal(
            quic::quic_pingpong,
            "quic_pingpong/converse-tokio-mt/64",
            "quic_pingpong/quinn-mt/64",
        ),
        goal(
            quic::quic_stream,
            "quic_stream/converse-tokio-mt/64",
            "quic_stream/quinn-mt/64",
        ),
        goal(
            quic::quic_stream,
            "quic_stream/converse-tokio-mt/65536",
            "quic_stream/quinn-mt/65536",
        ),
    ]);
    goals
}

/// Each measurement: short, as many as the rounds make up for.
const WARM_UP: Duration = Duration::from_millis(300);
const MEASURE: Duration = Duration::from_millis(1200);
const SAMPLES: usize = 10;

/// Where these measurements go (not criterion's usual folder, so that a
/// plain `cargo bench`'s results and baselines are left alone).
fn out_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || {
            let peers = Path::new(env!("CARGO_MANIFEST_DIR"));
            peers.parent().unwrap_or(peers).join("target")
        },
        PathBuf::from,
    );
    target.join("criterion-ratios")
}

/// The median time per iteration of benchmark `id`, in ns, measured now
/// (`None` if the group did not run it: a peer that is not installed).
fn measure(group: fn(&mut Criterion), id: &str, out: &Path) -> Option<f64> {
    let estimates = out.join(id).join("new/estimates.json");
    let _ = std::fs::remove_file(&estimates);
    let mut criterion = Criterion::default()
        .configure_from_args()
        .with_benchmark_filter(BenchmarkFilter::Exact(id.to_owned()))
        .output_directory(out)
        .without_plots()
        .warm_up_time(WARM_UP)
        .measurement_time(MEASURE)
        .sample_size(SAMPLES);
    group(&mut criterion);
    let text = std::fs::read_to_string(&estimates).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    json["median"]["point_estimate"].as_f64()
}

fn human(ns: f64) -> String {
    match ns {
        ns if ns >= 1e6 => format!("{:.2} ms", ns / 1e6),
        ns if ns >= 1e3 => format!("{:.2} µs", ns / 1e3),
        ns => format!("{ns:.1} ns"),
    }
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// What one goal's rounds gave.
struct Outcome {
    ours: Vec<f64>,
    peer: Vec<f64>,
    ratios: Vec<f64>,
}

fn main() {
    let rounds: usize = std::env::var("RATIOS_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .filter(|&r| r > 0)
        .unwrap_or(5);
    // The first argument that is not an option (cargo passes `--bench`),
    // split at commas, keeps the goals whose IDs contain any of its parts.
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .map(|a| a.split(',').map(str::to_owned).collect())
        .unwrap_or_default();
    let goals: Vec<Goal> = goals()
        .into_iter()
        .filter(|g| {
            filters.is_empty()
                || filters
                    .iter()
                    .any(|f| g.ours.contains(f.as_str()) || g.peer.contains(f.as_str()))
        })
        .collect();
    let out = out_dir();
    let started = Instant::now();
    let mut outcomes = Vec::new();
    for (n, goal) in goals.iter().enumerate() {
        let mut outcome = Outcome {
            ours: Vec::new(),
            peer: Vec::new(),
            ratios: Vec::new(),
        };
        for round in 0..rounds {
            eprintln!(
                "== ratios: goal {}/{}, round {}/{}: {} vs {}",
                n + 1,
                goals.len(),
                round + 1,
                rounds,
                goal.ours,
                goal.peer
            );
            // A B, then B A: neither is always measured first.
            let (ours, peer) = if round % 2 == 0 {
                let ours = measure(goal.group, goal.ours, &out);
                (ours, measure(goal.group, goal.peer, &out))
            } else {
                let peer = measure(goal.group, goal.peer, &out);
                (measure(goal.group, goal.ours, &out), peer)
            };
            let (Some(ours), Some(peer)) = (ours, peer) else {
                eprintln!("== ratios: {} not measured (a peer missing?)", goal.ours);
                break;
            };
            // Said at once too: a run cut short keeps what it measured.
            eprintln!(
                "== ratios: {} {}, {} {}, ratio {:.2}",
                goal.ours,
                human(ours),
                goal.peer,
                human(peer),
                peer / ours
            );
            outcome.ours.push(ours);
            outcome.peer.push(peer);
            outcome.ratios.push(peer / ours);
        }
        outcomes.push(outcome);
    }

    let mut table = String::new();
    let _ = writeln!(
        table,
        "{rounds} alternating rounds per goal, each measurement {MEASURE:?} \
         ({WARM_UP:?} warm-up, {SAMPLES} samples); ratio = peer's median time ÷ \
         converse's (above 1: converse is faster); {:.0} s in all.\n",
        started.elapsed().as_secs_f64()
    );
    let _ = writeln!(
        table,
        "| converse | peer | converse (median) | peer (median) | ratio (median) | min – max | goal | holds |"
    );
    let _ = writeln!(table, "|---|---|---:|---:|---:|---:|---:|---|");
    let (mut held, mut measured) = (0, 0);
    for (goal, outcome) in goals.iter().zip(&mut outcomes) {
        let peer_name = goal.peer.split('/').nth(1).unwrap_or(goal.peer);
        if outcome.ratios.is_empty() {
            let _ = writeln!(
                table,
                "| `{}` | {peer_name} | — | — | — | — | ≥ {:.2}× | not measured |",
                goal.ours, goal.at_least
            );
            continue;
        }
        measured += 1;
        let ratio = median(&mut outcome.ratios);
        let (min, max) = (outcome.ratios[0], outcome.ratios[outcome.ratios.len() - 1]);
        let holds = if ratio >= goal.at_least {
            held += 1;
            "yes"
        } else if max >= goal.at_least {
            "no (within the spread)"
        } else {
            "no"
        };
        let _ = writeln!(
            table,
            "| `{}` | {peer_name} | {} | {} | {ratio:.2}× | {min:.2} – {max:.2} | ≥ {:.2}× | {holds} |",
            goal.ours,
            human(median(&mut outcome.ours)),
            human(median(&mut outcome.peer)),
            goal.at_least
        );
    }
    let _ = writeln!(
        table,
        "\n{held} of {measured} goals measured hold (median ratio at or above the goal)."
    );
    println!("\n{table}");
    let _ = std::fs::create_dir_all(&out);
    let file = out.join("ratios.md");
    if std::fs::write(&file, &table).is_ok() {
        println!("(written to {})", file.display());
    }
}
