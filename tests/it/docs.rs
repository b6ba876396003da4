//! The documentation's links and its evidence, checked on every run so that neither rots.
//!
//! - Every markdown link in `README.md`, `docs/*.md`, `benches/README.md` and any
//!   `deploy/**/README*.md` that points into the repository must name a file or folder that
//!   exists, and a `#fragment` must be one that a heading of the target file produces under
//!   GitHub's rules (lower case; punctuation other than `-` and `_` dropped; each space a `-`;
//!   a repeated heading gets `-1`, `-2`, …). Links inside code blocks and code spans are not
//!   links. External links (`http://`, `https://`, `mailto:`) are **not** fetched: the test
//!   machines have no internet, so only their presence is seen, never whether they answer.
//! - Every row of the table in `docs/claims.md` names its evidence in its last cell, and each
//!   piece of evidence exists: a code span with a `/` is a file of the repository
//!   (`path::name`: that file, and a function of that name), any other code span the name of
//!   a function (`fn name`, or the tests `on_every_store!(scenario => name)` makes) under
//!   `tests/`, `src/` or `benches/` —
//!   so a test that backs a claim cannot be renamed or deleted without the table noticing.

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::path::{Component, Path, PathBuf};

/// The repository root.
fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The markdown files whose links are checked, relative to the root.
fn documents() -> Vec<PathBuf> {
    let root = root();
    let mut files = vec![
        PathBuf::from("README.md"),
        PathBuf::from("benches/README.md"),
    ];
    let mut docs: Vec<PathBuf> = fs::read_dir(root.join("docs"))
        .expect("docs/ exists")
        .map(|e| e.expect("a readable docs/ entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .map(|p| p.strip_prefix(&root).expect("under the root").to_path_buf())
        .collect();
    docs.sort();
    files.extend(docs);
    let mut deploy = Vec::new();
    walk(&root.join("deploy"), &mut deploy);
    deploy.retain(|p| {
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
        name.starts_with("README") && name.ends_with(".md")
    });
    deploy.sort();
    files.extend(
        deploy
            .into_iter()
            .map(|p| p.strip_prefix(&root).expect("under the root").to_path_buf()),
    );
    files
}

/// Every file under `dir`, recursively.
fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries {
        let path = entry.expect("a readable directory entry").path();
        if path.is_dir() {
            walk(&path, out);
        } else {
            out.push(path);
        }
    }
}

/// The lines of a markdown text outside fenced code blocks, with their line numbers.
fn outside_fences(text: &str) -> Vec<(usize, &str)> {
    let mut fence: Option<&str> = None;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        let marker = ["```", "~~~"].into_iter().find(|m| trimmed.starts_with(m));
        match (fence, marker) {
            (None, Some(m)) => fence = Some(m),
            (Some(open), Some(m)) if open == m => fence = None,
            (None, None) => out.push((i + 1, line)),
            _ => {}
        }
    }
    out
}

/// The lines of a markdown text outside fenced code blocks, with their line numbers, and with
/// code spans blanked out.
fn prose(text: &str) -> Vec<(usize, String)> {
    outside_fences(text)
        .into_iter()
        .map(|(n, line)| (n, blank_code_spans(line)))
        .collect()
}

/// `line` with the contents of each code span (between backticks) replaced by spaces.
fn blank_code_spans(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut in_code = false;
    for c in line.chars() {
        if c == '`' {
            in_code = !in_code;
            out.push(c);
        } else if in_code {
            out.push(' ');
        } else {
            out.push(c);
        }
    }
    out
}

/// The targets of the inline links (`[text](target)`, images too) and of the reference
/// definitions (`[label]: target`) of one line of prose.
fn link_targets(line: &str) -> Vec<String> {
    let mut targets = Vec::new();
    if let Some(rest) = line.trim_start().strip_prefix('[') {
        if let Some((_, def)) = rest.split_once("]:") {
            if let Some(t) = def.split_whitespace().next() {
                targets.push(t.trim_matches(['<', '>']).to_string());
            }
            return targets;
        }
    }
    let mut rest = line;
    while let Some(at) = rest.find("](") {
        let after = &rest[at + 2..];
        let Some(end) = closing_paren(after) else {
            break;
        };
        let inner = after[..end].trim();
        // `[text](target "title")`: the target is the first word.
        let target = inner.split_whitespace().next().unwrap_or("");
        targets.push(target.trim_matches(['<', '>']).to_string());
        rest = &after[end..];
    }
    targets
}

