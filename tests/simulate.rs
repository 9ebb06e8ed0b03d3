//! The simulator against the same model served for real on loopback: faithful within stated
//! tolerances, and a deliberately wrong policy shows what it does (`resilient_http::sim`).
//!
//! SKELETON (helper "faithful").
