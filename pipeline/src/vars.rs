//! `${VAR}` and `${VAR:-default}` substitution, with a map back to the original positions.
//!
//! Variables are replaced everywhere except in comments, before the file is tokenized, so one
//! file serves several environments (`url = '${DATABASE_URL:-sqlite://data/sluice.db}'`).
//! As in a POSIX shell, `:-` takes the default when the variable is unset *or empty*; a
//! default may itself contain variables; `$${` writes a literal `${`. A variable that is
//! unset and has no default is an error at its position, never an empty string. Values may
//! not contain line breaks, so line numbers never move and errors point into the file as
//! written.
//!
//! A value is data, never SQL, as in a shell, which never re-parses an expanded value: inside a
//! quoted string or identifier, the quote character in a value is doubled (`''`, `""`), so
//! the value can never end the literal (a password with a `'` stays one string; no option or
//! statement can be injected); outside quotes, a value must be one word or number (letters,
//! digits, `_`, `.`), or it is an error at its position.

use crate::error::{Located, Position};

/// Text after substitution, and how to find where a position came from.
#[derive(Debug, Clone)]
pub struct Substituted {
    /// The substituted text.
    pub text: String,
    /// Per line (0-based), breakpoints sorted by new column.
    lines: Vec<Vec<Segment>>,
}

#[derive(Debug, Clone, Copy)]
struct Segment {
    /// First column (1-based) of the segment in the substituted text.
    new_column: usize,
    /// Its column in the original text.
    original_column: usize,
    /// A substituted value: every column in it maps to the `${` it replaced.
    value: bool,
}

impl Substituted {
    /// The position in the original text of `position` in the substituted text.
    pub fn original(&self, position: Position) -> Position {
        let Some(segments) = position
            .line
            .checked_sub(1)
            .and_then(|line| self.lines.get(line))
        else {
            return position;
        };
        let column = match segments
            .iter()
            .rev()
            .find(|s| s.new_column <= position.column)
        {
            Some(s) if s.value => s.original_column,
            Some(s) => s.original_column + (position.column - s.new_column),
            None => position.column,
        };
        Position {
            line: position.line,
            column,
        }
    }
}

/// The substituted text being written, with the current positions on both sides.
struct Writer {
    out: String,
    lines: Vec<Vec<Segment>>,
    /// Current line (same on both sides) and columns in the original and substituted text.
    line: usize,
    column: usize,
    new_column: usize,
}

impl Writer {
    /// Copies `text`, `original` characters long in the original text (`$${` is 3 for 2).
    fn copy(&mut self, text: &str, original: usize) {
        let segments = self.lines.last_mut().expect("one line at least");
        let aligned = segments.last().is_some_and(|s| {
            !s.value && s.original_column + (self.new_column - s.new_column) == self.column
        });
        if !aligned {
            segments.push(Segment {
                new_column: self.new_column,
                original_column: self.column,
                value: false,
            });
        }
        self.out.push_str(text);
        if text == "\n" {
            self.line += 1;
            self.column = 1;
            self.new_column = 1;
            self.lines.push(Vec::new());
        } else {
            self.column += original;
            self.new_column += text.chars().count();
        }
    }

    /// Writes a variable's `value` in place of `original` characters (`${…}`).
    fn value(&mut self, value: &str, original: usize) {
        self.lines
            .last_mut()
            .expect("one line at least")
            .push(Segment {
                new_column: self.new_column,
                original_column: self.column,
                value: true,
            });
        self.out.push_str(value);
        self.new_column += value.chars().count();
        self.column += original;
    }
}

