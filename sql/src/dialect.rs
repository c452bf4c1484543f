//! Weir's SQL dialect: the statements DataFusion does not know.
//!
//! Text is tokenized with sqlparser's PostgreSQL tokenizer and split into statements at
//! top-level semicolons. `CREATE SOURCE`, `CREATE MATERIALIZED VIEW … [EMIT …]`, `DROP`,
//! `SHOW`, `SET` and transaction control are parsed here; everything else is a query for
//! DataFusion. `TUMBLE(rel, col, …)` / `HOP(rel, col, …)` get their relation and column
//! arguments turned into string literals, so DataFusion plans them as table functions.

use std::collections::BTreeMap;

use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer, Word};
use weir_engine::pipeline::view::EmitMode;

use crate::error::{Result, SqlError};

/// A column of `CREATE SOURCE`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ColumnDef {
    /// Column name (case kept when quoted, lower-cased otherwise).
    pub name: String,
    /// Type as written, e.g. `STRUCT<user_id TEXT, metric DOUBLE PRECISION>`.
    pub data_type: String,
    /// `NOT NULL` was declared.
    pub not_null: bool,
    /// `PRIMARY KEY` was declared on the column (`CREATE TABLE`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub primary_key: bool,
}

/// `WATERMARK FOR col AS col - INTERVAL '…'`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct WatermarkDef {
    /// Event-time column.
    pub column: String,
    /// The delay as written.
    pub delay: String,
    /// The delay in nanoseconds.
    pub delay_ns: i64,
}

/// `CREATE SOURCE`.
#[derive(Debug, Clone, PartialEq)]
pub struct CreateSource {
    pub name: String,
    pub if_not_exists: bool,
    pub columns: Vec<ColumnDef>,
    pub watermark: Option<WatermarkDef>,
    pub options: BTreeMap<String, String>,
}

/// `CREATE TABLE name (columns, PRIMARY KEY (…)) [WITH (connector = …)]`.
#[derive(Debug, Clone, PartialEq)]
pub struct CreateTable {
    pub name: String,
    pub if_not_exists: bool,
    pub columns: Vec<ColumnDef>,
    /// `PRIMARY KEY (a, b)` or the column declared `PRIMARY KEY`.
    pub primary_key: Vec<String>,
    /// Where to load the rows from (`connector = 'file' | 'postgres'`), if anywhere.
    pub options: BTreeMap<String, String>,
}

/// `COPY table [(columns)] FROM STDIN [WITH (…)]`.
#[derive(Debug, Clone, PartialEq)]
pub struct CopyFrom {
    pub table: String,
    /// The columns the data holds, in order; empty: every column.
    pub columns: Vec<String>,
    /// `format` (`text`, `csv`), `header`, `delimiter`, `null`, `quote`, `escape`,
    /// lower-cased keys.
    pub options: BTreeMap<String, String>,
}

/// `CREATE MATERIALIZED VIEW`.
#[derive(Debug, Clone, PartialEq)]
pub struct CreateView {
    pub name: String,
    pub if_not_exists: bool,
    /// The query, as written (before the TUMBLE/HOP rewrite).
    pub query: String,
    pub emit: Option<EmitMode>,
    /// `WITH (…)` options (`emit = 'on_arrival'`).
    pub options: BTreeMap<String, String>,
}

/// `CREATE SINK name FROM relation WITH (…)`.
#[derive(Debug, Clone, PartialEq)]
pub struct CreateSink {
    pub name: String,
    pub if_not_exists: bool,
    /// The view or source it reads.
    pub from: String,
    pub options: BTreeMap<String, String>,
}

/// `CREATE ALERT name WITH (…) AS query`.
#[derive(Debug, Clone, PartialEq)]
pub struct CreateAlert {
    pub name: String,
    pub if_not_exists: bool,
    /// `severity`, `key`, `cooldown`, `time`.
    pub options: BTreeMap<String, String>,
    /// The rule's query, as written.
    pub query: String,
}

/// The relation name of every rule's alerts, as a sink's `FROM`.
pub const ALL_ALERTS: &str = "weir.alerts";

/// What a `DROP` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKind {
    Source,
    Table,
    MaterializedView,
    Sink,
    Alert,
}

impl ObjectKind {
    /// As written in SQL.
    pub fn as_sql(&self) -> &'static str {
        match self {
            ObjectKind::Source => "SOURCE",
            ObjectKind::Table => "TABLE",
            ObjectKind::MaterializedView => "MATERIALIZED VIEW",
            ObjectKind::Sink => "SINK",
            ObjectKind::Alert => "ALERT",
        }
    }
}

/// `SHOW …`.
#[derive(Debug, Clone, PartialEq)]
pub enum Show {
    Sources,
    /// `SHOW TABLES`: every relation.
    Tables,
    MaterializedViews,
    Sinks,
    Alerts,
    CreateSource(String),
    CreateTable(String),
    CreateView(String),
    CreateSink(String),
    CreateAlert(String),
    /// `EXPLAIN MATERIALIZED VIEW name` / `EXPLAIN ALERT name`: the view's operators.
    Operators(String),
    /// `SHOW name` of a session variable; `all` for `SHOW ALL`.
    Variable(String),
}

/// One parsed statement.
#[derive(Debug, Clone, PartialEq)]
pub enum WeirStatement {
    Empty,
    CreateSource(CreateSource),
    CreateTable(CreateTable),
    CreateView(CreateView),
    CreateSink(CreateSink),
    CreateAlert(CreateAlert),
    Drop {
        kind: ObjectKind,
        names: Vec<String>,
        if_exists: bool,
        cascade: bool,
    },
    /// `ALTER MATERIALIZED VIEW [IF EXISTS] name SET (option = value, …)`, or
    /// `ALTER ALERT …` (`alert`).
    AlterView {
        alert: bool,
        name: String,
        if_exists: bool,
        options: BTreeMap<String, String>,
    },
    Show(Show),
    Set {
        name: String,
        value: String,
    },
    Reset(String),
    Begin,
    Commit,
    Rollback,
    /// `DISCARD`, `DEALLOCATE`, `CLOSE`, `LISTEN` …: accepted, nothing to do.
    NoOp(String),
    /// A query or statement for DataFusion, TUMBLE/HOP rewritten.
    Query(String),
    /// `CREATE USER`, `ALTER USER`, `DROP USER`.
    User(UserStatement),
    /// `DECLARE name CURSOR FOR SUBSCRIBE [TO] view [WITH (snapshot = true)]`.
    DeclareSubscribe {
        cursor: String,
        view: String,
        options: BTreeMap<String, String>,
    },
    /// `FETCH [ALL | n | NEXT] [FROM | IN] cursor [WITH (timeout = '1s')]`; `count` is
    /// `None` for `ALL`.
    Fetch {
        cursor: String,
        count: Option<usize>,
        options: BTreeMap<String, String>,
    },
    /// `CLOSE cursor` (`None`: `CLOSE ALL`).
    CloseCursor(Option<String>),
    /// `COPY table FROM STDIN …`.
    CopyFrom(CopyFrom),
    /// `TRUNCATE [TABLE] name, …`.
    Truncate(Vec<String>),
    /// `REFRESH TABLE name`: its rows read from its connector again.
    RefreshTable(String),
}

