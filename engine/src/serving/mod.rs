//! What queries read: a view's emitted rows with their keyed index ([`rows`]), a view as a
//! DataFusion table ([`table`]), the engine's live counters and logs ([`system`]), and one
//! snapshot of those counters ([`counters`]) that `weir.*`, `/metrics` and `/ready` all read.

pub mod counters;
pub mod rows;
pub mod system;
pub mod table;
