//! The netserver public API as Cap'n Proto interfaces.
