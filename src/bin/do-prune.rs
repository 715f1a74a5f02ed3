fn main() {
    std::process::exit(do_prune::main())
}