impl WeirStatement {
    /// Whether the statement only reads: what a read-only principal may run — a `read` REST
    /// token through `/sql`, a pgwire user without `ADMIN`. Queries (`SELECT`, `WITH`,
    /// `VALUES`, `TABLE`, `EXPLAIN`), `SHOW`, `SET`/`RESET`, transaction control and no-ops.
    pub fn reads_only(&self) -> bool {
        use WeirStatement as S;
        match self {
            S::Empty | S::Show(_) | S::Set { .. } | S::Reset(_) => true,
            S::Begin | S::Commit | S::Rollback | S::NoOp(_) => true,
            S::DeclareSubscribe { .. } | S::Fetch { .. } | S::CloseCursor(_) => true,
            S::Query(text) => {
                let first = text
                    .trim_start_matches(|c: char| c.is_whitespace() || c == '(')
                    .split(|c: char| !c.is_ascii_alphabetic())
                    .next()
                    .unwrap_or("")
                    .to_ascii_uppercase();
                matches!(
                    first.as_str(),
                    "SELECT" | "WITH" | "VALUES" | "TABLE" | "EXPLAIN"
                )
            }
            _ => false,
        }
    }
}

/// Statements about pgwire users (`ROLE` is accepted for `USER`).
#[derive(Clone, PartialEq)]
pub enum UserStatement {
    /// `CREATE USER name [WITH] PASSWORD '…' [ADMIN | NOADMIN]`.
    Create {
        name: String,
        password: String,
        admin: bool,
    },
    /// `ALTER USER name [WITH] [PASSWORD '…'] [ADMIN | NOADMIN]`.
    Alter {
        name: String,
        password: Option<String>,
        admin: Option<bool>,
    },
    /// `DROP USER [IF EXISTS] name`.
    Drop { name: String, if_exists: bool },
}

/// Never prints a password (statements are logged and shown in errors).
impl std::fmt::Debug for UserStatement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UserStatement::Create { name, admin, .. } => {
                write!(f, "CreateUser({name}, admin: {admin})")
            }
            UserStatement::Alter {
                name,
                password,
                admin,
            } => write!(
                f,
                "AlterUser({name}, password: {}, admin: {admin:?})",
                if password.is_some() {
                    "***"
                } else {
                    "unchanged"
                }
            ),
            UserStatement::Drop { name, if_exists } => {
                write!(f, "DropUser({name}, if_exists: {if_exists})")
            }
        }
    }
}

/// Splits `sql` into statement texts at top-level semicolons (quotes, comments and
/// dollar-quoting respected). Empty statements are kept, so `;` yields one empty statement.
pub fn split_statements(sql: &str) -> Result<Vec<String>> {
    if sql.len() > crate::limits::MAX_STATEMENT_BYTES {
        crate::limits::check_statement(sql, &[])?;
    }
    let tokens = tokenize(sql)?;
    let mut out = Vec::new();
    let mut current = String::new();
    for t in tokens {
        if t == Token::SemiColon {
            out.push(std::mem::take(&mut current));
        } else {
            current.push_str(&token_text(&t));
        }
    }
    if !current.trim().is_empty() || out.is_empty() {
        out.push(current);
    }
    Ok(out)
}

fn tokenize(sql: &str) -> Result<Vec<Token>> {
    Tokenizer::new(&PostgreSqlDialect {}, sql)
        .tokenize()
        .map_err(|e| SqlError::Syntax(format!("syntax error: {e}")))
}

