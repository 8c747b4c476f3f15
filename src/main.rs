fn main() {
    std::process::exit(sweep::cli::main());
}
