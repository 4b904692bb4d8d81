//! jielong-audio
