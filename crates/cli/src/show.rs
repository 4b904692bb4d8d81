//! `--show-probs K`: the lecture's dice — for every step, the K most likely tokens, their
//! probabilities, and which one was drawn.

use jielong_core::Event;
use serde_json::{Value, json};

/// One step of a sequence: the token drawn, its probability and the top candidates.
#[derive(Clone, Debug)]
pub struct Step {
    pub id: u32,
    pub prob: f32,
    pub top: Vec<(u32, f32)>,
}

/// Collects the `--show-probs` steps of every sequence.
pub fn record_steps(steps: &mut [Vec<Step>], event: &Event) {
    if let Event::Token {
        seq, id, prob, top, ..
    } = event
    {
        steps[*seq].push(Step {
            id: *id,
            prob: *prob,
            top: top.to_vec(),
        });
    }
}

/// A one-line picture of a step: `  12  'e' 41.2% ████▏ *   'a' 20.1% ██ ...`.
pub fn render(step: usize, s: &Step, label: &dyn Fn(u32) -> String) -> String {
    let mut line = format!("{step:>5} ");
    for &(id, p) in &s.top {
        let mark = if id == s.id { '*' } else { ' ' };
        line += &format!(
            " {:>8} {:5.1}% {:<6}{mark}",
            label(id),
            100.0 * p,
            bar(p, 6)
        );
    }
    if !s.top.iter().any(|&(id, _)| id == s.id) {
        line += &format!("  drawn {} {:.1}%", label(s.id), 100.0 * s.prob);
    }
    line
}

/// A bar of `width` cells for a probability, in eighths of a cell.
fn bar(p: f32, width: usize) -> String {
    const PARTS: [char; 8] = ['▏', '▎', '▍', '▌', '▋', '▊', '▉', '█'];
    let eighths = (p.clamp(0.0, 1.0) * (width * 8) as f32).round() as usize;
    let mut s = "█".repeat(eighths / 8);
    if eighths % 8 > 0 {
        s.push(PARTS[eighths % 8 - 1]);
    }
    s
}

pub fn to_json(s: &Step, label: &dyn Fn(u32) -> String) -> Value {
    json!({
        "id": s.id,
        "token": label(s.id),
        "prob": s.prob,
        "top": s.top.iter().map(|&(id, p)| json!({"id": id, "token": label(id), "prob": p})).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_drawn_token_and_bars() {
        let s = Step {
            id: 2,
            prob: 0.25,
            top: vec![(1, 0.5), (2, 0.25)],
        };
        let line = render(3, &s, &|id| format!("t{id}"));
        assert!(line.contains("t1  50.0% ███"));
        assert!(line.contains("t2  25.0% █▌") && line.contains('*'));
        assert_eq!(bar(1.0, 6), "██████");
        assert_eq!(bar(0.0, 6), "");
    }
}
