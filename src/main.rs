fn main() {
    std::process::exit(logflow::cli::main());
}
