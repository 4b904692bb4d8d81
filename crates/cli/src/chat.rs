//! `jielong chat`: a multi-turn conversation that keeps the KV cache between turns, so each
//! turn costs only its own new tokens. Reads one user turn per line from stdin (a terminal or a
//! pipe); `/reset`, `/probs K` and `/quit` are commands.

use std::io::{BufRead, IsTerminal, Write};

use anyhow::Result;
use jielong_core::{Codec, Finish, Flow};
use jielong_text::{ChatStyle, Conversation, ReplySettings, TextEvent};

use crate::args::{ChatArgs, Modality};
use crate::show::{self, Step};
use crate::{open, settings};

pub fn run(a: ChatArgs) -> Result<()> {
    let mut sampler = settings::sampler_config(&a.sampling)?;
    let (folder, model) = open::open_model(&a.model, Modality::Text, &a.device)?;
    sampler.temperature = open::temperature(&folder, a.sampling.temperature)?;
    let text_model = open::text_model(&folder)?;
    let style = ChatStyle::new(&text_model, open::chat_template(&folder)?);
    let mut chat = Conversation::new(a.system.as_deref());
    let mut reply_settings = ReplySettings {
        sampler,
        seed: a.sampling.seed,
        max_new_tokens: a.max_new_tokens,
        show_top: a.sampling.show_probs.unwrap_or(0),
    };

    let interactive = std::io::stdin().is_terminal();
    if interactive {
        eprintln!(
            "chatting with {} ({} template). /reset, /probs K, /quit",
            a.model.display(),
            if style.template.builtin {
                "built-in"
            } else {
                "the model's"
            }
        );
    }
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    loop {
        if interactive {
            eprint!("> ");
            std::io::stderr().flush()?;
        }
        let Some(line) = lines.next() else { break };
        let line = line?;
        let input = line.trim();
        match input.split_whitespace().collect::<Vec<_>>().as_slice() {
            [] => continue,
            ["/quit"] | ["/exit"] => break,
            ["/reset"] => {
                chat.reset();
                eprintln!("[conversation reset]");
            }
            ["/probs", k] => match k.parse::<usize>() {
                Ok(k) => {
                    reply_settings.show_top = k;
                    eprintln!(
                        "[showing the {k} most likely tokens at each step{}]",
                        if k == 0 { " — off" } else { "" }
                    );
                }
                Err(_) => {
                    eprintln!("[/probs needs a number, e.g. /probs 5; /probs 0 turns it off]")
                }
            },
            [cmd, ..] if cmd.starts_with('/') => {
                eprintln!("[unknown command {cmd}: /reset, /probs K, /quit]")
            }
            _ => {
                let mut stdout = std::io::stdout().lock();
                let label = |id: u32| text_model.codec.token_label(id);
                let show_top = reply_settings.show_top;
                let mut step = 0;
                let mut on_event = |e: &TextEvent| {
                    if let TextEvent::Token(t) = e {
                        if show_top > 0 {
                            let s = Step {
                                id: t.id,
                                prob: t.prob,
                                top: t.top.to_vec(),
                            };
                            let _ = writeln!(stdout, "{}", show::render(step, &s, &label));
                            step += 1;
                        } else {
                            let _ = write!(stdout, "{}", t.text);
                            let _ = stdout.flush();
                        }
                    }
                    Flow::Continue
                };
                let turn = chat.turn(
                    &model,
                    &text_model,
                    &style,
                    input,
                    &reply_settings,
                    &mut on_event,
                );
                drop(on_event);
                match turn {
                    Ok(reply) => {
                        if show_top > 0 {
                            writeln!(stdout, "{}", reply.text)?;
                        } else {
                            writeln!(stdout, "{}", reply.unshown)?;
                        }
                        if reply.dropped > 0 {
                            eprintln!(
                                "[context full: dropped the {} oldest exchange(s), re-encoding the rest once]",
                                reply.dropped
                            );
                        }
                        eprintln!(
                            "[turn {}: {} new tokens fed, {} reused from the cache]",
                            chat.turns(),
                            reply.fed,
                            reply.reused
                        );
                        if reply.finish == Finish::ContextFull {
                            eprintln!("[the reply filled the context and was cut]");
                        }
                    }
                    Err(e) => eprintln!("error: {}", settings::describe(&e)),
                }
            }
        }
    }
    Ok(())
}
