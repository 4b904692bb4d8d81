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
        Self {
            role: role.into(),
            content: content.into(),
        }
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
        Self {
            source: BUILTIN.into(),
            bos_token: String::new(),
            eos_token: String::new(),
            builtin: true,
        }
    }

    /// A template given as text (a GGUF file's `tokenizer.chat_template`) with the texts of
    /// its BOS and EOS tokens, checked by rendering a one-message conversation.
    pub fn from_source(source: &str, bos_token: &str, eos_token: &str) -> Result<Self> {
        let template = Self {
            source: source.into(),
            bos_token: bos_token.into(),
            eos_token: eos_token.into(),
            builtin: false,
        };
        template
            .render(&[Message::new("user", "hi")], true)
            .context("the chat template does not render")?;
        Ok(template)
    }

    /// The template of `dir/tokenizer_config.json` (`chat_template` as a string, or a list of
    /// named templates of which "default" is taken), or the built-in one when there is none.
    pub fn from_folder(dir: &Path) -> Result<Self> {
        let path = dir.join("tokenizer_config.json");
        if !path.exists() {
            return Ok(Self::builtin());
        }
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let config: Value = serde_json::from_str(&text)
            .with_context(|| format!("{} is not valid JSON", path.display()))?;
        let source = match &config["chat_template"] {
            Value::String(s) => s.clone(),
            Value::Array(list) => list
                .iter()
                .find(|t| t["name"] == "default")
                .and_then(|t| t["template"].as_str())
                .with_context(|| {
                    format!(
                        "{}: chat_template list has no template named \"default\"",
                        path.display()
                    )
                })?
                .to_string(),
            Value::Null => return Ok(Self::builtin()),
            _ => bail!(
                "{}: chat_template is neither a string nor a list",
                path.display()
            ),
        };
        // Special tokens are strings or {"content": ...} objects.
        let token = |key: &str| match &config[key] {
            Value::String(s) => s.clone(),
            Value::Object(o) => o
                .get("content")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            _ => String::new(),
        };
        let template = Self {
            source,
            bos_token: token("bos_token"),
            eos_token: token("eos_token"),
            builtin: false,
        };
        template
            .render(&[Message::new("user", "hi")], true)
            .context("the chat template does not render")?;
        Ok(template)
    }

    /// The template's Jinja text (`None` for the built-in one), e.g. to write it into an
    /// exported model.
    pub fn source(&self) -> Option<&str> {
        (!self.builtin).then_some(self.source.as_str())
    }

    /// The conversation as text, ending with the assistant's cue when `add_generation_prompt`.
    pub fn render(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String> {
        let mut env = Environment::new();
        // Hugging Face renders templates with these two set.
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", |msg: String| -> Result<String, Error> {
            Err(Error::new(ErrorKind::InvalidOperation, msg))
        });
        env.add_function("strftime_now", |_format: String| -> String {
            "26 Jul 2024".to_string()
        });
        env.add_template("chat", &self.source)
            .map_err(|e| anyhow::anyhow!("bad chat template: {e}"))?;
        let tmpl = env
            .get_template("chat")
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        tmpl.render(context! {
            messages => messages,
            add_generation_prompt => add_generation_prompt,
            bos_token => &self.bos_token,
            eos_token => &self.eos_token,
        })
        .map_err(|e| anyhow::anyhow!("cannot render the chat template: {e}"))
    }
}

#[cfg(test)]
mod tests {
    //! Templates written here in the forms models ship them (ChatML, Llama 2, Llama 3, Zephyr),
    //! read from a `tokenizer_config.json` the way `jielong chat` reads them. The expected
    //! strings are written by hand from each template's Jinja semantics, as transformers renders
    //! them (`apply_chat_template`: Jinja2 with `trim_blocks` and `lstrip_blocks`).

    use super::*;
    use serde_json::json;

    fn m(role: &str, content: &str) -> Message {
        Message::new(role, content)
    }

