//! Keeps the runbooks true: every `drctl …` command in a ```sh / ```bash
//! block of `runbooks/**/*.md` and of `README.md` is checked against the real binary. Its
//! subcommands must exist (each level's `--help` lists the next word under
//! "Commands:"), and every flag must be one the command at that point
//! accepts. Values (`200ms`, `orders`, `<SERVICE>`) are told from
//! subcommands by the help of the command they follow: a word that is not
//! one of its subcommands is a positional argument if it takes any, and a
//! mistake otherwise (`drctl rehearse orders` fails until `rehearse` exists).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use drctl_tests::drctl;

/// What `drctl <path> --help` says a command accepts.
#[derive(Debug, Default)]
struct Help {
    /// Subcommands listed under "Commands:".
    commands: Vec<String>,
    /// Options (`--long` and `-s`), and whether each takes a value.
    options: BTreeMap<String, bool>,
    /// It lists "Arguments:" (takes positional values).
    positionals: bool,
    /// Its usage ends in `<COMMAND>`: a subcommand is required.
    requires_subcommand: bool,
}

fn parse_help(text: &str) -> Help {
    let mut help = Help::default();
    let mut section = "";
    for line in text.lines() {
        if let Some(usage) = line.strip_prefix("Usage:") {
            help.requires_subcommand = usage.contains("<COMMAND>");
            continue;
        }
        if !line.starts_with(' ') && line.ends_with(':') {
            section = line.trim_end_matches(':');
            help.positionals |= section == "Arguments";
            continue;
        }
        let indent = line.len() - line.trim_start().len();
        let trimmed = line.trim_start();
        match section {
            // Entries at two spaces; wrapped descriptions are indented deeper.
            "Commands" if indent == 2 => {
                if let Some(name) = trimmed.split_whitespace().next() {
                    help.commands.push(name.to_string());
                }
            }
            // `  -o, --output <OUTPUT>  …` or `      --detach`; descriptions
            // on their own lines (long help) are indented deeper.
            "Options" if indent <= 6 && trimmed.starts_with('-') => {
                let tokens: Vec<&str> = trimmed.split_whitespace().collect();
                let mut names = Vec::new();
                let mut takes_value = false;
                for t in tokens {
                    if t.starts_with('-') && names.len() < 2 && !takes_value {
                        let (name, value) = match t.trim_end_matches(',').split_once('=') {
                            Some((n, _)) => (n, true),
                            None => (t.trim_end_matches(','), false),
                        };
                        names.push(name.to_string());
                        takes_value |= value;
                    } else if t.starts_with('<') || t.starts_with("[<") {
                        takes_value = true;
                    } else {
                        break;
                    }
                }
                for n in names {
                    help.options.insert(n, takes_value);
                }
            }
            _ => {}
        }
    }
    help
}

/// Runs `drctl … --help` once per command path.
#[derive(Default)]
struct Checker {
    helps: HashMap<Vec<String>, Result<Help, String>>,
}

