//! The report as a self-contained HTML page with SVG charts (plotters' SVG backend).
//!
//! SKELETON (helper "report").

use super::report::Report;

pub(crate) fn render(reports: &[Report]) -> String {
    let _ = reports;
    String::new()
}
