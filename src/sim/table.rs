//! The report as a table for the terminal.
//!
//! SKELETON (helper "report").

use super::report::Report;

pub(crate) fn render(reports: &[Report]) -> String {
    let _ = reports;
    String::new()
}