/// Parses one statement (no top-level semicolons).
pub fn parse_statement(sql: &str) -> Result<WeirStatement> {
    if sql.len() > crate::limits::MAX_STATEMENT_BYTES {
        crate::limits::check_statement(sql, &[])?;
    }
    let tokens: Vec<Token> = tokenize(sql)?;
    crate::limits::check_statement(sql, &tokens)?;
    let mut p = Parser {
        tokens: tokens
            .iter()
            .filter(|t| !matches!(t, Token::Whitespace(_)))
            .cloned()
            .collect(),
        pos: 0,
    };
    if p.tokens.is_empty() {
        return Ok(WeirStatement::Empty);
    }
    if p.peek_kw("CREATE") {
        let save = p.pos;
        p.pos += 1;
        if p.eat_kw("SOURCE") {
            return p.create_source().map(WeirStatement::CreateSource);
        }
        if p.eat_kw("TABLE") {
            return p.create_table().map(WeirStatement::CreateTable);
        }
        if p.eat_kw("MATERIALIZED") {
            p.expect_kw("VIEW")?;
            return p.create_view(&tokens).map(WeirStatement::CreateView);
        }
        if p.eat_kw("SINK") {
            return p.create_sink().map(WeirStatement::CreateSink);
        }
        if p.eat_kw("ALERT") {
            return p.create_alert(&tokens).map(WeirStatement::CreateAlert);
        }
        if p.eat_kw("USER") || p.eat_kw("ROLE") {
            return p.user(true).map(WeirStatement::User);
        }
        p.pos = save;
    }
    if p.eat_kw("DROP") {
        if p.eat_kw("USER") || p.eat_kw("ROLE") {
            let if_exists = if p.eat_kw("IF") {
                p.expect_kw("EXISTS")?;
                true
            } else {
                false
            };
            let name = p.ident("a user name")?;
            p.end()?;
            return Ok(WeirStatement::User(UserStatement::Drop { name, if_exists }));
        }
        let kind = if p.eat_kw("SOURCE") {
            Some(ObjectKind::Source)
        } else if p.eat_kw("TABLE") {
            Some(ObjectKind::Table)
        } else if p.eat_kw("MATERIALIZED") {
            p.expect_kw("VIEW")?;
            Some(ObjectKind::MaterializedView)
        } else if p.eat_kw("SINK") {
            Some(ObjectKind::Sink)
        } else if p.eat_kw("ALERT") {
            Some(ObjectKind::Alert)
        } else {
            None
        };
        if let Some(kind) = kind {
            return p.drop(kind);
        }
        return Err(SqlError::FeatureNotSupported(format!(
            "DROP {} is not supported; Weir has DROP SOURCE, DROP TABLE, DROP MATERIALIZED VIEW, DROP SINK and DROP ALERT",
            p.peek_text()
        )));
    }
    if p.peek_kw("ALTER") {
        let save = p.pos;
        p.pos += 1;
        let alert = p.eat_kw("ALERT");
        if alert || p.eat_kw("MATERIALIZED") {
            if !alert {
                p.expect_kw("VIEW")?;
            }
            let mut if_exists = false;
            if p.eat_kw("IF") {
                p.expect_kw("EXISTS")?;
                if_exists = true;
            }
            let name = p.object_name("a view name")?;
            p.expect_kw("SET")?;
            let options = p.option_list()?;
            return Ok(WeirStatement::AlterView {
                alert,
                name,
                if_exists,
                options,
            });
        }
        if p.eat_kw("USER") || p.eat_kw("ROLE") {
            return p.user(false).map(WeirStatement::User);
        }
        p.pos = save;
    }
    if p.eat_kw("SHOW") {
        return p.show();
    }
    if p.peek_kw("EXPLAIN") {
        let save = p.pos;
        p.pos += 1;
        let alert = p.eat_kw("ALERT");
        if alert || p.eat_kw("MATERIALIZED") {
            if !alert {
                p.expect_kw("VIEW")?;
            }
            let name = p.object_name(if alert {
                "an alert name"
            } else {
                "a view name"
            })?;
            p.end()?;
            return Ok(WeirStatement::Show(Show::Operators(name)));
        }
        p.pos = save;
    }
    if p.eat_kw("SET") {
        return p.set();
    }
    if p.eat_kw("RESET") {
        let name = p.rest_text();
        return Ok(WeirStatement::Reset(name.to_lowercase()));
    }
    if p.eat_kw("BEGIN") || p.eat_kw("START") {
        return Ok(WeirStatement::Begin);
    }
    if p.eat_kw("COMMIT") || p.eat_kw("END") {
        return Ok(WeirStatement::Commit);
    }
    if p.eat_kw("ROLLBACK") || p.eat_kw("ABORT") {
        return Ok(WeirStatement::Rollback);
    }
    if p.peek_kw("DECLARE") {
        let save = p.pos;
        p.pos += 1;
        let cursor = p.ident("a cursor name")?;
        if p.eat_kw("CURSOR") && p.eat_kw("FOR") && p.eat_kw("SUBSCRIBE") {
            p.eat_kw("TO");
            let view = p.object_name("a materialized view or alert rule")?;
            let options = p.with_options()?;
            p.end()?;
            return Ok(WeirStatement::DeclareSubscribe {
                cursor,
                view,
                options,
            });
        }
        p.pos = save;
        return Err(SqlError::FeatureNotSupported(
            "Weir's cursors subscribe to views: DECLARE c CURSOR FOR SUBSCRIBE view, then FETCH ALL c".into(),
        ));
    }
    if p.eat_kw("FETCH") {
        let count = if p.eat_kw("ALL") {
            None
        } else if p.eat_kw("NEXT") {
            Some(1)
        } else {
            p.eat_kw("FORWARD");
            if p.eat_kw("ALL") {
                None
            } else {
                match p.peek() {
                    Some(Token::Number(n, _)) => {
                        let n = n
                            .parse::<usize>()
                            .map_err(|_| p.error("expected a row count"))?;
                        p.pos += 1;
                        Some(n)
                    }
                    _ => Some(1),
                }
            }
        };
        let _ = p.eat_kw("FROM") || p.eat_kw("IN");
        let cursor = p.ident("a cursor name")?;
        let options = p.with_options()?;
        p.end()?;
        return Ok(WeirStatement::Fetch {
            cursor,
            count,
            options,
        });
    }
    if p.eat_kw("CLOSE") {
        if p.eat_kw("ALL") {
            p.end()?;
            return Ok(WeirStatement::CloseCursor(None));
        }
        let cursor = p.ident("a cursor name")?;
        p.end()?;
        return Ok(WeirStatement::CloseCursor(Some(cursor)));
    }
    if p.peek_kw("COPY") {
        let save = p.pos;
        p.pos += 1;
        if let Some(copy) = p.copy_from()? {
            return Ok(WeirStatement::CopyFrom(copy));
        }
        p.pos = save;
    }
    if p.peek_kw("REFRESH") {
        let save = p.pos;
        p.pos += 1;
        if p.eat_kw("TABLE") {
            let name = p.object_name("a table name")?;
            p.end()?;
            return Ok(WeirStatement::RefreshTable(name));
        }
        p.pos = save;
    }
    if p.eat_kw("TRUNCATE") {
        p.eat_kw("TABLE");
        let mut names = vec![p.object_name("a table name")?];
        while p.eat(&Token::Comma) {
            names.push(p.object_name("a table name")?);
        }
        p.end()?;
        return Ok(WeirStatement::Truncate(names));
    }
    for kw in ["DISCARD", "DEALLOCATE", "LISTEN", "UNLISTEN"] {
        if p.peek_kw(kw) {
            return Ok(WeirStatement::NoOp(kw.to_string()));
        }
    }
    Ok(WeirStatement::Query(rewrite_window_functions(&tokens)))
}

/// A token as SQL text that parses back to the same token. (The tokenizer's `Display`
/// writes a string literal's value, or a quoted name, between quotes without doubling the
/// quotes inside, so `'it''s'` would come back as `'it's'`.)
pub fn token_text(token: &Token) -> String {
    match token {
        Token::SingleQuotedString(s) => format!("'{}'", s.replace('\'', "''")),
        Token::NationalStringLiteral(s) => format!("N'{}'", s.replace('\'', "''")),
        Token::Word(w) if w.quote_style == Some('"') => {
            format!("\"{}\"", w.value.replace('"', "\"\""))
        }
        other => other.to_string(),
    }
}

