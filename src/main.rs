fn main() -> std::process::ExitCode {
    jielong_cli::main()
}
