//! One thread per model owns its decoder and a [`Generator`]: the whole batch of running
//! sequences, text, images and clips alike. Between two steps it takes in new requests (they
//! join the batch: continuous batching), drops those whose client went away, and then feeds
//! everyone one step and sends each request its new token.
//!
//! A request's sequence `i` draws with `seed + i` and its own sampler, exactly as
//! [`jielong_core::generate`] gives them, so what a client gets does not depend on who else is
//! in the batch (as far as the decoder's logits do not: the SIMD decoder's are bitwise the same
//! in any batch).

use std::collections::{HashMap, VecDeque};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc::Receiver;
use std::time::Instant;

use anyhow::{Result, anyhow};
use jielong_audio::{Clip, ClipJob};
use jielong_core::score::nll;
use jielong_core::{
    Decoder, Event, Feed, Flow, GenerateConfig, Generation, Generator, Positions, Sampler,
    SamplerConfig,
};
use jielong_image::DrawJob;
use jielong_text::{Completion, CompletionJob, TextEvent};
use tokio::sync::mpsc::UnboundedSender;
use tokio::sync::oneshot;

use crate::models::Served;
use crate::stats;

/// A request, ready for the loop: the library's job in pieces.
pub enum Job {
    Text(CompletionJob<'static>),
    Image(DrawJob<'static>),
    Audio(ClipJob<'static>),
}

impl Job {
    fn prompt(&self) -> Vec<u32> {
        match self {
            Job::Text(j) => j.prompt_ids().to_vec(),
            Job::Image(j) => j.prompt().to_vec(),
            Job::Audio(j) => j.prompt().to_vec(),
        }
    }

    /// The settings of sequence 0 (sequence `i` adds `i` to the seed).
    fn config(&self) -> GenerateConfig {
        match self {
            Job::Text(j) => j.config(),
            Job::Image(j) => j.config().clone(),
            Job::Audio(j) => j.config().clone(),
        }
    }

    /// How many sequences the job draws.
    pub fn count(&self) -> usize {
        match self {
            Job::Text(j) => j.request().count,
            Job::Image(j) => j.request().count,
            Job::Audio(j) => j.request().draw.count,
        }
    }
}

/// What the worker is asked to do.
pub enum Work {
    Generate {
        job: Job,
        reply: UnboundedSender<Update>,
    },
    /// The log-probability of every token of `ids` after the ones before it (one forward pass
    /// over all positions), with the `top` most likely alternatives at each.
    Score {
        ids: Vec<u32>,
        top: usize,
        reply: oneshot::Sender<Result<Vec<Scored>>>,
    },
}

/// One scored token: `logprob` is `None` for the first (nothing predicts it).
#[derive(Clone, Debug)]
pub struct Scored {
    pub id: u32,
    pub logprob: Option<f64>,
    pub top: Vec<(u32, f32)>,
}

/// One drawn token of sequence `index` of a job.
#[derive(Clone, Debug)]
pub struct Token {
    pub index: usize,
    pub id: u32,
    pub prob: f32,
    pub top: Vec<(u32, f32)>,
    /// Text that became final with this token (text jobs; empty otherwise).
    pub text: String,
    /// The token ended its sequence (END, or a chat's end of turn): not part of the output.
    pub end: bool,
}

/// What a job's handler hears from the worker.
pub enum Update {
    Token(Token),
    Done(Finished),
    Failed(anyhow::Error),
}

pub enum Finished {
    Text(Vec<Completion>),
    Images(Vec<Vec<u32>>),
    Clips(Vec<Clip>),
}

/// A job in the batch.
struct Active {
    job: Job,
    reply: UnboundedSender<Update>,
    /// The generator's sequence numbers of this job's sequences, in order.
    seqs: Vec<usize>,
    generations: Vec<Option<Generation>>,
}

/// Starts the worker of `served` on its own thread; it ends when the server drops the queue.
pub fn spawn<D: Decoder + Send + 'static>(
    served: &'static Served,
    decoder: D,
    queue: Receiver<Work>,
    max_batch: usize,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name(format!("model {}", served.name))
        .spawn(move || {
            let mut worker = Worker {
                served,
                decoder: &decoder,
                generator: Generator::new(&decoder),
                jobs: HashMap::new(),
                owner: HashMap::new(),
                waiting: VecDeque::new(),
                next_seq: 0,
                next_job: 0,
                max_batch: max_batch.max(1),
                largest: 0,
            };
            worker.run(queue);
        })
        .map(|_| ())
}

struct Worker<'d, D: Decoder> {
    served: &'static Served,
    decoder: &'d D,
    generator: Generator<'d, D>,
    jobs: HashMap<usize, Active>,
    /// Sequence number -> (job number, index of the sequence in its job).
    owner: HashMap<usize, (usize, usize)>,
    /// Jobs taken from the queue that wait for room in the batch.
    waiting: VecDeque<(Job, UnboundedSender<Update>)>,
    next_seq: usize,
    next_job: usize,
    max_batch: usize,
    /// The largest batch stepped so far (a gauge: proof that requests shared a batch).
    largest: usize,
}

impl<D: Decoder> Worker<'_, D> {
    fn run(&mut self, queue: Receiver<Work>) {
        loop {
            if self.generator.is_empty() && self.waiting.is_empty() {
                match queue.recv() {
                    Ok(work) => self.take(work),
                    Err(_) => return,
                }
            }
            while let Ok(work) = queue.try_recv() {
                self.take(work);
            }
            self.drop_abandoned();
            self.admit();
            if !self.generator.is_empty() {
                self.step();
            }
        }
    }

