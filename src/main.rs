fn main() {
    std::process::exit(nixstore_auth::main());
}