/// Replaces the variables of `text`, looking values up with `lookup`.
pub fn substitute(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Substituted, Located> {
    substitute_in(text, lookup, None, 0)
}

/// How deep defaults may hold variables whose defaults hold variables (`${A:-${B:-…}}`):
/// deeper is an error, not a stack overflow.
const MAX_NESTING: usize = 32;

/// [`substitute`] for text that starts inside quotes `quote` (a default inside a literal),
/// `depth` defaults deep.
fn substitute_in(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    quote: Option<char>,
    depth: usize,
) -> Result<Substituted, Located> {
    let chars: Vec<char> = text.chars().collect();
    let mut w = Writer {
        out: String::with_capacity(text.len()),
        lines: vec![Vec::new()],
        line: 1,
        column: 1,
        new_column: 1,
    };
    let mut quote = quote;
    let mut i = 0;
    let mut buffer = [0u8; 4];
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        // Comments are copied as they are.
        let comment_end = match (quote, c, next) {
            (None, '-', Some('-')) => Some(
                (i..chars.len())
                    .find(|&j| chars[j] == '\n')
                    .unwrap_or(chars.len()),
            ),
            (None, '/', Some('*')) => Some(
                (i + 2..chars.len().saturating_sub(1))
                    .find(|&j| chars[j] == '*' && chars[j + 1] == '/')
                    .map_or(chars.len(), |j| j + 2),
            ),
            _ => None,
        };
        if let Some(end) = comment_end {
            for &c in &chars[i..end] {
                w.copy(c.encode_utf8(&mut buffer), 1);
            }
            i = end;
            continue;
        }
        if c == '$' && next == Some('$') && chars.get(i + 2) == Some(&'{') {
            w.copy("${", 3);
            i += 3;
            continue;
        }
        if c == '$' && next == Some('{') {
            let here = Position {
                line: w.line,
                column: w.column,
            };
            let end = closing_brace(&chars, i + 2)
                .ok_or_else(|| Located::new(here, "'${' without its closing '}'"))?;
            let inner: String = chars[i + 2..end].iter().collect();
            if depth >= MAX_NESTING {
                return Err(Located::new(
                    here,
                    format!("variable defaults nest more than {MAX_NESTING} deep"),
                ));
            }
            let value = expand(&inner, here, lookup, quote, depth)?;
            if value.contains(['\n', '\r']) {
                return Err(Located::new(
                    here,
                    format!("the value of ${{{inner}}} contains a line break"),
                ));
            }
            w.value(&value, end + 1 - i);
            i = end + 1;
            continue;
        }
        match (quote, c) {
            (None, '\'' | '"') => quote = Some(c),
            (Some(q), c) if q == c => quote = None,
            _ => {}
        }
        w.copy(c.encode_utf8(&mut buffer), 1);
        i += 1;
    }
    Ok(Substituted {
        text: w.out,
        lines: w.lines,
    })
}

/// The index of the `}` closing a `${` whose name starts at `from`, skipping nested `${…}`.
fn closing_brace(chars: &[char], from: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut i = from;
    while i < chars.len() {
        match chars[i] {
            '$' if chars.get(i + 1) == Some(&'{') => {
                depth += 1;
                i += 1;
            }
            '}' if depth == 0 => return Some(i),
            '}' => depth -= 1,
            '\n' => return None,
            _ => {}
        }
        i += 1;
    }
    None
}

/// The value of `NAME` or `NAME:-default` (the text between the braces), as it is written
/// where it stands: inside quotes `quote`, or outside any.
fn expand(
    inner: &str,
    at: Position,
    lookup: &dyn Fn(&str) -> Option<String>,
    quote: Option<char>,
    depth: usize,
) -> Result<String, Located> {
    let (name, default) = match inner.split_once(":-") {
        Some((name, default)) => (name, Some(default)),
        None => (inner, None),
    };
    let valid = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return Err(Located::new(
            at,
            format!(
                "'${{{inner}}}': expected ${{NAME}} or ${{NAME:-default}} with NAME of letters, digits and _"
            ),
        ));
    }
    match (lookup(name), default) {
        (Some(value), Some(_)) if !value.is_empty() => as_written(name, &value, quote, at),
        (Some(value), None) => as_written(name, &value, quote, at),
        // The default is the file's own text; only the values inside it are data.
        (_, Some(default)) => Ok(substitute_in(default, lookup, quote, depth + 1)
            .map_err(|e| Located::new(at, e.message))?
            .text),
        (None, None) => Err(Located::new(
            at,
            format!(
                "variable {name} is not set (give it a value, or a default with ${{{name}:-default}})"
            ),
        )),
    }
}

/// Variable `name`'s `value` as it may be written where it stands: inside quotes `quote` with
/// that quote doubled, so that it cannot end the literal; outside quotes only as one word or
/// number.
fn as_written(
    name: &str,
    value: &str,
    quote: Option<char>,
    at: Position,
) -> Result<String, Located> {
    match quote {
        Some(quote) => Ok(value.replace(quote, &format!("{quote}{quote}"))),
        None if !value.is_empty()
            && value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.')) =>
        {
            Ok(value.to_string())
        }
        None => Err(Located::new(
            at,
            format!(
                "the value of ${{{name}}} is used outside quotes, where it must be one word or \
                 number (letters, digits, _ and .); quote it ('${{{name}}}') to use it as text"
            ),
        )),
    }
}
