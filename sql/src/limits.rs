//! Bounds on what one statement may ask of the server before it is parsed and planned.
//!
//! Parsing, planning and evaluating an expression recurse once per nesting level, so
//! `1+1+…+1` with thousands of terms, long `AND` chains or thousands of `UNION ALL`s would
//! overflow a thread's stack and abort the whole process. The token stream is flat, so it
//! is checked first: more than [`MAX_OPERATORS`] operators or [`MAX_NESTING`] nested
//! parentheses in one statement is refused with SQLSTATE 54001, as PostgreSQL refuses a
//! statement that exceeds its stack depth. Real queries (Grafana's included) stay far below.

use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::Token;

use crate::error::{Result, SqlError};

/// The longest statement text accepted.
pub const MAX_STATEMENT_BYTES: usize = 1 << 20;
/// Binary operators and set operations in one statement.
pub const MAX_OPERATORS: usize = 1_000;
/// Nested parentheses in one statement.
pub const MAX_NESTING: usize = 200;

/// Refuses a statement too large or too deeply nested to plan safely.
pub fn check_statement(sql: &str, tokens: &[Token]) -> Result<()> {
    if sql.len() > MAX_STATEMENT_BYTES {
        return Err(SqlError::TooComplex(format!(
            "statement is too long: {} bytes, at most {MAX_STATEMENT_BYTES} are accepted",
            sql.len()
        )));
    }
    let (mut operators, mut depth, mut deepest) = (0usize, 0usize, 0usize);
    for t in tokens {
        match t {
            Token::LParen => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            Token::RParen => depth = depth.saturating_sub(1),
            Token::Plus
            | Token::Minus
            | Token::Mul
            | Token::Div
            | Token::Mod
            | Token::StringConcat
            | Token::Eq
            | Token::DoubleEq
            | Token::Neq
            | Token::Lt
            | Token::Gt
            | Token::LtEq
            | Token::GtEq
            | Token::Caret
            | Token::Pipe
            | Token::Ampersand => operators += 1,
            Token::Word(w)
                if matches!(
                    w.keyword,
                    Keyword::AND
                        | Keyword::OR
                        | Keyword::UNION
                        | Keyword::INTERSECT
                        | Keyword::EXCEPT
                ) =>
            {
                operators += 1
            }
            _ => {}
        }
    }
    if operators > MAX_OPERATORS {
        return Err(SqlError::TooComplex(format!(
            "statement is too complex: {operators} operators (+, AND, ||, UNION, …), at most {MAX_OPERATORS} are accepted; split the expression or the query"
        )));
    }
    if deepest > MAX_NESTING {
        return Err(SqlError::TooComplex(format!(
            "statement is too complex: parentheses nest {deepest} deep, at most {MAX_NESTING} are accepted"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::tokenizer::Tokenizer;

    fn check(sql: &str) -> Result<()> {
        let tokens = Tokenizer::new(&PostgreSqlDialect {}, sql)
            .tokenize()
            .unwrap();
        check_statement(sql, &tokens)
    }

    #[test]
    fn long_chains_and_deep_nesting_are_refused_with_54001() {
        for sql in [
            format!("SELECT {}1", "1+".repeat(2000)),
            format!("SELECT 1 WHERE {}true", "true AND ".repeat(2000)),
            format!("SELECT {}'a'", "'a'||".repeat(5000)),
            format!("SELECT 1{}", " UNION ALL SELECT 1".repeat(5000)),
            format!("SELECT {}1{}", "(".repeat(1000), ")".repeat(1000)),
            format!("SELECT '{}'", "x".repeat(2 << 20)),
        ] {
            let e = check(&sql).unwrap_err();
            assert_eq!(e.sqlstate(), "54001", "{e}");
        }
        check(&format!("SELECT {}1", "1+".repeat(500))).unwrap();
        check("SELECT source, avg(x) FROM kpi_1m WHERE a > 1 AND b < 2 GROUP BY 1").unwrap();
    }
}
