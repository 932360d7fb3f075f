//! SVG charts for the scale run, written as text (no plotting crate): a
//! line chart and a grouped bar chart, each with a title, a subtitle, axes
//! with ticks and labels, light grid lines and a legend.
//!
//! In a folder of its own, as `common/` is, so that cargo does not take it
//! for a bench target.
//!
//! Pure functions of their input. The tests need nothing but rustc:
//! `rustc --edition 2021 --test peers/benches/plot/mod.rs -o /tmp/plot-tests && /tmp/plot-tests`.

use std::fmt::Write as _;

const WIDTH: f64 = 900.0;
const HEIGHT: f64 = 500.0;
/// The plot area's left and right edges; the legend is right of it.
const LEFT: f64 = 90.0;
const RIGHT: f64 = 640.0;
const BOTTOM: f64 = 440.0;
const FONT: &str = "DejaVu Sans, Helvetica, Arial, sans-serif";
/// Characters in a line of the subtitle, and of a note in the legend.
const SUBTITLE_CHARS: usize = 130;
const NOTE_CHARS: usize = 34;

/// How an axis maps its values.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Scale {
    Linear,
    /// Base 10; values that are not positive are left out.
    Log,
}

pub struct Axis {
    pub label: String,
    /// Appended to the tick labels after an SI prefix ("B": "10 MB");
    /// empty for plain counts ("10k").
    pub unit: &'static str,
    pub scale: Scale,
}

/// One design's line.
pub struct Line {
    pub name: String,
    /// Smaller lines under the name in the legend, wrapped, and broken at
    /// each `\n`.
    pub note: Option<String>,
    pub color: &'static str,
    pub points: Vec<(f64, f64)>,
}

pub struct LineChart {
    pub title: String,
    pub subtitle: Vec<String>,
    pub x: Axis,
    pub y: Axis,
    pub lines: Vec<Line>,
}

/// One design's bars, one value per group (`None`: not measured).
pub struct Bars {
    pub name: String,
    /// As a line's.
    pub note: Option<String>,
    pub color: &'static str,
    pub values: Vec<Option<f64>>,
}

pub struct BarChart {
    pub title: String,
    pub subtitle: Vec<String>,
    /// The groups along the x axis, each with one bar per design.
    pub groups: Vec<String>,
    pub y: Axis,
    pub bars: Vec<Bars>,
    /// Written where a bar has no value.
    pub missing: String,
}

/// Escapes text for an SVG text node or attribute.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// 1, 2 or 5 times a power of ten, the smallest at least `raw`.
fn nice_step(raw: f64) -> f64 {
    let power = 10f64.powi(raw.log10().floor() as i32);
    let f = raw / power;
    let nice = if f <= 1.0 {
        1.0
    } else if f <= 2.0 {
        2.0
    } else if f <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * power
}

/// Ticks for a linear axis holding `lo..=hi`, about `target` of them, a
/// round step apart; the first and last are the axis's ends.
pub fn linear_ticks(lo: f64, hi: f64, target: usize) -> Vec<f64> {
    let (lo, hi) = if hi > lo {
        (lo, hi)
    } else if lo == 0.0 {
        (0.0, 1.0)
    } else {
        (lo - lo.abs() * 0.5, hi + hi.abs() * 0.5)
    };
    let step = nice_step((hi - lo) / target.max(1) as f64);
    let first = (lo / step).floor() as i64;
    let last = (hi / step).ceil() as i64;
    (first..=last).map(|k| k as f64 * step).collect()
}

/// The 1-2-5 values (1, 2, 5, 10, 20, ...) from the largest at most `lo`
/// to the smallest at least `hi`.
fn one_two_five(lo: f64, hi: f64) -> Vec<f64> {
    let mut decade = 10f64.powi(lo.log10().floor() as i32);
    let mut out = Vec::new();
    loop {
        for m in [1.0, 2.0, 5.0] {
            let v = m * decade;
            if v <= lo * (1.0 + 1e-9) {
                out.clear();
            }
            out.push(v);
            if v >= hi * (1.0 - 1e-9) {
                return out;
            }
        }
        decade *= 10.0;
    }
}