/// Where the parenthesis opened just before `s` closes (nested pairs allowed, as GitHub does).
fn closing_paren(s: &str) -> Option<usize> {
    let mut depth = 0usize;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' if depth == 0 => return Some(i),
            ')' => depth -= 1,
            _ => {}
        }
    }
    None
}

/// The anchors GitHub makes for the headings of a markdown text.
fn anchors(text: &str) -> BTreeSet<String> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut out = BTreeSet::new();
    for (_, line) in outside_fences(text) {
        let hashes = line.chars().take_while(|c| *c == '#').count();
        if !(1..=6).contains(&hashes) || !line[hashes..].starts_with(' ') {
            continue;
        }
        let base = slug(line[hashes..].trim().trim_end_matches('#').trim());
        let n = seen.entry(base.clone()).or_insert(0);
        out.insert(if *n == 0 {
            base.clone()
        } else {
            format!("{base}-{n}")
        });
        *n += 1;
    }
    out
}

/// GitHub's anchor for a heading: links reduced to their text, then lower case, every
/// character but letters, digits, spaces, `-` and `_` dropped, and each space a `-`.
fn slug(heading: &str) -> String {
    let mut text = String::new();
    let mut rest = heading;
    // `[text](target)` renders as `text`.
    while let Some(open) = rest.find('[') {
        let Some(mid) = rest[open..].find("](") else {
            break;
        };
        let Some(close) = closing_paren(&rest[open + mid + 2..]) else {
            break;
        };
        text.push_str(&rest[..open]);
        text.push_str(&rest[open + 1..open + mid]);
        rest = &rest[open + mid + 2 + close + 1..];
    }
    text.push_str(rest);
    text.to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// `base`'s folder joined with `relative`, `..` and `.` resolved without touching the disk.
fn resolve(base: &Path, relative: &str) -> PathBuf {
    let mut out = base.parent().map(Path::to_path_buf).unwrap_or_default();
    for part in Path::new(relative).components() {
        match part {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// What is wrong with each internal link of `doc` (a path relative to the root).
fn broken_links(doc: &Path) -> Vec<String> {
    let root = root();
    let text = fs::read_to_string(root.join(doc)).expect("a readable document");
    let mut problems = Vec::new();
    for (n, line) in prose(&text) {
        for target in link_targets(&line) {
            let external = ["http://", "https://", "mailto:"]
                .iter()
                .any(|s| target.starts_with(s));
            if external || target.is_empty() {
                continue;
            }
            let (path, fragment) = match target.split_once('#') {
                Some((p, f)) => (p, Some(f)),
                None => (target.as_str(), None),
            };
            let file = if path.is_empty() {
                doc.to_path_buf()
            } else {
                resolve(doc, path)
            };
            let at = format!("{}:{n}: {target}", doc.display());
            if !root.join(&file).exists() {
                problems.push(format!("{at}: no file {}", file.display()));
                continue;
            }
            let Some(fragment) = fragment else {
                continue;
            };
            if file.extension().is_none_or(|e| e != "md") {
                problems.push(format!("{at}: an anchor into a file that is not markdown"));
                continue;
            }
            let target_text = fs::read_to_string(root.join(&file)).expect("a readable target");
            if !anchors(&target_text).contains(fragment) {
                problems.push(format!(
                    "{at}: no heading of {} makes #{fragment}",
                    file.display()
                ));
            }
        }
    }
    problems
}

#[test]
fn slugs_follow_githubs_rules() {
    assert_eq!(slug("Single sign-on (OIDC)"), "single-sign-on-oidc");
    assert_eq!(slug("OTP / password reset"), "otp--password-reset");
    assert_eq!(
        slug("Why was I denied? `portcullis explain`"),
        "why-was-i-denied-portcullis-explain"
    );
    assert_eq!(slug("Timeouts, one per phase"), "timeouts-one-per-phase");
    assert_eq!(slug("The [store](store.md) and_more"), "the-store-and_more");
    let text = "# A\n\n```sh\n# not a heading\n```\n## A\n### A!\n";
    let found = anchors(text);
    let expected: BTreeSet<String> = ["a", "a-1", "a-2"].map(String::from).into();
    assert_eq!(found, expected);
}

#[test]
fn links_are_found_outside_code_only() {
    let text = "see [a](a.md#x) and `[b](b.md)`\n```\n[c](c.md)\n```\n[d]: d.md\n";
    let targets: Vec<String> = prose(text)
        .iter()
        .flat_map(|(_, l)| link_targets(l))
        .collect();
    assert_eq!(targets, ["a.md#x", "d.md"]);
}

#[test]
fn every_relative_link_and_anchor_in_the_docs_resolves() {
    let docs = documents();
    assert!(docs.len() > 5, "{docs:?}");
    let problems: Vec<String> = docs.iter().flat_map(|d| broken_links(d)).collect();
    assert!(
        problems.is_empty(),
        "broken links:\n{}",
        problems.join("\n")
    );
}

/// The code spans of the last cell of every row of the claims table, by row.
fn claim_evidence(text: &str) -> Vec<(usize, Vec<String>)> {
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let cells: Vec<&str> = line.trim().trim_matches('|').split('|').collect();
        let is_row = line.trim_start().starts_with('|') && cells.len() >= 2;
        let separator = cells
            .iter()
            .all(|c| c.trim().chars().all(|ch| ch == '-' || ch == ':'));
        if !is_row || separator || cells[0].trim() == "claim" {
            continue;
        }
        let last = cells[cells.len() - 1];
        let spans = last
            .split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_string)
            .collect();
        rows.push((i + 1, spans));
    }
    rows
}

/// Every `fn` name declared in the Rust files under `tests/`, `src/` and `benches/`, and every
/// name `on_every_store!(scenario => name)` gives the tests it makes.
fn function_names() -> BTreeSet<String> {
    let root = root();
    let mut files = Vec::new();
    for dir in ["tests", "src", "benches"] {
        walk(&root.join(dir), &mut files);
    }
    let mut names = BTreeSet::new();
    for file in files
        .iter()
        .filter(|f| f.extension().is_some_and(|e| e == "rs"))
    {
        let text = fs::read_to_string(file).expect("a readable source file");
        for (at, _) in text.match_indices("fn ") {
            let before = text[..at].chars().next_back();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue;
            }
            let name: String = text[at + 3..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                names.insert(name);
            }
        }
        for (at, _) in text.match_indices("on_every_store!(") {
            let args = &text[at + "on_every_store!(".len()..];
            let args = &args[..args.find(')').unwrap_or(0)];
            if let Some((_, tests)) = args.split_once("=>") {
                names.insert(tests.trim().to_string());
            }
        }
    }
    names
}

#[test]
fn every_claim_names_evidence_that_exists() {
    let root = root();
    let text = fs::read_to_string(root.join("docs/claims.md")).expect("docs/claims.md");
    let functions = function_names();
    let rows = claim_evidence(&text);
    assert!(rows.len() > 20, "the claims table has {} rows", rows.len());
    let mut problems = Vec::new();
    for (line, evidence) in rows {
        if evidence.is_empty() {
            problems.push(format!("docs/claims.md:{line}: a claim with no evidence"));
        }
        for item in evidence {
            // `path`, `path::function` or `function`.
            let (file, function) = match item.split_once("::") {
                Some((file, function)) => (Some(file), Some(function)),
                None if item.contains('/') => (Some(item.as_str()), None),
                None => (None, Some(item.as_str())),
            };
            let found = file.is_none_or(|f| root.join(f).exists())
                && function.is_none_or(|f| functions.contains(f));
            if !found {
                problems.push(format!("docs/claims.md:{line}: `{item}` does not exist"));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
