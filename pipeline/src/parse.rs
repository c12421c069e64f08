//! The pipeline file's statements, parsed without any I/O: `SET`, `CREATE TABLE … WITH (…)`,
//! `CREATE VIEW … AS <query>`, `INSERT INTO … <query>` and `INCLUDE 'file.sql'` (which the
//! `include` module resolves).
//!
//! The text is tokenized with DataFusion's SQL tokenizer (so quoting, comments and literals
//! follow DataFusion's rules); the statement forms are parsed here, and the query of an
//! `INSERT` or a view is kept as text for DataFusion to plan, padded so that DataFusion's own error
//! positions are the file's.
//!
//! Positions are in the line numbering of the whole pipeline: a file whose first line is the
//! pipeline's line `line_offset + 1` (an included file) has its lines shifted by
//! `line_offset`; the file given has offset 0, so its positions are its own.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Fields};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::tokenizer::{Location, Token, TokenWithSpan, Tokenizer};

use crate::error::{Located, Position};
use crate::types::sql_type;
use crate::vars::Substituted;

/// A value with the position it was written at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spanned<T> {
    /// The value.
    pub value: T,
    /// Where it starts in the original file.
    pub position: Position,
}

/// What a pipeline file holds: statements, and `INCLUDE`s of other files' statements.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    /// A statement written in the file.
    Statement(Statement),
    /// `INCLUDE 'file.sql'`: the statements of another file, as if written here.
    Include(IncludeDecl),
}

/// An `INCLUDE 'file.sql'`.
#[derive(Debug, Clone, PartialEq)]
pub struct IncludeDecl {
    /// The path as written (relative paths are relative to the including file's directory).
    pub path: String,
    /// Where the `INCLUDE` starts.
    pub position: Position,
}

/// One statement of a pipeline file.
#[derive(Debug, Clone, PartialEq)]
pub enum Statement {
    /// `SET key = value`: a setting for the `INSERT`s that follow.
    Set {
        /// The setting's name, lowercased.
        key: Spanned<String>,
        /// Its value as written (a string literal's content, a number or a word).
        value: Spanned<String>,
    },
    /// `CREATE TABLE name (…) WITH (…)`: a source or sink.
    CreateTable(TableDecl),
    /// `CREATE VIEW name AS <query>`: a named query the queries after it may read.
    CreateView(ViewDecl),
    /// `INSERT INTO sink <query>`: a streaming query.
    Insert(InsertDecl),
}

/// A declared table.
#[derive(Debug, Clone, PartialEq)]
pub struct TableDecl {
    /// Its name (as DataFusion normalizes it: lowercased unless quoted).
    pub name: Spanned<String>,
    /// Whether a column list was written (sources need one, sinks take the query's).
    pub column_list: bool,
    /// Physical columns, decoded from the data.
    pub columns: Vec<ColumnDecl>,
    /// `name AS expr` columns, computed from the physical ones.
    pub computed: Vec<ComputedDecl>,
    /// `WATERMARK FOR column AS column - INTERVAL …`.
    pub watermark: Option<WatermarkDecl>,
    /// `DEDUPLICATE ON (columns) [WITHIN WATERMARK]`.
    pub dedup: Option<DedupDecl>,
    /// The `WITH (…)` options in order, keys lowercased.
    pub options: Vec<(Spanned<String>, Spanned<String>)>,
}

/// A physical column.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnDecl {
    /// The column's name.
    pub name: Spanned<String>,
    /// Its Arrow type.
    pub data_type: DataType,
}

/// A computed column.
#[derive(Debug, Clone, PartialEq)]
pub struct ComputedDecl {
    /// The column's name.
    pub name: Spanned<String>,
    /// The SQL expression, as text.
    pub expr: Spanned<String>,
}

/// A deduplication of a source's rows (Spark's `dropDuplicates(columns)`, or
/// `dropDuplicatesWithinWatermark(columns)` with `WITHIN WATERMARK`).
#[derive(Debug, Clone, PartialEq)]
pub struct DedupDecl {
    /// Where the clause starts.
    pub position: Position,
    /// The key columns.
    pub columns: Vec<Spanned<String>>,
    /// Whether keys are forgotten once the watermark passes their first event time plus the
    /// delay (`WITHIN WATERMARK`).
    pub within_watermark: bool,
}

