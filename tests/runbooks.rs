//! Keeps the runbooks true: every `drctl …` command in a ```sh / ```bash
//! block of `runbooks/**/*.md` and of `README.md` is parsed by the real
//! CLI: the binary's own clap definition (`drctl::cli::Cli`, through
//! `clap::CommandFactory`), so subcommands, flags, required arguments and
//! value types are checked exactly as `drctl` would check them. Lines are
//! split into words by `shell-words` (quotes, backslashes, comments);
//! commands are separated by `|`, `||`, `&&`, `;` and `&` written as words
//! (`a | b`, `a;`), redirections (`> out.json`, `2>&1`) are dropped.
//!
//! Stand-ins for what the reader fills in (`<service>`, `SERVICE`, `$VAR`,
//! `…`) are accepted where a value goes, even a typed one (`--wait
//! DURATION`), and where a subcommand goes (`drctl lab <command>`).

use std::path::{Path, PathBuf};

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::CommandFactory;
use drctl::cli::Cli;

/// A stand-in for a value the reader fills in: `<service>`, `SERVICE`,
/// `$VAR`, `…`.
fn is_placeholder(word: &str) -> bool {
    (word.starts_with('<') && word.ends_with('>'))
        || word.starts_with('$')
        || word.contains('…')
        || word.contains("...")
        || (word.len() > 1
            && word.chars().any(|c| c.is_ascii_uppercase())
            && word
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_' || c == '-'))
}

/// Parses the words after `drctl` with the real CLI; returns the
/// subcommand path it names (empty when a stand-in took a subcommand's
/// place), or clap's complaint.
fn check(args: &[String]) -> Result<Vec<String>, String> {
    let argv = std::iter::once("drctl").chain(args.iter().map(String::as_str));
    match Cli::command().try_get_matches_from(argv) {
        Ok(matches) => {
            let mut path = Vec::new();
            let mut m = &matches;
            while let Some((name, sub)) = m.subcommand() {
                path.push(name.to_string());
                m = sub;
            }
            Ok(path)
        }
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            Ok(Vec::new())
        }
        Err(e) if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => Err(format!(
            "needs a subcommand or argument (see `drctl {} --help`)",
            args.join(" ")
        )),
        Err(e) => {
            let offending = [ContextKind::InvalidValue, ContextKind::InvalidSubcommand]
                .into_iter()
                .find_map(|k| match e.get(k) {
                    Some(ContextValue::String(v)) => Some(v.clone()),
                    _ => None,
                });
            let stand_in_value = matches!(
                e.kind(),
                ErrorKind::InvalidValue | ErrorKind::ValueValidation | ErrorKind::InvalidSubcommand
            ) && offending.as_deref().is_some_and(is_placeholder);
            if stand_in_value {
                return Ok(Vec::new());
            }
            // clap's first line names the problem ("unexpected argument
            // '--bogus' found"); the rest is usage and tips.
            let text = e.render().to_string();
            let first = text.lines().next().unwrap_or_default();
            Err(first.trim_start_matches("error: ").to_string())
        }
    }
}

/// Whether a word is a redirection, and if so whether its target is the
/// next word (`> out.json`) rather than part of it (`2>&1`, `>out.json`).
fn redirection(word: &str) -> Option<bool> {
    if is_placeholder(word) {
        return None;
    }
    let op = word.trim_start_matches(|c: char| c.is_ascii_digit() || c == '&');
    let target = op
        .strip_prefix(">>")
        .or_else(|| op.strip_prefix('>'))
        .or_else(|| op.strip_prefix('<'))?;
    Some(target.is_empty())
}

fn is_assignment(word: &str) -> bool {
    word.split_once('=').is_some_and(|(name, _)| {
        !name.is_empty()
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !name.starts_with(|c: char| c.is_ascii_digit())
    })
}

/// The argument lists of the `drctl` commands on a shell line (after an
/// optional `$ ` prompt and `VAR=value` assignments).
fn drctl_commands(line: &str) -> Result<Vec<Vec<String>>, String> {
    let line = line.trim_start();
    let line = line.strip_prefix("$ ").unwrap_or(line);
    let words = shell_words::split(line).map_err(|e| format!("not a shell line: {e}"))?;
    let mut segments: Vec<Vec<String>> = vec![Vec::new()];
    let mut words = words.into_iter();
    while let Some(word) = words.next() {
        if matches!(word.as_str(), "|" | "||" | "&&" | ";" | "&") {
            segments.push(Vec::new());
        } else if let Some(takes_next) = redirection(&word) {
            if takes_next {
                words.next();
            }
        } else if let Some(last) = word.strip_suffix(';') {
            segments.last_mut().unwrap().push(last.to_string());
            segments.push(Vec::new());
        } else {
            segments.last_mut().unwrap().push(word);
        }
    }
    Ok(segments
        .into_iter()
        .filter_map(|segment| {
            let start = segment.iter().position(|w| !is_assignment(w))?;
            (segment[start] == "drctl").then(|| segment[start + 1..].to_vec())
        })
        .collect())
}

