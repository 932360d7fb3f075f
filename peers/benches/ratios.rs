//! The ratio table: reads criterion's results under `target/criterion/`
//! (each benchmark's `new/estimates.json` and `new/sample.json`) and prints,
//! per group and size, the median time of each implementation, its min–max
//! spread over the samples, and converse's speed relative to raw `std::net`
//! and to tokio-util (other's median time ÷ converse's: above 1 means
//! converse is faster).
//!
//! `cargo bench --bench ratios` prints the table of the last `cargo bench`
//! without measuring anything (a plain `cargo bench` does not run it).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

/// Median time per iteration, and the fastest and slowest sample, in ns.
#[derive(Clone, Copy)]
struct Figure {
    median: f64,
    min: f64,
    max: f64,
}

fn criterion_dir() -> PathBuf {
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| PathBuf::from("target"), PathBuf::from);
    target.join("criterion")
}

fn read_json(path: &Path) -> Option<serde_json::Value> {
    serde_json::from_str(&fs::read_to_string(path).ok()?).ok()
}

fn figure(dir: &Path) -> Option<Figure> {
    let estimates = read_json(&dir.join("new/estimates.json"))?;
    let median = estimates["median"]["point_estimate"].as_f64()?;
    let sample = read_json(&dir.join("new/sample.json"))?;
    let per_iter: Vec<f64> = sample["iters"]
        .as_array()?
        .iter()
        .zip(sample["times"].as_array()?)
        .filter_map(|(i, t)| Some(t.as_f64()? / i.as_f64()?))
        .collect();
    let min = per_iter.iter().copied().fold(f64::INFINITY, f64::min);
    let max = per_iter.iter().copied().fold(0.0, f64::max);
    Some(Figure { median, min, max })
}

fn human(ns: f64) -> String {
    match ns {
        ns if ns >= 1e6 => format!("{:.2} ms", ns / 1e6),
        ns if ns >= 1e3 => format!("{:.2} µs", ns / 1e3),
        ns => format!("{ns:.1} ns"),
    }
}

fn subdirs(dir: &Path) -> Vec<(String, PathBuf)> {
    let mut out: Vec<_> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
        .filter(|(name, _)| name != "report")
        .collect();
    out.sort();
    out
}

fn main() {
    // Criterion passes `--bench`; this target takes no other arguments.
    let root = criterion_dir();
    // (group, size) -> implementation -> figure
    let mut table: BTreeMap<(String, u64), BTreeMap<String, Figure>> = BTreeMap::new();
    for (group, group_dir) in subdirs(&root) {
        for (implementation, impl_dir) in subdirs(&group_dir) {
            for (size, size_dir) in subdirs(&impl_dir) {
                let (Ok(size), Some(fig)) = (size.parse::<u64>(), figure(&size_dir)) else {
                    continue;
                };
                table
                    .entry((group.clone(), size))
                    .or_default()
                    .insert(implementation.clone(), fig);
            }
        }
    }
    if table.is_empty() {
        println!(
            "no criterion results under {}: run `cargo bench` first",
            root.display()
        );
        return;
    }

    println!("| group | size | implementation | median | min – max | speed vs raw | speed vs tokio-util |");
    println!("|---|---:|---|---:|---:|---:|---:|");
    for ((group, size), impls) in &table {
        let raw = impls.get("raw").map(|f| f.median);
        let tokio = impls.get("tokio-util").map(|f| f.median);
        for (name, fig) in impls {
            let ratio = |other: Option<f64>| match other {
                Some(other) if name.starts_with("converse") => {
                    format!("{:.2}×", other / fig.median)
                }
                _ => String::new(),
            };
            println!(
                "| {group} | {size} | {name} | {} | {} – {} | {} | {} |",
                human(fig.median),
                human(fig.min),
                human(fig.max),
                ratio(raw),
                ratio(tokio),
            );
        }
    }
    println!();
    println!("Times are per iteration (one message, or one round trip for *_pingpong).");
    println!("Plots: {}", root.join("report/index.html").display());
}
