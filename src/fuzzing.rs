//! What the library's property tests share (`cargo test --lib fuzz`).

use proptest::test_runner::Config;

/// `cases` cases per property, or `PROPTEST_CASES` (a million for the long runs: see
/// BENCHMARKS.md). Failures are kept as regression tests in the code, not in files beside it.
pub(crate) fn config(cases: u32) -> Config {
    let asked = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok());
    Config {
        cases: asked.unwrap_or(cases),
        failure_persistence: None,
        ..Config::default()
    }
}
