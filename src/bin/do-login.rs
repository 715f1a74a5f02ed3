fn main() {
    std::process::exit(do_login::main())
}
