//! PostgreSQL's rule for a failed transaction block: after an error inside `BEGIN`, every
//! statement but the block's end is refused with 25P02 until `ROLLBACK` (or `COMMIT`, which
//! then rolls back and says so). Weir's statements change nothing a rollback could undo, so
//! the block only has to be refused as PostgreSQL refuses it; pgwire keeps the status (idle,
//! in a block, failed) that `ReadyForQuery` reports.

use pgwire::messages::response::TransactionStatus;
use weir_sql::dialect::WeirStatement;
use weir_sql::{Outcome, Prepared, SqlError};

/// In a `failed` block: `ROLLBACK`'s outcome for its end (`COMMIT` included), 25P02 for any
/// other statement. `None`: run it.
pub(super) fn in_failed(failed: bool, prepared: &Prepared) -> Option<Result<Outcome, SqlError>> {
    if !failed {
        return None;
    }
    Some(match prepared {
        Prepared::Statement(WeirStatement::Commit | WeirStatement::Rollback) => {
            Ok(Outcome::Command("ROLLBACK".into()))
        }
        _ => Err(SqlError::InFailedTransaction),
    })
}

/// The status after a statement of a multi-statement query succeeded with `outcome`.
pub(super) fn after(status: TransactionStatus, outcome: &Outcome) -> TransactionStatus {
    match outcome {
        Outcome::Command(tag) if tag == "BEGIN" => status.to_in_transaction_state(),
        Outcome::Command(tag) if tag == "COMMIT" || tag == "ROLLBACK" => status.to_idle_state(),
        _ => status,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_block_refuses_all_but_its_end() {
        let query = Prepared::Statement(WeirStatement::Begin);
        assert!(in_failed(false, &query).is_none());
        match in_failed(true, &query) {
            Some(Err(e)) => assert_eq!(e.sqlstate(), "25P02"),
            other => panic!("{other:?}"),
        }
        for end in [WeirStatement::Commit, WeirStatement::Rollback] {
            match in_failed(true, &Prepared::Statement(end)) {
                Some(Ok(Outcome::Command(tag))) => assert_eq!(tag, "ROLLBACK"),
                other => panic!("{other:?}"),
            }
        }
        let begun = after(TransactionStatus::Idle, &Outcome::Command("BEGIN".into()));
        assert_eq!(begun, TransactionStatus::Transaction);
        assert_eq!(
            after(begun, &Outcome::Command("ROLLBACK".into())),
            TransactionStatus::Idle
        );
    }
}