impl Checker {
    fn help(&mut self, path: &[String]) -> Result<&Help, String> {
        self.helps
            .entry(path.to_vec())
            .or_insert_with(|| {
                let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
                args.push("--help");
                let (code, stdout, stderr) = drctl(&args);
                if code != 0 {
                    return Err(format!(
                        "`drctl {}` exited {code}:\n{stdout}{stderr}",
                        args.join(" ")
                    ));
                }
                Ok(parse_help(&stdout))
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// Checks the words after `drctl`; returns the subcommand path found.
    fn check(&mut self, words: &[Word]) -> Result<Vec<String>, String> {
        let mut path: Vec<String> = Vec::new();
        let mut positional_seen = false;
        let mut i = 0;
        while i < words.len() {
            let word = &words[i];
            let shown = if path.is_empty() {
                "drctl".to_string()
            } else {
                format!("drctl {}", path.join(" "))
            };
            let help = self.help(&path)?;
            let t = word.text.as_str();
            if word.quoted || word.is_placeholder() {
                positional_seen = true;
            } else if t == "--" {
                break;
            } else if let Some(long) = t.strip_prefix("--") {
                let (name, inline) = match long.split_once('=') {
                    Some((n, _)) => (format!("--{n}"), true),
                    None => (t.to_string(), false),
                };
                let Some(&takes_value) = help.options.get(&name) else {
                    return Err(format!(
                        "`{shown}` has no option {name} (it has {})",
                        keys(&help.options)
                    ));
                };
                if takes_value && !inline {
                    i += 1; // its value
                }
            } else if t.len() > 1
                && t.starts_with('-')
                && !t[1..].starts_with(|c: char| c.is_ascii_digit())
            {
                let name = &t[..2];
                let Some(&takes_value) = help.options.get(name) else {
                    return Err(format!(
                        "`{shown}` has no option {name} (it has {})",
                        keys(&help.options)
                    ));
                };
                if takes_value && t.len() == 2 {
                    i += 1;
                }
            } else if !positional_seen && help.commands.iter().any(|c| c == t) {
                path.push(t.to_string());
            } else if help.positionals {
                positional_seen = true;
            } else if !help.commands.is_empty() {
                return Err(format!(
                    "`{t}` is not a subcommand of `{shown}` (its subcommands: {})",
                    help.commands.join(", ")
                ));
            } else {
                return Err(format!("`{shown}` takes no argument, but was given `{t}`"));
            }
            i += 1;
        }
        let help = self.help(&path)?;
        if help.requires_subcommand && !positional_seen {
            return Err(format!(
                "`drctl {}` needs a subcommand (one of: {})",
                path.join(" "),
                help.commands.join(", ")
            ));
        }
        Ok(path)
    }
}

fn keys(options: &BTreeMap<String, bool>) -> String {
    options.keys().cloned().collect::<Vec<_>>().join(", ")
}

/// A shell word: its text after quote removal, and whether it was quoted.
#[derive(Debug, Clone, PartialEq)]
struct Word {
    text: String,
    quoted: bool,
}

impl Word {
    /// A stand-in for a value the reader fills in: `<service>`, `SERVICE`,
    /// `$VAR`, `$(…)`, `…`.
    fn is_placeholder(&self) -> bool {
        let t = self.text.as_str();
        (t.starts_with('<') && t.ends_with('>'))
            || t.starts_with('$')
            || t.contains('…')
            || t.contains("...")
            || (t.len() > 1
                && t.chars().any(|c| c.is_ascii_uppercase())
                && t.chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_' || c == '-'))
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Word(Word),
    /// `|`, `||`, `&&`, `;`, `&`: separates commands.
    Separator,
    /// `>`, `>>`, `<`: the next word is a file, not an argument.
    Redirect,
}

/// Splits a shell line into words, separators and redirections (quotes,
/// backslashes, comments, `$(…)`); good enough for documentation.
fn tokenize(line: &str) -> Vec<Token> {
    let chars: Vec<char> = line.chars().collect();
    let mut tokens = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quoted = false;
    let mut i = 0;
    let flush =
        |tokens: &mut Vec<Token>, cur: &mut String, in_word: &mut bool, quoted: &mut bool| {
            if *in_word {
                tokens.push(Token::Word(Word {
                    text: std::mem::take(cur),
                    quoted: *quoted,
                }));
            }
            *in_word = false;
            *quoted = false;
        };
    while i < chars.len() {
        let c = chars[i];
        match c {
            c if c.is_whitespace() => flush(&mut tokens, &mut cur, &mut in_word, &mut quoted),
            '#' if !in_word => break,
            '\'' => {
                in_word = true;
                quoted = true;
                i += 1;
                while i < chars.len() && chars[i] != '\'' {
                    cur.push(chars[i]);
                    i += 1;
                }
            }
            '"' => {
                in_word = true;
                quoted = true;
                i += 1;
                while i < chars.len() && chars[i] != '"' {
                    if chars[i] == '\\' && i + 1 < chars.len() {
                        i += 1;
                    }
                    cur.push(chars[i]);
                    i += 1;
                }
            }
            '\\' => {
                in_word = true;
                if i + 1 < chars.len() {
                    i += 1;
                    cur.push(chars[i]);
                }
            }
            '$' if chars.get(i + 1) == Some(&'(') => {
                // Command substitution: one value, whatever is inside.
                in_word = true;
                let mut depth = 0;
                while i < chars.len() {
                    cur.push(chars[i]);
                    match chars[i] {
                        '(' => depth += 1,
                        ')' => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                    i += 1;
                }
            }
            '<' if !in_word
                && chars[i..]
                    .iter()
                    .take_while(|c| !c.is_whitespace())
                    .any(|&c| c == '>') =>
            {
                // A placeholder such as <service>.
                in_word = true;
                while i < chars.len() && !chars[i].is_whitespace() {
                    cur.push(chars[i]);
                    i += 1;
                }
                continue;
            }
            '|' | ';' | '&' => {
                flush(&mut tokens, &mut cur, &mut in_word, &mut quoted);
                while i + 1 < chars.len() && matches!(chars[i + 1], '|' | '&') {
                    i += 1;
                }
                tokens.push(Token::Separator);
            }
            '>' | '<' => {
                // `2>` redirects stderr: the 2 is not an argument.
                if in_word && !quoted && cur.chars().all(|c| c.is_ascii_digit()) {
                    cur.clear();
                    in_word = false;
                }
                flush(&mut tokens, &mut cur, &mut in_word, &mut quoted);
                if chars.get(i + 1) == Some(&'>') {
                    i += 1;
                }
                if chars.get(i + 1) == Some(&'&') {
                    // >&2: the target is a descriptor, part of the operator.
                    i += 1;
                    while i + 1 < chars.len()
                        && (chars[i + 1].is_ascii_digit() || chars[i + 1] == '-')
                    {
                        i += 1;
                    }
                } else {
                    tokens.push(Token::Redirect);
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
        i += 1;
    }
    flush(&mut tokens, &mut cur, &mut in_word, &mut quoted);
    tokens
}

/// The argument lists of the `drctl` commands on a shell line (after an
/// optional `$ ` prompt and `VAR=value` assignments).
fn drctl_commands(line: &str) -> Vec<Vec<Word>> {
    let line = line.trim_start();
    let line = line.strip_prefix("$ ").unwrap_or(line);
    let mut commands = Vec::new();
    let mut segment: Vec<Word> = Vec::new();
    let mut tokens = tokenize(line).into_iter();
    let mut finish = |segment: &mut Vec<Word>| {
        let words = std::mem::take(segment);
        let start = words
            .iter()
            .position(|w| w.quoted || !is_assignment(&w.text))
            .unwrap_or(words.len());
        if words
            .get(start)
            .is_some_and(|w| !w.quoted && w.text == "drctl")
        {
            commands.push(words[start + 1..].to_vec());
        }
    };
    while let Some(t) = tokens.next() {
        match t {
            Token::Word(w) => segment.push(w),
            Token::Separator => finish(&mut segment),
            Token::Redirect => {
                tokens.next(); // the file
            }
        }
    }
    finish(&mut segment);
    commands
}

fn is_assignment(word: &str) -> bool {
    word.split_once('=').is_some_and(|(name, _)| {
        !name.is_empty()
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !name.starts_with(|c: char| c.is_ascii_digit())
    })
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
fn check_markdown(checker: &mut Checker, file: &str, markdown: &str) -> (usize, Vec<String>) {
    let mut checked = 0;
    let mut failures = Vec::new();
    for (line_no, line) in shell_lines(markdown) {
        for args in drctl_commands(&line) {
            checked += 1;
            if let Err(e) = checker.check(&args) {
                let cmd: Vec<&str> = args.iter().map(|w| w.text.as_str()).collect();
                failures.push(format!("{file}:{line_no}: `drctl {}`: {e}", cmd.join(" ")));
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
    let mut checker = Checker::default();
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
        let (n, f) = check_markdown(&mut checker, &name, &text);
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
    let mut checker = Checker::default();
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
    let (checked, failures) = check_markdown(&mut checker, "doc.md", doc);
    assert_eq!(checked, 15, "failures: {failures:#?}");
    let expected = [
        (
            "doc.md:20: `drctl rehearse orders`",
            "not a subcommand of `drctl`",
        ),
        ("doc.md:21: `drctl status --bogus`", "has no option --bogus"),
        ("doc.md:22: `drctl lab link`", "needs a subcommand"),
        (
            "doc.md:23: `drctl lab link sever`",
            "not a subcommand of `drctl lab link`",
        ),
        ("doc.md:24: `drctl status orders`", "takes no argument"),
        ("doc.md:25: `drctl lab up --nope`", "has no option --nope"),
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
        let args = drctl_commands(line).remove(0);
        Checker::default().check(&args).expect("a valid command")
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
