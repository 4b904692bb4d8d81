//! Chat templates: the Jinja template a model folder ships in `tokenizer_config.json`, rendered
//! with minijinja (with Python-style string methods, as Hugging Face templates expect), or a
//! plain built-in one for folders that have none.

use std::path::Path;

use anyhow::{Context, Result, bail};
use minijinja::{Environment, Error, ErrorKind, context};
use serde::Serialize;
use serde_json::Value;

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Message {
    pub role: String,
    pub content: String,
}

impl Message {
    pub fn new(role: &str, content: &str) -> Self {
        Self { role: role.into(), content: content.into() }
    }
}

/// A template and the special-token strings it refers to.
#[derive(Clone, Debug)]
pub struct ChatTemplate {
    source: String,
    pub bos_token: String,
    pub eos_token: String,
    /// True for the built-in fallback (a model folder without a template).
    pub builtin: bool,
}

/// The fallback: `role: content` lines, then `assistant:` for the reply.
const BUILTIN: &str = "{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}\
                       {% if add_generation_prompt %}assistant:{% endif %}";

impl ChatTemplate {
    pub fn builtin() -> Self {
        Self { source: BUILTIN.into(), bos_token: String::new(), eos_token: String::new(), builtin: true }
    }

    /// The template of `dir/tokenizer_config.json` (`chat_template` as a string, or a list of
    /// named templates of which "default" is taken), or the built-in one when there is none.
    pub fn from_folder(dir: &Path) -> Result<Self> {
        let path = dir.join("tokenizer_config.json");
        if !path.exists() {
            return Ok(Self::builtin());
        }
        let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
        let config: Value = serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON", path.display()))?;
        let source = match &config["chat_template"] {
            Value::String(s) => s.clone(),
            Value::Array(list) => list
                .iter()
                .find(|t| t["name"] == "default")
                .or(list.first())
                .and_then(|t| t["template"].as_str())
                .with_context(|| format!("{}: chat_template list has no usable template", path.display()))?
                .to_string(),
            Value::Null => return Ok(Self::builtin()),
            _ => bail!("{}: chat_template is neither a string nor a list", path.display()),
        };
        // Special tokens are strings or {"content": ...} objects.
        let token = |key: &str| match &config[key] {
            Value::String(s) => s.clone(),
            Value::Object(o) => o.get("content").and_then(Value::as_str).unwrap_or_default().to_string(),
            _ => String::new(),
        };
        let template = Self { source, bos_token: token("bos_token"), eos_token: token("eos_token"), builtin: false };
        template.render(&[Message::new("user", "hi")], true).context("the chat template does not render")?;
        Ok(template)
    }

    /// The conversation as text, ending with the assistant's cue when `add_generation_prompt`.
    pub fn render(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String> {
        let mut env = Environment::new();
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", |msg: String| -> Result<String, Error> {
            Err(Error::new(ErrorKind::InvalidOperation, msg))
        });
        env.add_function("strftime_now", |_format: String| -> String { "26 Jul 2024".to_string() });
        env.add_template("chat", &self.source).map_err(|e| anyhow::anyhow!("bad chat template: {e}"))?;
        let tmpl = env.get_template("chat").map_err(|e| anyhow::anyhow!("{e}"))?;
        tmpl.render(context! {
            messages => messages,
            add_generation_prompt => add_generation_prompt,
            bos_token => &self.bos_token,
            eos_token => &self.eos_token,
        })
        .map_err(|e| anyhow::anyhow!("cannot render the chat template: {e}"))
    }
}
