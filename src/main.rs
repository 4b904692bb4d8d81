fn main() {
    jielong_cli::main()
}
