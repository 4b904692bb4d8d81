//! jielong-image