    fn take(&mut self, work: Work) {
        match work {
            Work::Generate { job, reply } => self.waiting.push_back((job, reply)),
            Work::Score { ids, top, reply } => {
                self.served.taken();
                let scored = catch_unwind(AssertUnwindSafe(|| self.score(&ids, top)))
                    .unwrap_or_else(|_| Err(anyhow!("scoring the prompt failed (a panic)")));
                let _ = reply.send(scored);
            }
        }
    }

    /// Moves waiting jobs into the batch while there is room (a job bigger than the whole
    /// batch still runs, alone).
    fn admit(&mut self) {
        while let Some((job, _)) = self.waiting.front() {
            let running = self.generator.len();
            if running > 0 && running + job.count() > self.max_batch {
                break;
            }
            let (job, reply) = self.waiting.pop_front().expect("a front");
            self.served.taken();
            if reply.is_closed() {
                stats::cancelled(&self.served.name, job.count());
                continue;
            }
            self.add(job, reply);
        }
    }

    /// Adds a job's sequences to the batch.
    fn add(&mut self, job: Job, reply: UnboundedSender<Update>) {
        let prompt = job.prompt();
        let config = job.config();
        let number = self.next_job;
        self.next_job += 1;
        let mut seqs = Vec::new();
        for i in 0..job.count() {
            let seq = self.next_seq;
            self.next_seq += 1;
            let mut c = config.clone();
            c.seed = config.seed.wrapping_add(i as u64);
            let added = self
                .generator
                .add(seq, prompt.clone(), c, self.decoder.new_cache());
            if let Err(e) = added {
                for &s in &seqs {
                    self.generator.cancel(s);
                    self.owner.remove(&s);
                }
                let _ = reply.send(Update::Failed(e));
                return;
            }
            self.owner.insert(seq, (number, i));
            seqs.push(seq);
        }
        let generations = seqs.iter().map(|_| None).collect();
        self.jobs.insert(
            number,
            Active {
                job,
                reply,
                seqs,
                generations,
            },
        );
    }

    /// Cancels the jobs whose client went away: their sequences leave before the next step.
    fn drop_abandoned(&mut self) {
        let gone: Vec<usize> = self
            .jobs
            .iter()
            .filter(|(_, a)| a.reply.is_closed())
            .map(|(&n, _)| n)
            .collect();
        for n in gone {
            self.cancel_job(n, 0);
        }
    }

    /// Takes job `number` out: its sequences still in the batch leave it. `finished` of its
    /// sequences that left the batch this step count as cancelled too.
    fn cancel_job(&mut self, number: usize, finished: usize) {
        let active = self.jobs.remove(&number).expect("a running job");
        let mut cancelled = finished;
        for seq in active.seqs {
            cancelled += usize::from(self.generator.cancel(seq).is_some());
            self.owner.remove(&seq);
        }
        stats::cancelled(&self.served.name, cancelled);
        stats::batch_now(&self.served.name, self.generator.len());
    }

    /// One step of the whole batch.
    fn step(&mut self) {
        let batch = self.generator.len();
        self.largest = self.largest.max(batch);
        stats::batch(&self.served.name, batch, self.largest);
        let started = Instant::now();
        let mut drawn = 0;
        let (jobs, owner) = (&mut self.jobs, &self.owner);
        let generator = &mut self.generator;
        let result = catch_unwind(AssertUnwindSafe(|| {
            generator.step(&mut |e| route(jobs, owner, e, &mut drawn))
        }));
        if batch > 0 {
            stats::step(&self.served.name, started.elapsed().as_secs_f64(), drawn);
        }
        match result {
            Ok(Ok(done)) => {
                for d in done {
                    self.finished(d.seq, d.generation);
                }
            }
            Ok(Err(e)) => self.fail_all(&format!("{e:#}")),
            Err(_) => self.fail_all("generation failed (a panic in the decoder)"),
        }
        stats::batch_now(&self.served.name, self.generator.len());
    }