/// Ticks for a log axis holding `lo..=hi` (both positive): the axis runs
/// between 1-2-5 values; within two decades every 1-2-5 value is a tick,
/// beyond that the powers of ten and the two ends.
pub fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let hi = if hi > lo { hi } else { lo * 10.0 };
    let all = one_two_five(lo, hi);
    let (first, last) = (all[0], all[all.len() - 1]);
    if (last / first).log10() <= 2.0 + 1e-9 {
        return all;
    }
    all.into_iter()
        .filter(|&v| {
            let exponent = v.log10();
            v == first || v == last || (exponent - exponent.round()).abs() < 1e-9
        })
        .collect()
}

/// `v` as a number in [1, 1000) and an SI prefix.
fn si_parts(v: f64) -> (f64, &'static str) {
    match v.abs() {
        a if a >= 1e9 => (v / 1e9, "G"),
        a if a >= 1e6 => (v / 1e6, "M"),
        a if a >= 1e3 => (v / 1e3, "k"),
        _ => (v, ""),
    }
}

fn with_unit(number: &str, prefix: &str, unit: &str) -> String {
    if unit.is_empty() {
        format!("{number}{prefix}")
    } else {
        format!("{number} {prefix}{unit}")
    }
}

/// `text` in lines of at most `width` characters, broken at spaces (a
/// longer word stays whole, on a line of its own).
pub fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

/// `n` with its thousands separated by commas ("10,000").
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A tick's label: an SI prefix and no trailing zeros ("2.5k", "10 MB").
pub fn tick_label(v: f64, unit: &str) -> String {
    let (n, prefix) = si_parts(v);
    let mut number = format!("{n:.2}");
    while number.contains('.') && (number.ends_with('0') || number.ends_with('.')) {
        number.pop();
    }
    if number == "-0" {
        number = "0".to_owned();
    }
    with_unit(&number, prefix, unit)
}

/// A measured value's label, three significant digits ("8.00M", "485 B",
/// "33.9 MB").
pub fn value_label(v: f64, unit: &str) -> String {
    let (n, prefix) = si_parts(v);
    let number = match n.abs() {
        a if a >= 100.0 || (prefix.is_empty() && a.fract() == 0.0) => format!("{n:.0}"),
        a if a >= 10.0 => format!("{n:.1}"),
        _ => format!("{n:.2}"),
    };
    with_unit(&number, prefix, unit)
}

/// Maps an axis's values to pixels.
struct Map {
    lo: f64,
    hi: f64,
    scale: Scale,
    /// The pixels of `lo` and `hi`.
    from: f64,
    to: f64,
}

impl Map {
    fn px(&self, v: f64) -> f64 {
        let t = match self.scale {
            Scale::Linear => (v - self.lo) / (self.hi - self.lo),
            Scale::Log => (v.log10() - self.lo.log10()) / (self.hi.log10() - self.lo.log10()),
        };
        self.from + t * (self.to - self.from)
    }
}

/// The ticks of an axis that must show `values` (and 0, on a linear
/// axis), and its map onto `from..to` pixels.
fn axis(values: &[f64], scale: Scale, from: f64, to: f64) -> (Vec<f64>, Map) {
    let ticks = match scale {
        Scale::Linear => {
            let lo = values.iter().copied().fold(0.0, f64::min);
            let hi = values.iter().copied().fold(0.0, f64::max);
            linear_ticks(lo, hi, 5)
        }
        Scale::Log => {
            let positive = values.iter().copied().filter(|&v| v > 0.0);
            let lo = positive.clone().fold(f64::INFINITY, f64::min);
            let hi = positive.fold(0.0, f64::max);
            if lo.is_finite() {
                log_ticks(lo, hi)
            } else {
                log_ticks(1.0, 10.0)
            }
        }
    };
    let map = Map {
        lo: ticks[0],
        hi: ticks[ticks.len() - 1],
        scale,
        from,
        to,
    };
    (ticks, map)
}