/// Rewrites `TUMBLE(rel, col, …)`, `HOP(…)`, `CUMULATE(…)` and `SESSION(…)` so the first two
/// arguments are string literals holding the (normalized) names.
pub fn rewrite_window_functions(tokens: &[Token]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < tokens.len() {
        if let Token::Word(w) = &tokens[i] {
            let upper = w.value.to_uppercase();
            let window = matches!(upper.as_str(), "TUMBLE" | "HOP" | "CUMULATE" | "SESSION");
            if w.quote_style.is_none() && window {
                // Table function names are looked up case-sensitively: use the registered one.
                out.push_str(&upper.to_lowercase());
                // Find `(` ident `,` ident, skipping whitespace.
                let mut j = i + 1;
                let mut args: Vec<usize> = Vec::new();
                let mut ok = true;
                let mut expect = ["(", "id", ",", "id"].iter();
                let mut step = expect.next();
                while let Some(want) = step {
                    while j < tokens.len() && matches!(tokens[j], Token::Whitespace(_)) {
                        j += 1;
                    }
                    let Some(t) = tokens.get(j) else {
                        ok = false;
                        break;
                    };
                    let fits = match (*want, t) {
                        ("(", Token::LParen) | (",", Token::Comma) => true,
                        ("id", Token::Word(_)) => {
                            args.push(j);
                            true
                        }
                        _ => false,
                    };
                    if !fits {
                        ok = false;
                        break;
                    }
                    j += 1;
                    step = expect.next();
                }
                if ok {
                    for (k, token) in tokens.iter().enumerate().take(j).skip(i + 1) {
                        match token {
                            Token::Word(w) if args.contains(&k) => {
                                out.push_str(&format!("'{}'", normalize(w).replace('\'', "''")));
                            }
                            other => out.push_str(&token_text(other)),
                        }
                    }
                    i = j;
                    continue;
                }
                i += 1;
                continue;
            }
        }
        out.push_str(&token_text(&tokens[i]));
        i += 1;
    }
    out
}