/// A watermark declaration.
#[derive(Debug, Clone, PartialEq)]
pub struct WatermarkDecl {
    /// The event-time column.
    pub column: Spanned<String>,
    /// How far behind the latest event time the watermark trails, in ms.
    pub delay_ms: i64,
}

/// An `INSERT INTO`.
#[derive(Debug, Clone, PartialEq)]
pub struct InsertDecl {
    /// The sink table.
    pub target: Spanned<String>,
    /// The query, preceded by line breaks and spaces so that its first character sits at its
    /// line and column in the file.
    pub query: String,
    /// Where the query starts.
    pub query_position: Position,
}

/// A `CREATE VIEW`.
#[derive(Debug, Clone, PartialEq)]
pub struct ViewDecl {
    /// The view's name (as DataFusion normalizes it: lowercased unless quoted).
    pub name: Spanned<String>,
    /// The query, padded as an `INSERT`'s.
    pub query: String,
    /// Where the query starts.
    pub query_position: Position,
}

/// Parses the statements of a substituted pipeline file whose line 1 is the pipeline's line
/// `line_offset + 1` (0 for the file given).
pub fn parse(file: &Substituted, line_offset: usize) -> Result<Vec<Item>, Located> {
    let dialect = GenericDialect {};
    let tokens = Tokenizer::new(&dialect, &file.text)
        .tokenize_with_location()
        .map_err(|e| {
            Located::new(
                file.original(position(e.location)).down(line_offset),
                e.message,
            )
        })?;
    let tokens: Vec<TokenWithSpan> = tokens
        .into_iter()
        .filter(|t| !matches!(t.token, Token::Whitespace(_) | Token::EOF))
        .collect();
    let lines = LineIndex::new(&file.text);
    let mut items = Vec::new();
    for statement in tokens.split(|t| t.token == Token::SemiColon) {
        if statement.is_empty() {
            continue;
        }
        let mut parser = Parser {
            tokens: statement,
            next: 0,
            file,
            line_offset,
            lines: &lines,
            half_shift: false,
            depth: 0,
        };
        items.push(parser.item()?);
    }
    Ok(items)
}

fn position(location: Location) -> Position {
    Position {
        line: usize::try_from(location.line).unwrap_or(usize::MAX),
        column: usize::try_from(location.column).unwrap_or(usize::MAX),
    }
}

/// Byte offsets of line starts, to cut a statement's text out of the file.
struct LineIndex<'a> {
    text: &'a str,
    starts: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    fn new(text: &'a str) -> Self {
        let starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Self { text, starts }
    }

    fn offset(&self, at: Position) -> usize {
        let start = self
            .starts
            .get(at.line.saturating_sub(1))
            .copied()
            .unwrap_or(self.text.len());
        self.text[start..]
            .char_indices()
            .nth(at.column.saturating_sub(1))
            .map_or(self.text.len(), |(i, _)| start + i)
    }
}

struct Parser<'t> {
    tokens: &'t [TokenWithSpan],
    next: usize,
    file: &'t Substituted,
    /// Lines of the pipeline before the file's first (see the module's documentation).
    line_offset: usize,
    lines: &'t LineIndex<'t>,
    /// Whether the current token is a `>>` of which one `>` closed a nested type already.
    half_shift: bool,
    /// How deep in nested types the parser is (bounded: the JSON reader walks values as deep).
    depth: usize,
}

/// The deepest nesting of `ARRAY`, `MAP` and `STRUCT` in a column type.
const MAX_TYPE_DEPTH: usize = 32;