/// The SVG's opening, background, title and subtitle; returns the top of
/// the plot area.
fn head(svg: &mut String, title: &str, subtitle: &[String]) -> f64 {
    let _ = writeln!(svg, r#"<?xml version="1.0" encoding="UTF-8"?>"#);
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="{FONT}">"#
    );
    let _ = writeln!(
        svg,
        r#"<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>"#
    );
    let _ = writeln!(
        svg,
        r##"<text x="20" y="30" font-size="18" font-weight="bold" fill="#222">{}</text>"##,
        escape(title)
    );
    let mut y = 30.0;
    for line in subtitle.iter().flat_map(|l| wrap(l, SUBTITLE_CHARS)) {
        y += 17.0;
        let _ = writeln!(
            svg,
            r##"<text x="20" y="{y}" font-size="12" fill="#555">{}</text>"##,
            escape(&line)
        );
    }
    y + 25.0
}

/// Grid lines, tick marks and labels of the y axis, and its label.
fn y_axis(svg: &mut String, axis: &Axis, ticks: &[f64], map: &Map, top: f64) {
    for &t in ticks {
        let y = map.px(t);
        let _ = writeln!(
            svg,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{RIGHT}" y2="{y:.1}" stroke="#e6e6e6"/>"##
        );
        let _ = writeln!(
            svg,
            r##"<line x1="{}" y1="{y:.1}" x2="{LEFT}" y2="{y:.1}" stroke="#333"/>"##,
            LEFT - 5.0
        );
        let _ = writeln!(
            svg,
            r##"<text x="{}" y="{:.1}" font-size="11" text-anchor="end" fill="#333">{}</text>"##,
            LEFT - 8.0,
            y + 4.0,
            escape(&tick_label(t, axis.unit))
        );
    }
    let (x, y) = (22.0, (top + BOTTOM) / 2.0);
    let _ = writeln!(
        svg,
        r##"<text x="{x}" y="{y:.1}" font-size="13" text-anchor="middle" fill="#222" transform="rotate(-90 {x} {y:.1})">{}</text>"##,
        escape(&axis.label)
    );
}

/// The two axis lines.
fn frame(svg: &mut String, top: f64) {
    let _ = writeln!(
        svg,
        r##"<path d="M{LEFT} {top:.1} V{BOTTOM} H{RIGHT}" fill="none" stroke="#333"/>"##
    );
}

/// The legend, right of the plot area: a swatch (a line, or a block for
/// bars), the name, and its note under it.
fn legend(svg: &mut String, top: f64, entries: &[(&str, Option<&str>, &str)], block: bool) {
    let x = RIGHT + 22.0;
    let mut y = top + 8.0;
    for &(name, note, color) in entries {
        if block {
            let _ = writeln!(
                svg,
                r#"<rect x="{x}" y="{:.1}" width="18" height="12" fill="{color}"/>"#,
                y - 10.0
            );
        } else {
            let _ = writeln!(
                svg,
                r#"<line x1="{x}" y1="{:.1}" x2="{}" y2="{:.1}" stroke="{color}" stroke-width="2.5"/>"#,
                y - 4.0,
                x + 18.0,
                y - 4.0
            );
            let _ = writeln!(
                svg,
                r#"<circle cx="{}" cy="{:.1}" r="3" fill="{color}"/>"#,
                x + 9.0,
                y - 4.0
            );
        }
        let _ = writeln!(
            svg,
            r##"<text x="{}" y="{y:.1}" font-size="13" fill="#222">{}</text>"##,
            x + 26.0,
            escape(name)
        );
        for note in note
            .iter()
            .flat_map(|n| n.lines())
            .flat_map(|l| wrap(l, NOTE_CHARS))
        {
            y += 15.0;
            let _ = writeln!(
                svg,
                r##"<text x="{}" y="{y:.1}" font-size="11" fill="#555">{}</text>"##,
                x + 26.0,
                escape(&note)
            );
        }
        y += 24.0;
    }
}

