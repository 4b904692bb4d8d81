//! Text as it is drawn: incremental decoding for streaming, and stop strings.

use anyhow::Result;

use crate::TextCodec;

/// Turns a growing list of ids into the new text to print, holding back a trailing partial
/// UTF-8 character (bytes and byte-level BPE can split one across tokens).
pub struct TextStream<'a> {
    codec: &'a TextCodec,
    ids: Vec<u32>,
    printed: usize,
}

impl<'a> TextStream<'a> {
    pub fn new(codec: &'a TextCodec) -> Self {
        Self { codec, ids: Vec::new(), printed: 0 }
    }

    /// Adds a token and returns the text that became final.
    pub fn push(&mut self, id: u32) -> Result<String> {
        self.ids.push(id);
        let text = self.codec.decode_text(&self.ids)?;
        if text.ends_with('\u{FFFD}') || text.len() < self.printed || !text.is_char_boundary(self.printed) {
            return Ok(String::new());
        }
        let new = text[self.printed..].to_string();
        self.printed = text.len();
        Ok(new)
    }

    /// Whatever is still held back (at the end of generation).
    pub fn finish(&mut self) -> Result<String> {
        let text = self.codec.decode_text(&self.ids)?;
        let rest = text.get(self.printed..).unwrap_or_default().to_string();
        self.printed = text.len();
        Ok(rest)
    }
}

/// Where the first stop string starts in `text`, if any.
pub fn find_stop(text: &str, stops: &[String]) -> Option<usize> {
    stops.iter().filter(|s| !s.is_empty()).filter_map(|s| text.find(s.as_str())).min()
}