    /// A folder whose `tokenizer_config.json` is `config`, and its template.
    fn load(config: Value) -> Result<ChatTemplate> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("tokenizer_config.json"), config.to_string()).unwrap();
        ChatTemplate::from_folder(dir.path())
    }

    fn load_ok(config: Value) -> ChatTemplate {
        load(config).unwrap_or_else(|e| panic!("the template should load: {e:#}"))
    }

    fn conversation() -> Vec<Message> {
        vec![
            m("system", "You are terse."),
            m("user", "hi"),
            m("assistant", "hello"),
            m("user", "what is 2+2?"),
        ]
    }

    // Qwen2's ChatML (with its default system message when the conversation has none).
    const CHATML: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}\
{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}\
{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}\
{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

    #[test]
    fn chatml_renders_each_turn_and_the_generation_prompt() {
        let t = load_ok(json!({ "chat_template": CHATML, "eos_token": "<|im_end|>" }));
        assert!(!t.builtin);
        assert_eq!(t.eos_token, "<|im_end|>");
        assert_eq!(t.bos_token, "", "no bos_token in the config");
        assert_eq!(
            t.render(&conversation(), true).unwrap(),
            "<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n\
             <|im_start|>assistant\nhello<|im_end|>\n<|im_start|>user\nwhat is 2+2?<|im_end|>\n<|im_start|>assistant\n"
        );
        // Without the generation prompt the text ends after the last message.
        assert_eq!(
            t.render(&[m("system", "S"), m("user", "hi")], false)
                .unwrap(),
            "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n"
        );
        // No system message: the template's default one comes first.
        assert_eq!(
            t.render(&[m("user", "hi")], true).unwrap(),
            "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    // Llama 2 chat's template as meta-llama ships it (slicing, `.strip()`, raise_exception).
    const LLAMA2: &str = "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}\
{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}\
{% set system_message = false %}{% endif %}{% for message in loop_messages %}\
{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}\
{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}\
{% if loop.index0 == 0 and system_message != false %}\
{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}\
{% else %}{% set content = message['content'] %}{% endif %}\
{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}\
{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}";

    #[test]
    fn llama2_inst_with_system_block_and_special_tokens_as_objects() {
        // Older configs store special tokens as AddedToken objects.
        let token = |s: &str| json!({ "__type": "AddedToken", "content": s, "lstrip": false, "normalized": false, "rstrip": false, "single_word": false });
        let t = load_ok(
            json!({ "chat_template": LLAMA2, "bos_token": token("<s>"), "eos_token": token("</s>") }),
        );
        assert_eq!(
            (t.bos_token.as_str(), t.eos_token.as_str()),
            ("<s>", "</s>")
        );
        assert_eq!(
            t.render(&conversation(), true).unwrap(),
            "<s>[INST] <<SYS>>\nYou are terse.\n<</SYS>>\n\nhi [/INST] hello </s><s>[INST] what is 2+2? [/INST]"
        );
        // `.strip()` removes the whitespace around each message (Python's str.strip).
        assert_eq!(
            t.render(
                &[
                    m("user", "  spaced out \n"),
                    m("assistant", "\tok  "),
                    m("user", "\nnext")
                ],
                true
            )
            .unwrap(),
            "<s>[INST] spaced out [/INST] ok </s><s>[INST] next [/INST]"
        );
        // Roles that do not alternate: the template's own message, as an error.
        let err = t
            .render(&[m("user", "a"), m("user", "b")], true)
            .unwrap_err();
        assert!(
            format!("{err:#}").contains("Conversation roles must alternate"),
            "{err:#}"
        );
        let err = t
            .render(&[m("system", "S"), m("assistant", "first")], true)
            .unwrap_err();
        assert!(
            format!("{err:#}").contains("Conversation roles must alternate"),
            "{err:#}"
        );
    }

    // Llama 3 instruct's template (bos_token first, header tokens, `| trim`).
    const LLAMA3: &str = "{% set loop_messages = messages %}{% for message in loop_messages %}\
{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' %}\
{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}\
{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}";

    #[test]
    fn llama3_header_tokens_with_bos_first() {
        let t = load_ok(
            json!({ "chat_template": LLAMA3, "bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>" }),
        );
        assert_eq!(
            t.render(&conversation(), true).unwrap(),
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are terse.<|eot_id|>\
             <|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>\
             <|start_header_id|>assistant<|end_header_id|>\n\nhello<|eot_id|>\
             <|start_header_id|>user<|end_header_id|>\n\nwhat is 2+2?<|eot_id|>\
             <|start_header_id|>assistant<|end_header_id|>\n\n"
        );
        // `| trim` binds to the content only; BOS appears once, before the first message.
        assert_eq!(
            t.render(&[m("user", " x \n")], false).unwrap(),
            "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nx<|eot_id|>"
        );
    }

    #[test]
    fn python_string_methods_namespace_and_raise_exception_for_an_unknown_role() {
        // Methods templates call on strings, dicts and lists as in Python, a namespace carried
        // out of a loop, reversed slicing, and an exception for a role the template refuses.
        let source = "{% set ns = namespace(system='', n=0) %}\
{% for message in messages %}{% if message.get('role') == 'system' %}{% set ns.system = message['content'].strip().upper() %}\
{% elif message['role'] not in ['user', 'assistant'] %}{{ raise_exception('Unknown role: ' + message['role']) }}\
{% else %}{% set ns.n = ns.n + 1 %}{% endif %}{% endfor %}\
[{{ ns.system }}|{{ ns.n }}]\
{% for message in messages[::-1] if message['role'] != 'system' %}\
{{ message['role'][0] }}:{{ message['content'].replace('  ', ' ').split(' ') | join('_') }}\
{% if message['content'].startswith('what') %}?{% endif %}{% if message['content'].endswith('!') %}!{% endif %};\
{% endfor %}{% if add_generation_prompt %}{{ eos_token.lstrip('<').rstrip('>') }}{% endif %}";
        let t = load_ok(json!({ "chat_template": source, "eos_token": "<end>" }));
        let got = t
            .render(
                &[
                    m("system", "  be kind "),
                    m("user", "what  is up"),
                    m("assistant", "not much!"),
                    m("user", "ok"),
                ],
                true,
            )
            .unwrap();
        assert_eq!(got, "[BE KIND|3]u:ok;a:not_much!!;u:what_is_up?;end");
        let err = t
            .render(&[m("user", "hi"), m("tool", "42")], true)
            .unwrap_err();
        assert!(format!("{err:#}").contains("Unknown role: tool"), "{err:#}");
    }

    #[test]
    fn a_list_of_named_templates_uses_the_default_one() {
        let t = load_ok(json!({
            "chat_template": [
                { "name": "tool_use", "template": "TOOLS{% for m in messages %}{{ m.content }}{% endfor %}" },
                { "name": "default", "template": "{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}" },
                { "name": "rag", "template": "RAG" }
            ],
            "bos_token": "<s>",
        }));
        assert_eq!(
            t.render(&[m("user", "hi")], true).unwrap(),
            "<user>hi<assistant>"
        );
        assert_eq!(t.bos_token, "<s>");
    }

    #[test]
    fn folders_without_a_template_get_the_builtin_one() {
        let builtin_render = "system: S\nuser: hi\nassistant: hello\nuser: q\nassistant:";
        let msgs = [
            m("system", "S"),
            m("user", "hi"),
            m("assistant", "hello"),
            m("user", "q"),
        ];
        // No tokenizer_config.json at all.
        let dir = tempfile::tempdir().unwrap();
        let t = ChatTemplate::from_folder(dir.path()).unwrap();
        assert!(t.builtin);
        assert_eq!(t.render(&msgs, true).unwrap(), builtin_render);
        assert_eq!(
            t.render(&msgs[..2], false).unwrap(),
            "system: S\nuser: hi\n"
        );
        // A tokenizer_config.json without chat_template (or with null).
        for config in [
            json!({ "bos_token": "<s>" }),
            json!({ "chat_template": null }),
        ] {
            let t = load_ok(config);
            assert!(t.builtin);
            assert_eq!(t.render(&msgs, true).unwrap(), builtin_render);
        }
    }

    #[test]
    fn broken_templates_and_configs_are_clear_errors() {
        let err = |config: Value| format!("{:#}", load(config).expect_err("should not load"));
        let e = err(json!({ "chat_template": "{% for m in messages %}{{ m.content }" }));
        assert!(e.contains("chat template"), "{e}");
        let e = err(json!({ "chat_template": 42 }));
        assert!(e.contains("chat_template"), "{e}");
        let e = err(json!({ "chat_template": [{ "name": "default" }] }));
        assert!(e.contains("chat_template"), "{e}");
        // A template that fails on every conversation fails when the folder is opened.
        let e = err(json!({ "chat_template": "{{ raise_exception('no chat for you') }}" }));
        assert!(e.contains("no chat for you"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("tokenizer_config.json"), "{ not json").unwrap();
        let e = format!("{:#}", ChatTemplate::from_folder(dir.path()).unwrap_err());
        assert!(e.contains("not valid JSON"), "{e}");
    }

    // Zephyr's template as shipped: one tag per line. transformers renders chat templates with
    // `trim_blocks` and `lstrip_blocks`, so the newline after each `{% ... %}` tag disappears
    // and only the newlines after `{{ ... }}` remain.
    const ZEPHYR: &str = "{% for message in messages %}\n{% if message['role'] == 'user' %}\n\
{{ '<|user|>\n' + message['content'] + eos_token }}\n{% elif message['role'] == 'system' %}\n\
{{ '<|system|>\n' + message['content'] + eos_token }}\n{% elif message['role'] == 'assistant' %}\n\
{{ '<|assistant|>\n'  + message['content'] + eos_token }}\n{% endif %}\n\
{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n{% endfor %}";

    #[test]
    fn multi_line_templates_trim_blocks_like_transformers() {
        let t = load_ok(json!({ "chat_template": ZEPHYR, "eos_token": "</s>" }));
        assert_eq!(
            t.render(&conversation(), true).unwrap(),
            "<|system|>\nYou are terse.</s>\n<|user|>\nhi</s>\n<|assistant|>\nhello</s>\n<|user|>\nwhat is 2+2?</s>\n<|assistant|>\n"
        );
        // lstrip_blocks: indentation before a block tag is dropped too.
        let t = load_ok(
            json!({ "chat_template": "{% for m in messages %}\n    {% if m.role == 'user' %}\n[{{ m.content }}]\n    {% endif %}\n{% endfor %}" }),
        );
        assert_eq!(
            t.render(&[m("user", "a"), m("assistant", "b"), m("user", "c")], true)
                .unwrap(),
            "[a]\n[c]\n"
        );
    }

    // transformers enables Jinja's loop controls (`jinja2.ext.loopcontrols`) for chat templates.
    #[test]
    fn loop_controls_like_transformers() {
        let t = load_ok(
            json!({ "chat_template": "{% for m in messages %}{% if m.role == 'system' %}{% continue %}{% endif %}\
{{ m.content }};{% if m.content == 'stop' %}{% break %}{% endif %}{% endfor %}" }),
        );
        assert_eq!(
            t.render(
                &[
                    m("system", "S"),
                    m("user", "a"),
                    m("user", "stop"),
                    m("user", "never")
                ],
                false
            )
            .unwrap(),
            "a;stop;"
        );
    }
}