/// A line chart: one line (with a dot at each point) per design.
pub fn line_chart(chart: &LineChart) -> String {
    let mut svg = String::new();
    let top = head(&mut svg, &chart.title, &chart.subtitle);
    let keep = |scale: Scale, v: f64| v.is_finite() && (scale == Scale::Linear || v > 0.0);
    let lines: Vec<(&Line, Vec<(f64, f64)>)> = chart
        .lines
        .iter()
        .map(|line| {
            let points = line
                .points
                .iter()
                .copied()
                .filter(|&(x, y)| keep(chart.x.scale, x) && keep(chart.y.scale, y))
                .collect();
            (line, points)
        })
        .collect();
    let xs: Vec<f64> = lines
        .iter()
        .flat_map(|(_, p)| p.iter().map(|p| p.0))
        .collect();
    let ys: Vec<f64> = lines
        .iter()
        .flat_map(|(_, p)| p.iter().map(|p| p.1))
        .collect();
    let (x_ticks, x_map) = axis(&xs, chart.x.scale, LEFT, RIGHT);
    let (y_ticks, y_map) = axis(&ys, chart.y.scale, BOTTOM, top);
    y_axis(&mut svg, &chart.y, &y_ticks, &y_map, top);
    for &t in &x_ticks {
        let x = x_map.px(t);
        let _ = writeln!(
            svg,
            r##"<line x1="{x:.1}" y1="{top:.1}" x2="{x:.1}" y2="{BOTTOM}" stroke="#e6e6e6"/>"##
        );
        let _ = writeln!(
            svg,
            r##"<line x1="{x:.1}" y1="{BOTTOM}" x2="{x:.1}" y2="{}" stroke="#333"/>"##,
            BOTTOM + 5.0
        );
        let _ = writeln!(
            svg,
            r##"<text x="{x:.1}" y="{}" font-size="11" text-anchor="middle" fill="#333">{}</text>"##,
            BOTTOM + 18.0,
            escape(&tick_label(t, chart.x.unit))
        );
    }
    let _ = writeln!(
        svg,
        r##"<text x="{:.1}" y="{}" font-size="13" text-anchor="middle" fill="#222">{}</text>"##,
        (LEFT + RIGHT) / 2.0,
        BOTTOM + 42.0,
        escape(&chart.x.label)
    );
    frame(&mut svg, top);
    for (line, points) in &lines {
        let coords: Vec<String> = points
            .iter()
            .map(|&(x, y)| format!("{:.1},{:.1}", x_map.px(x), y_map.px(y)))
            .collect();
        let _ = writeln!(
            svg,
            r#"<polyline points="{}" fill="none" stroke="{}" stroke-width="2.5" stroke-linejoin="round"/>"#,
            coords.join(" "),
            line.color
        );
        for c in &coords {
            let (x, y) = c.split_once(',').unwrap_or(("0", "0"));
            let _ = writeln!(
                svg,
                r#"<circle cx="{x}" cy="{y}" r="3" fill="{}"/>"#,
                line.color
            );
        }
    }
    let entries: Vec<(&str, Option<&str>, &str)> = chart
        .lines
        .iter()
        .map(|l| (l.name.as_str(), l.note.as_deref(), l.color))
        .collect();
    legend(&mut svg, top, &entries, false);
    svg.push_str("</svg>\n");
    svg
}

/// A grouped bar chart from 0: per group, one bar per design, its value
/// written above it.
pub fn bar_chart(chart: &BarChart) -> String {
    let mut svg = String::new();
    let top = head(&mut svg, &chart.title, &chart.subtitle);
    let values: Vec<f64> = chart
        .bars
        .iter()
        .flat_map(|b| b.values.iter().flatten().copied())
        .filter(|v| v.is_finite())
        .collect();
    let (y_ticks, y_map) = axis(&values, Scale::Linear, BOTTOM, top);
    y_axis(&mut svg, &chart.y, &y_ticks, &y_map, top);
    let band = (RIGHT - LEFT) / chart.groups.len().max(1) as f64;
    let width = (band * 0.7 / chart.bars.len().max(1) as f64).min(90.0);
    for (g, group) in chart.groups.iter().enumerate() {
        let middle = LEFT + band * (g as f64 + 0.5);
        let start = middle - width * chart.bars.len() as f64 / 2.0;
        for (b, bars) in chart.bars.iter().enumerate() {
            let x = start + width * b as f64;
            let centre = x + width / 2.0;
            match bars.values.get(g).copied().flatten() {
                Some(v) if v.is_finite() => {
                    let y = y_map.px(v);
                    let _ = writeln!(
                        svg,
                        r#"<rect x="{:.1}" y="{y:.1}" width="{:.1}" height="{:.1}" fill="{}"/>"#,
                        x + 2.0,
                        width - 4.0,
                        BOTTOM - y,
                        bars.color
                    );
                    let _ = writeln!(
                        svg,
                        r##"<text x="{centre:.1}" y="{:.1}" font-size="11" text-anchor="middle" fill="#222">{}</text>"##,
                        y - 5.0,
                        escape(&value_label(v, chart.y.unit))
                    );
                }
                _ => {
                    let _ = writeln!(
                        svg,
                        r##"<text x="{centre:.1}" y="{:.1}" font-size="10" text-anchor="middle" fill="#777">{}</text>"##,
                        BOTTOM - 6.0,
                        escape(&chart.missing)
                    );
                }
            }
        }
        let _ = writeln!(
            svg,
            r##"<text x="{middle:.1}" y="{}" font-size="12" text-anchor="middle" fill="#222">{}</text>"##,
            BOTTOM + 20.0,
            escape(group)
        );
    }
    frame(&mut svg, top);
    let entries: Vec<(&str, Option<&str>, &str)> = chart
        .bars
        .iter()
        .map(|b| (b.name.as_str(), b.note.as_deref(), b.color))
        .collect();
    legend(&mut svg, top, &entries, true);
    svg.push_str("</svg>\n");
    svg
}

