//! Result column names as PostgreSQL gives them.
//!
//! DataFusion names an unaliased output column by its expression (`count(*)`,
//! `sum(kpi_1m.count)`, `Int64(1)`); PostgreSQL names a function call by the function
//! (`count`, `sum`), a column by the column, and anything else `?column?`. Clients that
//! name series or fields by the column (Grafana, pandas) expect PostgreSQL's names, so the
//! wire protocol sends these (the REST API keeps DataFusion's, which stay unique as JSON
//! keys need).

/// Window clauses DataFusion appends to a window function's name.
const WINDOW_SUFFIXES: [&str; 5] = [
    " PARTITION BY",
    " ORDER BY",
    " ROWS",
    " RANGE",
    " WITHIN GROUP",
];

/// The PostgreSQL name of a column DataFusion named `name`.
pub fn pg_column_name(name: &str) -> String {
    let ident_end = name
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(name.len());
    let ident = &name[..ident_end];
    let rest = &name[ident_end..];
    if ident.is_empty() {
        return "?column?".into();
    }
    if rest.is_empty() {
        return name.to_string();
    }
    // A qualified column `relation.column`.
    if rest.starts_with('.')
        && rest[1..]
            .split('.')
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
    {
        return rest.rsplit('.').next().unwrap_or(name).to_string();
    }
    // A call `f(…)`: the name is `f`, when the call is the whole expression (or a window
    // function with its window). Literals (`Int64(1)`, `Utf8("a")`) and casts are not
    // calls PostgreSQL would name by their function.
    if let Some(args) = rest.strip_prefix('(') {
        if let Some(close) = matching_paren(args) {
            let after = &args[close + 1..];
            let call = after.is_empty() || WINDOW_SUFFIXES.iter().any(|s| after.starts_with(s));
            let lowercase = ident.chars().all(|c| !c.is_ascii_uppercase());
            if call && lowercase {
                return ident.to_string();
            }
        }
    }
    "?column?".into()
}

/// The index in `s` of the `)` closing a `(` just before `s`.
fn matching_paren(s: &str) -> Option<usize> {
    let mut depth = 0usize;
    let mut quoted = false;
    for (i, c) in s.char_indices() {
        match c {
            '"' | '\'' => quoted = !quoted,
            '(' if !quoted => depth += 1,
            ')' if !quoted && depth == 0 => return Some(i),
            ')' if !quoted => depth -= 1,
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_postgresql() {
        for (datafusion, pg) in [
            ("count(*)", "count"),
            ("sum(kpi_1m.count)", "sum"),
            ("avg(t.x)", "avg"),
            ("approx_percentile_cont(Float64(0.95)) WITHIN GROUP [t.x ASC NULLS LAST]", "approx_percentile_cont"),
            ("kpi_1m.count", "count"),
            ("row_number() ORDER BY [t.x ASC NULLS LAST] ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW", "row_number"),
            ("window_start", "window_start"),
            ("source", "source"),
            ("Int64(1)", "?column?"),
            ("count(*) + Int64(1)", "?column?"),
            ("t.x + Int64(1)", "?column?"),
            ("CAST(t.x AS Int64)", "?column?"),
            ("lower(Utf8(\")\"))", "lower"),
        ] {
            assert_eq!(pg_column_name(datafusion), pg, "{datafusion}");
        }
    }
}
