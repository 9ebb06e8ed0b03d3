//! The simulation's way out: an attempt layer whose service answers from the model in
//! memory (no socket), honouring the attempt's timeout itself as reqwest would.
//!
//! SKELETON (helper "core").
