fn main() {
    std::process::exit(do_sim::main())
}
