//! The offered load: arrivals (open loop, Poisson, on the scenario's rate curve; or closed-loop
//! callers) and the request mix.
//!
//! SKELETON (helper "core").