    /// A step failed: every running job gets the error and the batch starts afresh (a failed
    /// step may have left caches half fed).
    fn fail_all(&mut self, message: &str) {
        for (_, active) in self.jobs.drain() {
            let _ = active.reply.send(Update::Failed(anyhow!("{message}")));
        }
        self.owner.clear();
        self.generator = Generator::new(self.decoder);
    }

    /// Sequence `seq` finished; when it was its job's last, the job's results go out.
    fn finished(&mut self, seq: usize, generation: Generation) {
        let Some((number, index)) = self.owner.remove(&seq) else {
            return;
        };
        let Some(active) = self.jobs.get_mut(&number) else {
            return;
        };
        if active.reply.is_closed() {
            // The client hung up during the step (its token could not be sent): the job is
            // cancelled, this sequence with it.
            self.cancel_job(number, 1);
            return;
        }
        active.generations[index] = Some(generation);
        if active.generations.iter().any(Option::is_none) {
            return;
        }
        let active = self.jobs.remove(&number).expect("present");
        let generations: Vec<Generation> = active.generations.into_iter().flatten().collect();
        let update = match active.job {
            Job::Text(job) => job.finish(generations).map(Finished::Text),
            Job::Image(job) => Ok(Finished::Images(job.tokens(generations))),
            Job::Audio(job) => job.clips(generations).map(Finished::Clips),
        };
        let _ = active.reply.send(match update {
            Ok(done) => Update::Done(done),
            Err(e) => Update::Failed(e),
        });
    }

    /// Scores `ids` in one forward pass over all positions.
    fn score(&self, ids: &[u32], top: usize) -> Result<Vec<Scored>> {
        let Some(&first) = ids.first() else {
            return Ok(Vec::new());
        };
        let mut cache = self.decoder.new_cache();
        let logits = self
            .decoder
            .forward(&mut [Feed::new(ids, &mut cache)], Positions::All)?;
        // The model's own distribution: temperature 1, nothing filtered.
        let plain = Sampler::new(SamplerConfig::default(), 0)?;
        let mut out = vec![Scored {
            id: first,
            logprob: None,
            top: Vec::new(),
        }];
        for (i, &id) in ids.iter().enumerate().skip(1) {
            let row = logits.row(0, i - 1);
            let top = if top > 0 {
                plain.distribution(row, &[], &[])?.top(top)
            } else {
                Vec::new()
            };
            out.push(Scored {
                id,
                logprob: Some(-nll(row, id)),
                top,
            });
        }
        Ok(out)
    }
}

/// Hands one event of the loop to the job that owns its sequence. A job whose client is gone
/// stops its sequence here, so it leaves the batch at once.
fn route(
    jobs: &mut HashMap<usize, Active>,
    owner: &HashMap<usize, (usize, usize)>,
    e: &Event,
    drawn: &mut usize,
) -> Flow {
    let Event::Token {
        seq,
        step,
        id,
        prob,
        top,
        ids,
    } = *e
    else {
        return Flow::Continue;
    };
    *drawn += 1;
    let Some(&(number, index)) = owner.get(&seq) else {
        return Flow::Stop;
    };
    let Some(active) = jobs.get_mut(&number) else {
        return Flow::Stop;
    };
    // The loop pushes a drawn token onto `ids` unless it ended the sequence.
    let end = ids.len() == step;
    let token = |text: &str| Token {
        index,
        id,
        prob,
        top: top.to_vec(),
        text: text.to_string(),
        end,
    };
    let reply = &active.reply;
    match &mut active.job {
        Job::Text(job) => {
            // The text job numbers its continuations from 0, as `complete` does.
            let local = Event::Token {
                seq: index,
                step,
                id,
                prob,
                top,
                ids,
            };
            job.on_event(&local, &mut |t| match t {
                TextEvent::Token(t) => match reply.send(Update::Token(token(t.text))) {
                    Ok(()) => Flow::Continue,
                    Err(_) => Flow::Stop,
                },
                TextEvent::Slide { .. } => Flow::Continue,
            })
        }
        Job::Image(_) | Job::Audio(_) => match reply.send(Update::Token(token(""))) {
            Ok(()) => Flow::Continue,
            Err(_) => Flow::Stop,
        },
    }
}
