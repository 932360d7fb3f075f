//! The READMEs say the same commands: every shell command of the Chinese
//! README (`README.zh-CN.md`) is one of the English README's, and the
//! other way round, so that neither drifts when the other changes; and
//! every guide document the README links to exists.

use std::collections::BTreeSet;
use std::path::Path;

fn read(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The commands a reader would type: each line of a ```sh block (its
/// `# comment` left out), and each inline code span that starts with
/// `cargo `.
fn commands(markdown: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut in_sh = false;
    let mut in_block = false;
    for line in markdown.lines() {
        let trimmed = line.trim_start();
        if let Some(info) = trimmed.strip_prefix("```") {
            if in_block {
                in_block = false;
                in_sh = false;
            } else {
                in_block = true;
                in_sh = matches!(info.trim(), "sh" | "bash" | "shell");
            }
            continue;
        }
        if in_sh {
            let command = match line.find(" #") {
                Some(i) => &line[..i],
                None => line,
            }
            .trim();
            if !command.is_empty() && !command.starts_with('#') {
                found.insert(command.to_owned());
            }
            continue;
        }
        if in_block {
            continue;
        }
        for (i, span) in line.split('`').enumerate() {
            if i % 2 == 1 && span.starts_with("cargo ") {
                found.insert(span.to_owned());
            }
        }
    }
    found
}

#[test]
fn the_chinese_readme_has_the_english_readmes_commands() {
    let english = commands(&read("README.md"));
    let chinese = commands(&read("README.zh-CN.md"));
    assert!(
        english.len() >= 10,
        "the English README's commands were not found: {english:?}"
    );
    let missing: Vec<_> = english.difference(&chinese).collect();
    let extra: Vec<_> = chinese.difference(&english).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "README.zh-CN.md lacks {missing:#?}\nand has commands the English README does not: {extra:#?}"
    );
}

#[test]
fn every_example_a_readme_runs_exists() {
    for readme in ["README.md", "README.zh-CN.md"] {
        for command in commands(&read(readme)) {
            let Some(rest) = command.split("--example ").nth(1) else {
                continue;
            };
            let name = rest.split_whitespace().next().unwrap();
            let path = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("examples")
                .join(format!("{name}.rs"));
            assert!(
                path.exists(),
                "{readme}: `{command}` runs a missing example"
            );
        }
    }
}

/// A heading's anchor, as GitHub makes it: lower case, spaces to
/// hyphens, other punctuation gone.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

#[test]
fn every_document_a_readme_links_to_exists() {
    for readme in ["README.md", "README.zh-CN.md"] {
        let text = read(readme);
        let mut links = 0;
        for piece in text.split("](").skip(1) {
            let target = piece.split(')').next().unwrap();
            if target.starts_with("http") || target.starts_with('#') {
                continue;
            }
            links += 1;
            let (file, anchor) = target.split_once('#').unwrap_or((target, ""));
            let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
            assert!(
                path.exists(),
                "{readme} links to {target}, which is missing"
            );
            if !anchor.is_empty() {
                let doc = read(file);
                assert!(
                    doc.lines()
                        .filter(|l| l.starts_with('#'))
                        .filter_map(|l| l.trim_start_matches('#').strip_prefix(' '))
                        .any(|heading| slug(heading) == anchor),
                    "{readme} links to {target}: no such heading in {file}"
                );
            }
        }
        assert!(links >= 5, "{readme}: only {links} local links");
    }
}
