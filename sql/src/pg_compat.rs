//! Statements PostgreSQL clients send, verbatim, that DataFusion cannot plan as written,
//! rewritten before parsing into SQL that gives PostgreSQL's answer.
//!
//! Grafana's query builder (every version since 5.3) asks which schemas are on the search
//! path with
//!
//! ```sql
//! SELECT CASE WHEN trim(s[i]) = '"$user"' THEN user ELSE trim(s[i]) END
//! FROM generate_series(array_lower(string_to_array(current_setting('search_path'),','),1),
//!                      array_upper(string_to_array(current_setting('search_path'),','),1)) as i,
//!      string_to_array(current_setting('search_path'),',') s
//! ```
//!
//! inside `IN (…)`, in `WHERE`, in the select list and in `ORDER BY`. PostgreSQL treats the
//! scalar `string_to_array(…) s` in `FROM` as a one-row table whose column is `s`, and the
//! alias `i` as `generate_series`'s column; DataFusion does neither, and it cannot evaluate
//! `IN (subquery)` outside `WHERE`. The subquery only lists the search path's schemas, so
//! it is replaced, token for token whatever the whitespace, by that list as literals —
//! `'public'` — which every place it appears can evaluate. (datafusion-pg-catalog's parser
//! replaces it with `''`, which lists every table schema-qualified and finds no columns for
//! a bare table name.)

use std::sync::LazyLock;

use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};

use crate::session::default_setting;

const SEARCH_PATH_SUBQUERY: &str = r#"SELECT CASE WHEN trim(s[i]) = '"$user"' THEN user ELSE trim(s[i]) END
    FROM generate_series(
        array_lower(string_to_array(current_setting('search_path'),','),1),
        array_upper(string_to_array(current_setting('search_path'),','),1)
    ) as i,
    string_to_array(current_setting('search_path'),',') s"#;

/// The subquery's tokens, whitespace left out.
static PATTERN: LazyLock<Vec<Token>> = LazyLock::new(|| {
    Tokenizer::new(&PostgreSqlDialect {}, SEARCH_PATH_SUBQUERY)
        .tokenize()
        .map(|t| t.into_iter().filter(|t| !is_space(t)).collect())
        .unwrap_or_default()
});

fn is_space(t: &Token) -> bool {
    matches!(t, Token::Whitespace(_))
}

/// Whether two tokens are the same, keywords and names compared without case.
fn same(a: &Token, b: &Token) -> bool {
    match (a, b) {
        (Token::Word(x), Token::Word(y)) => {
            x.quote_style == y.quote_style && x.value.eq_ignore_ascii_case(&y.value)
        }
        _ => a == b,
    }
}

/// The search path's schemas as SQL string literals (`"$user"` left out: Weir has no
/// schema per user).
fn search_path_literals() -> String {
    default_setting("search_path")
        .unwrap_or("public")
        .split(',')
        .map(|s| s.trim())
        .filter(|s| *s != "\"$user\"" && !s.is_empty())
        .map(|s| format!("'{}'", s.replace('\'', "''")))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `sql` with every occurrence of Grafana's search-path subquery replaced by the search
/// path's schemas; `None` when there is none.
pub fn rewrite(sql: &str) -> Option<String> {
    if !sql.contains("search_path") {
        return None;
    }
    let tokens = Tokenizer::new(&PostgreSqlDialect {}, sql).tokenize().ok()?;
    let pattern = PATTERN.as_slice();
    let mut out = String::with_capacity(sql.len());
    let mut replaced = false;
    let mut i = 0;
    while i < tokens.len() {
        if let Some(end) = match_at(&tokens, i, pattern) {
            out.push_str(&search_path_literals());
            replaced = true;
            i = end;
            continue;
        }
        out.push_str(&crate::dialect::token_text(&tokens[i]));
        i += 1;
    }
    replaced.then_some(out)
}

/// The index after the pattern if it starts at `start` (whitespace skipped).
fn match_at(tokens: &[Token], start: usize, pattern: &[Token]) -> Option<usize> {
    let mut i = start;
    for p in pattern {
        while tokens.get(i).is_some_and(is_space) {
            i += 1;
        }
        if !same(tokens.get(i)?, p) {
            return None;
        }
        i += 1;
    }
    Some(i)
}

/// PostgreSQL types an integer literal that fits 32 bits as `integer` (int4), DataFusion as
/// Int64 (int8). A query's output column that is such a literal (`SELECT 1`, `SELECT 4 AS
/// four`) is sent as int4, as drivers that read the column type expect (pgjdbc's
/// `getColumnType` says INTEGER, asyncpg and node-postgres decode by the type). Only the
/// outermost projection's bare literals change: arithmetic keeps DataFusion's types.
pub fn int4_literal_columns(
    plan: datafusion::logical_expr::LogicalPlan,
) -> datafusion::logical_expr::LogicalPlan {
    use datafusion::common::ScalarValue;
    use datafusion::logical_expr::{Expr, LogicalPlan, Projection};
    let LogicalPlan::Projection(p) = &plan else {
        return plan;
    };
    let mut changed = false;
    let exprs: Vec<Expr> = p
        .expr
        .iter()
        .zip(p.schema.fields())
        .map(|(e, field)| {
            let inner = match e {
                Expr::Alias(a) => a.expr.as_ref(),
                other => other,
            };
            match inner {
                Expr::Literal(ScalarValue::Int64(Some(v)), None) if i32::try_from(*v).is_ok() => {
                    changed = true;
                    Expr::Literal(ScalarValue::Int32(Some(*v as i32)), None).alias(field.name())
                }
                _ => e.clone(),
            }
        })
        .collect();
    if !changed {
        return plan;
    }
    Projection::try_new(exprs, p.input.clone())
        .map(LogicalPlan::Projection)
        .unwrap_or(plan)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grafanas_search_path_subquery_becomes_the_schema_list() {
        let sql = "SELECT quote_ident(table_name) FROM information_schema.tables WHERE \n\
            quote_ident(table_schema) IN (\n  SELECT\n    CASE WHEN trim(s[i]) = '\"$user\"' THEN user ELSE trim(s[i]) END\n  FROM\n    generate_series(\n      array_lower(string_to_array(current_setting('search_path'),','),1),\n      array_upper(string_to_array(current_setting('search_path'),','),1)\n    ) as i,\n    string_to_array(current_setting('search_path'),',') s\n) ORDER BY table_name";
        assert_eq!(
            rewrite(sql).unwrap(),
            "SELECT quote_ident(table_name) FROM information_schema.tables WHERE \n\
             quote_ident(table_schema) IN ('public'\n) ORDER BY table_name"
        );
        // Twice in one statement (select list and ORDER BY).
        let twice = format!("SELECT x IN ({SEARCH_PATH_SUBQUERY}), y IN ({SEARCH_PATH_SUBQUERY})");
        assert_eq!(
            rewrite(&twice).unwrap(),
            "SELECT x IN ('public'), y IN ('public')"
        );
        assert_eq!(rewrite("SELECT current_setting('search_path')"), None);
        assert_eq!(rewrite("SELECT 1"), None);
        // Literals elsewhere in the statement keep their quotes.
        let quoted = format!("SELECT 'it''s' WHERE x IN ({SEARCH_PATH_SUBQUERY})");
        assert_eq!(
            rewrite(&quoted).unwrap(),
            "SELECT 'it''s' WHERE x IN ('public')"
        );
    }
}
