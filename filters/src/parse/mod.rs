//! The pcap-filter front end: lexer and parser from expression text to an AST.
//! (Owned by the language work; see `compile` for the lowering to atoms.)
