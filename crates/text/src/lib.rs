//! jielong-text
