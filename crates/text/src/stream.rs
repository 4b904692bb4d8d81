//! Text as it is drawn: incremental decoding for streaming, and stop strings.

use anyhow::Result;

use crate::TextCodec;

/// Turns a growing list of ids into the new text to print.
///
/// Decoding one token alone is wrong for most tokenizers (a partial UTF-8 character, a
/// SentencePiece space that depends on what came before), and re-decoding everything can change
/// text already printed (a byte-fallback byte becomes U+FFFD when an invalid byte follows). So,
/// as Hugging Face's `DecodeStream` does, each step decodes a short window: the tokens printed
/// last as context, then the new ones, and prints what the new ones add. A window that ends in
/// U+FFFD (an unfinished character) or rewrites its context is held back a while.
pub struct TextStream<'a> {
    codec: &'a TextCodec,
    ids: Vec<u32>,
    /// `ids[context..printed]` are already printed and decoded again as context.
    context: usize,
    printed: usize,
}

/// Tokens held back at most before the window is printed as it decodes.
const MAX_HELD: usize = 64;

impl<'a> TextStream<'a> {
    pub fn new(codec: &'a TextCodec) -> Self {
        Self {
            codec,
            ids: Vec::new(),
            context: 0,
            printed: 0,
        }
    }

    /// Adds a token and returns the text that became final (possibly empty).
    pub fn push(&mut self, id: u32) -> Result<String> {
        self.ids.push(id);
        let before = self
            .codec
            .decode_text(&self.ids[self.context..self.printed])?;
        let now = self.codec.decode_text(&self.ids[self.context..])?;
        let held = self.ids.len() - self.printed;
        // A run of byte-fallback tokens decodes as a whole (invalid UTF-8 in it turns all its
        // bytes into U+FFFD), so it is printed only once it ends.
        let settled = !now.ends_with('\u{FFFD}')
            && now.len() > before.len()
            && now.starts_with(&before)
            && !self.codec.is_byte_token(id);
        if settled {
            return Ok(self.commit(now[before.len()..].to_string()));
        }
        if held >= MAX_HELD {
            let text = self.codec.decode_text(&self.ids[self.printed..])?;
            return Ok(self.commit(text));
        }
        Ok(String::new())
    }

    /// Whatever is still held back (at the end of generation).
    pub fn finish(&mut self) -> Result<String> {
        if self.printed == self.ids.len() {
            return Ok(String::new());
        }
        let before = self
            .codec
            .decode_text(&self.ids[self.context..self.printed])?;
        let now = self.codec.decode_text(&self.ids[self.context..])?;
        let text = match now.strip_prefix(before.as_str()) {
            Some(rest) => rest.to_string(),
            None => self.codec.decode_text(&self.ids[self.printed..])?,
        };
        Ok(self.commit(text))
    }

    /// Marks every token as printed, keeping the last ones as the next window's context.
    fn commit(&mut self, text: String) -> String {
        self.context = self.printed;
        self.printed = self.ids.len();
        text
    }
}

/// Where the first stop string starts in `text`, if any.
pub fn find_stop(text: &str, stops: &[String]) -> Option<usize> {
    stops
        .iter()
        .filter(|s| !s.is_empty())
        .filter_map(|s| text.find(s.as_str()))
        .min()
}
