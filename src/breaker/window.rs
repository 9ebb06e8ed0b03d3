//! The breaker's window of call outcomes (calls, failures, slow calls): the crate's sliding
//! window, `src/window.rs`, which says how it is kept and what a call or time window holds.

pub(super) use crate::window::{FAILURE, Outcomes, SLOW, SUCCESS};
pub use crate::window::{Window, WindowCounts};
