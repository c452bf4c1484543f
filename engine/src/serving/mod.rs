//! What queries read: a view's emitted rows with their keyed index ([`rows`]), a view as a
//! DataFusion table ([`table`]), and the engine's counters and logs ([`system`]) that
//! `weir.*`, `/metrics` and `/ready` all read.

pub mod rows;
pub mod system;
pub mod table;