#[cfg(test)]
mod tests {
    #[test]
    fn linear_ticks_are_round_and_cover() {
        assert_eq!(
            super::linear_ticks(0.0, 10_000.0, 5),
            [0.0, 2e3, 4e3, 6e3, 8e3, 1e4]
        );
        assert_eq!(
            super::linear_ticks(0.0, 8.35e6, 5),
            [0.0, 2e6, 4e6, 6e6, 8e6, 1e7]
        );
        let empty = super::linear_ticks(0.0, 0.0, 5);
        assert_eq!((empty[0], empty[empty.len() - 1]), (0.0, 1.0));
    }

    #[test]
    fn log_ticks_run_between_one_two_five_values() {
        assert_eq!(super::log_ticks(30.0, 180.0), [20.0, 50.0, 100.0, 200.0]);
        assert_eq!(
            super::log_ticks(3.4e7, 1.8e9),
            [2e7, 5e7, 1e8, 2e8, 5e8, 1e9, 2e9]
        );
        assert_eq!(
            super::log_ticks(150.0, 1.8e6),
            [100.0, 1e3, 1e4, 1e5, 1e6, 2e6]
        );
        assert_eq!(
            super::log_ticks(100.0, 100.0),
            [100.0, 200.0, 500.0, 1000.0]
        );
    }

    #[test]
    fn labels() {
        assert_eq!(super::tick_label(2500.0, ""), "2.5k");
        assert_eq!(super::tick_label(1e7, "B"), "10 MB");
        assert_eq!(super::tick_label(0.0, ""), "0");
        assert_eq!(super::value_label(8.0e6, ""), "8.00M");
        assert_eq!(super::value_label(485.0, "B"), "485 B");
        assert_eq!(super::value_label(3.39e7, "B"), "33.9 MB");
        assert_eq!(
            super::wrap("one two three  four", 9),
            ["one two", "three", "four"]
        );
        assert_eq!(
            super::wrap("a verylongword b", 4),
            ["a", "verylongword", "b"]
        );
        assert!(super::wrap(" ", 4).is_empty());
        assert_eq!(super::thousands(999), "999");
        assert_eq!(super::thousands(10_000), "10,000");
        assert_eq!(super::thousands(1_234_567), "1,234,567");
        assert_eq!(
            super::escape("a < b & \"c\""),
            "a &lt; b &amp; &quot;c&quot;"
        );
    }

    #[test]
    fn charts_are_svg() {
        let chart = super::LineChart {
            title: "t".into(),
            subtitle: vec!["s".into()],
            x: super::Axis {
                label: "x".into(),
                unit: "",
                scale: super::Scale::Linear,
            },
            y: super::Axis {
                label: "y".into(),
                unit: "B",
                scale: super::Scale::Log,
            },
            lines: vec![super::Line {
                name: "a & b".into(),
                note: None,
                color: "#000",
                points: vec![(1.0, 10.0), (2.0, 0.0), (3.0, 1000.0)],
            }],
        };
        let svg = super::line_chart(&chart);
        assert!(svg.starts_with("<?xml") && svg.ends_with("</svg>\n"));
        assert!(svg.contains("a &amp; b"));
        assert_eq!(svg.matches("<circle").count(), 3); // two points, one swatch
    }
}