/// The lines of the shell blocks (```sh, ```bash, ```shell) of a markdown
/// text, with their 1-based line numbers; continuation lines (`\` at the
/// end) are joined onto the first.
fn shell_lines(markdown: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut fence: Option<(char, usize, bool)> = None; // (char, length, is shell)
    let mut pending: Option<(usize, String)> = None;
    for (n, raw) in markdown.lines().enumerate() {
        let n = n + 1;
        let trimmed = raw.trim_start();
        let fence_char = trimmed.chars().next().filter(|c| *c == '`' || *c == '~');
        let run = fence_char.map_or(0, |c| trimmed.chars().take_while(|&x| x == c).count());
        match fence {
            // A backtick fence's info string has no backtick (CommonMark):
            // ```` ```sh ```` at the start of a line is inline code.
            None if run >= 3 && !(fence_char == Some('`') && trimmed[run..].contains('`')) => {
                let info = trimmed[run..].trim();
                let lang = info
                    .split(|c: char| c.is_whitespace() || c == ',' || c == '{')
                    .next()
                    .unwrap_or("");
                fence = Some((
                    fence_char.unwrap(),
                    run,
                    matches!(lang, "sh" | "bash" | "shell"),
                ));
            }
            None => {}
            Some((c, len, _))
                if fence_char == Some(c) && run >= len && trimmed[run..].trim().is_empty() =>
            {
                if let Some(p) = pending.take() {
                    out.push(p);
                }
                fence = None;
            }
            Some((_, _, true)) => {
                let (start, mut text) = pending.take().unwrap_or((n, String::new()));
                let (body, continues) = match raw.trim_end().strip_suffix('\\') {
                    Some(body) => (body, true),
                    None => (raw, false),
                };
                text.push_str(body);
                if continues {
                    text.push(' ');
                    pending = Some((start, text));
                } else {
                    out.push((start, text));
                }
            }
            Some(_) => {}
        }
    }
    out.extend(pending);
    out
}

fn markdown_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries =
        std::fs::read_dir(dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            markdown_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "md") {
            out.push(path);
        }
    }
}

/// Checks one markdown text; returns the number of commands checked and
/// the failures, each naming `file:line` and the command.
fn check_markdown(file: &str, markdown: &str) -> (usize, Vec<String>) {
    let mut checked = 0;
    let mut failures = Vec::new();
    for (line_no, line) in shell_lines(markdown) {
        let commands = match drctl_commands(&line) {
            Ok(commands) => commands,
            Err(e) => {
                failures.push(format!("{file}:{line_no}: `{line}`: {e}"));
                continue;
            }
        };
        for args in commands {
            checked += 1;
            if let Err(e) = check(&args) {
                failures.push(format!("{file}:{line_no}: `drctl {}`: {e}", args.join(" ")));
            }
        }
    }
    (checked, failures)
}

#[test]
fn every_drctl_command_in_the_runbooks_exists() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    markdown_files(&root.join("runbooks"), &mut files);
    files.sort();
    assert!(!files.is_empty(), "no markdown files under runbooks/");
    // The README's commands are held to the same standard.
    files.push(root.join("README.md"));
    let mut checked = 0;
    let mut failures = Vec::new();
    for path in &files {
        let text = std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        let name = path
            .strip_prefix(&root)
            .unwrap_or(path)
            .display()
            .to_string();
        let (n, f) = check_markdown(&name, &text);
        checked += n;
        failures.extend(f);
    }
    assert!(
        failures.is_empty(),
        "{} runbook command(s) do not match the drctl CLI:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(
        checked > 0,
        "no `drctl …` line found in the ```sh blocks of {} runbook file(s)",
        files.len()
    );
    eprintln!(
        "checked {checked} drctl command(s) in {} runbook file(s)",
        files.len()
    );
}

/// The checker itself: it must accept what the CLI accepts and catch the
/// mistakes it exists for, or the test above proves nothing.
#[test]
fn the_checker_tells_commands_from_values_and_catches_mistakes() {
    let doc = "\
# title
```` ```sh ```` blocks are checked (inline code, not a fence):
```sh
drctl lab link latency 200ms
$ drctl lab kill-primary orders
drctl lab --dir /tmp/x link cut
drctl status --api http://127.0.0.1:7878 -o json | jq '.services[]'
drctl config validate config/docker-compose.toml --output=json > out.json 2>&1
DRCTL_LAB_DIR=/tmp/y drctl lab status && drctl lab link restore
drctl lab kill-primary <service>
drctl failover --resume OP_ID --wait DURATION
drctl lab up \\
  --detach --api-port 7979
```

```text
drctl this-is-not-checked
```

```bash
drctl rehearse orders
drctl status --bogus
drctl lab link
drctl lab link sever
drctl status orders
echo ok; drctl lab up --nope
```
";
    let (checked, failures) = check_markdown("doc.md", doc);
    assert_eq!(checked, 16, "failures: {failures:#?}");
    let expected = [
        (
            "doc.md:21: `drctl rehearse orders`",
            "unrecognized subcommand 'rehearse'",
        ),
        (
            "doc.md:22: `drctl status --bogus`",
            "unexpected argument '--bogus'",
        ),
        ("doc.md:23: `drctl lab link`", "needs a subcommand"),
        (
            "doc.md:24: `drctl lab link sever`",
            "unrecognized subcommand 'sever'",
        ),
        (
            "doc.md:25: `drctl status orders`",
            "unexpected argument 'orders'",
        ),
        (
            "doc.md:26: `drctl lab up --nope`",
            "unexpected argument '--nope'",
        ),
    ];
    assert_eq!(failures.len(), expected.len(), "failures: {failures:#?}");
    for ((prefix, reason), got) in expected.iter().zip(&failures) {
        assert!(
            got.starts_with(prefix) && got.contains(reason),
            "expected {prefix} … {reason}, got {got}"
        );
    }

    // The subcommand paths found, for the lines that are fine.
    let path = |line: &str| {
        let args = drctl_commands(line).expect("a shell line").remove(0);
        check(&args).expect("a valid command")
    };
    assert_eq!(
        path("drctl lab link latency 200ms"),
        ["lab", "link", "latency"]
    );
    assert_eq!(
        path("drctl lab kill-primary orders"),
        ["lab", "kill-primary"]
    );
    assert_eq!(
        path("drctl lab --dir /tmp/x link cut"),
        ["lab", "link", "cut"]
    );
}
