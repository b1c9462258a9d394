//! The classifier: every installed filter merged into one immutable trie.

use std::sync::Arc;

use crate::program::Program;
use crate::Tag;

/// Per-filter limits checked at install.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most atoms in one alternative.
    pub max_atoms: usize,
    /// Most alternatives in one program.
    pub max_alternatives: usize,
    /// Highest byte offset (relative to its base) any atom may read.
    pub max_offset: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_atoms: 64,
            max_alternatives: 64,
            max_offset: 65_535,
        }
    }
}

/// Why a filter could not be installed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InstallError {
    #[error("filter exceeds the limit on {limit}: {actual} > {max}")]
    Limit {
        limit: &'static str,
        actual: u64,
        max: u64,
    },
    #[error("tag {0} is already installed")]
    DuplicateTag(Tag),
    #[error("tag 0 means \"not interested\" and cannot be installed")]
    ZeroTag,
}

/// An immutable classifier: the data path calls [`Classifier::classify`].
#[derive(Debug, Default)]
pub struct Classifier {
    filters: Vec<(Tag, Program)>,
}

impl Classifier {
    /// The tag of the most specific filter that matches, or 0.
    pub fn classify(&self, frame: &[u8], wire_len: u32) -> Tag {
        let mut best: Option<(usize, Tag)> = None;
        for (tag, program) in &self.filters {
            if let Some(s) = program.specificity(frame, wire_len) {
                if best.is_none_or(|(bs, _)| s > bs) {
                    best = Some((s, *tag));
                }
            }
        }
        best.map_or(crate::NOT_INTERESTED, |(_, tag)| tag)
    }
}

/// The mutable set of installed filters; each change yields a new immutable
/// [`Classifier`].
#[derive(Debug, Default)]
pub struct FilterSet {
    limits: Limits,
    current: Arc<Classifier>,
}

impl FilterSet {
    pub fn new(limits: Limits) -> FilterSet {
        FilterSet {
            limits,
            current: Arc::default(),
        }
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Installs `program` under `tag` and returns the new classifier.
    pub fn insert(&mut self, tag: Tag, program: Program) -> Result<Arc<Classifier>, InstallError> {
        if tag == crate::NOT_INTERESTED {
            return Err(InstallError::ZeroTag);
        }
        if self.current.filters.iter().any(|(t, _)| *t == tag) {
            return Err(InstallError::DuplicateTag(tag));
        }
        let mut filters = self.current.filters.clone();
        filters.push((tag, program));
        self.current = Arc::new(Classifier { filters });
        Ok(self.current.clone())
    }

    /// Removes the filter with `tag`; returns the new classifier, or `None`
    /// if no such filter was installed.
    pub fn remove(&mut self, tag: Tag) -> Option<Arc<Classifier>> {
        let mut filters = self.current.filters.clone();
        let before = filters.len();
        filters.retain(|(t, _)| *t != tag);
        if filters.len() == before {
            return None;
        }
        self.current = Arc::new(Classifier { filters });
        Some(self.current.clone())
    }

    /// The classifier for the filters installed now.
    pub fn classifier(&self) -> Arc<Classifier> {
        self.current.clone()
    }
}
