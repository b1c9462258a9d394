//! The merged DPF trie of every installed filter.