/// Identifier as PostgreSQL resolves it: quoted keeps case, unquoted folds to lower case.
fn normalize(w: &Word) -> String {
    match w.quote_style {
        Some(_) => w.value.clone(),
        None => w.value.to_lowercase(),
    }
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    fn peek_text(&self) -> String {
        self.peek()
            .map(|t| t.to_string())
            .unwrap_or_else(|| "end of input".into())
    }

    fn peek_kw(&self, kw: &str) -> bool {
        matches!(self.peek(), Some(Token::Word(w)) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(kw))
    }

    fn eat_kw(&mut self, kw: &str) -> bool {
        if self.peek_kw(kw) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect_kw(&mut self, kw: &str) -> Result<()> {
        if self.eat_kw(kw) {
            Ok(())
        } else {
            Err(self.error(&format!("expected {kw}")))
        }
    }

    fn eat(&mut self, token: &Token) -> bool {
        if self.peek() == Some(token) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, token: &Token, what: &str) -> Result<()> {
        if self.eat(token) {
            Ok(())
        } else {
            Err(self.error(&format!("expected {what}")))
        }
    }

    fn error(&self, what: &str) -> SqlError {
        SqlError::Syntax(format!(
            "syntax error at or near \"{}\": {what}",
            self.peek_text()
        ))
    }

    fn ident(&mut self, what: &str) -> Result<String> {
        match self.peek() {
            Some(Token::Word(w))
                if w.quote_style.is_some()
                    || w.keyword == Keyword::NoKeyword
                    || !is_reserved(w) =>
            {
                let name = normalize(w);
                self.pos += 1;
                Ok(name)
            }
            _ => Err(self.error(&format!("expected {what}"))),
        }
    }

    /// A possibly schema-qualified name; Weir's objects live in one schema, so `public.x`
    /// is `x`.
    fn object_name(&mut self, what: &str) -> Result<String> {
        let mut name = self.ident(what)?;
        while self.eat(&Token::Period) {
            name = self.ident(what)?;
        }
        Ok(name)
    }

    fn if_not_exists(&mut self) -> Result<bool> {
        if self.eat_kw("IF") {
            self.expect_kw("NOT")?;
            self.expect_kw("EXISTS")?;
            return Ok(true);
        }
        Ok(false)
    }

    fn rest_text(&self) -> String {
        self.tokens[self.pos..]
            .iter()
            .map(|t| t.to_string())
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn end(&self) -> Result<()> {
        match self.peek() {
            None => Ok(()),
            Some(_) => Err(self.error("unexpected text after the end of the statement")),
        }
    }

    fn create_source(&mut self) -> Result<CreateSource> {
        let if_not_exists = self.if_not_exists()?;
        let name = self.object_name("a source name")?;
        self.expect(&Token::LParen, "( and a column list")?;
        let mut columns = Vec::new();
        let mut watermark = None;
        loop {
            if self.eat_kw("WATERMARK") {
                self.expect_kw("FOR")?;
                let column = self.ident("the event-time column")?;
                self.expect_kw("AS")?;
                let expr_start = self.pos;
                let same = self.ident("an expression over the event-time column")?;
                if same != column {
                    return Err(SqlError::Syntax(format!(
                        "WATERMARK FOR {column} AS … must be {column} or {column} - INTERVAL '…'"
                    )));
                }
                let (delay, delay_ns) = if self.eat(&Token::Minus) {
                    self.interval()?
                } else {
                    ("0 seconds".to_string(), 0)
                };
                let _ = expr_start;
                watermark = Some(WatermarkDef {
                    column,
                    delay,
                    delay_ns,
                });
            } else {
                columns.push(self.column_def()?);
            }
            if self.eat(&Token::Comma) {
                continue;
            }
            self.expect(&Token::RParen, ", or )")?;
            break;
        }
        let options = self.with_options()?;
        self.end()?;
        Ok(CreateSource {
            name,
            if_not_exists,
            columns,
            watermark,
            options,
        })
    }

    fn create_table(&mut self) -> Result<CreateTable> {
        let if_not_exists = self.if_not_exists()?;
        let name = self.object_name("a table name")?;
        self.expect(&Token::LParen, "( and a column list")?;
        let mut columns: Vec<ColumnDef> = Vec::new();
        let mut primary_key = Vec::new();
        loop {
            if self.peek_kw("PRIMARY") {
                self.pos += 1;
                self.expect_kw("KEY")?;
                if !primary_key.is_empty() {
                    return Err(SqlError::Syntax(format!(
                        "multiple primary keys for table \"{name}\" are not allowed"
                    )));
                }
                primary_key = self.column_list()?;
            } else {
                columns.push(self.column_def()?);
            }
            if self.eat(&Token::Comma) {
                continue;
            }
            self.expect(&Token::RParen, ", or )")?;
            break;
        }
        let inline: Vec<String> = columns
            .iter()
            .filter(|c| c.primary_key)
            .map(|c| c.name.clone())
            .collect();
        if !inline.is_empty() {
            if !primary_key.is_empty() || inline.len() > 1 {
                return Err(SqlError::Syntax(format!(
                    "multiple primary keys for table \"{name}\" are not allowed"
                )));
            }
            primary_key = inline;
        }
        let options = self.with_options()?;
        self.end()?;
        Ok(CreateTable {
            name,
            if_not_exists,
            columns,
            primary_key,
            options,
        })
    }

    /// `(a, b, …)`.
    fn column_list(&mut self) -> Result<Vec<String>> {
        self.expect(&Token::LParen, "( and column names")?;
        let mut names = vec![self.ident("a column name")?];
        while self.eat(&Token::Comma) {
            names.push(self.ident("a column name")?);
        }
        self.expect(&Token::RParen, ", or )")?;
        Ok(names)
    }

    /// After `COPY`: `table [(columns)] FROM STDIN [[WITH] (option [value], …) | legacy
    /// options]`; `None` for any other COPY (left to DataFusion, which refuses it).
    fn copy_from(&mut self) -> Result<Option<CopyFrom>> {
        let Ok(table) = self.object_name("a table name") else {
            return Ok(None);
        };
        let columns = if self.peek() == Some(&Token::LParen) {
            self.column_list()?
        } else {
            Vec::new()
        };
        if !self.eat_kw("FROM") {
            return Ok(None);
        }
        if !self.eat_kw("STDIN") {
            return Err(SqlError::FeatureNotSupported(
                "COPY … FROM reads STDIN only (psql: \\copy table FROM 'file.csv' WITH (FORMAT csv, HEADER)); a server-side file is loaded with CREATE TABLE … WITH (connector = 'file', path = '…')".into(),
            ));
        }
        let mut options = BTreeMap::new();
        let with = self.eat_kw("WITH");
        if self.eat(&Token::LParen) {
            loop {
                let key = self.option_key()?;
                let value = match self.peek() {
                    Some(Token::Comma) | Some(Token::RParen) => "true".to_string(),
                    Some(Token::SingleQuotedString(s)) => {
                        let s = s.clone();
                        self.pos += 1;
                        s
                    }
                    Some(Token::Word(w)) => {
                        let v = w.value.to_lowercase();
                        self.pos += 1;
                        v
                    }
                    Some(Token::Number(n, _)) => {
                        let n = n.clone();
                        self.pos += 1;
                        n
                    }
                    _ => return Err(self.error(&format!("expected a value for COPY option {key}"))),
                };
                options.insert(key, value);
                if self.eat(&Token::Comma) {
                    continue;
                }
                self.expect(&Token::RParen, ", or ) after a COPY option")?;
                break;
            }
        } else {
            let _ = with;
            // PostgreSQL's older syntax: CSV HEADER DELIMITER ',' NULL '' …
            while let Some(Token::Word(w)) = self.peek() {
                let key = w.value.to_lowercase();
                self.pos += 1;
                match key.as_str() {
                    "csv" | "binary" | "text" => {
                        options.insert("format".into(), key);
                    }
                    "header" => {
                        options.insert("header".into(), "true".into());
                    }
                    "delimiter" | "null" | "quote" | "escape" => {
                        self.eat_kw("AS");
                        match self.peek() {
                            Some(Token::SingleQuotedString(s)) => {
                                options.insert(key, s.clone());
                                self.pos += 1;
                            }
                            _ => return Err(self.error(&format!("expected a string after {key}"))),
                        }
                    }
                    _ => {
                        return Err(
                            self.error("expected a COPY option (CSV, HEADER, DELIMITER, NULL)")
                        )
                    }
                }
            }
        }
        self.end()?;
        Ok(Some(CopyFrom {
            table,
            columns,
            options,
        }))
    }

    fn column_def(&mut self) -> Result<ColumnDef> {
        let name = self.ident("a column name")?;
        let mut depth_paren = 0i32;
        let mut depth_angle = 0i32;
        let mut parts: Vec<String> = Vec::new();
        let mut not_null = false;
        let mut primary_key = false;
        while let Some(t) = self.peek() {
            match t {
                Token::Comma | Token::RParen if depth_paren == 0 && depth_angle == 0 => break,
                Token::LParen => depth_paren += 1,
                Token::RParen => depth_paren -= 1,
                Token::Lt => depth_angle += 1,
                Token::Gt => depth_angle -= 1,
                Token::ShiftRight => depth_angle -= 2,
                _ => {}
            }
            if depth_paren == 0 && depth_angle == 0 && self.peek_kw("NOT") {
                self.pos += 1;
                self.expect_kw("NULL")?;
                not_null = true;
                continue;
            }
            if depth_paren == 0 && depth_angle == 0 && self.peek_kw("NULL") {
                self.pos += 1;
                continue;
            }
            if depth_paren == 0 && depth_angle == 0 && self.peek_kw("PRIMARY") {
                self.pos += 1;
                self.expect_kw("KEY")?;
                primary_key = true;
                continue;
            }
            parts.push(t.to_string());
            self.pos += 1;
        }
        if parts.is_empty() {
            return Err(self.error(&format!("expected a data type for column {name}")));
        }
        let mut data_type = String::new();
        for p in parts {
            let glue = !(data_type.is_empty()
                || data_type.ends_with('<')
                || data_type.ends_with('(')
                || p == ","
                || p == ">"
                || p == ">>"
                || p == ")"
                || p == "<"
                || p == "(");
            if glue {
                data_type.push(' ');
            }
            data_type.push_str(&p);
        }
        Ok(ColumnDef {
            name,
            data_type,
            not_null,
            primary_key,
        })
    }

    /// `INTERVAL '2 seconds'` or `INTERVAL '2' SECOND`.
    fn interval(&mut self) -> Result<(String, i64)> {
        self.expect_kw("INTERVAL")?;
        let text = match self.peek() {
            Some(Token::SingleQuotedString(s)) => s.clone(),
            _ => return Err(self.error("expected an interval string like '2 seconds'")),
        };
        self.pos += 1;
        let text = match self.peek() {
            Some(Token::Word(w)) if w.quote_style.is_none() && unit_ns(&w.value).is_some() => {
                let t = format!("{text} {}", w.value.to_lowercase());
                self.pos += 1;
                t
            }
            _ => text,
        };
        let ns = parse_interval_ns(&text)?;
        Ok((text, ns))
    }

    fn with_options(&mut self) -> Result<BTreeMap<String, String>> {
        if !self.eat_kw("WITH") {
            return Ok(BTreeMap::new());
        }
        self.option_list()
    }

    /// `(key = value, …)`.
    fn option_list(&mut self) -> Result<BTreeMap<String, String>> {
        let mut options = BTreeMap::new();
        self.expect(&Token::LParen, "( and options like connector = '…'")?;
        loop {
            if self.eat(&Token::RParen) {
                break;
            }
            let mut key = self.option_key()?;
            while self.eat(&Token::Period) {
                key.push('.');
                key.push_str(&self.option_key()?);
            }
            self.expect(&Token::Eq, &format!("= after option {key}"))?;
            let value = match self.peek() {
                Some(Token::SingleQuotedString(s)) => s.clone(),
                Some(Token::Number(n, _)) => n.clone(),
                Some(Token::Minus) => {
                    self.pos += 1;
                    match self.peek() {
                        Some(Token::Number(n, _)) => format!("-{n}"),
                        _ => return Err(self.error("expected a number")),
                    }
                }
                Some(Token::Word(w)) => w.value.clone(),
                _ => return Err(self.error(&format!("expected a value for option {key}"))),
            };
            self.pos += 1;
            if options.insert(key.clone(), value).is_some() {
                return Err(SqlError::InvalidParameter(format!(
                    "option {key} is given twice"
                )));
            }
            if self.eat(&Token::Comma) {
                continue;
            }
            self.expect(&Token::RParen, ", or ) after an option")?;
            break;
        }
        Ok(options)
    }

    fn option_key(&mut self) -> Result<String> {
        match self.peek() {
            Some(Token::Word(w)) => {
                let k = w.value.to_lowercase();
                self.pos += 1;
                Ok(k)
            }
            Some(Token::SingleQuotedString(s)) => {
                let k = s.to_lowercase();
                self.pos += 1;
                Ok(k)
            }
            _ => Err(self.error("expected an option name")),
        }
    }

    fn create_view(&mut self, all_tokens: &[Token]) -> Result<CreateView> {
        let if_not_exists = self.if_not_exists()?;
        let name = self.object_name("a view name")?;
        let options = self.with_options()?;
        self.expect_kw("AS")?;
        // Find the AS token in the full token list to keep the query's own formatting.
        let as_index = nth_significant(all_tokens, self.pos - 1);
        let mut body: Vec<Token> = all_tokens[as_index + 1..].to_vec();
        // Trailing `EMIT ON WINDOW CLOSE` / `EMIT ON UPDATE`.
        let significant: Vec<(usize, String)> = body
            .iter()
            .enumerate()
            .filter(|(_, t)| !matches!(t, Token::Whitespace(_)))
            .map(|(i, t)| (i, t.to_string().to_uppercase()))
            .collect();
        let words: Vec<&str> = significant.iter().map(|(_, s)| s.as_str()).collect();
        let mut emit = None;
        let n = words.len();
        if n >= 4 && words[n - 4..] == ["EMIT", "ON", "WINDOW", "CLOSE"] {
            emit = Some(EmitMode::OnWindowClose);
            body.truncate(significant[n - 4].0);
        } else if n >= 3 && words[n - 3..] == ["EMIT", "ON", "UPDATE"] {
            emit = Some(EmitMode::OnUpdate);
            body.truncate(significant[n - 3].0);
        } else if words.contains(&"EMIT") {
            return Err(SqlError::Syntax(
                "EMIT must end the statement: EMIT ON WINDOW CLOSE or EMIT ON UPDATE".into(),
            ));
        }
        let query = text_of(&body);
        if query.is_empty() {
            return Err(SqlError::Syntax("expected a query after AS".into()));
        }
        Ok(CreateView {
            name,
            if_not_exists,
            query,
            emit,
            options,
        })
    }

    fn create_alert(&mut self, all_tokens: &[Token]) -> Result<CreateAlert> {
        let if_not_exists = self.if_not_exists()?;
        let name = self.object_name("an alert name")?;
        let options = self.with_options()?;
        self.expect_kw("AS")?;
        let query = text_of(&all_tokens[nth_significant(all_tokens, self.pos - 1) + 1..]);
        if query.is_empty() {
            return Err(SqlError::Syntax(
                "expected the rule's query after AS: CREATE ALERT name WITH (severity = '…', key = '…', cooldown = '…') AS SELECT …".into(),
            ));
        }
        Ok(CreateAlert {
            name,
            if_not_exists,
            options,
            query,
        })
    }

    fn create_sink(&mut self) -> Result<CreateSink> {
        let if_not_exists = self.if_not_exists()?;
        let name = self.object_name("a sink name")?;
        self.expect_kw("FROM")?;
        // `weir.alerts`, every alert rule's alerts, keeps its schema.
        let qualified_alerts = matches!(self.peek(), Some(Token::Word(w)) if w.value.eq_ignore_ascii_case("weir"))
            && matches!(self.tokens.get(self.pos + 1), Some(Token::Period));
        let from = self.object_name("the view or source the sink reads")?;
        let from = if qualified_alerts && from == "alerts" {
            ALL_ALERTS.to_string()
        } else {
            from
        };
        if !self.peek_kw("WITH") {
            return Err(self.error("expected WITH (connector = '…', …)"));
        }
        let options = self.with_options()?;
        self.end()?;
        Ok(CreateSink {
            name,
            if_not_exists,
            from,
            options,
        })
    }

    /// The rest of `CREATE USER` (`create`) or `ALTER USER`: a name, then `WITH`, `PASSWORD
    /// '…'`, `ADMIN`/`SUPERUSER`, `NOADMIN`/`NOSUPERUSER` and `LOGIN` in any order.
    fn user(&mut self, create: bool) -> Result<UserStatement> {
        let name = self.ident("a user name")?;
        let (mut password, mut admin) = (None, None);
        self.eat_kw("WITH");
        while self.peek().is_some() && self.peek() != Some(&Token::SemiColon) {
            if self.eat_kw("PASSWORD") {
                match self.peek().cloned() {
                    Some(Token::SingleQuotedString(s)) => {
                        self.pos += 1;
                        password = Some(s);
                    }
                    _ => return Err(self.error("expected the password as a string literal")),
                }
            } else if self.eat_kw("ADMIN") || self.eat_kw("SUPERUSER") {
                admin = Some(true);
            } else if self.eat_kw("NOADMIN") || self.eat_kw("NOSUPERUSER") {
                admin = Some(false);
            } else if !self.eat_kw("LOGIN") {
                return Err(self.error("expected PASSWORD '…', ADMIN or NOADMIN"));
            }
        }
        self.end()?;
        if !create {
            return Ok(UserStatement::Alter {
                name,
                password,
                admin,
            });
        }
        let Some(password) = password else {
            return Err(SqlError::InvalidParameter(format!(
                "CREATE USER {name} needs a password: CREATE USER {name} WITH PASSWORD '…'"
            )));
        };
        Ok(UserStatement::Create {
            name,
            password,
            admin: admin.unwrap_or(false),
        })
    }

    fn drop(&mut self, kind: ObjectKind) -> Result<WeirStatement> {
        let mut if_exists = false;
        if self.eat_kw("IF") {
            self.expect_kw("EXISTS")?;
            if_exists = true;
        }
        let mut names = vec![self.object_name("a name")?];
        while self.eat(&Token::Comma) {
            names.push(self.object_name("a name")?);
        }
        let cascade = self.eat_kw("CASCADE");
        if !cascade {
            self.eat_kw("RESTRICT");
        }
        self.end()?;
        Ok(WeirStatement::Drop {
            kind,
            names,
            if_exists,
            cascade,
        })
    }

    fn show(&mut self) -> Result<WeirStatement> {
        if self.eat_kw("SOURCES") {
            self.end()?;
            return Ok(WeirStatement::Show(Show::Sources));
        }
        if self.eat_kw("SINKS") {
            self.end()?;
            return Ok(WeirStatement::Show(Show::Sinks));
        }
        if self.eat_kw("ALERTS") {
            self.end()?;
            return Ok(WeirStatement::Show(Show::Alerts));
        }
        if self.eat_kw("TABLES") {
            self.end()?;
            return Ok(WeirStatement::Show(Show::Tables));
        }
        if self.eat_kw("MATERIALIZED") {
            self.expect_kw("VIEWS")?;
            self.end()?;
            return Ok(WeirStatement::Show(Show::MaterializedViews));
        }
        if self.peek_kw("VIEWS") {
            self.pos += 1;
            self.end()?;
            return Ok(WeirStatement::Show(Show::MaterializedViews));
        }
        if self.eat_kw("CREATE") {
            if self.eat_kw("SOURCE") {
                let name = self.object_name("a source name")?;
                self.end()?;
                return Ok(WeirStatement::Show(Show::CreateSource(name)));
            }
            if self.eat_kw("TABLE") {
                let name = self.object_name("a table name")?;
                self.end()?;
                return Ok(WeirStatement::Show(Show::CreateTable(name)));
            }
            if self.eat_kw("SINK") {
                let name = self.object_name("a sink name")?;
                self.end()?;
                return Ok(WeirStatement::Show(Show::CreateSink(name)));
            }
            if self.eat_kw("ALERT") {
                let name = self.object_name("an alert name")?;
                self.end()?;
                return Ok(WeirStatement::Show(Show::CreateAlert(name)));
            }
            self.eat_kw("MATERIALIZED");
            self.expect_kw("VIEW")?;
            let name = self.object_name("a view name")?;
            self.end()?;
            return Ok(WeirStatement::Show(Show::CreateView(name)));
        }
        if self.eat_kw("TRANSACTION") {
            self.expect_kw("ISOLATION")?;
            self.expect_kw("LEVEL")?;
            return Ok(WeirStatement::Show(Show::Variable(
                "transaction_isolation".into(),
            )));
        }
        if self.eat_kw("TIME") {
            self.expect_kw("ZONE")?;
            return Ok(WeirStatement::Show(Show::Variable("timezone".into())));
        }
        let name = self.rest_text().replace(' ', "").to_lowercase();
        if name.is_empty() {
            return Err(
                self.error("expected SOURCES, MATERIALIZED VIEWS, CREATE … or a setting name")
            );
        }
        Ok(WeirStatement::Show(Show::Variable(name)))
    }

    fn set(&mut self) -> Result<WeirStatement> {
        let _ = self.eat_kw("SESSION") || self.eat_kw("LOCAL");
        if self.eat_kw("TIME") {
            self.expect_kw("ZONE")?;
            let value = self.rest_text();
            return Ok(WeirStatement::Set {
                name: "timezone".into(),
                value: unquote(&value),
            });
        }
        if self.peek_kw("TRANSACTION") || self.peek_kw("SESSION") || self.peek_kw("NAMES") {
            return Ok(WeirStatement::NoOp("SET".into()));
        }
        let mut name = self.option_key()?;
        while self.eat(&Token::Period) {
            name.push('.');
            name.push_str(&self.option_key()?);
        }
        if !self.eat(&Token::Eq) && !self.eat_kw("TO") {
            return Err(self.error("expected = or TO"));
        }
        let value = self.tokens[self.pos..]
            .iter()
            .map(|t| match t {
                Token::SingleQuotedString(s) => s.clone(),
                other => other.to_string(),
            })
            .collect::<Vec<_>>()
            .join(" ");
        Ok(WeirStatement::Set {
            name,
            value: value.trim().to_string(),
        })
    }
}

fn unquote(s: &str) -> String {
    s.trim().trim_matches('\'').to_string()
}

/// Index in `all` (whitespace included) of the `n`-th significant token.
/// Tokens back to text, as written, trimmed.
fn text_of(tokens: &[Token]) -> String {
    tokens
        .iter()
        .map(|t| t.to_string())
        .collect::<String>()
        .trim()
        .to_string()
}

fn nth_significant(all: &[Token], n: usize) -> usize {
    all.iter()
        .enumerate()
        .filter(|(_, t)| !matches!(t, Token::Whitespace(_)))
        .nth(n)
        .map(|(i, _)| i)
        .unwrap_or(all.len())
}

fn is_reserved(w: &Word) -> bool {
    matches!(
        w.keyword,
        Keyword::SELECT
            | Keyword::FROM
            | Keyword::WHERE
            | Keyword::WITH
            | Keyword::AS
            | Keyword::CREATE
            | Keyword::DROP
    )
}

fn unit_ns(unit: &str) -> Option<i64> {
    const S: i64 = 1_000_000_000;
    Some(match unit.to_lowercase().as_str() {
        "ns" | "nanosecond" | "nanoseconds" => 1,
        "us" | "microsecond" | "microseconds" => 1_000,
        "ms" | "msec" | "msecs" | "millisecond" | "milliseconds" => 1_000_000,
        "s" | "sec" | "secs" | "second" | "seconds" => S,
        "m" | "min" | "mins" | "minute" | "minutes" => 60 * S,
        "h" | "hr" | "hrs" | "hour" | "hours" => 3_600 * S,
        "d" | "day" | "days" => 86_400 * S,
        "w" | "week" | "weeks" => 7 * 86_400 * S,
        _ => return None,
    })
}

/// Parses `'2 seconds'`, `'1 minute 30 seconds'`, `'500 ms'`, `'00:01:00'` into ns.
pub fn parse_interval_ns(text: &str) -> Result<i64> {
    let bad = || {
        SqlError::InvalidParameter(format!(
            "invalid interval '{text}': expected e.g. '2 seconds', '500 milliseconds', '1 minute'"
        ))
    };
    let t = text.trim();
    if t.contains(':') {
        let parts: Vec<&str> = t.split(':').collect();
        if parts.len() != 3 {
            return Err(bad());
        }
        let h: i64 = parts[0].parse().map_err(|_| bad())?;
        let m: i64 = parts[1].parse().map_err(|_| bad())?;
        let s: f64 = parts[2].parse().map_err(|_| bad())?;
        return Ok(h * 3_600_000_000_000 + m * 60_000_000_000 + (s * 1e9) as i64);
    }
    let words: Vec<&str> = t.split_whitespace().collect();
    if words.is_empty() {
        return Err(bad());
    }
    let mut total: i64 = 0;
    let mut i = 0;
    while i < words.len() {
        // Number and unit may be glued: '2s', '500ms'.
        let (num, unit) = match words[i].find(|c: char| c.is_alphabetic()) {
            Some(pos) => (&words[i][..pos], &words[i][pos..]),
            None => {
                let unit = words.get(i + 1).copied().unwrap_or("second");
                i += 1;
                (words[i - 1], unit)
            }
        };
        let n: f64 = num.parse().map_err(|_| bad())?;
        let per = unit_ns(unit).ok_or_else(bad)?;
        total = total.saturating_add((n * per as f64).round() as i64);
        i += 1;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SOURCE: &str = r#"CREATE SOURCE events (
    event_id TEXT,
    source TEXT,
    "timestamp" TIMESTAMPTZ,
    attributes STRUCT<user_id TEXT, metric DOUBLE PRECISION, status TEXT>,
    WATERMARK FOR "timestamp" AS "timestamp" - INTERVAL '2 seconds'
) WITH (connector = 'file', path = '/path/to/events.jsonl', format = 'json')"#;

    #[test]
    fn quotes_inside_literals_and_names_survive_splitting_and_rewriting() {
        let sql = r#"SELECT 'it''s', "a""b" FROM TUMBLE(ev, "timestamp", INTERVAL '1 minute'); SELECT N'o''k'"#;
        let parts = split_statements(sql).unwrap();
        assert_eq!(
            parts[0],
            r#"SELECT 'it''s', "a""b" FROM TUMBLE(ev, "timestamp", INTERVAL '1 minute')"#
        );
        assert_eq!(parts[1], " SELECT N'o''k'");
        let WeirStatement::Query(text) = parse_statement(&parts[0]).unwrap() else {
            panic!("not a query")
        };
        assert!(text.starts_with(r#"SELECT 'it''s', "a""b" FROM"#), "{text}");
    }

    #[test]
    fn parses_the_seed_source() {
        let WeirStatement::CreateSource(s) = parse_statement(SOURCE).unwrap() else {
            panic!("not a source")
        };
        assert_eq!(s.name, "events");
        let names: Vec<_> = s.columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["event_id", "source", "timestamp", "attributes"]);
        assert_eq!(
            s.columns[3].data_type,
            "STRUCT<user_id TEXT, metric DOUBLE PRECISION, status TEXT>"
        );
        let w = s.watermark.unwrap();
        assert_eq!(
            (w.column.as_str(), w.delay_ns),
            ("timestamp", 2_000_000_000)
        );
        assert_eq!(s.options["path"], "/path/to/events.jsonl");
        assert_eq!(s.options["connector"], "file");
    }

    #[test]
    fn splits_statements_respecting_quotes_and_comments() {
        let parts = split_statements("select ';'; -- a ; comment\nselect 2;").unwrap();
        assert_eq!(parts.len(), 2);
        assert!(parts[0].contains("';'"));
        assert_eq!(split_statements(";").unwrap().len(), 1);
        assert_eq!(parse_statement("-- ping").unwrap(), WeirStatement::Empty);
    }

    #[test]
    fn view_with_emit_and_window_rewrite() {
        let sql = "CREATE MATERIALIZED VIEW v AS SELECT source, count(*) FROM TUMBLE(events, \"timestamp\", INTERVAL '1 minute') GROUP BY source, window_start EMIT ON UPDATE";
        let WeirStatement::CreateView(v) = parse_statement(sql).unwrap() else {
            panic!()
        };
        assert_eq!(v.emit, Some(EmitMode::OnUpdate));
        assert!(v.query.ends_with("window_start"), "{}", v.query);
        let WeirStatement::Query(q) = parse_statement(&v.query).unwrap() else {
            panic!()
        };
        assert!(
            q.contains("tumble('events', 'timestamp', INTERVAL '1 minute')"),
            "{q}"
        );
    }

    #[test]
    fn intervals() {
        assert_eq!(parse_interval_ns("2 seconds").unwrap(), 2_000_000_000);
        assert_eq!(parse_interval_ns("1 minute").unwrap(), 60_000_000_000);
        assert_eq!(parse_interval_ns("500 ms").unwrap(), 500_000_000);
        assert_eq!(
            parse_interval_ns("1 minute 30 seconds").unwrap(),
            90_000_000_000
        );
        assert!(parse_interval_ns("soon").is_err());
    }

    #[test]
    fn drop_and_show() {
        assert_eq!(
            parse_statement("DROP SOURCE IF EXISTS events CASCADE").unwrap(),
            WeirStatement::Drop {
                kind: ObjectKind::Source,
                names: vec!["events".into()],
                if_exists: true,
                cascade: true
            }
        );
        assert_eq!(
            parse_statement("SHOW MATERIALIZED VIEWS").unwrap(),
            WeirStatement::Show(Show::MaterializedViews)
        );
    }

    #[test]
    fn read_only_statements_are_the_reading_ones() {
        for sql in [
            "SELECT 1",
            "  with t AS (SELECT 1) SELECT * FROM t",
            "SHOW SOURCES",
            "EXPLAIN SELECT 1",
        ] {
            assert!(parse_statement(sql).unwrap().reads_only(), "{sql}");
        }
        for sql in [
            "DROP SOURCE events CASCADE",
            "CREATE MATERIALIZED VIEW v AS SELECT 1",
            "ALTER MATERIALIZED VIEW v SET (retention = '1 hour')",
            "INSERT INTO t VALUES (1)",
            "CREATE TABLE t (x INT)",
        ] {
            assert!(!parse_statement(sql).unwrap().reads_only(), "{sql}");
        }
    }
}
