//! The `jielong` command line. It owns the user's world — flags, files, progress bars,
//! pictures, errors worded for people — and is a shell over the library: each command opens a
//! model, turns its flags into a request and calls its modality's recipe (`text::complete`,
//! `text::Conversation::turn`, `image::draw`, `audio::draw`) or the trainer.

// Leaves, used by the commands: flags, settings, opening models, pictures of steps and losses.
mod args;
mod open;
mod plots;
mod settings;
mod show;
mod training;

// One file per command, and per modality where it differs.
mod bench;
mod chat;
mod eval;
mod eval_audio;
mod eval_image;
mod eval_text;
mod export;
mod generate;
mod generate_audio;
mod generate_image;
mod generate_text;
mod inspect;
mod serve;
mod train;
mod train_audio;
mod train_image;
mod train_text;

use std::process::ExitCode;

use clap::Parser;

pub use args::Cli;

/// Runs the command line and turns any error into a message and a non-zero exit status.
pub fn main() -> ExitCode {
    tune_allocator();
    quiet_on_closed_pipe();
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", settings::describe(&e));
            ExitCode::FAILURE
        }
    }
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    use args::Command;
    match cli.command {
        Command::Train(a) => train::run(a),
        Command::Generate(a) => generate::run(a),
        Command::Eval(a) => eval::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Chat(a) => chat::run(a),
        Command::Tokenize(a) => inspect::tokenize(a),
        Command::Logits(a) => inspect::logits(a),
        Command::Export(a) => export::run(a),
        Command::Serve(a) => serve::run(a),
    }
}

/// Ends quietly, as other Unix tools do, when the reader of stdout goes away (`jielong ... |
/// head`): Rust ignores SIGPIPE, which turns the next print into a panic.
fn quiet_on_closed_pipe() {
    #[cfg(unix)]
    // Safety: restores the default action of one signal before any threads start.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Keeps freed memory in the process instead of returning it to the kernel: the backend
/// allocates and frees tensors of tens of megabytes every step, and letting glibc hand them back
/// made the kernel spend a fifth of training time zeroing fresh pages (measured with perf).
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // Safety: mallopt only changes allocator thresholds; called before any threads start.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
        libc::mallopt(libc::M_TOP_PAD, 256 << 20);
    }
}