impl Parser<'_> {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.next).map(|t| &t.token)
    }

    /// Position (in the original file, in the pipeline's numbering) of `location` in the
    /// substituted text.
    fn original(&self, location: Location) -> Position {
        self.file
            .original(position(location))
            .down(self.line_offset)
    }

    /// Position (in the original file) of the next token, or just after the statement.
    fn here(&self) -> Position {
        let location = match self.tokens.get(self.next) {
            Some(t) => t.span.start,
            None => match self.tokens.last() {
                Some(t) => t.span.end,
                None => return Position { line: 1, column: 1 }.down(self.line_offset),
            },
        };
        self.original(location)
    }

    fn error<T>(&self, message: impl Into<String>) -> Result<T, Located> {
        Err(Located::new(self.here(), message))
    }

    fn describe(&self) -> String {
        match self.peek() {
            Some(token) => format!("'{token}'"),
            None => "the end of the statement".into(),
        }
    }

    /// Items read by `item`, separated by commas, up to and including a `)` (the `(` is
    /// read); `what` names an item in the error after one.
    fn until_paren(
        &mut self,
        what: &str,
        mut item: impl FnMut(&mut Self) -> Result<(), Located>,
    ) -> Result<(), Located> {
        loop {
            item(self)?;
            match self.bump() {
                Some(Token::Comma) => continue,
                Some(Token::RParen) => return Ok(()),
                _ => {
                    self.next -= 1;
                    return self.error(format!(
                        "expected ',' or ')' after {what}, found {}",
                        self.describe()
                    ));
                }
            }
        }
    }

    fn bump(&mut self) -> Option<&Token> {
        let token = self.tokens.get(self.next).map(|t| &t.token);
        self.next += 1;
        token
    }

    fn is_keyword(&self, keyword: &str) -> bool {
        matches!(self.peek(), Some(Token::Word(w)) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(keyword))
    }

    fn keyword(&mut self, keyword: &str) -> Result<(), Located> {
        if self.is_keyword(keyword) {
            self.next += 1;
            Ok(())
        } else {
            self.error(format!("expected {keyword}, found {}", self.describe()))
        }
    }

    fn expect(&mut self, token: Token) -> Result<(), Located> {
        if self.peek() == Some(&token) {
            self.next += 1;
            Ok(())
        } else {
            self.error(format!("expected '{token}', found {}", self.describe()))
        }
    }

    /// An identifier, lowercased unless quoted (DataFusion's normalization).
    fn identifier(&mut self, what: &str) -> Result<Spanned<String>, Located> {
        let position = self.here();
        match self.peek() {
            Some(Token::Word(w)) => {
                let value = match w.quote_style {
                    Some(_) => w.value.clone(),
                    None => w.value.to_ascii_lowercase(),
                };
                self.next += 1;
                Ok(Spanned { value, position })
            }
            _ => self.error(format!("expected {what}, found {}", self.describe())),
        }
    }

    fn end(&self) -> Result<(), Located> {
        match self.peek() {
            None => Ok(()),
            Some(_) => self.error(format!(
                "expected ';' or the end of the file, found {}",
                self.describe()
            )),
        }
    }

    /// The substituted text of tokens `start..end`.
    fn text(&self, start: usize, end: usize) -> &str {
        let (Some(first), Some(last)) =
            (self.tokens.get(start), self.tokens.get(end.wrapping_sub(1)))
        else {
            return "";
        };
        let from = self.lines.offset(position(first.span.start));
        let to = self.lines.offset(position(last.span.end));
        &self.lines.text[from..to.max(from)]
    }

    /// The rest of the statement as a query for DataFusion, padded with line breaks and
    /// spaces so that DataFusion's positions are the file's, and where it starts; `what`
    /// names the statement for the error when there is none.
    fn query(&mut self, what: &str) -> Result<(String, Position), Located> {
        let Some(first) = self.tokens.get(self.next) else {
            return self.error(format!("{what} needs a query"));
        };
        let start_location = position(first.span.start);
        let text = self.text(self.next, self.tokens.len());
        let query_position = self.original(first.span.start);
        let query = format!(
            "{}{}{text}",
            "\n".repeat(start_location.line - 1),
            " ".repeat(start_location.column - 1)
        );
        Ok((query, query_position))
    }

    /// The statement (or `INCLUDE`) of this parser's tokens.
    fn item(&mut self) -> Result<Item, Located> {
        if self.is_keyword("SET") {
            self.next += 1;
            let key = self.option_key()?;
            self.expect(Token::Eq)?;
            let value = self.value()?;
            self.end()?;
            Ok(Item::Statement(Statement::Set { key, value }))
        } else if self.is_keyword("CREATE") {
            self.next += 1;
            if self.is_keyword("VIEW") {
                self.next += 1;
                let name = self.identifier("the view's name")?;
                self.keyword("AS")?;
                let (query, query_position) =
                    self.query(&format!("CREATE VIEW {} AS", name.value))?;
                return Ok(Item::Statement(Statement::CreateView(ViewDecl {
                    name,
                    query,
                    query_position,
                })));
            }
            if !self.is_keyword("TABLE") {
                return self.error(format!("expected TABLE or VIEW, found {}", self.describe()));
            }
            self.next += 1;
            self.create_table()
                .map(|table| Item::Statement(Statement::CreateTable(table)))
        } else if self.is_keyword("INSERT") {
            self.next += 1;
            self.keyword("INTO")?;
            let target = self.identifier("the sink table's name")?;
            let (query, query_position) = self.query(&format!("INSERT INTO {}", target.value))?;
            Ok(Item::Statement(Statement::Insert(InsertDecl {
                target,
                query,
                query_position,
            })))
        } else if self.is_keyword("INCLUDE") {
            let position = self.here();
            self.next += 1;
            let path = match self.peek() {
                Some(Token::SingleQuotedString(path)) if !path.is_empty() => path.clone(),
                _ => {
                    return self.error(format!(
                        "expected the included file's path as a string ('file.sql'), found {}",
                        self.describe()
                    ));
                }
            };
            self.next += 1;
            self.end()?;
            Ok(Item::Include(IncludeDecl { path, position }))
        } else {
            self.error(format!(
                "expected SET, CREATE TABLE, CREATE VIEW or INSERT INTO, found {}",
                self.describe()
            ))
        }
    }

    fn create_table(&mut self) -> Result<TableDecl, Located> {
        let name = self.identifier("the table's name")?;
        let mut table = TableDecl {
            name,
            column_list: false,
            columns: Vec::new(),
            computed: Vec::new(),
            watermark: None,
            dedup: None,
            options: Vec::new(),
        };
        if self.peek() == Some(&Token::LParen) {
            self.next += 1;
            table.column_list = true;
            self.until_paren("a column", |parser| parser.table_element(&mut table))?;
        }
        if !self.is_keyword("WITH") {
            return self.error(format!(
                "expected WITH (connector = '…', …) after table {}, found {}",
                table.name.value,
                self.describe()
            ));
        }
        self.next += 1;
        self.expect(Token::LParen)?;
        self.until_paren("an option", |parser| {
            let key = parser.option_key()?;
            parser.expect(Token::Eq)?;
            let value = parser.value()?;
            if let Some((first, _)) = table.options.iter().find(|(k, _)| k.value == key.value) {
                return Err(Located::new(
                    key.position,
                    format!(
                        "option '{}' is given twice (first at {})",
                        key.value,
                        first.position.up(parser.line_offset)
                    ),
                ));
            }
            table.options.push((key, value));
            Ok(())
        })?;
        self.end()?;
        Ok(table)
    }

    /// A column, a computed column or the watermark.
    fn table_element(&mut self, table: &mut TableDecl) -> Result<(), Located> {
        if self.is_keyword("DEDUPLICATE") {
            let position = self.here();
            self.next += 1;
            self.keyword("ON")?;
            self.expect(Token::LParen)?;
            let mut columns = Vec::new();
            self.until_paren("a key column", |parser| {
                columns.push(parser.identifier("a key column")?);
                Ok(())
            })?;
            let within_watermark = self.is_keyword("WITHIN");
            if within_watermark {
                self.next += 1;
                self.keyword("WATERMARK")?;
            }
            if table.dedup.is_some() {
                return Err(Located::new(
                    position,
                    "a table is deduplicated once at most",
                ));
            }
            table.dedup = Some(DedupDecl {
                position,
                columns,
                within_watermark,
            });
            return Ok(());
        }
        if self.is_keyword("WATERMARK") {
            let at = self.here();
            self.next += 1;
            self.keyword("FOR")?;
            let column = self.identifier("the event-time column")?;
            self.keyword("AS")?;
            let delay_ms = self.watermark_expr(&column.value)?;
            if table.watermark.is_some() {
                return Err(Located::new(at, "a table has one watermark at most"));
            }
            table.watermark = Some(WatermarkDecl { column, delay_ms });
            return Ok(());
        }
        let name = self.identifier("a column name")?;
        if self.is_keyword("AS") {
            self.next += 1;
            let position = self.here();
            let start = self.next;
            let mut depth = 0usize;
            while let Some(token) = self.peek() {
                match token {
                    Token::LParen => depth += 1,
                    Token::RParen if depth == 0 => break,
                    Token::RParen => depth -= 1,
                    Token::Comma if depth == 0 => break,
                    _ => {}
                }
                self.next += 1;
            }
            if start == self.next {
                return self.error(format!(
                    "computed column {} needs an expression",
                    name.value
                ));
            }
            let expr = self.text(start, self.next).to_string();
            table.computed.push(ComputedDecl {
                name,
                expr: Spanned {
                    value: expr,
                    position,
                },
            });
            return Ok(());
        }
        let data_type = self.data_type().map_err(|e| {
            Located::new(e.position, format!("column {}: {}", name.value, e.message))
        })?;
        table.columns.push(ColumnDecl { name, data_type });
        Ok(())
    }

    /// A column type: a scalar type (see [`sql_type`]), or Spark's nested types
    /// `ARRAY<type>`, `MAP<VARCHAR, type>` and `STRUCT<name: type, …>` (the colon optional;
    /// field names are lowercased unless quoted, as column names), nested at will.
    fn data_type(&mut self) -> Result<DataType, Located> {
        self.depth += 1;
        let result = self.nested_or_scalar_type();
        self.depth -= 1;
        result
    }

    fn nested_or_scalar_type(&mut self) -> Result<DataType, Located> {
        if self.depth > MAX_TYPE_DEPTH {
            return self.error(format!(
                "types are nested {MAX_TYPE_DEPTH} levels deep at most"
            ));
        }
        let nested = |parser: &Self, keyword: &str| {
            parser.is_keyword(keyword)
                && matches!(
                    parser.tokens.get(parser.next + 1).map(|t| &t.token),
                    Some(Token::Lt)
                )
        };
        if nested(self, "ARRAY") {
            self.next += 2;
            let item = self.data_type()?;
            self.close_angle()?;
            return Ok(DataType::List(Arc::new(Field::new("item", item, true))));
        }
        if nested(self, "MAP") {
            let at = self.here();
            self.next += 2;
            let key = self.data_type()?;
            if !matches!(key, DataType::Utf8) {
                return Err(Located::new(
                    at,
                    format!("MAP keys must be VARCHAR (JSON object keys are strings), got {key}"),
                ));
            }
            self.expect(Token::Comma)?;
            let value = self.data_type()?;
            self.close_angle()?;
            let entries = Field::new(
                "entries",
                DataType::Struct(Fields::from(vec![
                    Field::new("keys", key, false),
                    Field::new("values", value, true),
                ])),
                false,
            );
            return Ok(DataType::Map(Arc::new(entries), false));
        }
        if nested(self, "STRUCT") {
            self.next += 2;
            let mut fields: Vec<Field> = Vec::new();
            loop {
                let name = self.identifier("a field name")?;
                if fields.iter().any(|f| *f.name() == name.value) {
                    return Err(Located::new(
                        name.position,
                        format!("field {} appears twice in the STRUCT", name.value),
                    ));
                }
                if self.peek() == Some(&Token::Colon) {
                    self.next += 1;
                }
                fields.push(Field::new(name.value, self.data_type()?, true));
                if self.peek() == Some(&Token::Comma) {
                    self.next += 1;
                    continue;
                }
                self.close_angle()?;
                return Ok(DataType::Struct(Fields::from(fields)));
            }
        }
        let type_position = self.here();
        // The type's tokens, words separated by one space: `DECIMAL(18,8)`, `DOUBLE PRECISION`.
        let mut text = String::new();
        let mut after_word = false;
        let mut depth = 0usize;
        while let Some(token) = self.peek() {
            match token {
                Token::LParen => depth += 1,
                Token::RParen if depth == 0 => break,
                Token::RParen => depth -= 1,
                Token::Comma if depth == 0 => break,
                Token::Gt | Token::ShiftRight | Token::Lt => break,
                _ => {}
            }
            let word = matches!(token, Token::Word(_));
            if word && after_word {
                text.push(' ');
            }
            after_word = word;
            text.push_str(&token.to_string().to_ascii_uppercase());
            self.next += 1;
        }
        sql_type(&text).map_err(|message| Located::new(type_position, message))
    }

    /// The `>` closing a nested type; `>>` closes two.
    fn close_angle(&mut self) -> Result<(), Located> {
        match self.peek() {
            Some(Token::Gt) => {
                self.next += 1;
                Ok(())
            }
            Some(Token::ShiftRight) if self.half_shift => {
                self.half_shift = false;
                self.next += 1;
                Ok(())
            }
            Some(Token::ShiftRight) => {
                self.half_shift = true;
                Ok(())
            }
            _ => self.error(format!("expected '>', found {}", self.describe())),
        }
    }

    /// `col`, `col - INTERVAL '10' SECOND` or `col - INTERVAL '10 seconds'`: the delay in ms.
    fn watermark_expr(&mut self, column: &str) -> Result<i64, Located> {
        let at = self.here();
        let named = self.identifier("the event-time column")?;
        if named.value != column {
            return Err(Located::new(
                at,
                format!("the watermark of {column} must be `{column} - INTERVAL '…' unit`"),
            ));
        }
        if self.peek() != Some(&Token::Minus) {
            return Ok(0);
        }
        self.next += 1;
        self.keyword("INTERVAL")?;
        let at = self.here();
        let Some(Token::SingleQuotedString(amount)) = self.bump().cloned() else {
            self.next -= 1;
            return self.error(format!(
                "expected an interval such as '10' SECOND, found {}",
                self.describe()
            ));
        };
        let text = match self.peek() {
            Some(Token::Word(w))
                if w.quote_style.is_none() && !w.value.eq_ignore_ascii_case("AS") =>
            {
                let unit = w.value.to_ascii_lowercase();
                self.next += 1;
                format!("{amount} {unit}")
            }
            _ => amount,
        };
        let micros = sluice_engine::parse_duration(&text)
            .map_err(|e| Located::new(at, format!("watermark delay: {e}")))?;
        if micros < 0 {
            return Err(Located::new(at, "the watermark delay cannot be negative"));
        }
        Ok(micros / 1000)
    }

    /// An option or setting name: a word, dotted words, or a quoted string.
    fn option_key(&mut self) -> Result<Spanned<String>, Located> {
        let position = self.here();
        let mut key = match self.bump() {
            Some(Token::Word(w)) => w.value.clone(),
            Some(Token::SingleQuotedString(s)) => s.clone(),
            _ => {
                self.next -= 1;
                return self.error(format!(
                    "expected an option name, found {}",
                    self.describe()
                ));
            }
        };
        while self.peek() == Some(&Token::Period) {
            self.next += 1;
            match self.bump() {
                Some(Token::Word(w)) => {
                    key.push('.');
                    key.push_str(&w.value);
                }
                _ => {
                    self.next -= 1;
                    return self.error(format!(
                        "expected a name after '.', found {}",
                        self.describe()
                    ));
                }
            }
        }
        Ok(Spanned {
            value: key.to_ascii_lowercase(),
            position,
        })
    }

    /// A string literal's content, a number (with its sign) or a word.
    fn value(&mut self) -> Result<Spanned<String>, Located> {
        let position = self.here();
        let negative = self.peek() == Some(&Token::Minus);
        if negative {
            self.next += 1;
        }
        let value = match self.bump() {
            Some(Token::SingleQuotedString(s)) if !negative => s.clone(),
            Some(Token::Number(n, _)) => format!("{}{n}", if negative { "-" } else { "" }),
            Some(Token::Word(w)) if !negative && w.quote_style.is_none() => w.value.clone(),
            _ => {
                self.next -= 1;
                return self.error(format!(
                    "expected a value ('text', a number, true or false), found {}",
                    self.describe()
                ));
            }
        };
        Ok(Spanned { value, position })
    }
}
